"""The monitoring drill against the lab's real Uptime Kuma (issue 15).

Each fault changes Kuma through its own API (pause, edit) or the inventory copy, checks
that exactly the right case failed with a message that names the service, and undoes the
change in Kuma before the next test.
"""
from __future__ import annotations

import contextlib

import pytest

from restoredrill.lab.kuma import PUSH_MONITOR
from tests.conftest import blocked_by_preflight, only_these_failed

pytestmark = pytest.mark.e2e

PER_GUEST = ("test_coverage", "test_active_and_up", "test_alerting")
GUESTS = ("opnsense", "app-vm", "app-ct")


def run_monitoring(drill, inventory):
    # --notify: a partial run pushes the heartbeat only when asked, and the next run checks that push
    return drill(inventory, "--select", "monitoring", "--notify")


@contextlib.contextmanager
def paused(lab, name: str):
    monitor_id = lab.kuma.monitor_ids[name]
    with lab.kuma.api() as api:
        api.pause_monitor(monitor_id)
    try:
        yield
    finally:
        with lab.kuma.api() as api:
            api.resume_monitor(monitor_id)


def test_the_lab_is_green_and_the_next_run_proves_this_runs_push(drill, lab_inventory):
    first = run_monitoring(drill, lab_inventory)
    assert first.code == 0, first.stdout[-3000:]
    expected = {f"{test}[{guest}]" for test in PER_GUEST for guest in GUESTS} | {"test_drift[kuma]",
                                                                                   "test_harness_heartbeat[kuma]"}
    assert set(first.cases) == expected
    heartbeat = first.cases["test_harness_heartbeat[kuma]"]
    assert heartbeat["outcome"] == "skipped" and "no earlier run on record" in heartbeat["message"]
    drift = first.cases["test_drift[kuma]"]["properties"]
    assert drift["drift"] == "1" and "old printer" in drift["drift_monitors"]
    coverage = first.cases["test_coverage[app-vm]"]["properties"]
    assert coverage["kuma_version"] == "2.0.0-dev.0" and coverage["checked_targets"] == "3"

    second = run_monitoring(drill, lab_inventory)          # same state dir: the first run's push is known
    assert second.code == 0, second.stdout[-3000:]
    assert second.cases["test_harness_heartbeat[kuma]"]["outcome"] == "passed"
    assert second.cases["test_harness_heartbeat[kuma]"]["properties"]["last_push_delivered"] == "True"


def test_a_service_without_a_monitor_fails_the_coverage_of_its_guest(drill, lab_inventory):
    host = next(g for g in lab_inventory["guests"] if g["name"] == "app-ct")["monitor_host"]
    for guest in lab_inventory["guests"]:
        if guest["name"] == "app-ct":
            guest["monitored"] = [f"http://{host}:8080/health", f"{host}:8080", f"{host}:5432"]
    run = run_monitoring(drill, lab_inventory)
    assert run.code == 1
    failed = {name for name, case in run.cases.items() if case["outcome"] == "failure"}
    assert failed == {"test_coverage[app-ct]"}, run.failed()
    message = run.cases["test_coverage[app-ct]"]["message"]
    assert f"{host}:5432 has no monitor" in message and "guest app-ct" in message


def test_a_guest_no_monitor_watches_fails_every_per_guest_case(drill, lab_inventory):
    """Issue 20 §5: a monitored guest with no monitor at all: active-and-up and alerting
    checked nothing, so they fail (never pass on zero monitors), as coverage does."""
    for guest in lab_inventory["guests"]:
        if guest["name"] == "app-ct":
            guest["monitor_host"] = "192.0.2.120"          # TEST-NET-1: no monitor targets it
            guest.pop("monitored", None)
    run = run_monitoring(drill, lab_inventory)
    assert run.code == 1
    only_these_failed(run, *(f"{test}[app-ct]" for test in PER_GUEST))
    for test in ("test_active_and_up", "test_alerting"):
        message = run.cases[f"{test}[app-ct]"]["message"]
        assert "monitoring of guest app-ct" in message and "no monitor targets this guest" in message, message
        assert run.cases[f"{test}[app-ct]"]["properties"]["checked_monitors"] == "0"
    assert "no monitor targets the guest's host 192.0.2.120" in run.cases["test_coverage[app-ct]"]["message"]


