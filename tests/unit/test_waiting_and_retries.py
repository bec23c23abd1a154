"""Waiting and retrying (issue 13, "Waiting and retrying") and task-log tails (point 9),
as pure logic: tenacity policies in ``waiting``, the retry rule of ``ApiChokePoint``
(fed by a fake proxmoxer resource), and the paged log reading of ``read_log_tail``."""
from __future__ import annotations

import pytest
import requests
from proxmoxer.core import ResourceException

from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint
from restoredrill.clients.pve import read_log_tail, wait_for_task
from restoredrill.waiting import DeadlineExceeded, RetriesExhausted, RetryPolicy, retry_transient, wait_until

UPID = "UPID:pve1:00001234:00005678:65000000:qmrestore:9901:drill@pve!rd:"
FAST = RetryPolicy(attempts=3, first_delay=0.001, max_delay=0.002)


class Flaky(Exception):
    pass


def test_retry_transient_retries_only_what_it_is_told_and_gives_up_with_the_last_error():
    calls = []

    def twice_then_ok():
        calls.append(1)
        if len(calls) < 3:
            raise Flaky(f"try {len(calls)}")
        return "ok"
    assert retry_transient(twice_then_ok, policy=FAST, transient=lambda e: isinstance(e, Flaky)) == "ok"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(ValueError):
        retry_transient(lambda: calls.append(1) or int("x"), policy=FAST, transient=lambda e: isinstance(e, Flaky))
    assert len(calls) == 1                                   # a permanent error is never tried again
    with pytest.raises(RetriesExhausted) as gave_up:
        retry_transient(lambda: (_ for _ in ()).throw(Flaky("still down")), policy=FAST,
                        transient=lambda e: isinstance(e, Flaky))
    assert gave_up.value.attempts == 3 and str(gave_up.value.last) == "still down"


def test_wait_until_names_the_deadline_and_the_last_error():
    with pytest.raises(DeadlineExceeded) as late:
        wait_until(lambda: (_ for _ in ()).throw(Flaky("connection refused")), seconds=0.05, first=0.01,
                   longest=0.02)
    assert "within 0.05 s" in str(late.value) and late.value.last_error == "connection refused"
    with pytest.raises(KeyError):
        wait_until(lambda: {}["x"], seconds=5, retry_on=lambda e: isinstance(e, Flaky))


class FakeResource:
    """Stands for proxmoxer's resource: each call pops the next outcome (an exception or a value)."""

    def __init__(self, outcomes):
        self.outcomes = outcomes
        self.sent = []

    def __call__(self, path):
        self.path = path
        return self

    def _answer(self, method, **params):
        self.sent.append((method, self.path))
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def get(self, **params):
        return self._answer("GET", **params)

    def post(self, **params):
        return self._answer("POST", **params)


def choke(outcomes) -> tuple[ApiChokePoint, FakeResource]:
    fake = FakeResource(outcomes)
    return ApiChokePoint(Endpoint("https://pve.example:8006", "drill@pve!rd", "s3cret", None), api=fake,
                         retry=FAST), fake


def http(status: int, reason: str = "") -> ResourceException:
    return ResourceException(status, "x", reason or f"HTTP {status}")


@pytest.mark.parametrize("failure", [http(502), http(503), http(504), http(595, "Connection refused"),
                                     requests.ConnectionError("Connection reset by peer"),
                                     requests.ReadTimeout("read timed out")])
def test_a_get_recovers_after_transient_failures(failure):
    api, fake = choke([failure, failure, {"release": "9.1"}])
    assert api.call("get", "/version") == {"release": "9.1"}
    assert len(fake.sent) == 3 and api.stats.calls["GET /version"] == 3


@pytest.mark.parametrize("failure", [http(500, "VM 110 not running"), http(400), http(401), http(403), http(404),
                                     http(501), http(599)])
def test_a_get_is_never_retried_after_a_4xx_or_a_permanent_5xx(failure):
    api, fake = choke([failure, {"release": "9.1"}])
    with pytest.raises(ApiError) as failed:
        api.call("get", "/version")
    assert len(fake.sent) == 1 and not failed.value.transient and not failed.value.maybe_applied


def test_a_get_that_keeps_failing_names_the_tries_and_the_last_error():
    api, fake = choke([http(503, "Service Unavailable (pveproxy restarting)")])
    with pytest.raises(ApiError) as failed:
        api.call("get", "/cluster/resources")
    message = str(failed.value)
    assert len(fake.sent) == 3 and "gave up after 3 tries" in message and "pveproxy restarting" in message


