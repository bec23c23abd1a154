"""The recovery-path lint: plain inventories in, named findings out."""
from __future__ import annotations

import pytest

from restoredrill.checks.lint import (BorgKeyExport, compare_borg_exports, fingerprint_mismatches, lint,
                                      parse_borg_key_export)
from restoredrill.inventory.model import Inventory

ESCROW = {"location": "owner's safe", "outside_site": True}


def inventory(**sections) -> Inventory:
    base = {
        "site": {"name": "lab"},
        "policies": {"retention": {"r": {"keep_daily": 7}}},
        "proxmox": {"pbs": {"url": "https://pbs:8007", "token_id": "a@pbs!t", "token_secret": "env:T",
                            "datastores": [
                                {"name": "local", "role": "local", "retention": "r", "key_escrow": ESCROW},
                                {"name": "offsite", "role": "offsite", "retention": "r", "backend": "s3",
                                 "s3_target": "s3", "key_escrow": ESCROW}]}},
        "guests": [
            {"name": "fw", "vmid": 100, "type": "qemu", "strategy": "config-export",
             "exception": "freezes the network", "config_export": "fw-config"},
            {"name": "dns", "vmid": 101, "type": "lxc", "strategy": "pbs", "depends_on": ["fw"]},
        ],
        "borg": {"repositories": [{"name": "photos", "location": "/r", "passphrase": "env:P",
                                   "key_escrow": ESCROW}]},
        "offsite": {
            "s3": [{"name": "s3", "endpoint": "https://s3", "bucket": "b", "store_prefix": "offsite",
                    "access_key": "env:A", "secret_key": "env:S", "requires": ["fw"]}],
            "storage_boxes": [{"name": "box", "host": "h", "user": "u", "key_file": "/k",
                               "known_hosts_file": "/kh"}],
            "config_exports": [{"name": "fw-config", "storage_box": "box", "path_glob": "*.xml"}],
        },
        "datasets": [{"name": "photos", "copies": [
            {"where": "production", "media": "zfs"},
            {"where": "pbs:local", "media": "zfs"},
            {"where": "borg:photos", "media": "storage-box", "offsite": True}]}],
    }
    base.update(sections)
    return Inventory.model_validate(base)


def messages(inv: Inventory, rule: str | None = None) -> list[str]:
    return [f.message for f in lint(inv) if rule is None or f.rule == rule]


def test_a_sound_inventory_has_no_findings():
    assert lint(inventory()) == []


# --- strategies ----------------------------------------------------------------------

def test_guest_with_strategy_none_that_others_depend_on_is_named():
    guests = [{"name": "pbs", "vmid": 130, "type": "qemu", "strategy": "none", "exception": "rebuilt"},
              {"name": "app", "vmid": 131, "type": "lxc", "strategy": "pbs", "depends_on": ["pbs"]}]
    found = messages(inventory(guests=guests), "strategy")
    assert found == [("guest pbs has strategy none but app depend on it: a guest others need must be "
                     "recoverable; back it up or export its config")]


def test_config_export_guest_without_declared_export_is_named():
    guests = [{"name": "fw", "vmid": 100, "type": "qemu", "strategy": "config-export", "exception": "x"},
              {"name": "fw2", "vmid": 102, "type": "qemu", "strategy": "config-export", "exception": "x",
               "config_export": "missing"}]
    found = messages(inventory(guests=guests), "strategy")
    assert any(m.startswith("guest fw has strategy config-export but names no export") for m in found)
    assert any("guest fw2: config export 'missing' is not declared" in m for m in found)


def test_pbs_guest_without_any_datastore_is_named():
    inv = inventory(proxmox={}, datasets=[])
    assert "guest dns has strategy pbs but no PBS datastore is declared" in " ".join(messages(inv, "strategy"))


# --- key escrow ----------------------------------------------------------------------

def test_key_kept_only_inside_the_site_is_named():
    repos = [{"name": "photos", "location": "/r", "passphrase": "env:P",
              "key_escrow": {"location": "the PBS VM", "outside_site": False}},
             {"name": "cloud", "location": "/c", "passphrase": "env:P"}]
    found = messages(inventory(borg={"repositories": repos}), "key-escrow")
    assert found == [
        ("Borg repository photos: expected its key held outside the site; found it only at 'the PBS VM' "
        "(outside_site: false), which is lost with the infrastructure it protects"),
        ("Borg repository cloud is encrypted but no key_escrow says where its key is held: expected a key kept "
        "outside the site; found none declared (losing the site would lose the key and every copy)")]


