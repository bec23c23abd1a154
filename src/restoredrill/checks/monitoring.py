"""Monitoring coverage (issue 15): what Uptime Kuma must watch, and whether it does. Pure: no I/O.

A monitor is matched to what the inventory declares by its *target* (URL, or host and
port), never by its name. The time to alert follows Uptime Kuma 2.0.0-dev.0's
`server/model/monitor.js` (read in the installed package):

- a failing check while UP or PENDING with `retries < maxretries` gives PENDING and the
  next check after `retryInterval` seconds (`if (this.retryInterval > 0) beatInterval =
  this.retryInterval`, else the interval);
- only UP -> DOWN and PENDING -> DOWN notify (`isImportantForNotification`), so the
  notification goes out on the (maxretries + 1)-th failing check in a row;
- the next check is scheduled with `setTimeout(safeBeat, beatInterval * 1000)` after a
  check ends, so each check's own duration adds: for HTTP-style monitors at most
  `timeout` seconds (axios `timeout: this.timeout * 1000`), for `port` 5 s (tcp-ping's
  default `options.timeout || 5000` in util-server.js `tcping`), for `ping` 10 s
  (`deadline: 10`).

Worst case (the service stops just after a good check):
  interval + maxretries x retry + (maxretries + 1) x check
Best case (it stops just before a check, and every check fails at once):
  maxretries x retry
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from restoredrill.checks.errors import CheckFailed

URL_TYPES = {"http", "keyword", "json-query", "real-browser"}
CHECK_SECONDS = {"port": 5.0, "ping": 10.0}      # see the module docstring
STATUS = {0: "DOWN", 1: "UP", 2: "PENDING", 3: "MAINTENANCE"}
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Monitor:
    """One Kuma monitor as the drill reads it (the push token is never shown)."""
    id: int
    name: str
    type: str
    url: str | None = None
    hostname: str | None = None
    port: int | None = None
    interval: int = 60
    retry_interval: int = 0
    maxretries: int = 0
    timeout: float | None = None
    active: bool = True
    notifications: tuple[int, ...] = ()
    push_token: str | None = field(default=None, repr=False)
    status: int | None = None          # the newest beat's status, None without a beat
    message: str = ""                  # the newest beat's message (from Kuma, not from the service)
    last_beat: datetime | None = None

    @property
    def label(self) -> str:
        return f"monitor {self.name!r} (id {self.id}, {self.type}{', ' + self.target_text if self.target_text else ''})"

    @property
    def target_text(self) -> str:
        if self.type in URL_TYPES and self.url:
            return self.url
        if self.hostname:
            return f"{self.hostname}:{self.port}" if self.port else self.hostname
        return ""


# --- endpoints ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    """What must be monitored: a URL (scheme, host, port, path) or a host and port."""
    text: str
    host: str
    port: int | None
    scheme: str | None = None
    path: str | None = None

    @property
    def is_url(self) -> bool:
        return self.scheme is not None


def normal_host(host: str) -> str:
    host = host.strip("[]").lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def parse_endpoint(text: str) -> Endpoint:
    """``http(s)://host[:port]/path`` or ``host:port``; raises ValueError on anything else."""
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"{text!r} is not an http(s) URL with a host")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Endpoint(text, normal_host(parts.hostname), parts.port or DEFAULT_PORTS[parts.scheme],
                        parts.scheme, path)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port")
    return Endpoint(text, normal_host(host), int(port))


def monitor_endpoint(monitor: Monitor) -> Endpoint | None:
    """The target of a monitor (None for push, group and monitors without one)."""
    if monitor.type in URL_TYPES and monitor.url:
        try:
            return parse_endpoint(monitor.url)
        except ValueError:
            return None
    if monitor.hostname:
        return Endpoint(monitor.target_text, normal_host(monitor.hostname), monitor.port)
    return None


def covers(monitor: Monitor, wanted: Endpoint) -> bool:
    """Does the monitor watch ``wanted``? A URL needs a monitor of that URL; host:port is
    watched by a monitor of that host and port, or by one of a URL on that host and port."""
    target = monitor_endpoint(monitor)
    if target is None or target.host != wanted.host:
        return False
    if wanted.is_url:
        return target.is_url and (target.scheme, target.port, target.path) == (wanted.scheme, wanted.port,
                                                                                 wanted.path)
    return target.port == wanted.port


def watches_host(monitor: Monitor, host: str) -> bool:
    target = monitor_endpoint(monitor)
    return target is not None and target.host == normal_host(host)


# --- what the inventory declares --------------------------------------------------------

@dataclass(frozen=True)
class GuestWatch:
    """A guest, the host monitors reach it at, and the endpoints that must be watched."""
    guest: str
    host: str | None
    endpoints: tuple[Endpoint, ...]
    problems: tuple[str, ...] = ()


def with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    netloc = host if ":" not in host else f"[{host}]"
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def port_of(target: str) -> int | None:
    text = target.rsplit(":", 1)[-1].strip()
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def guest_watch(guest) -> GuestWatch:
    """What must be monitored for an inventory guest: its `monitored` list, or else its
    `http` and `port` health checks with `monitor_host` (default: its address) as host."""
    host = guest.monitor_host or (guest.address.split("/")[0] if guest.address else None)
    problems: list[str] = []
    texts: list[str] = []
    if guest.monitored is not None:
        texts = list(guest.monitored)
    elif host is None:
        problems.append(f"guest {guest.name} has neither monitor_host nor address, so its monitors cannot be "
                        f"matched: set guests[{guest.name}].monitor_host to the name or address Kuma reaches it at")
    else:
        for check in guest.health:
            if check.kind == "http":
                texts.append(with_host(check.target, host))
            elif check.kind == "port" and port_of(check.target) is not None:
                texts.append(f"{host}:{port_of(check.target)}")
    endpoints: list[Endpoint] = []
    for text in dict.fromkeys(texts):
        try:
            endpoints.append(parse_endpoint(text))
        except ValueError as exc:
            problems.append(f"guest {guest.name}: {exc}")
    return GuestWatch(guest.name, host, tuple(endpoints), tuple(problems))


