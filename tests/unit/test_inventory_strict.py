"""check-inventory catches at load what used to show up only at run time (issue 22, section 4):
fingerprints in the wrong format, duplicate YAML keys, misspelled keys and name references
(with a did-you-mean), access pct without node_ssh, secret files missing or readable by
others, and the port Kuma listens on behind a reverse proxy."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from restoredrill.checks.lint import check_monitoring_restorable
from restoredrill.inventory import InventoryError, load_inventory, parse_inventory

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example-homelab.yaml"
GOOD_FP = ":".join(["3F"] * 32)


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, Path("inventory.yaml"))
    return info.value.problems


def pve(fingerprint: str) -> str:
    return ("site: {name: x}\nproxmox:\n  pve:\n    url: https://pve:8006\n    token_id: a@pve!t\n"
            f"    token_secret: env:T\n    fingerprint: \"{fingerprint}\"\n")


@pytest.mark.parametrize("bad, found", [
    ("3F:1A:00:11", "found 4 hex pair(s)"),                         # truncated, as copied from a narrow column
    (GOOD_FP[:-3], "found 31 hex pair(s)"),
    ("3f1a" * 16, "64 hex digits without colons"),
    (":".join(["3F"] * 20), "found 20 hex pair(s)"),               # a SHA-1 fingerprint
    ("not a fingerprint", "characters that are not hex pairs"),
])
def test_tls_fingerprint_in_the_wrong_format_shows_the_expected_format(bad, found):
    [problem] = problems(pve(bad))
    assert problem.startswith("inventory.yaml:7 proxmox.pve.fingerprint: must be a SHA-256 fingerprint: 32 hex "
                              "pairs joined by colons"), problem
    assert found in problem and "pvenode cert info" in problem and "restoredrill preflight" in problem


def test_a_full_fingerprint_in_either_case_is_accepted_and_key_fingerprints_too():
    assert parse_inventory(pve(GOOD_FP.lower()), Path("i.yaml")).model.proxmox.pve.fingerprint == GOOD_FP.lower()
    text = ("site: {name: x}\noffsite:\n  s3:\n    - {name: t, endpoint: 'https://s3', bucket: b, store_prefix: p,"
            " access_key: env:A, secret_key: env:B, key_fingerprint: 'de:ad:be:ef'}\n")
    [problem] = problems(text)
    assert "offsite.s3[0].key_fingerprint: must be a SHA-256 fingerprint" in problem
    assert "proxmox-backup-client key show" in problem


def test_duplicate_yaml_keys_are_refused_with_both_lines():
    text = ("site: {name: x}\nborg:\n  repositories:\n    - name: a\n      location: /r1\n"
            "      passphrase: env:P\n      location: /r2\n")
    [problem] = problems(text)
    assert problem.startswith("inventory.yaml:7 borg.repositories[0].location: key 'location' is given twice "
                              "in this mapping (lines 5 and 7)"), problem
    assert "silently lost" in problem


def test_duplicate_top_level_section_is_refused():
    found = problems("site: {name: x}\nguests: []\nsite: {name: y}\n")
    assert found == [found[0]] and found[0].startswith("inventory.yaml:3 site: key 'site' is given twice")


def test_yaml_merge_keys_are_not_duplicates():
    text = ("site: {name: x}\npolicies:\n  rpo:\n    base: &b {max_age: 25h}\n"
            "    other:\n      <<: *b\n      grace: 1h\n")
    assert parse_inventory(text, Path("i.yaml")).model.policies.rpo["other"].grace.total_seconds() == 3600


@pytest.mark.parametrize("text, where, hint", [
    ("site: {name: x}\nborg:\n  repositories:\n    - {name: a, location: /r, lock_waitt: 5m}\n",
     "inventory.yaml:4 borg.repositories[0].lock_waitt", "did you mean 'lock_wait'?"),
    ("site: {name: x}\nborg:\n  repositories:\n    - name: a\n      location: /r\n      checks:\n"
     "        sqlite: [{path: a.db, show_foud: true}]\n",
     "inventory.yaml:7 borg.repositories[0].checks.sqlite[0].show_foud", "did you mean 'show_found'?"),
    ("site: {name: x}\nproxmox:\n  pve:\n    url: https://pve:8006\n    token_id: a@pve!t\n    token_secret: env:T\n"
     "    node_ssh: {hots: pve1, user: root, key_file: k, known_hosts_file: h}\n",
     "inventory.yaml:7 proxmox.pve.node_ssh.hots", "did you mean 'host'?"),
    ("site: {name: x}\nmonitoring:\n  uptime_kuma: {url: 'https://k', username: u, password: env:K, runs-in: kuma}\n",
     "inventory.yaml:3 monitoring.uptime_kuma.runs-in", "did you mean 'runs_in'?"),
])
def test_misspelled_keys_anywhere_get_a_did_you_mean(text, where, hint):
    found = problems(text)
    mine = [p for p in found if p.startswith(where)]
    assert mine and hint in mine[0], found
    # a value that may take two shapes (endpoint or node mapping; path or mapping) reports the shape it has
    assert not any("valid dictionary or instance" in p or "valid string" in p for p in found), found


def test_misspelled_offsite_s3_retention_and_rpo_were_accepted_and_are_refused_now():
    # fixtures/offsite.py resolve_offsite_policy used to fall back silently to no policy / the default RPO
    text = ("site: {name: x}\npolicies:\n  retention: {daily: {keep_daily: 7}}\n  rpo: {nightly: {max_age: 25h}}\n"
            "offsite:\n  s3:\n    - name: t\n      endpoint: https://s3\n      bucket: b\n      store_prefix: p\n"
            "      access_key: env:A\n      secret_key: env:B\n      retention: dialy\n      rpo: nigthly\n")
    found = problems(text)
    assert found == [
        "inventory.yaml:13 offsite.s3[0].retention: retention policy 'dialy' is not defined under "
        "policies.retention (did you mean 'daily'?); defined: daily",
        "inventory.yaml:14 offsite.s3[0].rpo: rpo policy 'nigthly' is not defined under policies.rpo "
        "(did you mean 'nightly'?); defined: nightly"]


NAMES = """\
site: {name: x}
policies:
  retention: {daily: {keep_daily: 7}}
