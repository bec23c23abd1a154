"""init's pure parts: borgmatic files (our own, the shapes borgmatic documents), the draft and
its YAML-with-comments, the setup plan's privileges; and init's usage errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from restoredrill import cli
from restoredrill.inventory.loader import parse_inventory
from restoredrill.onboard import borgmatic, privileges
from restoredrill.onboard.discover import Site
from restoredrill.onboard.draft import build
from restoredrill.onboard.yamltext import emit


def drafts(tmp_path: Path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return borgmatic.repository_drafts(path)


def test_sectioned_layout_before_1_8_is_flattened(tmp_path):
    repo, = drafts(tmp_path, "location:\n  source_directories: [/srv]\n  repositories: [/mnt/b]\n"
                             "storage:\n  encryption_passcommand: cat /etc/pw\nretention:\n  keep_daily: 3\n")
    assert repo.entry["passphrase"] == "command:cat /etc/pw"
    assert repo.retention == {"keep_daily": 3} and repo.entry["checks"]["spot_check"]["source"] == "/srv"


@pytest.mark.parametrize("location,expected", [
    ("backup@nas.lan:borg/app", "ssh://backup@nas.lan/./borg/app"),       # borg 1 scp form, relative
    ("backup@nas.lan:/srv/borg", "ssh://backup@nas.lan/srv/borg"),
    ("ssh://u@h:2222/./r", "ssh://u@h:2222/./r"),
    ("/mnt/backup", "/mnt/backup")])
def test_locations(tmp_path, location, expected):
    repo, = drafts(tmp_path, f"repositories: ['{location}']\n")
    assert repo.entry["location"] == expected
    assert (repo.ssh is not None) == expected.startswith("ssh://")


@pytest.mark.parametrize("line,reference,todo", [
    ("encryption_passphrase: ${BORG_PW}", "env:BORG_PW", False),
    ("encryption_passphrase: '{credential file /etc/borg/pw}'", "file:/etc/borg/pw", False),
    ("encryption_passphrase: 'hunter2 secret'", "env:RESTOREDRILL_BORG_PASSPHRASE_R", True),
    ("encryption_passcommand: pass show borg | head -1", "env:RESTOREDRILL_BORG_PASSPHRASE_R", True),
    ("encryption_passcommand: secret-tool lookup borg r", "command:secret-tool lookup borg r", False)])
def test_secrets_become_references_never_values(tmp_path, line, reference, todo):
    repo, = drafts(tmp_path, f"repositories: [{{path: /mnt/r, label: r}}]\n{line}\n")
    assert repo.entry["passphrase"] == reference
    assert ("passphrase" in repo.comments) == todo
    assert "hunter2" not in repr(repo.entry) + repr(repo.comments)


def test_hook_urls_lose_their_token_and_credentials(tmp_path):
    repo, = drafts(tmp_path, "repositories: [/mnt/r]\nuptime_kuma: {push_url: 'https://me:pw@kuma.lan:3001/api/push/TOK'}\n"
                             "healthchecks: {ping_url: 0f1e2d3c-uuid}\n")
    notes = " ".join(repo.notes)
    assert "https://kuma.lan:3001" in notes and "https://hc-ping.com" in notes
    assert "TOK" not in notes and "pw" not in notes and "uuid" not in notes


@pytest.mark.parametrize("text,words", [
    ("repositories: [\n", "not valid YAML"), ("- a list\n", "mapping of options"),
    ("source_directories: [/x]\n", "names no repositories")])
def test_bad_files_name_the_file_and_the_fix(tmp_path, text, words):
    with pytest.raises(borgmatic.BorgmaticError) as failed:
        drafts(tmp_path, text)
    assert words in str(failed.value) and str(tmp_path) in str(failed.value)


def test_include_tags_do_not_break_reading(tmp_path):
    repo, = drafts(tmp_path, "<<: !include /etc/borgmatic/common.yaml\nrepositories: [/mnt/r]\n")
    assert repo.entry["location"] == "/mnt/r" and "!include files are not followed" in repo.notes[0]


def test_the_draft_validates_and_names_stay_unique(tmp_path):
    repos = drafts(tmp_path, "repositories: [/a/app, /b/app, 'x@h:app']\nencryption_passphrase: Zq9-secret\n"
                             "keep_daily: 1\n")
    draft = build(Site(), None, None, repos)
    loaded = parse_inventory(draft.text(), tmp_path / "inventory.yaml")
    names = [r.name for r in loaded.model.borg.repositories]
    assert names == ["app", "app-2", "app-3"]
    assert [str(r.passphrase) for r in loaded.model.borg.repositories] == [
        f"env:RESTOREDRILL_BORG_PASSPHRASE_{n.upper().replace('-', '_')}" for n in names]
    assert "Zq9-secret" not in draft.text()
    assert any(line.startswith("offsite.storage_boxes[0].key_file") for line in draft.undecided())


def test_yaml_with_comments_loads_back_unchanged():
    data = {"a": {"b": [1, {"c": "x: y", "d": []}], "e": None}, "f": ["#not a comment", "yes"]}
    text = emit(data, {("a", "b"): "why b\non two lines", ("a", "b", 1, "d"): "d here", ("f",): "f"}, "head")
    assert yaml.safe_load(text) == data
    assert "  # why b\n  # on two lines\n  b:" in text and "# d here" in text


def test_setup_roles_hold_the_lab_tables_privileges_for_the_example_inventory():
    from restoredrill.inventory import load_inventory
    inv = load_inventory(Path(__file__).resolve().parents[2] / "inventory" / "example-homelab.yaml", check_files=False).model
    roles = privileges.pve_roles(inv, 9, ("/mapping/pci/nic-offload",))
    paths = {path for role in roles for path in role.paths}
    assert {"/", "/vms", f"/pool/{inv.scratch.pool}", f"/storage/{inv.scratch.storage}",
            f"/sdn/zones/localnetwork/{inv.scratch.bridge}"} <= paths
    assert "VM.Monitor" in privileges.guest_privs(8) and "VM.Monitor" not in privileges.guest_privs(9)
    assert privileges.mapping_paths({"hostpci0": "mapping=gpu,pcie=1", "usb1": "mapping=key",
                                     "virtiofs0": "share1,cache=auto", "hostpci1": "0000:01:00.0"}) == [
        "/mapping/pci/gpu", "/mapping/usb/key", "/mapping/dir/share1"]


def test_init_usage_errors_exit_2(tmp_path, capsys):
    out = tmp_path / "inventory.yaml"
    assert cli.main(["init", "--out", str(out), "--pve-url", "https://pve:8006"]) == 2
    assert "--pve-token-id" in capsys.readouterr().err
    assert cli.main(["init", "--out", str(out), "--borgmatic", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read this borgmatic configuration" in capsys.readouterr().err
    assert cli.main(["init", "--out", str(tmp_path / "no" / "dir.yaml"), "--borgmatic", str(out)]) == 2
    assert not out.exists()


def test_hostile_answers_add_no_yaml_and_no_terminal_control(tmp_path):
    """Names, pools and tags from a broken or hostile server: the draft still validates, holds
    no key the server invented, and no control character reaches the file or the list."""
    site = Site(guests=[{"vmid": 101, "type": "qemu", "name": "web\x1b[2J\nscratch: {pool: evil}",
                         "pool": "p\nproxmox: {}\r\u2028site: x", "tags": "a;\x07b", "node": "n1"},
                        {"vmid": "102", "type": "lxc"}, {"vmid": 103, "type": "openvz"}],
                storages=[{"storage": "s\n- x", "type": "zfspool", "content": "images"}],
                datastores=[{"store": "../../etc"}], notes=["GET /x could not be read (\x1b]0;title\x07)"])
    draft = build(site, None, None, [])
    text = draft.text()
    loaded = parse_inventory(text, tmp_path / "inventory.yaml").model
    assert [g.vmid for g in loaded.guests] == [101] and loaded.guests[0].name == "web-2j-scratch-pool-evil"
    assert loaded.scratch.pool == "restoredrill" and set(yaml.safe_load(text)) == {
        "version", "site", "policies", "scratch", "proxmox", "guests", "borg", "offsite", "notifications"}
    listed = "\n".join(draft.undecided())
    for control in ("\x1b", "\x07", "\r", "\u2028"):
        assert control not in text and control not in listed


def test_setup_roles_are_the_preflight_table_and_grant_nothing_unused():
    """One table (preflight/privileges.py): setup's roles hold exactly the rows preflight checks,
    so a site without PVE notification targets or PBS retention gets no Mapping.Audit and no
    DatastoreAdmin."""
    from restoredrill.inventory import load_inventory
    from restoredrill.preflight.privileges import pbs_privileges, pve_privileges
    inv = load_inventory(Path(__file__).resolve().parents[2] / "inventory" / "example-homelab.yaml",
                         check_files=False).model
    granted = {(path, priv) for role in privileges.pve_roles(inv, 9) for path in role.paths for priv in role.privs}
    assert granted == {(row.path, row.privilege) for row in pve_privileges(inv, (9, 0))}
    assert any(role.name == "RestoreDrill.Notify" for role in privileges.pve_roles(inv, 9)) == \
        bool(inv.notifications.pve_targets)
    assert {role.name for role in privileges.pbs_roles(inv)} >= {"DatastoreAdmin", "RemoteAudit", "Audit"}
    pbs = inv.proxmox.pbs.model_copy(update={"datastores": [store.model_copy(update={"retention": None})
                                                            for store in inv.proxmox.pbs.datastores]})
    bare = inv.model_copy(update={"notifications": inv.notifications.model_copy(update={"pve_targets": []}),
                                  "proxmox": inv.proxmox.model_copy(update={"pbs": pbs})})
    assert "RestoreDrill.Notify" not in {role.name for role in privileges.pve_roles(bare, 9)}
    assert {role.name: role.paths for role in privileges.pbs_roles(bare)} == {
        "DatastoreReader": ("/datastore",), "RemoteAudit": ("/remote",), "Audit": ("/system/notifications",)}
    needed = {(row.path, row.privilege) for row in pbs_privileges(bare)}
    assert all(priv in role.privs for role in privileges.pbs_roles(bare) for path in role.paths
               for p, priv in needed if p == path)
