"""Issue 13 points 5-8 against the Proxmox double: PBS versions (3.1 and 4.x), running jobs,
the same backup-id with two types, unfinished snapshots, namespaces and prune job scope.
Each test fails if the client ignores the behaviour (it sends what 3.1 refuses, says
"never ran", picks ct/110 for a VM or an unfinished snapshot, or drops ``ns``)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from restoredrill.checks import pbs_audit as checks
from restoredrill.clients.pbs import PbsClient, snapshot_finished
from restoredrill.clients.pbs_versions import NotAvailable
from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint
from restoredrill.clients.pve import PveClient, ScratchGuard
from restoredrill.lab.proxmox import ProxmoxDouble, homelab
from restoredrill.lab.proxmox.cluster import StorageConfig
from restoredrill.lab.proxmox.pbs_jobs import Job
from restoredrill.pbsformat import MANIFEST_BLOB_NAME
from restoredrill.plan import choose_snapshot

pytestmark = pytest.mark.integration
NS = "drill-copy"                       # this module's own sync target
LAB_NS = homelab.OFFSITE_NAMESPACE      # where the lab's offsite-pull writes


def pbs_client(double, token=None, namespaces=None) -> PbsClient:
    token = token or double.pbs_audit_token
    return PbsClient(ApiChokePoint(Endpoint(double.pbs_url, token.token_id, token.secret(), double.pbs_fingerprint,
                                            service="PBS")), namespaces=namespaces)


def pve_client(double) -> PveClient:
    token = double.admin_token
    return PveClient(ApiChokePoint(Endpoint(double.pve_url, token.token_id, token.secret(), double.fingerprint,
                                            service="PVE")), ScratchGuard(9900, 9999, "restoredrill", "restoredrill"))


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("pbs-real")) as running:
        yield running


@pytest.fixture(scope="module")
def old_double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("pbs-31"), pbs_version="3.1.2") as running:
        yield running


# --- 5. versions ------------------------------------------------------------------------

def test_the_default_version_answers_like_pbs_4(double):
    answer = pbs_client(double).api.call("get", "/version")
    assert (answer["version"], answer["release"]) == ("4.0", "14") and len(answer["repoid"]) == 40


def test_pbs_31_refuses_what_it_does_not_know_and_the_client_never_sends_it(old_double):
    client = pbs_client(old_double)
    with pytest.raises(ApiError) as refused:
        client.api.call("get", "/admin/sync", **{"sync-direction": "all"})
    assert refused.value.status == 400 and "sync-direction" in str(refused.value)
    for path in ("/admin/gc", "/config/notifications/targets"):
        with pytest.raises(ApiError) as missing:
            client.api.call("get", path)
        assert missing.value.status == 404 and f"Path '/api2/json{path}' not found." in str(missing.value)
    assert [job["id"] for job in client.jobs("sync")] == ["offsite-pull"]       # no sync-direction sent
    assert {job["id"] for job in client.jobs("prune")} == {"local-keep-last", "offsite-retention"}
    for call in (lambda: client.jobs("gc"), client.notification_targets):
        with pytest.raises(NotAvailable, match=r"^NOT RUN: PBS 3\.1\.2 does not serve .* upgrade PBS to 3\.2"):
            call()


def test_pbs_4_lists_push_jobs_only_when_asked_for_every_direction(double):
    double.pbs_jobs.add(Job("sync", "push-to-remote", "local", "05:30",
                            {"remote-store": "offsite", "sync-direction": "push"}))
    try:
        assert {job["id"] for job in pbs_client(double).jobs("sync")} == {"offsite-pull", "push-to-remote"}
        assert pbs_client(double).jobs("gc")
    finally:
        del double.pbs_jobs.jobs[("sync", "push-to-remote")]


# --- 6. running jobs --------------------------------------------------------------------

def test_a_running_job_is_reported_running_since_not_never_ran(double):
    release = double.pbs_jobs.hold("sync", "offsite-pull")
    try:
        jobs = pbs_client(double).jobs("sync")
        job = next(j for j in jobs if j["id"] == "offsite-pull")
        assert "last-run-upid" in job and "last-run-state" not in job
        verdict = checks.check_jobs(jobs, kind="sync", store="offsite", max_age=timedelta(hours=28),
                                    now=datetime.now(timezone.utc), wanted_id="offsite-pull")
        assert verdict.ok and verdict.facts["state"] == "running" and "running_since" in verdict.facts
        late = checks.check_jobs(jobs, kind="sync", store="offsite", max_age=timedelta(seconds=0),
                                 now=datetime.now(timezone.utc) + timedelta(minutes=5), wanted_id="offsite-pull")
        assert "running since" in late.message() and "never ran" not in late.message()
    finally:
        release.set()
        double.pbs_jobs.jobs[("sync", "offsite-pull")].last_task.done.wait(30)


# --- 7. same id, two types; unfinished snapshots ------------------------------------------

def test_vm_110_and_ct_110_share_a_listing_and_the_choice_keeps_the_guests_type(double):
    items = pve_client(double).backups(double.node, "pbs", 110)
    assert {item["subtype"] for item in items} == {"qemu", "lxc"}
    naive = max(items, key=lambda i: int(i["ctime"]))
    assert naive["volid"].startswith("pbs:backup/ct/110/"), "the seeded ct/110 must be what a type-blind pick takes"
    for how in ("latest", "latest-verified"):
        assert choose_snapshot(items, how, "s", guest_type="qemu")["volid"].startswith("pbs:backup/vm/110/")
    listed = pbs_client(double).snapshots("local", backup_id="110")
    assert {item["backup-type"] for item in listed} == {"vm", "ct"}


def test_an_unfinished_newest_snapshot_is_never_chosen(double):
    items = pve_client(double).backups(double.node, "pbs", 120)
    newest = max(items, key=lambda i: int(i["ctime"]))
    assert newest["size"] == 1, "PVE shows an unfinished PBS snapshot with size 1"
    chosen = choose_snapshot(items, "latest", "s", guest_type="lxc")
    assert chosen["volid"] != newest["volid"] and chosen["size"] > 1
    listed = pbs_client(double).snapshots("local", backup_type="ct", backup_id="120")
    running = max(listed, key=lambda i: i["backup-time"])
    assert not snapshot_finished(running) and "size" not in running
    with pytest.raises(ApiError, match="File open failed"):
        pbs_client(double).download("local", "ct", "120", running["backup-time"], MANIFEST_BLOB_NAME)


# --- 8. namespaces; prune job scope -------------------------------------------------------

@pytest.fixture(scope="module")
def namespaced(double):
    """local's finished snapshots synced into namespace drill-copy on offsite (a sync job with
    ``ns``), and a PVE storage ``pbs-ns`` with ``namespace: drill-copy``. The lab's own
    history sits in namespace homelab; the root namespace of offsite is empty."""
    double.pbs_jobs.add(Job("sync", "into-ns", "offsite", "06:30", {"remote-store": "local", "ns": NS}))
    assert double.pbs_jobs.run_and_wait("sync", "into-ns").exitstatus == "OK"
    double.pve_state.storages["pbs-ns"] = StorageConfig("pbs-ns", "pbs", "backup", datastore="offsite",
                                                        crypt=double.crypt, fingerprint=double.pbs_fingerprint,
                                                        namespace=NS)
    local = [i for i in double.stores["local"].snapshot_infos("vm", "110") if i.finished]
    return sorted(i.epoch for i in local)


def test_every_pbs_call_carries_the_datastores_namespace(double, namespaced):
    bound, rooted = pbs_client(double, namespaces={"offsite": NS}), pbs_client(double)
    inside = bound.snapshots("offsite", backup_type="vm", backup_id="110")
    assert sorted(i["backup-time"] for i in inside) == namespaced
    assert rooted.snapshots("offsite", backup_type="vm", backup_id="110") == []      # nothing at the root
    lab = pbs_client(double, namespaces={"offsite": LAB_NS}).snapshots("offsite", backup_type="vm", backup_id="110")
    assert len(lab) > len(namespaced) and {i["backup-time"] for i in lab} != set(namespaced)
    assert {g["backup-id"] for g in bound.groups("offsite")} == {"110", "120"}
    newest = namespaced[-1]
    assert bound.download("offsite", "vm", "110", newest, MANIFEST_BLOB_NAME)
    answer = bound.prune_dry_run("offsite", "vm", "110", {"keep-last": 1})
    assert sorted(i["backup-time"] for i in answer) == namespaced


def test_a_pve_storage_with_a_namespace_lists_only_that_namespace(double, namespaced):
    items = pve_client(double).backups(double.node, "pbs-ns", 110)
    assert sorted(i["ctime"] for i in items if i["subtype"] == "qemu") == namespaced


def test_prune_jobs_count_only_where_they_reach_and_when_enabled(double, namespaced):
    extra = [Job("prune", "other-ns", "offsite", "07:00", {"keep-last": 1, "ns": "other"}),
             Job("prune", "root-only", "offsite", "07:10", {"keep-last": 1, "max-depth": 0}),
             Job("prune", "disabled", "offsite", "07:20", {"keep-last": 1, "disable": True})]
    for job in extra:
        double.pbs_jobs.add(job)
    try:
        jobs = pbs_client(double).jobs("prune")
        assert {job["id"] for job in jobs} >= {"other-ns", "root-only", "disabled"}
        assert [j for j, _ in checks.server_prune_policies(jobs, "offsite", LAB_NS)] == ["offsite-retention"]
        assert [j for j, _ in checks.server_prune_policies(jobs, "offsite", "other")] == ["other-ns"]
        assert {j for j, _ in checks.server_prune_policies(jobs, "offsite")} == {"root-only"}
    finally:
        for job in extra:
            del double.pbs_jobs.jobs[("prune", job.id)]


# --- the audit drills on PBS 3.1: every case passes or is NOT RUN, naming the version ------

def test_the_audit_drills_on_pbs_31_pass_or_are_not_run(old_double, tmp_path):
    from tests.integration.test_pbs_audit_drills import run_audit
    d, token = old_double, old_double.pbs_audit_token
    store = {"verify_max_age": "8d", "gc_max_age": "8d", "prune_max_age": "26h", "max_usage": 0.99}
    inventory = {
        "version": 1, "site": {"name": "double", "timezone": "UTC"},
        "policies": {"retention": {"pbs-local": {"keep_last": 2},
                                   "offsite": {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12,
                                               "keep_yearly": 2}},
                     "rpo": {"daily": {"max_age": "25h", "grace": "1h"},
                             "offsite-sync": {"max_age": "25h", "grace": "3h"}}},
        "proxmox": {
            "pve": {"url": d.pve_url, "token_id": d.drill_token.token_id,
                    "token_secret": f"file:{d.drill_token.secret_file}", "fingerprint": d.fingerprint,
                    "nodes": [d.node]},
            "pbs": {"url": d.pbs_url, "token_id": token.token_id, "token_secret": f"file:{token.secret_file}",
                    "fingerprint": d.pbs_fingerprint, "timezone": d.zone,
                    "datastores": [
                        {"name": "local", "role": "local", "pve_storage": "pbs", "retention": "pbs-local",
                         "rpo": "daily", **store},
                        {"name": "offsite", "role": "offsite", "pve_storage": "pbs-offsite",
                         "namespace": LAB_NS, "retention": "offsite", "rpo": "offsite-sync",
                         "sync_job": "offsite-pull", "sync_max_age": "28h", **store}]}},
        "guests": [{"name": "app-vm", "vmid": 110, "type": "qemu", "strategy": "pbs", "rpo": "daily"},
                   {"name": "app-ct", "vmid": 120, "type": "lxc", "strategy": "pbs", "rpo": "daily", "access": "none"},
                   {"name": "opnsense", "vmid": 100, "type": "qemu", "strategy": "none",
                    "exception": "firewall"}],
        "notifications": {"pve_targets": ["mail-admin"]},
    }
    run = run_audit(inventory, tmp_path)
    not_run = {"test_job_ran[local:gc]", "test_job_ran[offsite:gc]", "test_notification_target[mail-admin]"}
    failed = {name for name, case in run.cases.items() if case["outcome"] != "passed"}
    assert failed == not_run, {n: run.cases[n]["message"][:300] for n in failed ^ not_run}
    for name in not_run:
        message = run.cases[name]["message"]
        assert "NOT RUN: PBS 3.1.2 does not serve" in message and "upgrade PBS to 3.2 or later" in message
    assert len(run.cases) > 20