def test_pbs_datastore_without_escrow_is_named_and_unencrypted_copies_need_none():
    inv = inventory()
    stores = [s.model_dump() for s in inv.proxmox.pbs.datastores]
    stores[1].pop("key_escrow")
    stores[0].update(key_escrow=None, encryption_required=False)
    pbs = {**inv.proxmox.pbs.model_dump(), "datastores": stores}
    found = lint(inventory(proxmox={"pbs": pbs}))
    assert [(f.rule, f.subject) for f in found] == [("key-escrow", "pbs:offsite")]


# --- circular dependencies -------------------------------------------------------------

def test_firewall_restored_only_from_the_offsite_it_is_needed_for_is_a_cycle():
    guests = [{"name": "opnsense", "vmid": 100, "type": "qemu", "strategy": "pbs"},
              {"name": "dns", "vmid": 101, "type": "lxc", "strategy": "pbs", "depends_on": ["opnsense"]}]
    s3 = [{"name": "offsite-s3", "endpoint": "https://s3", "bucket": "b", "store_prefix": "offsite",
           "access_key": "env:A", "secret_key": "env:S", "requires": ["dns"]}]
    inv = inventory(guests=guests, offsite={**inventory().offsite.model_dump(), "s3": s3})
    stores = [{**s.model_dump(), "s3_target": "offsite-s3"} if s.role == "offsite" else s.model_dump()
              for s in inv.proxmox.pbs.datastores]
    inv = inventory(guests=guests, offsite={**inventory().offsite.model_dump(), "s3": s3},
                    proxmox={"pbs": {**inv.proxmox.pbs.model_dump(), "datastores": stores}})
    assert messages(inv, "circular-dependency") == [
        "dns is needed to reach offsite-s3 but can only be recovered from offsite-s3",
        "opnsense is needed to reach offsite-s3 but can only be recovered from offsite-s3"]


def test_config_export_on_a_box_reachable_without_the_firewall_breaks_the_cycle():
    assert messages(inventory(), "circular-dependency") == []


def test_box_that_needs_the_firewall_it_holds_the_config_of_is_a_cycle():
    offsite = inventory().offsite.model_dump()
    offsite["storage_boxes"][0]["requires"] = ["fw"]
    found = messages(inventory(offsite=offsite), "circular-dependency")
    assert "fw is needed to reach box but can only be recovered from box" in found
    assert any(m.startswith("fw is needed to reach s3 but can only be recovered from box, which cannot") for m in found)


def test_needed_guest_without_any_backup_and_unknown_requirements_are_named():
    offsite = inventory().offsite.model_dump()
    offsite["storage_boxes"][0]["requires"] = ["router", "ghost"]
    guests = [*inventory().model_dump()["guests"],
              {"name": "router", "vmid": 140, "type": "qemu", "strategy": "none", "exception": "ISP box"}]
    found = messages(inventory(offsite=offsite, guests=guests), "circular-dependency")
    assert "box requires guest 'ghost', which is not in the inventory (guests)" in found
    assert "router is needed to reach box but has no offsite copy to recover it from (strategy none)" in found


# --- 3-2-1 ---------------------------------------------------------------------------

def test_three_two_one_shortfall_names_the_dataset_and_what_it_lacks():
    datasets = [{"name": "cloud", "copies": [{"where": "production", "media": "zfs"},
                                             {"where": "pbs:local", "media": "zfs"}]}]
    assert messages(inventory(datasets=datasets), "3-2-1") == [
        ("dataset cloud falls short of 3-2-1: 2 copies (production, pbs:local) where three are needed; "
        "one kind of media (zfs) where two are needed; no copy offsite")]


def test_copy_naming_an_undeclared_repository_and_missing_datasets_are_named():
    datasets = [{"name": "photos", "copies": [{"where": "production", "media": "zfs"},
                                              {"where": "borg:fotos", "media": "disk", "offsite": True},
                                              {"where": "tape in the office", "media": "tape"}]}]
    assert messages(inventory(datasets=datasets), "3-2-1") == [
        "dataset photos: copy 'borg:fotos' names nothing declared under borg.repositories"]
    assert messages(inventory(datasets=[]), "3-2-1") == [
        "expected the datasets and their copies (datasets:); found none declared, so 3-2-1 cannot be checked"]


