"""The lab's Uptime Kuma: the real server (npm build 2.0.0-dev.0) on loopback, with an admin
account, one SMTP notification and the monitors of the lab's services, all made through
Kuma's own socket.io API, and the "production stand-ins" those monitors watch.

Layout under its folder: ``data/`` (Kuma's DATA_DIR: SQLite database), ``kuma.log`` (its
stdout and stderr), ``secrets/kuma.pass`` and ``secrets/kuma-push.url`` (0600).

Installed by ``make install`` (scripts/install-deps.sh) into ``.kuma/`` of the checkout or
``$RESTOREDRILL_KUMA_DIR``. Manual equivalent::

    cd .kuma/node_modules/uptime-kuma && UPTIME_KUMA_DB_TYPE=sqlite UPTIME_KUMA_HOST=127.0.0.1 \\
        UPTIME_KUMA_PORT=3001 DATA_DIR=/some/dir/ node server/server.js

The stand-ins are tiny HTTP servers on 127.0.10.100/.110/.120/.200, port ``WEB_PORT``
(all of 127/8 is loopback on Linux): the guests' web services as production runs them.
"""
from __future__ import annotations

import atexit
import contextlib
import http.server
import json
import logging
import os
import secrets
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Iterator

from restoredrill.lab.lifecycle import StartStop
from restoredrill.clients.kuma import beats_of, login as kuma_login
from restoredrill.lab.dataset import KUMA_DB_FILE
from restoredrill.lab.guests.image import WEB_PORT
from restoredrill.lab.storagebox import free_port
from restoredrill.secrets import write_private

log = logging.getLogger("restoredrill.lab.kuma")

HOST = "127.0.0.1"
USERNAME = "drill-admin"
READY_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0
API_TIMEOUT = 20.0
MONITOR_SETTINGS = {"interval": 60, "retryInterval": 30, "maxretries": 3, "timeout": 10}
PUSH_MONITOR = "restoredrill heartbeat"
LAB_NET = "127.0.10"          # the stand-ins' first choice of /24 (all of 127/8 is loopback)
NETS_TRIED = 80               # a busy /24 (another lab on this machine) moves to 127.0.11, ...
STAND_IN_SUFFIXES = (100, 110, 120, 200)
INSTALL_HINT = "run `make install` (scripts/install-deps.sh installs Uptime Kuma into .kuma/)"

_running: "weakref.WeakSet[LabKuma]" = weakref.WeakSet()


class KumaLabError(RuntimeError):
    """The lab's Kuma could not be found, started or set up; never holds a secret."""


def find_kuma_app() -> Path:
    """The installed ``uptime-kuma`` package folder: $RESTOREDRILL_KUMA_DIR, the checkout's
    ``.kuma/`` (editable install), else ``./.kuma``."""
    candidates = []
    if os.environ.get("RESTOREDRILL_KUMA_DIR"):
        candidates.append(Path(os.environ["RESTOREDRILL_KUMA_DIR"]))
    candidates += [Path(__file__).resolve().parents[3] / ".kuma", Path.cwd() / ".kuma"]
    for base in candidates:
        app = base / "node_modules" / "uptime-kuma"
        if (app / "server" / "server.js").is_file():
            return app
    raise KumaLabError(f"Uptime Kuma is not installed (looked in {', '.join(map(str, candidates))}); "
                       f"{INSTALL_HINT}")


def lab_monitors(notification_id: int, net: str = LAB_NET) -> list[dict]:
    """The monitors the lab creates: keyword arguments of ``UptimeKumaApi.add_monitor``."""
    from uptime_kuma_api import MonitorType

    def http(name: str, url: str, notify: bool = True) -> dict:
        return {"type": MonitorType.HTTP, "name": name, "url": url, **MONITOR_SETTINGS,
                "notificationIDList": [notification_id] if notify else []}

    def port(name: str, host: str) -> dict:
        return {"type": MonitorType.PORT, "name": name, "hostname": host, "port": WEB_PORT,
                **MONITOR_SETTINGS, "notificationIDList": [notification_id]}

    return [
        http("opnsense web", f"http://{net}.100:{WEB_PORT}/"),
        port("app-vm web port", f"{net}.110"),
        http("app-vm health", f"http://{net}.110:{WEB_PORT}/health"),
        port("app-ct web port", f"{net}.120"),
        http("app-ct health", f"http://{net}.120:{WEB_PORT}/health"),
        http("old printer", f"http://{net}.200:{WEB_PORT}/", notify=False),   # drift: no inventory match
        {"type": MonitorType.PUSH, "name": PUSH_MONITOR, **MONITOR_SETTINGS, "interval": 90000,
         "maxretries": 0, "notificationIDList": [notification_id]},
    ]


