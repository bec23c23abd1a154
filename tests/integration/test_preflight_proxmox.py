"""Preflight against the Proxmox double (issue 22, section 3): token, TLS pin and privileges per
path read through /access/permissions on PVE and on PBS; removing any one privilege of the
table from the token is named, with the path and the drill that needs it."""
from __future__ import annotations

import pytest
import yaml

from restoredrill.inventory import load_inventory
from restoredrill.lab.proxmox import ProxmoxDouble
from restoredrill.lab.proxmox.permissions import AclEntry
from restoredrill.lab.proxmox.testing import restore_drill_inventory
from restoredrill.preflight import privileges
from restoredrill.preflight.proxmox import probe_proxmox

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("preflight")) as running:
        yield running


@pytest.fixture
def loaded(double, tmp_path):
    restore_drill_inventory(double, tmp_path, "preflight")
    return load_inventory(tmp_path / "inventory.yaml")


def change(loaded, service: str, **keys):
    data = yaml.safe_load(loaded.path.read_text())
    data["proxmox"][service].update(keys)
    loaded.path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_inventory(loaded.path)


@pytest.mark.parametrize("service", ["PVE", "PBS"])
def test_the_labs_tokens_pass_with_every_privilege_of_the_table(loaded, service):
    line = probe_proxmox(loaded, service)
    assert line.ok, str(line)
    text = str(line)
    assert "TCP ok" in text and "TLS pinned" in text and "matches" in text and "valid" in text
    assert "privileges: all" in text


@pytest.mark.parametrize("service", ["PVE", "PBS"])
def test_removing_any_one_privilege_is_named_with_path_and_drill(double, loaded, service):
    token = double.pve_drill if service == "PVE" else double.pbs_audit
    needed = (privileges.pve_privileges(loaded.model, (9, 1)) if service == "PVE"
              else privileges.pbs_privileges(loaded.model))
    original = list(token.acl)
    try:
        for row in needed:
            token.acl = [AclEntry(e.path, e.privs - {row.privilege}, e.propagate) if e.path == row.path else e
                         for e in original]
            line = probe_proxmox(loaded, service)
            assert line.stop is None and len(line.findings) == 1, (row, str(line))
            assert f"missing {row.privilege} on {row.path} ({row.why})" in line.findings[0], str(line)
            assert str(line).startswith("WARN")
    finally:
        token.acl = original


def test_a_wrong_token_secret_and_a_wrong_pin_stop_the_line(double, loaded, tmp_path):
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("00000000-0000-4000-8000-000000000000\n")
    wrong.chmod(0o600)
    line = probe_proxmox(change(loaded, "pve", token_secret=f"file:{wrong}"), "PVE")
    assert "rejected (HTTP 401)" in line.stop and "00000000-0000" not in str(line)
    pin = ":".join(["AB"] * 32)
    line = probe_proxmox(change(loaded, "pbs", fingerprint=pin), "PBS")
    assert f"the server presents {double.pbs_fingerprint.upper()}, the inventory pins {pin}" in line.stop