def known_targets(inventory) -> list[Endpoint]:
    """Everything else the inventory names that a monitor may rightly watch (not drift):
    the PVE and PBS APIs, S3 endpoints, storage boxes, Kuma itself."""
    found: list[Endpoint] = []
    urls = []
    if inventory.proxmox.pve:
        urls.append(inventory.proxmox.pve.url)
    if inventory.proxmox.pbs:
        urls.append(inventory.proxmox.pbs.url)
    urls += [t.endpoint for t in inventory.offsite.s3]
    if inventory.monitoring.uptime_kuma:
        urls.append(inventory.monitoring.uptime_kuma.url)
    for url in filter(None, urls):
        try:
            found.append(parse_endpoint(url))
        except ValueError:
            continue
    for box in inventory.offsite.storage_boxes:
        found.append(Endpoint(f"{box.host}:{box.port}", normal_host(box.host), box.port))
    return found


# --- verdicts ----------------------------------------------------------------------------

def alert_seconds(monitor: Monitor) -> tuple[float, float]:
    """(fastest, slowest) seconds from a service going silent to Kuma's notification."""
    retry = monitor.retry_interval if monitor.retry_interval > 0 else monitor.interval
    if monitor.type in CHECK_SECONDS:
        check = CHECK_SECONDS[monitor.type]
    elif monitor.timeout and monitor.timeout > 0:
        check = float(monitor.timeout)
    else:
        check = float(monitor.interval)        # no timeout set: a check may hang for a whole interval
    retries = max(monitor.maxretries, 0)
    return retries * retry, monitor.interval + retries * retry + (retries + 1) * check


def seconds_text(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def coverage_problems(watch: GuestWatch, monitors: list[Monitor]) -> list[str]:
    """Each endpoint of the guest without a monitor, and a guest no monitor targets at all."""
    problems = list(watch.problems)
    for endpoint in watch.endpoints:
        if not any(covers(m, endpoint) for m in monitors):
            problems.append(f"{endpoint.text} has no monitor (matched by target: a "
                            f"{'URL monitor of exactly this URL' if endpoint.is_url else 'port or URL monitor of this host and port'})")
    if watch.host and not any(watches_host(m, watch.host) for m in monitors):
        problems.append(f"no monitor targets the guest's host {watch.host}")
    return problems


def monitors_of(watch: GuestWatch, monitors: list[Monitor]) -> list[Monitor]:
    """The monitors that watch one of the guest's endpoints or its host."""
    return [m for m in monitors if any(covers(m, e) for e in watch.endpoints)
            or (watch.host and watches_host(m, watch.host))]


def health_problems(monitor: Monitor) -> list[str]:
    if not monitor.active:
        return [f"{monitor.label} is paused: nothing watches it; resume it in Kuma"]
    if monitor.status is None:
        return [f"{monitor.label} has no heartbeat yet"]
    if monitor.status != 1:
        return [f"{monitor.label} is {STATUS.get(monitor.status, monitor.status)} now"
                + (f": {monitor.message}" if monitor.message else "")]
    return []


def alerting_problems(monitor: Monitor, window_min: timedelta, window_max: timedelta,
                      notification_names: dict[int, str]) -> list[str]:
    problems = []
    attached = [i for i in monitor.notifications if i in notification_names]
    if not attached:
        problems.append(f"{monitor.label} has no notification attached: an outage would alert nobody; "
                        "attach one in the monitor's settings")
    fastest, slowest = alert_seconds(monitor)
    timing = (f"interval {monitor.interval} s, retry interval {monitor.retry_interval or monitor.interval} s, "
              f"{monitor.maxretries} retries, timeout {monitor.timeout} s")
    if slowest > window_max.total_seconds():
        problems.append(f"{monitor.label} alerts up to {seconds_text(slowest)} after the service stops "
                        f"({timing}), later than alert_window.max {seconds_text(window_max.total_seconds())}: "
                        "shorten the interval, the retry interval or the retries")
    if fastest < window_min.total_seconds():
        problems.append(f"{monitor.label} may alert {seconds_text(fastest)} after the service stops ({timing}), "
                        f"sooner than alert_window.min {seconds_text(window_min.total_seconds())}: a restart "
                        "would page someone; raise the retries or the retry interval")
    return problems


def drift(monitors: list[Monitor], watches: list[GuestWatch], known: list[Endpoint]) -> list[Monitor]:
    """Monitors whose target matches nothing the inventory names (push and group monitors aside)."""
    hosts = {w.host for w in watches if w.host} | {e.host for w in watches for e in w.endpoints}
    hosts |= {e.host for e in known}
    strays = []
    for monitor in monitors:
        target = monitor_endpoint(monitor)
        if target is not None and target.host not in hosts:
            strays.append(monitor)
    return strays


def fail_if(problems: list[str], where: str, expected: str, hint: str = "") -> None:
    if problems:
        raise CheckFailed(where, expected, "; ".join(problems), hint)
