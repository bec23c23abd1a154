"""Restore drills from every copy (issue 23): ``restore_from: rotate`` restores the local copy,
then the offsite one (the double's ``offsite`` datastore, namespace ``homelab``, through the
PVE storage ``pbs-offsite``), each green with its own RTO evidence; a chunk missing from the
newest offsite snapshot (deleted from the S3 bucket the double's offsite datastore reads) fails
that guest's offsite restore naming the object and leaves no scratch guest, a damaged one fails
naming it too; an offsite restore over the egress budget is skipped, never started."""
from __future__ import annotations

import pytest

from restoredrill.lab.offsite import LAB_BUCKET
from restoredrill.pbsformat import Layout

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
    source = lab.double.stores["offsite"].s3_source       # the offsite datastore reads the bucket
    assert source is not None and lab.double.stores["offsite"].backend_type == "s3"
    gets_before, downloaded_before = source.gets, source.bytes_downloaded
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
    assert source.gets > gets_before and source.bytes_downloaded > downloaded_before
    assert 0 < source.cached_bytes <= source.max_bytes


def newest_offsite_chunk(lab, kind: str, vmid: str):
    """(bucket key, digest hex) of a chunk of the newest offsite snapshot of the guest."""
    store = lab.double.stores["offsite"]
    newest = max(store.snapshot_infos(kind, vmid, "homelab"), key=lambda info: info.epoch)
    _archive, digest = store.archive_digests(newest.ref)[-1]
    return Layout.s3("offsite").chunk_key(digest), digest.hex()


def offsite_guests(inventory: dict, budget: str) -> dict:
    for guest in inventory["guests"]:
        if guest["name"] in GUESTS:
            guest["restore_from"] = "offsite"
    next(t for t in inventory["offsite"]["s3"] if t["name"] == "lab-s3")["egress_budget"] = budget
    return inventory


def test_missing_chunk_object_fails_that_restore_and_egress_skips_the_other(drill, lab_inventory, lab):
    """The chunk object is deleted from the bucket (the double's own copy on disk stays): the
    restore really reads S3, fails naming the object and leaves no scratch guest."""
    inventory = offsite_guests(pbs_only(lab_inventory), "8MiB")  # the CT's ~2 MiB fit, the VM's 16 MiB not
    admin = lab.offsite.seaweed.client("admin")
    key, digest = newest_offsite_chunk(lab, "ct", "120")
    original = admin.get_object(Bucket=LAB_BUCKET, Key=key)["Body"].read()
    admin.delete_object(Bucket=LAB_BUCKET, Key=key)
    lab.double.stores["offsite"].s3_source.clear()     # earlier offsite restores cached it
    try:
        run = drill(inventory, *SELECT)
    finally:
        admin.put_object(Bucket=LAB_BUCKET, Key=key, Body=original)
    assert run.code == 1
    message = case(run, "test_restore[app-ct]")["message"]
    assert "restore from the offsite copy (pbs-offsite)" in message and key in message, message
    assert "is missing" in message and digest in message
    for name in guest_cases(run, "app-vm"):     # not started: skipped with the reason, never a pass
        assert run.cases[name]["outcome"] == "skipped", (name, run.cases[name])
    skipped = case(run, "test_restore[app-vm]")["message"]
    assert "would pass the egress budget of S3 target lab-s3 (8,388,608 bytes per run" in skipped
    assert "restore_from: local" in skipped
    assert scratch_guests(lab) == []
    failed = set(guest_cases(run, "app-ct"))
    for name in failed:
        assert run.cases[name]["outcome"] == "failure", (name, run.cases[name])
    others = {n: c["outcome"] for n, c in run.cases.items()
              if n not in failed | set(guest_cases(run, "app-vm")) and c["outcome"] != "passed"}
    assert others == {}, others


def test_damaged_chunk_object_fails_the_vm_restore_naming_it(drill, lab_inventory, lab):
    """One byte of a chunk object of the newest offsite VM snapshot flipped in the bucket: the
    restore fails naming the object (CRC), and the damaged copy is never served from the cache."""
    inventory = offsite_guests(pbs_only(lab_inventory), "256MiB")
    inventory["guests"] = [g for g in inventory["guests"] if g["name"] != "app-ct"]
    admin = lab.offsite.seaweed.client("admin")
    key, _digest = newest_offsite_chunk(lab, "vm", "110")
    original = admin.get_object(Bucket=LAB_BUCKET, Key=key)["Body"].read()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    admin.put_object(Bucket=LAB_BUCKET, Key=key, Body=bytes(damaged))
    lab.double.stores["offsite"].s3_source.clear()     # earlier offsite restores cached it
    try:
        run = drill(inventory, *SELECT)
    finally:
        admin.put_object(Bucket=LAB_BUCKET, Key=key, Body=original)
        remove_failed_vm_restores(lab)
    assert run.code == 1
    message = case(run, "test_restore[app-vm]")["message"]
    assert "restore from the offsite copy (pbs-offsite)" in message and key in message, message
    assert "CRC" in message or "crc" in message, message
    assert key not in cached_keys(lab)


def cached_keys(lab) -> set[str]:
    source = lab.double.stores["offsite"].s3_source
    return set(source._cached) if source is not None else set()


def remove_failed_vm_restores(lab) -> None:
    """Upstream leaves a failed VM restore behind outside the drill pool (see the failing-restore
    fault in test_pbs_restore_drills.py); the admin removes it as the message tells."""
    import time

    from restoredrill.lab.proxmox.testing import pve_api
    admin = pve_api(lab.double, lab.double.admin_token)
    for resource in admin.cluster.resources.get(type="vm"):
        if 9900 <= int(resource["vmid"]) <= 9999:
            admin.nodes(resource["node"]).qemu(resource["vmid"]).delete(purge=1)
    deadline = time.monotonic() + 30
    while scratch_guests(lab) and time.monotonic() < deadline:
        time.sleep(0.2)
