"""The PBS audit checks with plain values: API-shaped dicts in, verdicts out."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from restoredrill import retention
from restoredrill.checks import pbs_audit as checks
from restoredrill.checks.pbs_audit import Snapshot
from restoredrill.inventory.model import Guest

NOW = datetime(2026, 5, 10, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
VERIFY_UPID = "UPID:pbs1:0000107B:0004FA4D:00000004:{:08X}:verificationjob:local\\x3alocal\\x2dverify:root@pam:"


def upid_at(when: datetime) -> str:
    return VERIFY_UPID.format(int(when.timestamp()))


def snap(when: datetime, *, state: str | None = "ok", verified: datetime | None = None, finished: bool = True,
         kind: str = "vm", ident: str = "110") -> Snapshot:
    upid = upid_at(verified or when + timedelta(hours=4)) if state else None
    return Snapshot(kind, ident, when, finished=finished, verify_state=state, verify_upid=upid)


def guest(**kw) -> Guest:
    base = {"name": "app-vm", "vmid": 110, "type": "qemu", "strategy": "pbs"}
    return Guest(**{**base, **kw})


RESOURCE = {"vmid": 110, "type": "qemu", "name": "app-vm", "node": "pve1"}
BACKUP = {"volid": "pbs:backup/vm/110/2026-05-10T01:00:03Z", "vmid": 110, "ctime": 1778374803}


# --- snapshot list items ----------------------------------------------------------------

def test_snapshot_from_the_wire_and_from_the_schema_shape():
    wire = {"backup-type": "vm", "backup-id": "110", "backup-time": 1778374803, "protected": False,
            "files": [{"filename": "index.json.blob", "crypt-mode": "sign-only"}],
            "verification": {"state": "failed", "upid": "UPID:x"}, "fingerprint": "aa:bb"}
    parsed = checks.snapshot_from_api(wire)
    assert parsed.name == "vm/110/2026-05-10T01:00:03Z" and parsed.finished
    assert (parsed.verify_state, parsed.verify_upid, parsed.fingerprint) == ("failed", "UPID:x", "aa:bb")
    schema = {"backup-type": "ct", "backup-id": "120", "backup-time": 1778374863, "files": ["root.pxar.didx"]}
    unfinished = checks.snapshot_from_api(schema)
    assert not unfinished.finished and unfinished.verify_state is None


# --- guests ---------------------------------------------------------------------------

def test_a_backed_up_guest_passes_with_its_newest_backup():
    verdict = checks.check_guest_coverage(guest(), RESOURCE, [BACKUP], ["pbs"], set())
    assert verdict.ok and verdict.facts["newest_backup"] == BACKUP["volid"]


def test_a_guest_without_snapshot_fails_naming_it_and_the_storages():
    verdict = checks.check_guest_coverage(guest(), RESOURCE, [], ["pbs", "pbs-offsite"], set())
    assert "guest app-vm (VMID 110)" in verdict.message() and "pbs, pbs-offsite" in verdict.message()
    assert "found no snapshot" in verdict.message()


def test_a_guest_in_no_backup_job_fails_even_with_old_snapshots():
    verdict = checks.check_guest_coverage(guest(), RESOURCE, [BACKUP], ["pbs"], {110})
    assert "not-backed-up" in verdict.message()


def test_a_guest_gone_from_the_cluster_fails():
    verdict = checks.check_guest_coverage(guest(), None, [], [], set())
    assert "found no such guest" in verdict.message() and "node" not in verdict.facts


def test_a_guest_of_the_wrong_type_fails():
    verdict = checks.check_guest_coverage(guest(type="lxc"), RESOURCE, [BACKUP], ["pbs"], set())
    assert "expected a lxc guest" in verdict.message()


def test_the_firewall_exception_names_its_proof():
    firewall = guest(name="opnsense", vmid=100, strategy="config-export", exception="freezes the network",
                     config_export="opnsense-config")
    verdict = checks.check_guest_coverage(firewall, {**RESOURCE, "vmid": 100}, [], [], {100})
    assert verdict.ok
    assert verdict.facts["proof"].startswith("offsite:opnsense-config")
    assert verdict.facts["exception"] == "freezes the network"


def test_a_config_export_without_its_export_fails():
    firewall = guest(name="opnsense", vmid=100, strategy="config-export", exception="freezes the network")
    assert "config_export" in checks.check_guest_coverage(firewall, RESOURCE, [], [], set()).message()


def test_unlisted_cluster_guests_fail_but_scratch_guests_do_not():
    resources = [RESOURCE, {"vmid": 130, "type": "lxc", "name": "media", "node": "pve2"},
                 {"vmid": 9901, "type": "qemu", "name": "drill", "node": "pve1"}]
    verdict = checks.check_cluster_inventoried(resources, {110}, (9900, 9999))
    assert "lxc 130 (media on pve2)" in verdict.message() and "9901" not in verdict.message()
    assert checks.check_cluster_inventoried(resources[:1], {110}, (9900, 9999)).ok


# --- freshness ------------------------------------------------------------------------

def test_fresh_within_the_rpo():
    verdict = checks.check_fresh([snap(NOW - 3 * DAY), snap(NOW - timedelta(hours=11))], now=NOW,
                                 limit=timedelta(hours=26), where="datastore local", rpo_name="daily")
    assert verdict.ok and verdict.facts["age_hours"] == 11.0


def test_stale_names_snapshot_age_and_rpo():
    verdict = checks.check_fresh([snap(NOW - 2 * DAY)], now=NOW, limit=timedelta(hours=26),
                                 where="datastore local, guest app-vm", rpo_name="daily")
    message = verdict.message()
    assert "datastore local, guest app-vm" in message and "vm/110/2026-05-08T12:00:00Z" in message
    assert "2.0 d old" in message and "RPO daily" in message


@pytest.mark.parametrize("span, shown", [(timedelta(seconds=5), "5 s"), (timedelta(minutes=30), "30 min"),
                                         (timedelta(hours=26), "26.0 h"), (timedelta(days=3), "3.0 d")])
def test_ages_are_shown_in_a_readable_unit(span, shown):
    assert checks.show_age(span) == shown


def test_an_unfinished_newest_snapshot_does_not_count():
    verdict = checks.check_fresh([snap(NOW - 2 * DAY), snap(NOW - timedelta(hours=1), finished=False)],
                                 now=NOW, limit=timedelta(hours=26), where="w", rpo_name="daily")
    assert not verdict.ok and "2026-05-08" in verdict.message()
    assert "no finished snapshot (1 unfinished)" in checks.check_fresh(
        [snap(NOW, finished=False)], now=NOW, limit=DAY, where="w", rpo_name="r").message()


# --- verification ---------------------------------------------------------------------

def test_verified_recently_and_ok():
    history = [snap(NOW - 2 * DAY), snap(NOW - DAY)]
    verdict = checks.check_verification(history, now=NOW, max_age=8 * DAY, where="w")
    assert verdict.ok and verdict.facts["last_verified"] == history[1].name


def test_a_failed_verification_fails_naming_the_snapshot_and_task():
    bad = snap(NOW - 40 * DAY, state="failed")
    verdict = checks.check_verification([bad, snap(NOW - DAY)], now=NOW, max_age=8 * DAY, where="w")
    assert f"snapshot {bad.name} failed verification" in verdict.message() and bad.verify_upid in verdict.message()


def test_an_old_verification_fails_with_its_start_time_from_the_upid():
    history = [snap(NOW - 20 * DAY, verified=NOW - 19 * DAY), snap(NOW - DAY, state=None)]
    verdict = checks.check_verification(history, now=NOW, max_age=8 * DAY, where="w")
    assert "2026-04-21 12:00:00 UTC" in verdict.message() and "19.0 d ago" in verdict.message()


def test_snapshots_never_verified_past_the_limit_fail_and_young_ones_wait():
    young = checks.check_verification([snap(NOW - DAY, state=None)], now=NOW, max_age=8 * DAY, where="w")
    assert young.ok and "younger" in young.facts["note"]
    old = checks.check_verification([snap(NOW - 30 * DAY, state=None), snap(NOW - DAY)], now=NOW,
                                    max_age=8 * DAY, where="w")
    assert "1 never verified: vm/110/2026-04-10T12:00:00Z" in old.message()


def test_an_unreadable_verify_upid_is_a_problem_not_a_crash():
    broken = Snapshot("vm", "110", NOW - DAY, verify_state="ok", verify_upid="UPID:nonsense")
    assert "unreadable" in checks.check_verification([broken], now=NOW, max_age=8 * DAY, where="w").message()


# --- retention against the server -------------------------------------------------------

def test_server_policies_come_from_the_store_s_prune_jobs():
    jobs = [{"id": "local-keep-last", "store": "local", "keep-last": 2},
            {"id": "offsite-retention", "store": "offsite", "keep-daily": 7, "keep-weekly": 4}]
    assert checks.server_prune_policies(jobs, "offsite") == [("offsite-retention",
                                                             {"keep-daily": 7, "keep-weekly": 4})]


def test_policy_differences_name_each_option():
    assert checks.policy_differences({"keep-daily": 7, "keep-monthly": 12},
                                     {"keep-daily": 7, "keep-monthly": 11, "keep-yearly": 0}) == [
        "keep-monthly: inventory 12, server 11"]
    assert checks.policy_differences({"keep-last": 2}, {"keep-last": 2}) == []


def test_keep_sets_agree_when_the_engine_matches_pbs():
    times = [NOW - i * DAY for i in range(40)]
    points = [retention.Point(time=t) for t in times]
    policy = retention.Policy(keep_daily=7, keep_weekly=4)
    decisions = retention.simulate_pbs(points, policy, "Europe/Berlin")
    engine = {int(d.point.time.timestamp()): d.keep for d in decisions}
    answer = [{"backup-time": epoch, "keep": keep} for epoch, keep in engine.items()]
    verdict = checks.compare_keep_sets(engine, [answer], {}, where="w")
    assert verdict.ok and verdict.facts["compared"] == 40 and verdict.facts["engine_keeps"] == 11


def test_keep_sets_that_differ_name_the_snapshots_both_ways():
    engine = {1: True, 2: True, 3: False}
    answer = [{"backup-time": 1, "keep": True}, {"backup-time": 2, "keep": False}, {"backup-time": 3, "keep": True}]
    names = {1: "vm/110/a", 2: "vm/110/b", 3: "vm/110/c"}
    message = checks.compare_keep_sets(engine, [answer], names, where="w").message()
    assert "engine keeps 1 snapshot(s) the server's prune removes: vm/110/b" in message
    assert "server's prune keeps 1 snapshot(s) restoredrill's engine removes: vm/110/c" in message


def test_several_prune_jobs_keep_only_what_all_keep_and_races_are_not_compared():
    engine = {1: True, 2: False}
    answers = [[{"backup-time": 1, "keep": True}, {"backup-time": 2, "keep": True}],
               [{"backup-time": 1, "keep": True}, {"backup-time": 2, "keep": False},
                {"backup-time": 9, "keep": True}]]
    verdict = checks.compare_keep_sets(engine, answers, {}, where="w")
    assert verdict.ok and verdict.facts["not_compared"] == 1


# --- usage, jobs, targets -------------------------------------------------------------

def test_usage_against_the_quota_or_the_total():
    status = {"total": 1000, "used": 850, "avail": 150}
    assert checks.check_usage(status, store="local", quota=None, max_usage=0.9).ok
    over = checks.check_usage(status, store="local", quota=900, max_usage=0.9)
    assert "datastore local" in over.message() and "94.4%" in over.message() and "quota 900" in over.message()
    assert not checks.check_usage({"total": 0, "used": 0}, store="x", quota=None, max_usage=0.9).ok


def job(**kw) -> dict:
    base = {"id": "local-verify", "store": "local", "schedule": "05:00", "last-run-state": "OK",
            "last-run-endtime": int((NOW - timedelta(hours=7)).timestamp()),
            "last-run-upid": "UPID:pbs1:0000107B:0004FA4D:00000004:6A0000:verificationjob:x:root@pam:"}
    return {**base, **kw}


def test_a_job_that_ran_ok_recently_passes():
    verdict = checks.check_jobs([job()], kind="verify", store="local", max_age=8 * DAY, now=NOW)
    assert verdict.ok and verdict.facts["job"] == "local-verify"


def test_a_failed_job_names_id_state_end_and_upid():
    failed = job(**{"last-run-state": "verification failed - please check the log for details"})
    message = checks.check_jobs([failed], kind="verify", store="local", max_age=8 * DAY, now=NOW).message()
    assert "verify job local-verify (datastore local)" in message and "verification failed" in message
    assert "2026-05-10 05:00:00 UTC" in message and "UPID:pbs1:" in message


def test_an_old_or_never_run_job_fails():
    old = job(**{"last-run-endtime": int((NOW - 3 * DAY).timestamp())})
    assert "3.0 d ago" in checks.check_jobs([old], kind="prune", store="local", max_age=timedelta(hours=26),
                                            now=NOW).message()
    never = {"id": "offsite-verify", "store": "local", "schedule": "sat 06:00"}
    assert "never ran (schedule sat 06:00" in checks.check_jobs([never], kind="verify", store="local",
                                                               max_age=8 * DAY, now=NOW).message()


def test_gc_entries_are_keyed_by_store_and_carry_upid():
    gc = {"store": "local", "last-run-state": "OK", "last-run-endtime": int(NOW.timestamp()), "upid": "UPID:gc"}
    verdict = checks.check_jobs([gc], kind="gc", store="local", max_age=8 * DAY, now=NOW)
    assert verdict.ok and verdict.facts["upid"] == "UPID:gc"


def test_missing_jobs_and_a_sync_job_feeding_another_store_fail():
    assert "expected a prune job; found none" in checks.check_jobs([], kind="prune", store="local",
                                                                   max_age=DAY, now=NOW).message()
    sync = job(id="s-offsite", store="other")
    assert "found no such job (jobs: s-offsite)" in checks.check_jobs(
        [sync], kind="sync", store="offsite", max_age=DAY, now=NOW, wanted_id="s-missing").message()
    assert "feeds other" in checks.check_jobs([sync], kind="sync", store="offsite", max_age=DAY, now=NOW,
                                              wanted_id="s-offsite").message()


@pytest.mark.parametrize("targets, problem", [
    ([{"name": "mail-admin", "type": "smtp"}], None),
    ([{"name": "mail-to-root", "type": "sendmail"}], "PBS: expected notification target mail-admin"),
    ([{"name": "mail-admin", "type": "smtp", "disable": 1}], "disabled"),
])
def test_notification_targets(targets, problem):
    verdict = checks.check_notification_target("mail-admin", {"PVE": [{"name": "mail-admin"}], "PBS": targets})
    assert (problem is None and verdict.ok) or (problem in verdict.message())


def test_a_product_outside_the_inventory_is_not_audited():
    verdict = checks.check_notification_target("mail-admin", {"PVE": [{"name": "mail-admin"}], "PBS": None})
    assert verdict.ok and "not audited" in verdict.facts["pbs"]
