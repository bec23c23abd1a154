"""checks/monitoring.py: matching monitors by target, the time to alert, and the verdicts."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from restoredrill.checks import monitoring as mon
from restoredrill.checks.errors import CheckFailed
from restoredrill.clients.kuma import beats_of, parse_time, to_monitor
from restoredrill.inventory.model import Guest, Inventory

MAIL = {1: "mail"}


def http(name, url, **kw):
    return mon.Monitor(id=kw.pop("id", 1), name=name, type="http", url=url, **{"notifications": (1,), "status": 1,
                                                                                 **kw})


def port(name, host, number, **kw):
    return mon.Monitor(id=kw.pop("id", 2), name=name, type="port", hostname=host, port=number,
                       **{"notifications": (1,), "status": 1, **kw})


def guest(**kw):
    base = {"name": "app", "vmid": 110, "type": "qemu", "strategy": "pbs"}
    return Guest.model_validate({**base, **kw})


# --- endpoints and matching --------------------------------------------------------------

def test_endpoints_parse_urls_with_default_ports_and_host_port():
    e = mon.parse_endpoint("HTTPS://App.LAN/health")
    assert (e.scheme, e.host, e.port, e.path) == ("https", "app.lan", 443, "/health")
    assert mon.parse_endpoint("http://10.0.0.5:8080").path == "/"
    assert mon.parse_endpoint("[fd00::1]:53") == mon.Endpoint("[fd00::1]:53", "fd00::1", 53)
    for bad in ("ftp://x/", "app.lan", "app.lan:0", "app.lan:70000", "http:///x"):
        with pytest.raises(ValueError):
            mon.parse_endpoint(bad)


def test_a_url_is_covered_only_by_a_monitor_of_that_url():
    wanted = mon.parse_endpoint("http://app.lan:8080/health")
    assert mon.covers(http("h", "http://APP.lan:8080/health"), wanted)
    assert not mon.covers(http("h", "http://app.lan:8080/"), wanted)           # another path
    assert not mon.covers(http("h", "https://app.lan:8080/health"), wanted)    # another scheme
    assert not mon.covers(port("p", "app.lan", 8080), wanted)                  # a port check is not the URL
    assert not mon.covers(http("h", "http://db.lan:8080/health"), wanted)      # another host, same name


def test_host_and_port_is_covered_by_a_port_monitor_or_a_url_on_it():
    wanted = mon.parse_endpoint("app.lan:8080")
    assert mon.covers(port("p", "app.lan", 8080), wanted)
    assert mon.covers(http("h", "http://app.lan:8080/x"), wanted)
    assert not mon.covers(port("p", "app.lan", 8081), wanted)
    assert not mon.covers(http("h", "http://app.lan/x"), wanted)               # port 80
    assert not mon.covers(mon.Monitor(3, "hb", "push"), wanted)


def test_matching_is_by_target_never_by_name():
    watch = mon.guest_watch(guest(monitor_host="app.lan", monitored=["app.lan:5432"]))
    named_right = port("app 5432", "other.lan", 5432)
    assert mon.coverage_problems(watch, [named_right]) == [
        "app.lan:5432 has no monitor (matched by target: a port or URL monitor of this host and port)",
        "no monitor targets the guest's host app.lan"]
    assert mon.coverage_problems(watch, [port("anything", "app.lan", 5432)]) == []


def test_a_guest_watch_derives_endpoints_from_http_and_port_checks():
    checks = [{"name": "inside", "kind": "http", "target": "http://127.0.0.1:8080/health"},
              {"name": "runner", "kind": "http", "target": "http://10.199.0.110:8080/health", "from_runner": True},
              {"name": "web", "kind": "port", "target": "8080"},
              {"name": "svc", "kind": "service", "target": "nginx"}]
    watch = mon.guest_watch(guest(monitor_host="app.lan", health=checks))
    assert [e.text for e in watch.endpoints] == ["http://app.lan:8080/health", "app.lan:8080"]
    assert mon.guest_watch(guest(address="10.1.2.3/24", health=checks[2:3])).host == "10.1.2.3"
    listed = mon.guest_watch(guest(monitor_host="app.lan", health=checks, monitored=["https://app.lan/"]))
    assert [e.text for e in listed.endpoints] == ["https://app.lan/"]
    nowhere = mon.guest_watch(guest(health=checks))
    assert nowhere.host is None and "monitor_host" in nowhere.problems[0]


def test_with_host_keeps_scheme_port_path_and_query_and_brackets_ipv6():
    assert mon.with_host("http://127.0.0.1:8080/a?b=1", "app.lan") == "http://app.lan:8080/a?b=1"
    assert mon.with_host("https://x/", "fd00::5") == "https://[fd00::5]/"


def test_the_inventory_refuses_a_bad_monitored_endpoint_and_clear_http_to_a_remote_kuma():
    with pytest.raises(ValueError, match="must be an http"):
        guest(monitored=["app.lan"])
    base = {"site": {"name": "s"}}
    kuma = {"url": "http://kuma.lan:3001", "username": "u", "password": "env:P"}
    with pytest.raises(ValueError, match="insecure_http"):
        Inventory.model_validate({**base, "monitoring": {"uptime_kuma": kuma}})
    Inventory.model_validate({**base, "monitoring": {"uptime_kuma": {**kuma, "url": "http://127.0.0.1:3001"}}})
    with pytest.raises(ValueError, match="longer than alert_window.max"):
        Inventory.model_validate({**base, "monitoring": {"uptime_kuma": {
            **kuma, "url": "https://kuma.lan", "alert_window": {"min": "10m", "max": "2m"}}}})


# --- time to alert (Kuma 2.0.0-dev.0 server/model/monitor.js) ------------------------------

def test_time_to_alert_follows_kumas_retry_rules():
    # interval + maxretries x retryInterval + (maxretries + 1) x timeout; fastest maxretries x retry
    assert mon.alert_seconds(http("h", "http://a/", interval=60, retry_interval=30, maxretries=3,
                                  timeout=10)) == (90, 190)
    # retryInterval 0: the interval is used between retries (`if (this.retryInterval > 0)`)
    assert mon.alert_seconds(http("h", "http://a/", interval=60, retry_interval=0, maxretries=2,
                                  timeout=48)) == (120, 60 + 120 + 3 * 48)
    # port monitors ignore `timeout`: tcp-ping's own 5 s
    assert mon.alert_seconds(port("p", "a", 1, interval=60, retry_interval=30, maxretries=3,
                                  timeout=48)) == (90, 60 + 90 + 4 * 5)
    # no retries: the first failing check notifies
    assert mon.alert_seconds(http("h", "http://a/", interval=20, maxretries=0, timeout=16)) == (0, 36)
    # no timeout set: a check may hang a whole interval
    assert mon.alert_seconds(http("h", "http://a/", interval=60, maxretries=0, timeout=None)) == (0, 120)


def test_alerting_names_the_monitor_for_no_notification_too_late_and_too_soon():
    slow = http("slow web", "http://a/", interval=300, retry_interval=300, maxretries=5, timeout=48)
    (late,) = mon.alerting_problems(slow, timedelta(minutes=2), timedelta(minutes=10), MAIL)
    assert "'slow web'" in late and "later than alert_window.max 0:10:00" in late
    jumpy = http("jumpy", "http://a/", interval=60, maxretries=0, timeout=10)
    (soon,) = mon.alerting_problems(jumpy, timedelta(minutes=2), timedelta(minutes=10), MAIL)
    assert "sooner than alert_window.min 0:02:00" in soon and "'jumpy'" in soon
    silent = http("silent", "http://a/", interval=60, retry_interval=30, maxretries=3, timeout=10, notifications=())
    (nobody,) = mon.alerting_problems(silent, timedelta(minutes=1), timedelta(minutes=10), MAIL)
    assert "no notification attached" in nobody
    gone = http("gone", "http://a/", interval=60, retry_interval=30, maxretries=3, timeout=10, notifications=(9,))
    assert "no notification attached" in mon.alerting_problems(gone, timedelta(minutes=1),
                                                               timedelta(minutes=10), MAIL)[0]
    fine = http("fine", "http://a/", interval=60, retry_interval=30, maxretries=3, timeout=10)
    assert mon.alerting_problems(fine, timedelta(minutes=1), timedelta(minutes=10), MAIL) == []


def test_health_names_paused_down_and_beatless_monitors():
    assert "is paused" in mon.health_problems(http("w", "http://a/", active=False))[0]
    assert mon.health_problems(http("w", "http://a/", status=0, message="ECONNREFUSED"))[0].endswith(
        "is DOWN now: ECONNREFUSED")
    assert "PENDING" in mon.health_problems(http("w", "http://a/", status=2))[0]
    assert "no heartbeat yet" in mon.health_problems(http("w", "http://a/", status=None))[0]
    assert mon.health_problems(http("w", "http://a/")) == []


def test_drift_lists_monitors_whose_target_matches_nothing_known():
    watch = mon.guest_watch(guest(monitor_host="app.lan", monitored=["app.lan:22"]))
    known = [mon.parse_endpoint("https://pve.lan:8006")]
    monitors = [port("ssh", "app.lan", 22), http("pve", "https://pve.lan:8006/"), http("printer", "http://printer/"),
                mon.Monitor(9, "hb", "push")]
    assert [m.name for m in mon.drift(monitors, [watch], known)] == ["printer"]


def test_monitors_of_a_monitored_host_other_than_monitor_host_are_no_drift():
    """Issue 20 §5: ``monitored`` may name other hosts (a web front, a database) than
    ``monitor_host``: their monitors watch what the inventory names."""
    watch = mon.guest_watch(guest(monitor_host="app.lan", monitored=["http://web.lan/health", "db.lan:5432"]))
    monitors = [http("web", "http://web.lan/health"), port("db", "db.lan", 5432), port("host", "app.lan", 22),
                http("printer", "http://printer/")]
    assert [m.name for m in mon.drift(monitors, [watch], [])] == ["printer"]


@pytest.mark.parametrize("declared", [{"monitored": []}, {}])
def test_a_guest_no_monitor_watches_fails_coverage_even_with_no_endpoints(declared):
    """Issue 20 §5: nothing declared to watch but the host, and no monitor at all: the guest is
    not covered (its host has no monitor), never covered by default."""
    watch = mon.guest_watch(guest(monitor_host="app.lan", **declared))
    assert watch.endpoints == ()
    assert mon.coverage_problems(watch, []) == ["no monitor targets the guest's host app.lan"]
    assert mon.coverage_problems(watch, [http("other", "http://other.lan/")]) == [
        "no monitor targets the guest's host app.lan"]
    assert mon.monitors_of(watch, [http("other", "http://other.lan/")]) == []


def test_fail_if_raises_one_paragraph_naming_the_place():
    mon.fail_if([], "monitoring of guest app", "x")
    with pytest.raises(CheckFailed) as caught:
        mon.fail_if(["a", "b"], "monitoring of guest app", "every monitor active and up")
    assert str(caught.value) == "monitoring of guest app: expected every monitor active and up; found a; b"


# --- what the client makes of Kuma's answers -------------------------------------------------

def test_kuma_answers_become_monitors_and_beat_times_are_utc():
    raw = {"id": 4, "name": "web", "type": "port", "hostname": "a", "port": 8080, "interval": 60,
           "retryInterval": 30, "maxretries": 3, "timeout": 10, "active": True, "notificationIDList": [2, 1],
           "pushToken": None, "url": None}
    m = to_monitor(raw, {"status": 1, "msg": "", "time": "2026-12-05 11:49:32.130"})
    assert (m.type, m.port, m.notifications, m.status) == ("port", 8080, (1, 2), 1)
    assert m.last_beat == datetime(2026, 12, 5, 11, 49, 32, 130000, tzinfo=timezone.utc)
    assert to_monitor({**raw, "port": None, "timeout": None}, None).status is None
    assert parse_time("not a time") is None and parse_time(None) is None


def test_beats_of_flattens_the_list_the_library_appends_whole():
    live, stored = {"status": 1, "time": "b"}, {"status": 1, "time": "a"}
    assert beats_of({7: [live, [stored]]}, 7) == [live, stored]
    assert beats_of({}, 7) == []


def test_a_hostile_or_broken_kuma_answer_gives_bounded_defaults_never_a_crash():
    raw = {"id": "x", "name": "evil\x1b[2J" + "A" * 5000, "type": None, "url": ["not", "a", "url"],
           "hostname": "h\nforged line", "port": "9" * 5000, "interval": "soon", "retryInterval": None,
           "maxretries": -3, "timeout": "10", "active": "yes", "notificationIDList": "12",
           "pushToken": {"t": 1}}
    m = to_monitor(raw, {"status": "bad", "msg": "m" * 10_000, "time": 12})
    assert m.id == 0 and len(m.name) == 80 and m.name.startswith("evil?[2J") and "\x1b" not in m.name
    assert "\n" not in (m.hostname or "") and m.port is None and m.interval == 60
    assert m.timeout is None and m.active is False and m.notifications == () and m.push_token is None
    assert m.status == 0 and len(m.message) == 200 and m.last_beat is None
    assert mon.alert_seconds(m)[0] == 0                     # negative retries count as none
    assert to_monitor({}, "not a beat").status is None       # missing every field
    assert to_monitor({"notificationIDList": {"3": True}}, None).notifications == (3,)   # Kuma 1.x shape