def test_a_delivered_push_that_kuma_has_no_beat_of_fails_the_next_run(drill, lab, lab_inventory):
    """Issue 20 §5: the last run's push was delivered (Kuma said ok), but Kuma shows no beat
    since (here: its beats cleared, as after a restore of Kuma's database)."""
    first = run_monitoring(drill, lab_inventory)
    assert first.cases["test_harness_heartbeat[kuma]"]["outcome"] == "skipped"
    with lab.kuma.api() as api:
        api.clear_heartbeats(lab.kuma.monitor_ids[PUSH_MONITOR])
    second = run_monitoring(drill, lab_inventory)
    only_these_failed(second, "test_harness_heartbeat[kuma]")
    case = second.cases["test_harness_heartbeat[kuma]"]
    assert case["properties"]["last_push_delivered"] == "True"
    assert "shows no beat since the last run's push" in case["message"] and "newest beat: none" in case["message"]


def test_a_paused_monitor_fails_active_and_up(drill, lab, lab_inventory):
    with paused(lab, "app-vm health"):
        run = run_monitoring(drill, lab_inventory)
    failed = {name for name, case in run.cases.items() if case["outcome"] == "failure"}
    assert failed == {"test_active_and_up[app-vm]"}, run.failed()
    message = run.cases["test_active_and_up[app-vm]"]["message"]
    assert "'app-vm health'" in message and "is paused" in message


def test_a_monitor_without_notification_fails_alerting(drill, lab, lab_inventory):
    kuma = lab.kuma
    monitor_id = kuma.monitor_ids["app-ct health"]
    with kuma.api() as api:
        api.edit_monitor(monitor_id, notificationIDList=[])
    try:
        run = run_monitoring(drill, lab_inventory)
    finally:
        with kuma.api() as api:
            api.edit_monitor(monitor_id, notificationIDList=[kuma.notification_id])
    failed = {name for name, case in run.cases.items() if case["outcome"] == "failure"}
    assert failed == {"test_alerting[app-ct]"}, run.failed()
    message = run.cases["test_alerting[app-ct]"]["message"]
    assert "'app-ct health'" in message and "no notification attached" in message


def test_an_alert_later_than_the_window_fails_alerting(drill, lab_inventory):
    lab_inventory["monitoring"]["uptime_kuma"]["alert_window"] = {"min": "1m", "max": "3m"}
    run = run_monitoring(drill, lab_inventory)
    failed = {name for name, case in run.cases.items() if case["outcome"] == "failure"}
    assert failed == {f"test_alerting[{guest}]" for guest in GUESTS}, run.failed()
    message = run.cases["test_alerting[app-vm]"]["message"]
    # HTTP: 60 + 3 x 30 + 4 x 10 = 190 s > 180 s; port: 60 + 3 x 30 + 4 x 5 = 170 s fits
    assert "'app-vm health'" in message and "0:03:10" in message and "'app-vm web port'" not in message


def test_a_missed_heartbeat_fails_the_next_run(drill, lab, lab_inventory):
    with paused(lab, "restoredrill heartbeat"):
        first = run_monitoring(drill, lab_inventory)            # its push is refused: the monitor is paused
    assert first.cases["test_harness_heartbeat[kuma]"]["outcome"] == "failure"
    assert "is paused" in first.cases["test_harness_heartbeat[kuma]"]["message"]
    second = run_monitoring(drill, lab_inventory)
    only_these_failed(second, "test_harness_heartbeat[kuma]")
    message = second.cases["test_harness_heartbeat[kuma]"]["message"]
    assert "'restoredrill heartbeat'" in message and "did not take it" in message and "404" in message


def test_a_wrong_password_fails_every_case_without_showing_it(drill, lab_inventory, tmp_path):
    wrong = "not-the-kuma-password-5d1c"
    (tmp_path / "wrong.pass").write_text(wrong)
    (tmp_path / "wrong.pass").chmod(0o600)      # check-inventory refuses a secret others can read
    lab_inventory["monitoring"]["uptime_kuma"]["password"] = f"file:{tmp_path / 'wrong.pass'}"
    run = drill(lab_inventory, "--select", "monitoring", "--no-preflight")
    assert run.code == 1
    outcomes = {case["outcome"] for name, case in run.cases.items()}
    assert outcomes == {"failure"}, run.failed()
    assert all("login failed" in case["message"] for case in run.cases.values())
    assert wrong not in run.stdout + run.stderr + "".join(c["message"] for c in run.cases.values())
    # with the preflight (the default): the login fails once, every monitoring case is blocked by it
    preflight = run_monitoring(drill, lab_inventory)
    blocked_by_preflight(preflight, "kuma", [n for n in preflight.cases if n != "preflight[kuma]"], "login failed")
    assert wrong not in preflight.stdout + preflight.stderr + "".join(c["message"] for c in preflight.cases.values())
