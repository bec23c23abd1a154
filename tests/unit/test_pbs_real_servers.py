"""Issue 13 points 5-8 in pure logic: PBS versions, running jobs, same id two types,
unfinished snapshots, prune/verify job scope (disable, ns, max-depth)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from restoredrill.checks import pbs_audit as checks
from restoredrill.clients.pbs import snapshot_finished
from restoredrill.clients.pbs_versions import NotAvailable, parse_version
from restoredrill.clients.proxmox_api import ApiError
from restoredrill.inventory.model import Guest
from restoredrill.plan import PlanError, choose_snapshot

NOW = datetime(2026, 5, 10, 12, 0, tzinfo=timezone.utc)
UPID = "UPID:pbs1:0000107B:0004FA4D:00000004:{:08X}:syncjob:local\\x3aoffsite\\x3aoffsite\\x2dpull:root@pam:"


def upid_at(when: datetime) -> str:
    return UPID.format(int(when.timestamp()))


# --- versions ---------------------------------------------------------------------------

@pytest.mark.parametrize("answer,text,gc,direction", [
    ({"version": "3.1", "release": "2", "repoid": "a" * 40}, "3.1.2", False, False),
    ({"version": "3.2", "release": "4", "repoid": "a" * 40}, "3.2.4", True, False),
    ({"version": "4.0", "release": "14", "repoid": "a" * 40}, "4.0.14", True, True)])
def test_the_version_says_which_calls_exist(answer, text, gc, direction):
    version = parse_version(answer)
    assert version.text == text
    assert version.has("gc-jobs") == gc == version.has("notification-targets")
    assert version.has("sync-direction") == direction


def test_a_missing_call_names_the_version_and_the_upgrade():
    message = str(NotAvailable(parse_version({"version": "3.1", "release": "2"}), "gc-jobs"))
    assert message.startswith("NOT RUN: PBS 3.1.2 does not serve GET /admin/gc (PBS 3.2 and later do)")
    assert "upgrade PBS to 3.2 or later" in message


@pytest.mark.parametrize("answer", [{"version": "4"}, {}, [], {"version": "x.y"}])
def test_a_version_answer_in_another_shape_is_refused(answer):
    with pytest.raises(ApiError, match="expected a version"):
        parse_version(answer)


# --- running jobs -----------------------------------------------------------------------

def test_a_running_job_is_running_since_its_upid_not_never_ran():
    job = {"id": "offsite-pull", "store": "offsite", "schedule": "03:00",
           "last-run-upid": upid_at(NOW - timedelta(hours=2))}
    verdict = checks.check_job(job, kind="sync", store="offsite", max_age=timedelta(hours=28), now=NOW)
    assert verdict.ok, verdict.problems
    assert verdict.facts["state"] == "running" and verdict.facts["running_since"].startswith("2026-05-10T10:00")
    assert "previous run" in verdict.facts["note"]


def test_a_job_running_longer_than_its_period_fails_saying_so():
    job = {"id": "offsite-pull", "store": "offsite", "last-run-upid": upid_at(NOW - timedelta(days=3))}
    verdict = checks.check_job(job, kind="sync", store="offsite", max_age=timedelta(hours=28), now=NOW)
    assert "running since 2026-05-07 12:00:00 UTC" in verdict.message() and "never ran" not in verdict.message()
    assert "stuck" in verdict.message()


def test_a_running_gc_is_judged_by_the_previous_gc():
    job = {"store": "local", "upid": upid_at(NOW - timedelta(days=9))}       # gc-status: the previous GC
    verdict = checks.check_job(job, kind="gc", store="local", max_age=timedelta(days=8), now=NOW)
    assert "previous garbage collection" in verdict.message() and "started 2026-05-01" in verdict.message()


# --- same id, two types; unfinished -------------------------------------------------------

VM = {"volid": "pbs:backup/vm/110/2026-05-09T01:00:03Z", "ctime": 1778288403, "subtype": "qemu",
      "format": "pbs-vm", "size": 900, "verification": {"state": "ok"}}
CT = {"volid": "pbs:backup/ct/110/2026-05-10T01:00:03Z", "ctime": 1778374803, "subtype": "lxc",
      "format": "pbs-ct", "size": 700, "verification": {"state": "ok"}}
RUNNING = {"volid": "pbs:backup/vm/110/2026-05-10T02:00:03Z", "ctime": 1778378403, "subtype": "qemu",
           "format": "pbs-vm", "size": 1}


@pytest.mark.parametrize("how", ["latest", "latest-verified", "oldest"])
def test_the_choice_keeps_to_the_guests_type_and_to_finished_snapshots(how):
    assert choose_snapshot([CT, RUNNING, VM], how, "s", guest_type="qemu") is VM
    assert choose_snapshot([CT, RUNNING, VM], how, "s", guest_type="lxc") is CT


def test_only_unfinished_or_other_type_snapshots_is_no_restore_point():
    with pytest.raises(PlanError, match="1 of the other guest type.*1 unfinished"):
        choose_snapshot([CT, RUNNING], "latest", "s", guest_type="qemu")
    with pytest.raises(PlanError, match="unfinished or of the other guest type"):
        choose_snapshot([CT, VM], "pinned", "s", CT["volid"], guest_type="qemu")


def test_guest_coverage_ignores_the_other_type_and_unfinished_backups():
    guest = Guest(name="app-vm", vmid=110, type="qemu", strategy="pbs")
    resource = {"vmid": 110, "type": "qemu", "node": "pve1"}
    verdict = checks.check_guest_coverage(guest, resource, [CT, RUNNING, VM], ["pbs"], set())
    assert verdict.facts["newest_backup"] == VM["volid"]
    assert verdict.facts["other_type_same_id"] == 1 and verdict.facts["unfinished"] == 1
    verdict = checks.check_guest_coverage(guest, resource, [CT, RUNNING], ["pbs"], set())
    assert "found no snapshot at all" in verdict.message()


def test_a_pbs_item_without_manifest_is_unfinished():
    assert not snapshot_finished({"files": [{"filename": "drive-scsi0.img.fidx"}]})
    assert snapshot_finished({"files": [{"filename": "index.json.blob", "size": 400}]})


# --- prune and verify job scope ---------------------------------------------------------

PRUNE = {"id": "p", "store": "local", "keep-last": 2, "schedule": "02:30", "last-run-state": "OK",
         "last-run-endtime": int((NOW - timedelta(hours=1)).timestamp()), "last-run-upid": upid_at(NOW)}


@pytest.mark.parametrize("job,ns,covers", [
    ({}, "homelab", True), ({"ns": "homelab"}, "homelab", True), ({"ns": "homelab"}, None, False),
    ({"ns": "other"}, "homelab", False), ({"max-depth": 0}, "homelab", False),
    ({"max-depth": 1}, "homelab", True), ({"ns": "a", "max-depth": 1}, "a/b/c", False),
    ({"ns": "a"}, "a/b/c", True), ({"ns": "a"}, "ab", False), ({"store": "offsite"}, None, False)])
def test_a_job_covers_its_namespace_and_depth_only(job, ns, covers):
    assert checks.job_covers({**PRUNE, **job}, "local", ns) is covers


def test_a_disabled_or_foreign_prune_job_is_no_prune():
    assert checks.server_prune_policies([{**PRUNE, "disable": True}], "local", "homelab") == []
    assert checks.server_prune_policies([{**PRUNE, "ns": "other"}], "local", "homelab") == []
    assert checks.server_prune_policies([PRUNE], "local", "homelab") == [("p", {"keep-last": 2})]
    verdict = checks.check_jobs([{**PRUNE, "disable": True}], kind="prune", store="local",
                                max_age=timedelta(hours=26), now=NOW, ns="homelab")
    assert "found only disabled ones (p)" in verdict.message()
    verdict = checks.check_jobs([{**PRUNE, "ns": "other", "max-depth": 0}], kind="prune", store="local",
                                max_age=timedelta(hours=26), now=NOW, ns="homelab")
    assert "limited to other namespaces or depths: p (ns other, max-depth 0)" in verdict.message()
    assert checks.check_jobs([PRUNE], kind="prune", store="local", max_age=timedelta(hours=26), now=NOW,
                             ns="homelab").ok
