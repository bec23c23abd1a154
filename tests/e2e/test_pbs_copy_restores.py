"""Restore drills from every copy (issue 23): ``restore_from: rotate`` restores the local copy,
then the offsite one (the double's ``offsite`` datastore, namespace ``homelab``, through the
PVE storage ``pbs-offsite``), each green with its own RTO evidence; a chunk missing from the
newest offsite snapshot fails that guest's offsite restore naming the chunk and leaves no
scratch guest; an offsite restore over the egress budget is skipped, never started."""
from __future__ import annotations

import os

import pytest

from tests.e2e.test_pbs_restore_drills import SELECT, case, guest_cases, scratch_guests

pytestmark = pytest.mark.e2e
GUESTS = {"app-vm": ("vm", "110"), "app-ct": ("ct", "120")}


def pbs_only(inventory: dict) -> dict:
    inventory["borg"]["repositories"] = []
    return inventory


def restore_facts(run, guest: str) -> dict:
    facts = case(run, f"test_restore[{guest}]")
    assert facts["outcome"] == "passed", facts["message"][-2000:]
    return facts["properties"]


def test_rotate_restores_the_local_then_the_offsite_copy_each_with_its_rto(drill, lab_inventory, lab):
    inventory = pbs_only(lab_inventory)
    seen: dict[str, dict[str, dict]] = {}
    for expected in ("local", "offsite"):       # a fresh state: both untested, the tie goes local
        run = drill(inventory, *SELECT)
        assert run.code == 0, run.failed()
        for guest in GUESTS:
            facts = restore_facts(run, guest)
            assert facts["copy"] == expected, facts
            assert facts["copy_choice"].startswith("rotate: last restore-tested")
            assert float(facts["restore_seconds"]) > 0 and float(facts["boot_to_reachable_seconds"]) > 0
            seen.setdefault(guest, {})[expected] = facts
        assert scratch_guests(lab) == []
    for guest, by_copy in seen.items():
        assert by_copy["local"]["pve_storage"] == "pbs" and by_copy["local"]["datastore"] == "local"
        assert by_copy["local"]["namespace"] == "" and by_copy["local"]["snapshot"].startswith("pbs:backup/")
        offsite = by_copy["offsite"]
        assert offsite["pve_storage"] == "pbs-offsite" and offsite["datastore"] == "offsite"
        assert offsite["namespace"] == "homelab" and offsite["snapshot"].startswith("pbs-offsite:backup/")
        assert "offsite never" in offsite["copy_choice"]
        assert int(offsite["egress_taken_bytes"]) >= int(offsite["backup_bytes"]) > 0
        assert case(run, f"test_health[{guest}-webapp-running]")["properties"]["copy"] == "offsite"


def newest_offsite_chunk(lab, kind: str, vmid: str):
    store = lab.double.stores["offsite"]
    newest = max(store.snapshot_infos(kind, vmid, "homelab"), key=lambda info: info.epoch)
    archive, digest = store.archive_digests(newest.ref)[-1]
    return store.backend.path(store.chunk_key(digest)), digest.hex(), newest


def test_missing_offsite_chunk_fails_that_restore_and_egress_skips_the_other(drill, lab_inventory, lab):
    inventory = pbs_only(lab_inventory)
    for guest in inventory["guests"]:
        if guest["name"] in GUESTS:
            guest["restore_from"] = "offsite"
    target = next(t for t in inventory["offsite"]["s3"] if t["name"] == "lab-s3")
    target["egress_budget"] = "8MiB"        # the CT's ~2 MiB fit, the VM's 16 MiB image does not
    path, digest, snapshot = newest_offsite_chunk(lab, "ct", "120")
    aside = path.with_name(path.name + ".aside")
    os.replace(path, aside)
    try:
        run = drill(inventory, *SELECT)
    finally:
        os.replace(aside, path)
    assert run.code == 1
    message = case(run, "test_restore[app-ct]")["message"]
    assert "restore from the offsite copy (pbs-offsite)" in message and digest in message, message
    assert "is missing" in message
    for name in guest_cases(run, "app-vm"):     # not started: skipped with the reason, never a pass
        assert run.cases[name]["outcome"] == "skipped", (name, run.cases[name])
    skipped = case(run, "test_restore[app-vm]")["message"]
    assert "would pass the egress budget of S3 target lab-s3 (8,388,608 bytes per run" in skipped
    assert "restore_from: local" in skipped
    assert scratch_guests(lab) == []
    vm_cases = set(guest_cases(run, "app-vm"))
    only_these_failed_but(run, set(guest_cases(run, "app-ct")), vm_cases)


def only_these_failed_but(run, failed: set[str], skipped: set[str]) -> None:
    for name in failed:
        assert run.cases[name]["outcome"] == "failure", (name, run.cases[name])
    others = {n: c["outcome"] for n, c in run.cases.items()
              if n not in failed | skipped and c["outcome"] != "passed"}
    assert others == {}, others
