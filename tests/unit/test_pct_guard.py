"""The forced command shipped in contrib/ lets only pct exec/status/stop on scratch VMIDs through."""
from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

GUARD = Path(__file__).resolve().parents[2] / "contrib" / "restoredrill-pct-guard"


def load_guard():
    loader = importlib.machinery.SourceFileLoader("pct_guard", str(GUARD))
    spec = importlib.util.spec_from_loader("pct_guard", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


guard = load_guard()


@pytest.mark.parametrize("command,expected", [
    ("pct exec 9901 -- cat /etc/os-release", ["exec", "9901", "--", "cat", "/etc/os-release"]),
    ("pct exec 9999 -- sh -c 'echo \"a b\"; id'", ["exec", "9999", "--", "sh", "-c", 'echo "a b"; id']),
    ("pct status 9900", ["status", "9900"]),
    ("pct stop 9950", ["stop", "9950"]),
])
def test_allowed(command, expected):
    assert guard.parse_request(command, 9900, 9999) == expected


@pytest.mark.parametrize("command,reason", [
    ("pct exec 100 -- id", "outside the scratch range"),
    ("pct stop 110", "outside the scratch range"),
    ("pct destroy 9901 --purge", "not allowed"),
    ("pct set 9901 -net0 bridge=vmbr0", "not allowed"),
    ("pct exec 9901 id", "pct exec VMID --"),
    ("qm stop 9901", "only 'pct"),
    ("pct exec 99a1 -- id", "not a number"),
    ("bash -c 'pct stop 100'", "only 'pct"),
    ("pct exec 9901 -- 'unterminated", "cannot parse"),
    ("", "only 'pct"),
])
def test_refused(command, reason):
    with pytest.raises(ValueError, match=reason):
        guard.parse_request(command, 9900, 9999)


def test_destroy_only_when_allowed():
    assert guard.parse_request("pct destroy 9901 --purge", 9900, 9999, allow_destroy=True) == \
        ["destroy", "9901", "--purge"]
    with pytest.raises(ValueError):
        guard.parse_request("pct destroy 100 --purge", 9900, 9999, allow_destroy=True)
