"""The lab's Uptime Kuma is the real server: its monitors, stand-ins, push URL and secrets,
read back through Kuma's own API. One Kuma for the module; the stop test runs last."""
from __future__ import annotations

import json
import socket
import stat
import time
import urllib.request
from pathlib import Path

import pytest

from restoredrill.clients.kuma import beats_of
from restoredrill.lab.kuma import PUSH_MONITOR, LabKuma
from restoredrill.secrets import SecretRef

pytestmark = pytest.mark.integration

NET = "127.0.99"      # outside the labs' automatic choice (127.0.10 to 127.0.89): a session lab may run
NOTIFIED = "notified"
EXPECTED = {   # name: (type, target, notification)
    "opnsense web": ("http", "http://127.0.99.100:8080/", NOTIFIED),
    "app-vm web port": ("port", ("127.0.99.110", 8080), NOTIFIED),
    "app-vm health": ("http", "http://127.0.99.110:8080/health", NOTIFIED),
    "app-ct web port": ("port", ("127.0.99.120", 8080), NOTIFIED),
    "app-ct health": ("http", "http://127.0.99.120:8080/health", NOTIFIED),
    "old printer": ("http", "http://127.0.99.200:8080/", None),
    PUSH_MONITOR: ("push", None, NOTIFIED),
}


@pytest.fixture(scope="module")
def kuma(tmp_path_factory):
    with LabKuma(tmp_path_factory.mktemp("lab-kuma") / "kuma", net=NET) as server:
        yield server


def test_the_real_server_answers_with_its_version(kuma):
    assert kuma.version == "2.0.0-dev.0"
    with kuma.api() as api:
        assert api.info()["version"] == "2.0.0-dev.0"


def test_monitors_have_the_declared_targets_and_settings(kuma):
    with kuma.api() as api:
        monitors = {m["name"]: m for m in api.get_monitors()}
    assert set(monitors) == set(EXPECTED)
    assert {name: monitors[name]["id"] for name in EXPECTED} == kuma.monitor_ids
    for name, (kind, target, notification) in EXPECTED.items():
        monitor = monitors[name]
        assert str(monitor["type"].value) == kind, name
        if kind == "http":
            assert monitor["url"] == target, name
        elif kind == "port":
            assert (monitor["hostname"], monitor["port"]) == target, name
        push = kind == "push"
        assert monitor["active"] is True, name
        assert monitor["interval"] == (90000 if push else 60), name
        assert monitor["retryInterval"] == 30, name
        assert monitor["maxretries"] == (0 if push else 3), name
        assert monitor["timeout"] == 10, name
        expected_ids = [kuma.notification_id] if notification == NOTIFIED else []
        assert monitor["notificationIDList"] == expected_ids, name


def test_the_notification_is_the_lab_mail(kuma):
    with kuma.api() as api:
        notifications = api.get_notifications()
    assert [(n["id"], n["name"]) for n in notifications] == [(kuma.notification_id, "lab mail")]
    config = notifications[0]
    assert (config["smtpHost"], config["smtpPort"]) == ("127.0.0.1", 2525)
    assert (config["smtpFrom"], config["smtpTo"]) == ("kuma@lab.invalid", "operator@lab.invalid")


def test_every_watched_service_is_up(kuma):
    with kuma.api() as api:
        beats = api.get_heartbeats()
    for name, monitor_id in kuma.monitor_ids.items():
        if name != PUSH_MONITOR:
            assert any(int(b["status"]) == 1 for b in beats_of(beats, monitor_id)), name


def test_a_push_to_the_push_url_makes_the_heartbeat_monitor_up(kuma):
    assert stat.S_IMODE(kuma.push_url_file.stat().st_mode) == 0o600
    reference = kuma.inventory_fragment()["notifications"]["heartbeat_url"]
    push_url = SecretRef.parse(reference).resolve()        # as the harness reads it
    assert push_url.startswith(f"{kuma.url}/api/push/"), "push URL file does not hold the push URL"
    with urllib.request.urlopen(f"{push_url}?status=up&msg=OK", timeout=10) as response:
        assert json.loads(response.read()) == {"ok": True}
    monitor_id = kuma.monitor_ids[PUSH_MONITOR]
    with kuma.api() as api:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(int(b["status"]) == 1 for b in beats_of(api.get_heartbeats(), monitor_id)):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no UP beat on the push monitor after the push; log tail:\n{kuma.log_tail()}")