proxmox:
  pve: {url: "https://pve:8006", token_id: a@pve!t, token_secret: env:T, nodes: [pve1, pve2]}
  pbs:
    url: https://pbs:8007
    token_id: a@pbs!t
    token_secret: env:T
    datastores: [{name: local, role: local, retention: daily}]
guests:
  - {name: kuma, vmid: 100, type: lxc, strategy: pbs, node: pve7, access: none}
  - {name: web, vmid: 101, type: qemu, strategy: pbs, depends_on: [kumma], pre_backup_borg: photo}
borg:
  repositories: [{name: photos, location: /r, passphrase: env:P}]
offsite:
  storage_boxes: [{name: box, host: h, user: u, key_file: k, known_hosts_file: h, requires: [opnsens]}]
monitoring:
  uptime_kuma: {url: "https://kuma.example", username: u, password: env:K, runs_in: kumaa,
                data: {borg: photoss, path: kuma.db}}
datasets:
  - name: photos
    copies: [{where: "borg:phtos", media: disk}, {where: "pbs:locall", media: zfs}, {where: production, media: zfs}]
"""


def test_every_name_reference_gets_a_did_you_mean():
    found = problems(NAMES)
    expected = {
        "inventory.yaml:12 guests[0].node: node 'pve7'": None,
        "inventory.yaml:13 guests[1].depends_on[0]: guest 'kumma'": "did you mean 'kuma'?",
        "inventory.yaml:13 guests[1].pre_backup_borg: Borg repository 'photo'": "did you mean 'photos'?",
        "inventory.yaml:17 offsite.storage_boxes[0].requires[0]: guest 'opnsens'": "defined: kuma, web",
        "inventory.yaml:19 monitoring.uptime_kuma.runs_in: guest 'kumaa'": "did you mean 'kuma'?",
        "inventory.yaml:20 monitoring.uptime_kuma.data.borg: Borg repository 'photoss'": "did you mean 'photos'?",
        "inventory.yaml:23 datasets[0].copies[0].where: Borg repository 'phtos'": "did you mean 'photos'?",
        "inventory.yaml:23 datasets[0].copies[1].where: PBS datastore 'locall'": "did you mean 'local'?",
    }
    for start, hint in expected.items():
        mine = [p for p in found if p.startswith(start)]
        assert mine and "is not defined under" in mine[0], (start, found)
        assert hint is None or hint in mine[0], mine
    assert len(found) == len(expected), found


def test_a_container_needs_an_access_that_reaches_it():
    """Before, a container left at the default access agent passed check-inventory and failed only
    after its restore ("access agent needs a VM"); init drafted containers that way."""
    text = ("site: {name: x}\nguests:\n  - {name: ct, vmid: 100, type: lxc, strategy: pbs}\n"
            "  - {name: old, vmid: 102, type: lxc, strategy: none, exception: retired}\n"
            "  - {name: bare, vmid: 101, type: lxc, strategy: pbs, access: none, health: [\n"
            "      {name: up, kind: service, target: nginx},\n"
            "      {name: port, kind: port, target: '80'}]}\n")
    found = problems(text)
    assert len(found) == 2, found
    assert found[0].startswith("inventory.yaml:3 guests[0].access: guest ct: a container has no QEMU guest agent")
    assert "access: pct" in found[0] and "none" in found[0]
    assert found[1].startswith("inventory.yaml:5 guests[2].health: guest bare: access none runs nothing inside")
    assert "2 health check(s) must: up, port;" in found[1]
    fixed = text.replace("strategy: pbs}", "strategy: pbs, access: none}").replace(
        "health: [\n      {name: up, kind: service, target: nginx},\n      {name: port, kind: port, target: '80'}]}",
        "health: []}")
    assert [g.access for g in parse_inventory(fixed, Path("inventory.yaml")).model.guests] == ["none", "agent", "none"]


def test_access_pct_needs_node_ssh_and_a_container():
    text = ("site: {name: x}\nproxmox:\n  pve: {url: 'https://pve:8006', token_id: a@pve!t, token_secret: env:T}\n"
            "guests:\n  - {name: ct, vmid: 100, type: lxc, strategy: pbs, access: pct}\n"
            "  - {name: vm, vmid: 101, type: qemu, strategy: pbs, access: pct}\n")
    found = problems(text)
    assert sum("proxmox.pve.node_ssh is not set" in p for p in found) == 2, found
    assert any(p.startswith("inventory.yaml:6 guests[1].access") and "containers only" in p for p in found)
    fixed = text.replace("token_secret: env:T}", "token_secret: env:T, node_ssh: {host: pve1, user: root, "
                         "key_file: k, known_hosts_file: h}}").replace("type: qemu, strategy: pbs, access: pct",
                                                                      "type: qemu, strategy: pbs, access: agent")
    assert parse_inventory(fixed, Path("i.yaml")).model.guests[0].access == "pct"


def secret_inventory(tmp_path: Path, target: str) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(f"site: {{name: x}}\nborg:\n  repositories:\n    - name: a\n      location: /r\n"
                    f"      passphrase: file:{target}\n")
    return path


def test_secret_file_that_does_not_exist_is_named_at_load(tmp_path):
    with pytest.raises(InventoryError) as info:
        load_inventory(secret_inventory(tmp_path, "secrets/borg.pass"))      # relative: the inventory's folder
    [problem] = info.value.problems
    assert problem == (f"inventory.yaml:6 borg.repositories[0].passphrase: secret file {tmp_path}/secrets/borg.pass "
                       "does not exist: create it (mode 0600, owned by the user that runs the drills) or correct "
                       "the file: reference")
    assert load_inventory(secret_inventory(tmp_path, "nope"), check_files=False).model.borg.repositories


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_secret_file_other_users_can_read_is_refused_without_reading_it(tmp_path, mode):
    secret = tmp_path / "borg.pass"
    secret.write_text("hunter2-value\n")
    secret.chmod(mode)
    before = os.stat(secret).st_atime_ns
    with pytest.raises(InventoryError) as info:
        load_inventory(secret_inventory(tmp_path, str(secret)))
    [problem] = info.value.problems
    assert f"has mode {mode:04o}" in problem and f"chmod 600 {secret}" in problem
    assert "hunter2" not in str(info.value)
    secret.chmod(0o600)
    assert load_inventory(secret_inventory(tmp_path, str(secret))).model.borg.repositories[0].name == "a"
    assert os.stat(secret).st_atime_ns == before          # stat only: never opened


def test_secret_file_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(InventoryError, match="is not a regular file"):
        load_inventory(secret_inventory(tmp_path, str(tmp_path / "dir")))


def kuma_inventory(url: str, listen_port: int | None, check_port: int):
    port = f", listen_port: {listen_port}" if listen_port else ""
    text = (f"site: {{name: x}}\nguests:\n  - name: kuma\n    vmid: 100\n    type: qemu\n    strategy: pbs\n"
            f"    health: [{{name: ui, kind: http, target: 'http://127.0.0.1:{check_port}/api/entry-page'}}]\n"
            f"monitoring:\n  uptime_kuma: {{url: '{url}', username: u, password: env:K, runs_in: kuma{port}}}\n")
    return parse_inventory(text, Path("i.yaml")).model


def test_kuma_behind_a_reverse_proxy_says_where_it_listens():
    # before: url https://kuma.example demanded a health check on 443, which Kuma itself never serves
    [finding] = check_monitoring_restorable(kuma_inventory("https://kuma.example", None, 3001))
    assert "http://127.0.0.1:443/api/entry-page" in finding.message and "listen_port" in finding.message
    assert check_monitoring_restorable(kuma_inventory("https://kuma.example", 3001, 3001)) == []
    [finding] = check_monitoring_restorable(kuma_inventory("https://kuma.example", 3001, 8080))
    assert "http://127.0.0.1:3001/api/entry-page" in finding.message
    assert check_monitoring_restorable(kuma_inventory("https://kuma.lan:3001", None, 3001)) == []


def test_example_inventory_is_valid_apart_from_this_hosts_secret_files():
    with pytest.raises(InventoryError) as info:
        load_inventory(EXAMPLE)
    assert info.value.problems and all("secret file /etc/restoredrill/" in p and "does not exist" in p
                                       for p in info.value.problems)
    assert load_inventory(EXAMPLE, check_files=False).model.monitoring.uptime_kuma.listen_port is None


def test_a_second_load_reuses_the_checked_text_but_checks_the_secret_files_again(tmp_path, monkeypatch):
    """One run loads its inventory four times (issue 26): the schema runs once per text,
    the secret files' checks every time (a file made readable by others in between is caught)."""
    from restoredrill.inventory import loader
    secret = tmp_path / "borg.pass"
    secret.write_text("hunter2-value\n")
    secret.chmod(0o600)
    path = secret_inventory(tmp_path, str(secret))
    first = load_inventory(path)
    calls = []
    monkeypatch.setattr(loader, "_check_text", lambda *a: calls.append(a) or pytest.fail("checked again"))
    assert load_inventory(path).model == first.model and not calls
    secret.chmod(0o644)
    with pytest.raises(InventoryError, match="has mode 0644"):
        load_inventory(path)
    monkeypatch.undo()
    path.write_text(path.read_text().replace("name: a", "name: b"))
    assert load_inventory(path, check_files=False).model.borg.repositories[0].name == "b"
