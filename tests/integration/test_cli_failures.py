"""Every command ends on one readable line per cause, never a traceback (issue 21, section 4):
`restoredrill reap` against the Proxmox double with PVE unreachable, a pinned fingerprint that
is not the server's, and a wrong token; `--debug` shows the traceback."""
from __future__ import annotations

import copy
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from restoredrill.lab.proxmox import ProxmoxDouble
from restoredrill.lab.proxmox_inventory import proxmox_inventory

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("cli-failures")) as running:
        yield running


@pytest.fixture(scope="module")
def base_inventory(double) -> dict:
    data = {"version": 1, "site": {"name": "cli-failures", "timezone": "UTC"}, **proxmox_inventory(double)}
    data.pop("datasets")
    data["policies"]["rpo"]["daily"] = {"max_age": "25h", "grace": "1h"}
    data["guests"] = [g for g in data["guests"] if g["strategy"] == "pbs"]
    return data


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def broken(data: dict, what: str, folder: Path) -> dict:
    data = copy.deepcopy(data)
    pve = data["proxmox"]["pve"]
    if what == "unreachable":
        pve["url"] = f"https://127.0.0.1:{closed_port()}"
    elif what == "fingerprint":
        first, rest = pve["fingerprint"].split(":", 1)
        pve["fingerprint"] = f"{'00' if first != '00' else '11'}:{rest}"
    else:
        secret = folder / "wrong-token.secret"
        secret.write_text("00000000-0000-0000-0000-000000000000\n")
        secret.chmod(0o600)
        pve["token_secret"] = f"file:{secret}"
    return data


def reap(data: dict, folder: Path, *extra: str) -> subprocess.CompletedProcess:
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return subprocess.run([sys.executable, "-m", "restoredrill.cli", *extra, "reap", "--inventory", str(path),
                           "--state-dir", str(folder / "state")], capture_output=True, text=True, timeout=120)


CAUSES = {"unreachable": "is unreachable", "fingerprint": "does not match the pinned fingerprint",
          "token": "401"}


@pytest.mark.parametrize("what", sorted(CAUSES))
def test_reap_ends_on_one_line_naming_the_cause(double, base_inventory, tmp_path, what):
    proc = reap(broken(base_inventory, what, tmp_path), tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("restoredrill reap: PVE GET /cluster/resources"), lines
    assert CAUSES[what] in lines[0]
    assert "00000000-0000" not in proc.stderr + proc.stdout      # the token is never shown


def test_reap_with_a_working_pve_still_exits_0(double, base_inventory, tmp_path):
    proc = reap(base_inventory, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "expired scratch guest(s) destroyed" in proc.stdout


def test_debug_shows_the_traceback(double, base_inventory, tmp_path):
    proc = reap(broken(base_inventory, "fingerprint", tmp_path), tmp_path, "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ApiError" in proc.stderr
