"""Issue 13 point 9 (task logs read by ``total``) and "Waiting and retrying", through the
real clients against the Proxmox double.

A failing task's log here is longer than 1000 lines with the real error at its end, so a
client that reads the first page (the default ``limit`` 50 from line 1) shows progress
lines and fails these tests. Transient faults are switched on in the double: a GET must
come through after connection resets; a 500 or a 4xx is never tried again; a POST whose
outcome is unknown is never sent again, and exactly one scratch guest exists afterwards.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from restoredrill.clients.pbs import PbsClient, snapshot_finished
from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint
from restoredrill.clients.pve import PveClient, ScratchGuard, TaskFailed
from restoredrill.lab.proxmox import ProxmoxDouble
from restoredrill.lab.proxmox.testing import pbs_api, pve_api, wait_task
from restoredrill.waiting import RetryPolicy

pytestmark = pytest.mark.integration
NODE = "pve1"
FAST = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.05)
OVERRIDES = {"tags": "restoredrill", "pool": "restoredrill", "net0": "virtio,bridge=vmbr-drill"}
REAL_ERROR = 'restore failed: reading file "/dev/sda" failed: Input/output error'


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("task-logs")) as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults_left(double):
    yield
    double.faults.clear()


def pve_client(double, *, timeout: float = 30.0) -> PveClient:
    token = double.drill_token
    return PveClient(ApiChokePoint(Endpoint(double.pve_url, token.token_id, token.secret(), double.fingerprint,
                                            service="PVE", timeout=timeout), retry=FAST),
                     ScratchGuard(9900, 9999, "restoredrill", "restoredrill"))


def pbs_client(double) -> PbsClient:
    token = double.pbs_admin_token
    return PbsClient(ApiChokePoint(Endpoint(double.pbs_url, token.token_id, token.secret(), double.pbs_fingerprint,
                                            service="PBS"), retry=FAST))


def newest_volid(client: PveClient, vmid: int) -> str:
    """The newest finished backup (an unfinished one is listed with size 1, issue 13 point 7)."""
    finished = [item for item in client.backups(NODE, "pbs", vmid)
                if item["volid"].startswith(f"pbs:backup/vm/{vmid}/") and int(item.get("size") or 0) > 1]
    return max(finished, key=lambda item: item["ctime"])["volid"]


def remove_guest(double, vmid: int) -> None:
    admin = pve_api(double, double.admin_token)
    deadline = time.monotonic() + 30
    while vmid in double.pve_state.guests and time.monotonic() < deadline:
        config = admin.nodes(NODE).qemu(vmid).config.get()
        if "lock" not in config:
            wait_task(admin, NODE, admin.nodes(NODE).qemu(vmid).delete(purge=1))
        else:
            time.sleep(0.1)
    assert vmid not in double.pve_state.guests


# --- 9. task logs ---------------------------------------------------------------------

def test_the_double_pages_task_logs_like_pve_and_pbs(double):
    client = pve_client(double)
    double.faults.long_task_logs(1200, "qmrestore")
    upid = client.restore(NODE, "qemu", 9931, newest_volid(client, 110), "local-zfs", OVERRIDES)
    try:
        client.wait_task(NODE, upid, deadline=60, what="restore of 9931")
        path = f"/nodes/{NODE}/tasks/{upid}/log"
        first = client.api.call("get", path, envelope=True)
        assert first["total"] > 1200 and [line["n"] for line in first["data"]] == list(range(1, 51))
        page = client.api.call("get", path, envelope=True, start=10, limit=2)
        assert [line["n"] for line in page["data"]] == [11, 12]          # PVE: after line 10
        everything = client.api.call("get", path, envelope=True, limit=0)["data"]
        assert len(everything) == first["total"] and everything[-1]["t"] == "TASK OK"
    finally:
        client.api.stats.calls.clear()
        remove_guest(double, 9931)
    double.faults.long_task_logs(1100, "verify_snapshot")
    pbs = pbs_api(double, double.pbs_admin_token)
    snapshot = pbs.admin.datastore("local").snapshots.get(**{"backup-id": "120"})[0]
    upid = pbs.admin.datastore("local").verify.post(**{"backup-type": "ct", "backup-id": "120",
                                                        "backup-time": snapshot["backup-time"]})
    wait_task(pbs, "localhost", upid)
    answer = pbs_client(double).api.call("get", f"/nodes/localhost/tasks/{upid}/log", envelope=True,
                                         start=10, limit=2)
    assert answer["total"] > 1100 and [line["n"] for line in answer["data"]] == [10, 11]   # PBS: AT line 10


def test_a_failed_restore_with_a_long_log_shows_the_real_error(double):
    client = pve_client(double)
    double.faults.long_task_logs(1500, "qmrestore")
    double.faults.fail_restore(9932)
    upid = client.restore(NODE, "qemu", 9932, newest_volid(client, 110), "local-zfs", OVERRIDES)
    try:
        with pytest.raises(TaskFailed) as failed:
            client.wait_task(NODE, upid, deadline=60, what="restore of 9932")
        message = str(failed.value)
        assert REAL_ERROR in message, message
        assert "progress" not in message and len(message) < 1500
        assert failed.value.log_tail[-1].startswith("TASK ERROR: command '/usr/bin/pbs-restore ")
    finally:
        remove_guest(double, 9932)


def test_a_failed_pbs_task_with_a_long_log_keeps_its_last_line(double):
    pbs = pbs_api(double, double.pbs_admin_token)
    snapshot = max((s for s in pbs.admin.datastore("local").snapshots.get(**{"backup-id": "110"})
                    if s["backup-type"] == "vm" and snapshot_finished(s)), key=lambda s: s["backup-time"])
    when = datetime.fromtimestamp(snapshot["backup-time"], tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    double.faults.remove_chunk("local", f"vm/110/{when}")
    double.faults.long_task_logs(1300, "verify_snapshot")
    client = pbs_client(double)
    upid = client.api.call("post", "/admin/datastore/local/verify", **{
        "backup-type": "vm", "backup-id": "110", "backup-time": snapshot["backup-time"], "ignore-verified": 0})
    with pytest.raises(TaskFailed) as failed:
        client.wait_task(upid, deadline=60, what="verify of vm/110")
    assert client.api.call("get", f"/nodes/localhost/tasks/{upid}/log", envelope=True, limit=1)["total"] > 1300
    assert failed.value.log_tail[-1].startswith("TASK ERROR: ")     # PBS's start is one line off
    assert "missing" in str(failed.value) and "progress" not in str(failed.value)


# --- waiting and retrying --------------------------------------------------------------

def test_a_get_comes_through_after_connection_resets(double):
    client = pve_client(double)
    reset = double.faults.http_error(r"^/cluster/resources$", kind="reset", times=2)
    assert client.exists(110) is False or client.resources()          # answered on the third try
    assert reset.hits >= 3 and client.api.stats.calls["GET /cluster/resources"] >= 3


def test_a_500_and_a_4xx_are_never_tried_again(double):
    client = pve_client(double)
    failing = double.faults.http_error(r"^/cluster/nextid$", kind="500", times=5)
    with pytest.raises(ApiError) as failed:
        client.next_id()
    assert failed.value.status == 500 and failing.hits == 1
    watched = double.faults.watch_requests(r"/vzdump/extractconfig$")
    with pytest.raises(ApiError) as refused:
        client.extract_config(NODE, "pbs:backup/vm/../../../etc/passwd")
    assert refused.value.status == 400 and watched.hits == 1


def test_a_restore_whose_answer_never_came_is_not_sent_again(double):
    client = pve_client(double, timeout=1.0)
    volid = newest_volid(client, 110)
    double.faults.slow_answer(rf"^/nodes/{NODE}/qemu$", 2.5, method="POST")
    watched = double.faults.watch_requests(rf"^/nodes/{NODE}/qemu$", method="POST")
    try:
        with pytest.raises(ApiError) as unknown:
            client.restore(NODE, "qemu", 9933, volid, "local-zfs", OVERRIDES)
        message = str(unknown.value)
        assert unknown.value.maybe_applied and "read the state back" in message and "second scratch guest" in message
        deadline = time.monotonic() + 30
        while 9933 not in double.pve_state.guests and time.monotonic() < deadline:
            time.sleep(0.1)                          # the server applies it after the client gave up
        assert watched.hits == 1
        assert [vmid for vmid in double.pve_state.guests if vmid == 9933] == [9933]
    finally:
        remove_guest(double, 9933)


def test_a_restore_met_by_a_reset_is_not_sent_again(double):
    client = pve_client(double)
    volid = newest_volid(client, 110)
    reset = double.faults.http_error(rf"^/nodes/{NODE}/qemu$", kind="reset", method="POST", times=3)
    with pytest.raises(ApiError) as unknown:
        client.restore(NODE, "qemu", 9934, volid, "local-zfs", OVERRIDES)
    assert unknown.value.maybe_applied and "read the state back" in str(unknown.value)
    assert reset.hits == 1 and 9934 not in double.pve_state.guests


def test_a_get_comes_through_after_503s_from_a_proxy(double):
    client = pve_client(double)
    busy = double.faults.http_error(r"^/version$", kind="503", times=2)
    assert client.version()["version"] == double.pve_version["version"]
    assert busy.hits == 3 and client.api.stats.calls["GET /version"] == 3


def test_a_get_gives_up_naming_the_tries_and_the_last_error(double):
    client = pve_client(double)
    down = double.faults.http_error(r"^/version$", kind="504", times=10)
    with pytest.raises(ApiError) as gave_up:
        client.version()
    message = str(gave_up.value)
    assert down.hits == FAST.attempts and gave_up.value.status == 504
    assert f"gave up after {FAST.attempts} tries" in message and "504" in message


def test_a_restore_answered_by_a_502_after_it_was_applied_is_not_sent_again(double):
    client = pve_client(double)
    volid = newest_volid(client, 110)
    lost = double.faults.http_error(rf"^/nodes/{NODE}/qemu$", kind="502", method="POST", after=True)
    try:
        with pytest.raises(ApiError) as unknown:
            client.restore(NODE, "qemu", 9935, volid, "local-zfs", OVERRIDES)
        assert unknown.value.maybe_applied and unknown.value.status == 502
        assert "read the state back" in str(unknown.value)
        deadline = time.monotonic() + 30
        while 9935 not in double.pve_state.guests and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lost.hits == 1 and 9935 in double.pve_state.guests      # applied exactly once
    finally:
        remove_guest(double, 9935)
