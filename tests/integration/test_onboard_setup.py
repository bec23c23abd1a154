"""``restoredrill setup`` against the double started without any restoredrill user or token.

1. Printed: exactly the ``pveum`` / ``proxmox-backup-manager`` steps ``--apply`` sends.
2. ``--apply`` (admin tokens read from their files) creates the users, tokens, roles and ACLs
   through the API; the new secrets land only in the inventory's 0600 files; the PVE token
   holds exactly the README table's privileges (the lab's ACL, which
   ``test_privileges_table.py`` proves row by row), the PBS token the table's plus what PBS's
   fixed roles add, named in the output.
3. The drills' calls (``privilege_walks``) pass with the tokens setup made; taking one
   privilege out of a role setup made fails the drill naming it.
4. Run again: users, roles and the pool are reused, the existing token stops it (exit 1), and
   a secret file that exists is never written over (exit 2).
"""
from __future__ import annotations

import stat

import pytest

from restoredrill import cli
from restoredrill.inventory.loader import load_inventory
from restoredrill.lab.proxmox import ProxmoxDouble, homelab
from restoredrill.onboard.privileges import PBS_EXTRA
from tests.integration import privilege_walks as walks
from tests.integration.onboard_site import site_inventory

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onboard-setup")
    with ProxmoxDouble(folder / "double", drill_tokens=False) as double:
        yield double, site_inventory(double, folder), folder


def admin_args(double) -> list[str]:
    return ["--pve-admin-token-id", double.admin_token.token_id,
            "--pve-admin-token-secret-file", str(double.admin_token.secret_file),
            "--pbs-admin-token-id", double.pbs_admin_token.token_id,
            "--pbs-admin-token-secret-file", str(double.pbs_admin_token.secret_file)]


def triples(token) -> set[tuple[str, str]]:
    return {(entry.path, priv) for entry in token.acl for priv in entry.privs}


def test_setup_prints_then_applies_and_the_drills_pass(site, capsys):
    double, inventory, folder = site
    assert homelab.PVE_DRILL_TOKEN not in double.pve_tokens.tokens      # a site before setup
    assert cli.main(["setup", "--inventory", str(inventory), *admin_args(double)]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert "pveum user token add restoredrill@pve drill --privsep 1" in "\n".join(printed)
    assert "pveum acl modify /mapping/pci/nic-offload --roles RestoreDrill.Mapping" in "\n".join(printed)
    assert cli.main(["setup", "--inventory", str(inventory), "--apply", *admin_args(double)]) == 0
    applied = capsys.readouterr()
    steps = [line.strip().removesuffix("  (exists: reused)") for line in applied.out.splitlines()
             if line.startswith("  ")]
    assert steps == printed                           # --apply sends what it prints, in order
    for name in ("pve-token", "pbs-token"):
        mode = (folder / name).stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
        secret = (folder / name).read_text().strip()
        assert secret and secret not in applied.out + applied.err
    pve = double.pve_tokens.tokens[homelab.PVE_DRILL_TOKEN]
    pbs = double.pbs_tokens.tokens[homelab.PBS_AUDIT_TOKEN]
    assert pve.secret == (folder / "pve-token").read_text().strip()
    lab = {(e.path, p) for e in homelab.pve_drill_acl((9, 1)) for p in e.privs}
    declared = load_inventory(inventory, check_files=False).model.notifications.pve_targets
    # setup grants what this inventory's drills use (the preflight's table): no PVE notification
    # targets declared, no Mapping.Audit on /mapping/notifications
    assert triples(pve) == (lab if declared else lab - {("/mapping/notifications", "Mapping.Audit")})
    table = {(e.path, p) for e in homelab.pbs_audit_acl() for p in e.privs}
    extra = {("/datastore", p) for p in PBS_EXTRA["DatastoreAdmin"]} | {("/system/notifications", "Datastore.Audit")}
    assert triples(pbs) == table | extra
    assert "also gives Datastore.Verify, Datastore.Backup, Datastore.Prune" in applied.out
    for (api, drill), walk in walks.WALKS.items():
        try:
            walk(double, pve if api == "pve" else pbs)
        finally:
            walks.clean_up(double)


def test_one_privilege_less_fails_the_drill_naming_it(site, capsys):
    double, inventory, _ = site
    if homelab.PVE_DRILL_TOKEN not in double.pve_tokens.tokens:
        pytest.fail("the apply test must run first in this module (it makes the token)")
    admin = double.pve_access
    whole = admin.roles["RestoreDrill.Bridge"]
    admin.roles["RestoreDrill.Bridge"] = frozenset()        # as `pveum role modify RestoreDrill.Bridge --privs ''`
    admin.refresh()
    try:
        with pytest.raises(Exception) as failed:
            walks.restore(double, double.pve_tokens.tokens[homelab.PVE_DRILL_TOKEN])
        assert "SDN.Use" in str(failed.value)
    finally:
        admin.roles["RestoreDrill.Bridge"] = whole
        admin.refresh()
        walks.clean_up(double)


def test_a_second_apply_reuses_what_exists_and_never_overwrites_a_secret(site, capsys):
    double, inventory, folder = site
    assert cli.main(["setup", "--inventory", str(inventory), "--apply", *admin_args(double)]) == 2
    assert "never writes over a secret" in capsys.readouterr().err
    moved = folder / "pve-token.kept"
    (folder / "pve-token").rename(moved)
    (folder / "pbs-token").rename(folder / "pbs-token.kept")
    try:
        assert cli.main(["setup", "--inventory", str(inventory), "--apply", *admin_args(double)]) == 1
        err = capsys.readouterr().err
        assert "pveum user token add restoredrill@pve drill" in err and "Token already exists" in err
        assert "pveum user add restoredrill@pve" in err          # listed as applied (reused)
        assert not (folder / "pve-token").exists()
    finally:
        moved.rename(folder / "pve-token")
        (folder / "pbs-token.kept").rename(folder / "pbs-token")


def test_apply_needs_file_secrets_and_admin_tokens(site, capsys, tmp_path):
    double, inventory, _ = site
    text = inventory.read_text().replace(f"file:{inventory.parent / 'pve-token'}", "env:PVE_TOKEN")
    other = tmp_path / "inventory.yaml"
    other.write_text(text)
    assert cli.main(["setup", "--inventory", str(other), "--apply", *admin_args(double)]) == 2
    assert "make it file:PATH" in capsys.readouterr().err
    assert cli.main(["setup", "--inventory", str(inventory), "--apply"]) == 2
    assert "--apply needs --pve-admin-token-id" in capsys.readouterr().err
