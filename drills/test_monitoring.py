"""Monitoring drills (issue 15): prove that Uptime Kuma watches everything the site runs.

Per guest: coverage (each declared endpoint and the guest's host has a monitor, matched by
target, never by name) -> active and up -> alerting (a notification attached, and the
time to alert inside `alert_window`). For Kuma as a whole: drift (monitors matching
nothing in the inventory) and the harness itself (restoredrill's push monitor exists, is
active and got the last run's push). Everything is read, nothing in Kuma is changed.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from restoredrill.checks import monitoring as mon
from restoredrill.checks.coverage import coverage_facts, nothing_checked
from restoredrill.fixtures.common import drill_step
from restoredrill.fixtures.monitoring import HEARTBEAT_SCOPE, heartbeat_key, push_token_of
from restoredrill.secrets import SecretError

pytestmark = pytest.mark.drill_kind("monitoring")

CLOCK_SLACK = timedelta(minutes=2)      # Kuma's clock against the runner's, for the push check


def fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


def require(problems: list[str], where: str, expected: str, hint: str = "") -> None:
    """Fail with one paragraph (expected, found, where) when there are problems."""
    with drill_step("monitoring"):
        mon.fail_if(problems, where, expected, hint)


def guest_monitors(kuma, guest):
    with drill_step(f"monitoring {guest.name}: reading Uptime Kuma"):
        view = kuma.view()
    watch = mon.guest_watch(guest)
    return view, watch, mon.monitors_of(watch, view.monitors)


def checked_monitors(kuma, guest, evidence, check: str):
    """The guest's monitors, their count recorded; none at all fails (nothing would be checked)."""
    evidence(drill=f"monitoring:{guest.name}", check=check)
    view, _, mine = guest_monitors(kuma, guest)
    evidence(**coverage_facts(len(mine), "monitors"))
    failure = nothing_checked(len(mine), "monitors", f"monitoring of guest {guest.name}",
                              cause="no monitor targets this guest (see test_coverage)")
    if failure is not None:
        fail(str(failure))
    return view, mine


def test_coverage(monitored_guest, kuma, evidence):
    """Every declared endpoint of the guest, and the guest's host, has a monitor that targets it."""
    guest = monitored_guest
    evidence(drill=f"monitoring:{guest.name}", check="coverage")
    view, watch, mine = guest_monitors(kuma, guest)
    evidence(kuma_version=view.version, monitor_host=watch.host or "",
             endpoints=", ".join(e.text for e in watch.endpoints), monitors=", ".join(m.label for m in mine))
    require(mon.coverage_problems(watch, view.monitors), f"monitoring of guest {guest.name}",
                "a monitor for every endpoint and for the guest's host",
                "add the missing monitors in Uptime Kuma (or correct monitor_host / monitored in the inventory)")
    evidence(**coverage_facts(len(watch.endpoints) + 1, "targets"))


def test_active_and_up(monitored_guest, kuma, evidence):
    """Each monitor of the guest is active (not paused) and up now."""
    guest = monitored_guest
    _, mine = checked_monitors(kuma, guest, evidence, "active-and-up")
    problems = [p for m in mine for p in mon.health_problems(m)]
    evidence(up=sum(1 for m in mine if m.active and m.status == 1))
    require(problems, f"monitoring of guest {guest.name}", "every monitor active and up")


def test_alerting(monitored_guest, kuma, evidence):
    """Each monitor of the guest notifies someone, inside the alert window."""
    guest = monitored_guest
    view, mine = checked_monitors(kuma, guest, evidence, "alerting")
    window = kuma.settings.alert_window
    timings = {m.name: mon.alert_seconds(m) for m in mine}
    evidence(alert_window=f"{mon.seconds_text(window.min.total_seconds())} to "
                          f"{mon.seconds_text(window.max.total_seconds())}",
             slowest_alert_seconds=max(slow for _, slow in timings.values()),
             fastest_alert_seconds=min(fast for fast, _ in timings.values()))
    problems = [p for m in mine for p in mon.alerting_problems(m, window.min, window.max, view.notifications)]
    require(problems, f"monitoring of guest {guest.name}", "a notification and a time to alert inside the window")


def test_drift(kuma_target, kuma, evidence):
    """Monitors whose target matches nothing in the inventory (a notice, or a failure with drift: fail)."""
    evidence(drill="monitoring:kuma", check="drift")
    with drill_step("monitoring: reading Uptime Kuma"):
        view = kuma.view()
    strays = mon.drift(view.monitors, kuma.watches(), mon.known_targets(kuma.loaded.model))
    evidence(monitors=len(view.monitors), drift=len(strays),
             drift_monitors="; ".join(m.label for m in strays) or "none")
    if strays and kuma.settings.drift == "fail":
        fail(f"Uptime Kuma at {view.url}: {len(strays)} monitor(s) match nothing in the inventory: "
             f"{'; '.join(m.label for m in strays)}. Add what they watch to the inventory, or delete them "
             "(monitoring.uptime_kuma.drift: notice lists them without failing)")


def test_harness_heartbeat(kuma_target, kuma, state, evidence):
    """restoredrill's own push monitor exists, is active and received the last run's push."""
    evidence(drill="monitoring:kuma", check="heartbeat")
    ref = kuma.loaded.model.notifications.heartbeat_url
    if ref is None:
        fail("notifications.heartbeat_url is not set, so nothing notices when drills stop running: create a "
             "Push monitor in Uptime Kuma and put its URL in a secret that heartbeat_url references "
             "(or set monitoring.uptime_kuma.heartbeat: false)")
    try:
        url = ref.resolve(base_dir=kuma.loaded.base_dir)
    except SecretError as exc:
        fail(f"notifications.heartbeat_url: {exc}")
    with drill_step("monitoring: reading Uptime Kuma"):
        view = kuma.view()
    token = push_token_of(url)
    monitor = next((m for m in view.monitors if m.type == "push" and token and m.push_token == token), None)
    if monitor is None:
        fail(f"Uptime Kuma at {view.url} has no push monitor with the token of notifications.heartbeat_url "
             "(matched by token, not by name): create one, or correct the URL the secret holds")
    evidence(monitor=monitor.label, interval_seconds=monitor.interval)
    if not monitor.active:
        fail(f"restoredrill's heartbeat {monitor.label} is paused: a run that stops pushing goes unnoticed; "
             "resume it in Kuma")
    last = state.get_json(HEARTBEAT_SCOPE, heartbeat_key(url))
    beats = [when for when, _ in kuma.beats.get(monitor.id, []) if when is not None]
    newest = max(beats, default=None)
    evidence(newest_beat=newest.isoformat() if newest else "none")
    if last is None:
        pytest.skip(f"no earlier run on record pushed to {monitor.label}: this run's push is checked next run")
    sent = datetime.fromisoformat(last["sent_at"])
    evidence(last_run=last.get("run_id", ""), last_push=last["sent_at"], last_push_delivered=last["delivered"])
    if not last["delivered"]:
        fail(f"the last run ({last.get('run_id')}) pushed to restoredrill's heartbeat {monitor.label} at "
             f"{last['sent_at']} and Kuma did not take it: {last.get('problem') or 'delivery failed'}. "
             "Kuma then never learns that drills ran; check that the monitor is active and the URL current")
    if not any(when >= sent - CLOCK_SLACK for when in beats):
        fail(f"restoredrill's heartbeat {monitor.label} shows no beat since the last run's push at "
             f"{last['sent_at']} (newest beat: {newest.isoformat() if newest else 'none'}): Kuma did not record it")