# --- key proof helpers ---------------------------------------------------------------

REPO_ID = "ab" * 32


def test_borg_key_export_is_parsed_and_compared_without_whitespace():
    escrowed = parse_borg_key_export(f"BORG_KEY {REPO_ID}\nhqlhbGdvcml0aG2m\nc2hhMjU2=\n")
    assert escrowed == BorgKeyExport(REPO_ID, "hqlhbGdvcml0aG2mc2hhMjU2=")
    assert compare_borg_exports(escrowed, BorgKeyExport(REPO_ID, "hqlhbGdvcml0aG2mc2hhMjU2=")) is None
    assert "differs from the key stored" in compare_borg_exports(escrowed, BorgKeyExport(REPO_ID, "other"))
    assert "belongs to repository" in compare_borg_exports(escrowed, BorgKeyExport("cd" * 32, escrowed.blob))


@pytest.mark.parametrize("text", ["", "To restore key use borg key import --paper /path/to/repo\n",
                                  f"BORG_KEY {REPO_ID}\n<html>\n"])
def test_paper_qr_and_garbage_exports_are_refused(text):
    with pytest.raises(ValueError):
        parse_borg_key_export(text)


def test_snapshot_fingerprints_against_the_escrowed_key():
    snaps = [{"backup-type": "ct", "backup-id": "110", "backup-time": 1, "fingerprint": "AA:BB"},
             {"backup-type": "vm", "backup-id": "120", "backup-time": 2, "fingerprint": "cc:dd"},
             {"backup-type": "vm", "backup-id": "121", "backup-time": 3}]
    assert fingerprint_mismatches("aa:bb", snaps) == (2, ["vm/120/2: cc:dd"])


# --- monitoring-restorable ---------------------------------------------------------------

KUMA = {"url": "https://kuma.lan:3001", "username": "drill", "password": "env:K"}


def kuma_findings(kuma: dict, **sections) -> list[str]:
    return [f.message for f in lint(inventory(monitoring={"uptime_kuma": {**KUMA, **kuma}}, **sections))
            if f.rule == "monitoring-restorable"]


def test_no_kuma_no_finding_and_kuma_without_a_known_home_is_one():
    assert [f for f in lint(inventory()) if f.rule == "monitoring-restorable"] == []
    (message,) = kuma_findings({})
    assert "runs_in" in message and "found neither" in message


def test_kumas_guest_must_be_snapshotted_and_its_restore_drill_must_reach_kuma():
    (missing,) = kuma_findings({"runs_in": "nowhere"})
    assert "guest nowhere" in missing and "not in guests[]" in missing
    (unbacked,) = kuma_findings({"runs_in": "fw"})
    assert "strategy is config-export" in unbacked
    (unchecked,) = kuma_findings({"runs_in": "dns"})
    assert "does not check that Uptime Kuma answers" in unchecked and ":3001/api/entry-page" in unchecked
    guests = [{"name": "dns", "vmid": 101, "type": "lxc", "strategy": "pbs", "depends_on": ["fw"],
               "health": [{"name": "kuma", "kind": "http", "target": "http://127.0.0.1:3001/api/entry-page"}]},
              {"name": "fw", "vmid": 100, "type": "qemu", "strategy": "config-export",
               "exception": "freezes the network", "config_export": "fw-config"}]
    assert kuma_findings({"runs_in": "dns"}, guests=guests) == []


def test_kumas_data_in_borg_must_be_checked_by_that_repositorys_drill():
    data = {"data": {"borg": "photos", "path": "srv/kuma/kuma.db"}}
    (unchecked,) = kuma_findings(data)
    assert "srv/kuma/kuma.db" in unchecked and "borg.repositories[photos].checks.sqlite" in unchecked
    (unknown,) = kuma_findings({"data": {"borg": "nope", "path": "x"}})
    assert "Borg repository nope" in unknown
    repos = {"repositories": [{"name": "photos", "location": "/r", "passphrase": "env:P", "key_escrow": ESCROW,
                               "checks": {"sqlite": ["srv/kuma/kuma.db"]}}]}
    assert kuma_findings(data, borg=repos) == []