@pytest.mark.parametrize("failure", [http(502), http(503), requests.ConnectionError("Connection reset by peer"),
                                     requests.ReadTimeout("read timed out")])
def test_a_post_is_never_sent_twice_and_says_to_read_the_state_back(failure):
    api, fake = choke([failure, "UPID"])
    with pytest.raises(ApiError) as failed:
        api.call("post", "/nodes/pve1/qemu", guest="guest 9901", vmid=9901)
    assert fake.sent == [("POST", "nodes/pve1/qemu")]
    assert failed.value.maybe_applied and "may have applied it" in str(failed.value)
    assert "read the state back" in str(failed.value) and "second scratch guest" in str(failed.value)


def test_a_post_refused_with_500_is_a_plain_failure():
    api, fake = choke([http(500, "VM 9901 already exists"), "UPID"])
    with pytest.raises(ApiError) as failed:
        api.call("post", "/nodes/pve1/qemu", vmid=9901)
    assert len(fake.sent) == 1 and not failed.value.maybe_applied and "already exists" in str(failed.value)


# --- task logs: paged from the start, read by total ------------------------------------

LOG = [f"progress {i}%" for i in range(1, 1200)] + ["restore failed: reading file \"/dev/sda\" failed",
                                                     "TASK ERROR: command 'pbs-restore' failed: exit code 255"]


def pager(lines: list[str], product: str):
    """Upstream paging: PVE dump_logfile skips ``start`` lines; PBS read_task_log begins AT
    line ``start`` (``count += 1; if count < start``); limit 0 reads to the end."""
    asked = []

    def fetch(start: int, limit: int) -> dict:
        asked.append((start, limit))
        first = start if product == "pve" else max(start - 1, 0)
        chosen = lines[first:first + limit if limit else None]
        return {"data": [{"n": first + i + 1, "t": t} for i, t in enumerate(chosen)], "total": len(lines)}
    return fetch, asked


@pytest.mark.parametrize("product", ["pve", "pbs"])
def test_the_tail_of_a_long_log_holds_the_real_error(product):
    fetch, asked = pager(LOG, product)
    tail = read_log_tail(fetch, "GET log", 50)
    assert tail == LOG[-50:] and tail[-1].startswith("TASK ERROR")
    assert asked == [(0, 50), (len(LOG) - 50, 51)]


def test_a_short_log_takes_one_request_and_a_missing_total_is_an_error():
    fetch, asked = pager(["started", "TASK OK"], "pve")
    assert read_log_tail(fetch, "GET log", 50) == ["started", "TASK OK"] and len(asked) == 1
    with pytest.raises(ApiError, match="'total' is missing"):
        read_log_tail(lambda start, limit: {"data": [{"n": 1, "t": "x"}]}, "PVE GET log", 50)


def test_a_failed_task_shows_its_last_error_lines_and_survives_an_unreadable_log():
    fetch, _ = pager(LOG, "pve")
    failed_status = {"status": "stopped", "exitstatus": "command 'pbs-restore' failed: exit code 255"}
    with pytest.raises(Exception) as failed:
        wait_for_task(lambda: failed_status, lambda: read_log_tail(fetch, "GET log"), UPID, deadline=5,
                      what="restore of 9901")
    assert 'restore failed: reading file "/dev/sda" failed' in str(failed.value)

    def unreadable():
        raise ApiError("PVE GET log: unreachable")
    with pytest.raises(Exception) as failed:
        wait_for_task(lambda: failed_status, unreadable, UPID, deadline=5, what="restore of 9901")
    assert "exit code 255" in str(failed.value) and "its log could not be read" in str(failed.value)


def test_task_polling_survives_a_transient_read_and_names_the_deadline():
    states = iter([ApiError("PVE GET status: reset", transient=True), {"status": "running"},
                   {"status": "stopped", "exitstatus": "OK"}])

    def status():
        state = next(states)
        if isinstance(state, Exception):
            raise state
        return state
    assert wait_for_task(status, list, UPID, deadline=10, what="x")["exitstatus"] == "OK"
    with pytest.raises(Exception, match=r"still running after the deadline of 0\.2 s .*last: the task's status"):
        wait_for_task(lambda: {"status": "running"}, list, UPID, deadline=0.2, what="x")
    with pytest.raises(ApiError, match="HTTP 403"):          # a permanent failure ends the wait at once
        wait_for_task(lambda: (_ for _ in ()).throw(ApiError("HTTP 403", status=403)), list, UPID, deadline=10,
                      what="x")