def test_fragments_reference_the_secret_files(kuma):
    fragment = kuma.inventory_fragment()
    assert fragment["monitoring"]["uptime_kuma"]["password"] == f"file:{kuma.password_file}"
    assert fragment["notifications"]["heartbeat_url"] == f"file:{kuma.push_url_file}"
    assert kuma.endpoints_fragment()["uptime_kuma"]["version"] == "2.0.0-dev.0"


def test_the_password_stays_secret(kuma):
    assert stat.S_IMODE(kuma.password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(kuma.password_file.parent.stat().st_mode) == 0o700
    password = kuma.password_file.read_text().strip()
    assert len(password) >= 24
    assert password not in kuma.log_file.read_text(errors="replace"), "password in kuma.log"
    assert password not in repr(kuma), "password in repr"
    token = kuma.push_url_file.read_text().strip().rsplit("/", 1)[1]
    assert token not in repr(kuma) and token not in json.dumps(kuma.inventory_fragment()), "push token leaked"
    assert token not in kuma.log_file.read_text(errors="replace"), "push token in kuma.log"


def _node_processes_with_data_dir(data_dir: Path) -> list[int]:
    wanted = f"DATA_DIR={data_dir}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_rate_limited_login_waits_for_kuma_instead_of_failing(kuma):
    """Kuma answers every login past 20 a minute "Too frequently, try again later."
    (server/rate-limiter.js). Spend the limit with raw logins, then the drill's client still
    logs in: it waits the limit out, as a drill run after the preflight's login must."""
    from uptime_kuma_api import UptimeKumaApi
    from restoredrill.clients.kuma import KumaClient

    password = kuma.password_file.read_text().strip()
    limited = False
    api = UptimeKumaApi(kuma.url, timeout=30)
    try:
        for _ in range(40):
            try:
                api.login(kuma.username, password)
            except Exception as exc:  # noqa: BLE001 - the library's own exception type
                assert "Too frequently" in str(exc), exc
                limited = True
                break
    finally:
        api.disconnect()
    assert limited, "40 logins in a row were never rate-limited: the test proves nothing"
    started = time.monotonic()
    with KumaClient(kuma.url, kuma.username, password) as client:
        assert client.view().monitors
    assert time.monotonic() - started > 1       # it really waited for the limiter


def wait_for_beat(client_api, monitor_id: int, status: int, after: int = 0) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        beats = beats_of(client_api.get_heartbeats(), monitor_id)
        if sum(1 for b in beats if int(b["status"]) == status) > after:
            return
        time.sleep(1)
    pytest.fail(f"no beat of status {status} on monitor {monitor_id} within 90 s")


def test_the_newest_beat_decides_a_monitors_status(kuma):
    """Issue 20 §5: a service up earlier and down now is DOWN for the drill: the status is
    the newest beat's, whatever order Kuma's list comes in, never an older one's."""
    from uptime_kuma_api import MonitorType

    from restoredrill.checks.monitoring import health_problems
    from restoredrill.clients.kuma import KumaClient
    service = socket.create_server(("127.0.0.1", 0))
    with kuma.api() as api:
        monitor_id = api.add_monitor(type=MonitorType.PORT, name="up then down", hostname="127.0.0.1",
                                     port=service.getsockname()[1], interval=20, retryInterval=20,
                                     maxretries=0)["monitorID"]
        try:
            wait_for_beat(api, monitor_id, 1)
            service.close()
            wait_for_beat(api, monitor_id, 0)
            with KumaClient(kuma.url, kuma.username, kuma.password_file.read_text().strip()) as client:
                [monitor] = [m for m in client.view().monitors if m.id == monitor_id]
                beats = client.beats(monitor_id)
            assert beats[0][1] == 1 and beats[-1][1] == 0, beats       # up earlier, down now
            assert monitor.status == 0 and monitor.last_beat == beats[-1][0]
            assert health_problems(monitor)[0].startswith(f"monitor 'up then down' (id {monitor_id}, port")
            assert "is DOWN now" in health_problems(monitor)[0]
        finally:
            service.close()
            api.delete_monitor(monitor_id)


def test_stop_ends_kuma_and_frees_its_port(kuma):   # last: the module's Kuma is gone after it
    data_dir = kuma.root / "data"
    assert _node_processes_with_data_dir(data_dir), "the running Kuma should be found by its DATA_DIR"
    port = kuma.port
    kuma.stop()
    assert _node_processes_with_data_dir(data_dir) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with socket.socket() as sock:      # SO_REUSEADDR as servers (node too) set it: TIME_WAIT is no owner
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    with pytest.raises(ConnectionRefusedError):      # the stand-ins are gone too
        socket.create_connection(("127.0.99.100", 8080), timeout=2).close()
