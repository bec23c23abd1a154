"""Read-only client of Uptime Kuma (issue 15), over Kuma's own socket.io API.

Kuma has no REST API for monitors: `/metrics` lists only *active* monitors and none of
their retry settings or notifications, so a paused monitor and a missing one look the
same there. Everything the drill needs (interval, retryInterval, maxretries, timeout,
active, the notification list, the newest beat) comes from the socket.io API after a
login. We use PyPI's `uptime-kuma-api-ng` (import name `uptime_kuma_api`), the maintained
fork of `uptime-kuma-api` that speaks Kuma 2.x: the original 1.2.1 targets Kuma 1.23.

Only reading calls are made here (login, the lists Kuma sends after it, getMonitorBeats,
version); nothing is created, changed, paused or deleted. The password is resolved late,
used once for the login and never kept in a message or repr. TLS is verified by default
(the system's CAs or `ca_file`), and no proxy from the environment is used.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone

from restoredrill.checks.monitoring import Monitor
from restoredrill.notify import scrub



class KumaError(RuntimeError):
    """Kuma could not be read; the message names the URL and the cause, never the password."""


@dataclass(frozen=True)
class KumaView:
    """What the drill reads from Kuma once per run."""
    url: str
    version: str
    monitors: list[Monitor]
    notifications: dict[int, str]        # id -> name


def parse_time(text) -> datetime | None:
    """Kuma stores beat times as UTC text ``YYYY-MM-DD HH:MM:SS.mmm`` (dayjs.utc() in monitor.js)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace(" ", "T")).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def as_int(value, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


MAX_TEXT = 200        # Kuma's answers are bounded before they reach a message


def text_of(value, limit: int = MAX_TEXT) -> str:
    """A field of Kuma's answer as one printable line of at most ``limit`` characters."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def to_monitor(raw: dict, beat: dict | None) -> Monitor:
    """A monitor from Kuma's answer: missing or mistyped fields give defaults, never a crash."""
    if not isinstance(beat, dict):
        beat = None
    ids = raw.get("notificationIDList")
    ids = ids if isinstance(ids, (list, tuple, dict)) else []       # Kuma 1.x sends {id: true}
    status = beat.get("status") if beat else None
    return Monitor(
        id=as_int(raw.get("id")), name=text_of(raw.get("name"), 80),
        type=text_of(getattr(raw.get("type"), "value", raw.get("type")), 40),
        url=text_of(raw.get("url"), 300) or None, hostname=text_of(raw.get("hostname"), 255) or None,
        port=as_int(raw.get("port"), 0) or None, interval=as_int(raw.get("interval"), 60),
        retry_interval=as_int(raw.get("retryInterval"), 0), maxretries=as_int(raw.get("maxretries"), 0),
        timeout=float(raw["timeout"]) if type(raw.get("timeout")) in (int, float) else None,
        active=raw.get("active") is True or raw.get("active") == 1, notifications=tuple(sorted(as_int(i) for i in ids)),
        push_token=raw.get("pushToken") if isinstance(raw.get("pushToken"), str) else None,
        status=None if status is None else as_int(getattr(status, "value", status)),
        message=text_of((beat or {}).get("msg")), last_beat=parse_time((beat or {}).get("time")))


RATE_LIMITED = "Too frequently"      # Kuma's rate limiters' errorMessage (server/rate-limiter.js)
RATE_LIMIT_WAIT = 75                 # seconds: the login limiter refills within a minute
RATE_LIMIT_PAUSE = 3


def login(api, username: str, password: str) -> None:
    """Log in, waiting out Kuma's login rate limit: 20 logins a minute for all clients
    together (Kuma's ``server/rate-limiter.js``, ``loginRateLimiter``), answered "Too
    frequently, try again later." at once. Another tool's logins (or the preflight's just
    before) must not fail a drill, so a rate-limited login is tried again for up to
    ``RATE_LIMIT_WAIT`` seconds; any other error is raised at once."""
    deadline = time.monotonic() + RATE_LIMIT_WAIT
    while True:
        try:
            api.login(username, password)
            return
        except Exception as exc:  # noqa: BLE001 - the library raises its own exception type
            if RATE_LIMITED not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(RATE_LIMIT_PAUSE)

class KumaClient:
    def __init__(self, url: str, username: str, password: str, *, verify_tls: bool = True,
                 ca_file: str | None = None, timeout: float = 30):
        self.url, self.username = url.rstrip("/"), username
        self._password = password
        self.verify_tls, self.ca_file, self.timeout = verify_tls, ca_file, timeout
        self._api = None

    def __repr__(self) -> str:
        return f"KumaClient(url={self.url!r}, username={self.username!r})"

    def _fail(self, what: str, exc: BaseException) -> KumaError:
        text = scrub(f"{exc.__class__.__name__}: {exc}", self._password)[:300]
        return KumaError(f"Uptime Kuma at {self.url}: {what} failed ({text}); check monitoring.uptime_kuma "
                         "(url, username, password, TLS) and that Kuma is running")

    def __enter__(self) -> "KumaClient":
        import requests
        from uptime_kuma_api import UptimeKumaApi
        if not self.verify_tls:
            warnings.warn(f"TLS verification of Uptime Kuma at {self.url} is OFF (verify_tls: false)",
                          stacklevel=2)
        session = requests.Session()
        session.trust_env = False            # no proxy, no .netrc from the environment
        session.verify = (self.ca_file or True) if self.verify_tls else False

        class Api(UptimeKumaApi):
            def connect(self) -> None:       # the constructor connects: give it our session first
                self.sio.eio.http = session
                super().connect()

        api = None
        try:
            api = Api(self.url, timeout=self.timeout, ssl_verify=self.verify_tls)
            login(api, self.username, self._password)
        except Exception as exc:  # noqa: BLE001 - socket.io, HTTP and Kuma's own errors alike
            if api is not None:
                try:
                    api.disconnect()
                except Exception:  # noqa: BLE001
                    pass
            raise self._fail("login", exc) from None
        self._api = api
        return self

    def __exit__(self, *exc) -> None:
        if self._api is not None:
            try:
                self._api.disconnect()
            finally:
                self._api = None

    def view(self) -> KumaView:
        """Monitors, notifications and each monitor's newest beat. Beats come from the list
        Kuma sends after the login (its newest 100 per monitor): `getMonitorBeats` fails on
        Kuma 2.0.0-dev.0 with SQLite (it sends MariaDB's `DATE_ADD(NOW(), INTERVAL ...)`)."""
        api = self._api
        try:
            version = str(api.info().get("version") or "unknown")
            raw_monitors = api.get_monitors()
            notifications = {as_int(n.get("id")): str(n.get("name") or "") for n in api.get_notifications()}
            heartbeats = api.get_heartbeats()
        except Exception as exc:  # noqa: BLE001
            raise self._fail("reading monitors", exc) from None
        self._beats = {as_int(raw.get("id")): beats_of(heartbeats, as_int(raw.get("id"))) for raw in raw_monitors}
        monitors = [to_monitor(raw, max(self._beats[as_int(raw.get("id"))], key=lambda b: str(b.get("time") or ""),
                                        default=None)) for raw in raw_monitors]
        return KumaView(self.url, version, monitors, notifications)

    def beats(self, monitor_id: int) -> list[tuple[datetime | None, int | None]]:
        """(time, status) of the monitor's beats read by `view`, oldest first."""
        found = [(parse_time(b.get("time")), as_int(getattr(b.get("status"), "value", b.get("status")), -1))
                 for b in getattr(self, "_beats", {}).get(monitor_id, [])]
        return sorted(found, key=lambda pair: pair[0] or datetime.min.replace(tzinfo=timezone.utc))


def beats_of(heartbeats: dict, monitor_id: int) -> list[dict]:
    """One monitor's beats from ``UptimeKumaApi.get_heartbeats()``, flattened: when a live
    ``heartbeat`` event comes before the login's ``heartbeatList`` for that monitor, the
    library appends the whole list as one element (uptime-kuma-api-ng 1.10.0)."""
    flat: list[dict] = []
    for item in heartbeats.get(monitor_id, []):
        flat.extend(item if isinstance(item, list) else [item])
    return [beat for beat in flat if isinstance(beat, dict)]