class _HealthyHandler(http.server.BaseHTTPRequestHandler):
    body = json.dumps({"status": "healthy"}).encode()

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if with_body:
            self.wfile.write(self.body)

    def log_message(self, *args) -> None:   # Kuma polls every minute: keep stderr quiet
        pass


def start_stand_in(host: str, port: int = WEB_PORT) -> http.server.ThreadingHTTPServer:
    """One production stand-in (``GET``/``HEAD`` any path: 200 ``{"status": "healthy"}``)."""
    try:
        server = http.server.ThreadingHTTPServer((host, port), _HealthyHandler)
    except OSError as exc:
        raise KumaLabError(f"cannot listen on {host}:{port} for the lab's production stand-in "
                           f"({exc.strerror}); stop what holds that address (another lab?)") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"stand-in {host}", daemon=True).start()
    return server


class LabKuma(StartStop):
    """One real Uptime Kuma on 127.0.0.1 with the lab's monitors; ``start()`` returns self."""

    def __init__(self, root: Path, net: str | None = None):
        self.root = Path(root).resolve()
        self.net = net
        self.port = 0
        self.url = ""
        self.username = USERNAME
        self.password_file = self.root / "secrets" / "kuma.pass"
        self.push_url_file = self.root / "secrets" / "kuma-push.url"
        self.log_file = self.root / "kuma.log"
        self.version = ""
        self.monitor_ids: dict[str, int] = {}
        self.notification_id = 0
        self.ready_seconds = 0.0
        self._process: subprocess.Popen | None = None
        self._log_handle = None
        self._stand_ins: list[http.server.ThreadingHTTPServer] = []

    def __repr__(self) -> str:
        return f"LabKuma({self.url or 'not started'})"

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> "LabKuma":
        started = time.monotonic()
        app = find_kuma_app()
        self._stand_ins = self._start_stand_ins()
        self._start_server(app)
        self.ready_seconds = time.monotonic() - started
        self._set_up()
        self._wait_for_monitors_up()
        log.info("Uptime Kuma %s ready at %s after %.1f s (setup included: %.1f s)", self.version, self.url,
                 self.ready_seconds, time.monotonic() - started)
        return self

    def stop(self) -> None:
        """SIGTERM to Kuma's process group, SIGKILL after 10 s; then the stand-ins."""
        _running.discard(self)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(STOP_GRACE_SECONDS)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        for server in self._stand_ins:
            server.shutdown()
            server.server_close()
        self._stand_ins = []

    def _start_stand_ins(self) -> list[http.server.ThreadingHTTPServer]:
        """The stand-ins on ``net``, or (net None) on the first /24 from 127.0.10 whose
        addresses are free, so that several labs (a test session's, `lab serve`) coexist."""
        first = int(LAB_NET.rsplit(".", 1)[1])
        nets = [self.net] if self.net else [f"127.0.{n}" for n in range(first, first + NETS_TRIED)]
        problem = None
        for net in nets:
            started: list[http.server.ThreadingHTTPServer] = []
            try:
                for suffix in STAND_IN_SUFFIXES:
                    started.append(start_stand_in(f"{net}.{suffix}"))
            except KumaLabError as exc:
                problem = exc
                for server in started:
                    server.shutdown()
                    server.server_close()
                continue
            self.net = net
            return started
        raise problem

    def _start_server(self, app: Path) -> None:
        data_dir = self.root / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        os.chmod(data_dir, 0o700)
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        env = {**os.environ, "UPTIME_KUMA_DB_TYPE": "sqlite", "UPTIME_KUMA_HOST": HOST,
               "UPTIME_KUMA_PORT": str(self.port), "DATA_DIR": f"{data_dir}/"}
        self._log_handle = open(self.log_file, "ab")
        try:
            self._process = subprocess.Popen(["node", "server/server.js"], cwd=app, env=env,
                                             stdin=subprocess.DEVNULL, stdout=self._log_handle,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        except FileNotFoundError:
            raise KumaLabError(f"node is not on PATH; {INSTALL_HINT}") from None
        _running.add(self)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        """Poll ``GET /api/entry-page`` until it answers and no longer asks for database setup."""
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise KumaLabError(f"Uptime Kuma exited with code {self._process.returncode} while starting; "
                                   f"log {self.log_file}:\n{self.log_tail()}")
            page = self._entry_page()
            if page is not None and page.get("type") != "setup-database":
                return
            time.sleep(0.3)
        raise KumaLabError(f"Uptime Kuma did not answer on {self.url} within {READY_SECONDS:.0f} s; "
                           f"log {self.log_file}:\n{self.log_tail()}")

    def _entry_page(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.url}/api/entry-page", timeout=2) as response:
                return json.loads(response.read())
        except (OSError, ValueError):
            return None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of kuma.log (Kuma never logs the admin password or push tokens)."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- objects made through Kuma's API -------------------------------------------------
    def _set_up(self) -> None:
        """Admin account, the "lab mail" notification, the monitors, the push URL file."""
        from uptime_kuma_api import NotificationType, UptimeKumaApi

        (self.root / "secrets").mkdir(exist_ok=True)
        os.chmod(self.root / "secrets", 0o700)
        write_private(self.password_file, secrets.token_urlsafe(24))
        api = UptimeKumaApi(self.url, timeout=API_TIMEOUT)
        try:
            if not api.need_setup():
                raise KumaLabError(f"Uptime Kuma at {self.url} already has an admin account; "
                                   f"its data folder {self.root / 'data'} was not fresh")
            api.setup(self.username, self._password())
            kuma_login(api, self.username, self._password())
            self.version = str(api.info().get("version", ""))
            self.notification_id = api.add_notification(
                name="lab mail", type=NotificationType.SMTP, isDefault=False, smtpHost="127.0.0.1",
                smtpPort=2525, smtpFrom="kuma@lab.invalid", smtpTo="operator@lab.invalid",
                smtpSecure=False)["id"]
            for monitor in lab_monitors(self.notification_id, self.net):
                self.monitor_ids[monitor["name"]] = api.add_monitor(**monitor)["monitorID"]
            token = api.get_monitor(self.monitor_ids[PUSH_MONITOR])["pushToken"]
            write_private(self.push_url_file, f"{self.url}/api/push/{token}")
        finally:
            api.disconnect()

    def _password(self) -> str:
        return self.password_file.read_text().strip()

    @contextlib.contextmanager
    def api(self) -> Iterator:
        """A logged-in ``UptimeKumaApi`` (disconnected on exit), for fault tests."""
        from uptime_kuma_api import UptimeKumaApi

        api = UptimeKumaApi(self.url, timeout=API_TIMEOUT)
        try:
            kuma_login(api, self.username, self._password())
            yield api
        finally:
            api.disconnect()

    def _wait_for_monitors_up(self) -> None:
        """Until every active monitor but the push one has an UP beat (a drill right after sees them up).

        Reads the heartbeat list Kuma pushes over socket.io after login (and each new beat
        after it): ``getMonitorBeats`` of 2.0.0-dev.0 sends MariaDB SQL to SQLite and fails."""
        waiting = {name: mid for name, mid in self.monitor_ids.items() if name != PUSH_MONITOR}
        deadline = time.monotonic() + READY_SECONDS
        with self.api() as api:
            while waiting and time.monotonic() < deadline:
                beats = api.get_heartbeats()
                for name, mid in list(waiting.items()):
                    if any(int(beat["status"]) == 1 for beat in beats_of(beats, mid)):
                        del waiting[name]
                if waiting:
                    time.sleep(1)
        if waiting:
            raise KumaLabError(f"Uptime Kuma monitors not up within {READY_SECONDS:.0f} s: "
                               f"{', '.join(sorted(waiting))}; log {self.log_file}:\n{self.log_tail()}")

    def backup_database(self, target: Path) -> None:
        """A consistent copy of Kuma's SQLite database (the SQLite online backup API, safe while
        Kuma writes), as a file-level backup of its data folder would hold it."""
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        source = sqlite3.connect(f"file:{self.root / 'data' / 'kuma.db'}?mode=ro", uri=True)
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()

    # --- descriptions --------------------------------------------------------------------
    def inventory_fragment(self) -> dict:
        return {
            "monitoring": {"uptime_kuma": {
                "url": self.url, "username": self.username, "password": f"file:{self.password_file}",
                "alert_window": {"min": "1m", "max": "10m"}, "drift": "notice",
                "data": {"borg": "app-local", "path": KUMA_DB_FILE}}},
            "notifications": {"heartbeat_url": f"file:{self.push_url_file}"},
            "guest_monitoring": {
                "opnsense": {"monitor_host": f"{self.net}.100", "monitored": [f"http://{self.net}.100:{WEB_PORT}/"]},
                "app-vm": {"monitor_host": f"{self.net}.110"},
                "app-ct": {"monitor_host": f"{self.net}.120"}},
        }

    def endpoints_fragment(self) -> dict:
        return {"uptime_kuma": {"url": self.url, "username": self.username,
                                "password_file": str(self.password_file),
                                "push_url_file": str(self.push_url_file), "version": self.version}}


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)   # start_new_session: its pid is the group id


@atexit.register
def _stop_running_kumas() -> None:
    for kuma in list(_running):
        kuma.stop()
