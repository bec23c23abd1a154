"""Heartbeat pings to a push monitor, so that monitoring notices when drills stop.

Two styles, chosen by the URL (``notifications.heartbeat_url``, a secret reference):

* Uptime Kuma push monitor (path ``/api/push/<token>``): ``GET <url>?status=up|down&msg=...&ping=``.
  Kuma has no "started" state, so no start ping is sent (an "up" at the start would
  hide a run that then hangs); the monitor's interval notices a missing run.
* healthchecks.io style (any other URL): ``<url>/start`` when the run starts, ``<url>``
  on success and ``<url>/fail`` on failure, each a POST whose body is a short report;
  healthchecks measures the run time between start and end and alerts on a missing ping.

The URL holds the monitor's token: it is resolved late, kept in memory only, and every
error says only ``scheme://host:port/***``.
"""
from __future__ import annotations

import hashlib
import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from restoredrill import __version__
from restoredrill.notify import mask_url, scrub

TIMEOUT_SECONDS = 10
ATTEMPTS = 2
MAX_KUMA_MESSAGE = 200          # it travels in the query string
MAX_BODY = 10_000               # healthchecks keeps the first 100 kB; a short report is enough


HEARTBEAT_SCOPE = "heartbeat"     # state.db rotations scope of the pushes recorded for the next run


def heartbeat_key(url: str) -> str:
    """Which push monitor a heartbeat went to, without keeping its token: a short hash."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]


class HeartbeatError(RuntimeError):
    """A ping could not be delivered; the message never holds the URL's path or query."""


@dataclass(repr=False)
class Heartbeat:
    url: str                 # holds the monitor's token: never in a repr, message or log
    timeout: float = TIMEOUT_SECONDS
    attempts: int = ATTEMPTS

    def __repr__(self) -> str:
        """Masked, so that a heartbeat in a traceback, a log line or pytest's assertion
        rewriting shows where it pings but never the token."""
        return f"Heartbeat(url={self.where!r}, timeout={self.timeout!r}, attempts={self.attempts!r})"

    __str__ = __repr__

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HeartbeatError(f"the heartbeat URL must be an http:// or https:// URL with a host "
                                 f"(got {mask_url(self.url)}); check notifications.heartbeat_url")

    @property
    def style(self) -> str:
        return "uptime-kuma" if "/api/push/" in urlsplit(self.url).path else "healthchecks"

    @property
    def where(self) -> str:
        return mask_url(self.url)

    def start(self) -> bool:
        """Tell the monitor a run started; False when the style has no such ping."""
        if self.style == "uptime-kuma":
            return False
        self._send("start", self._with_path("start"), b"")
        return True

    def success(self, message: str) -> None:
        if self.style == "uptime-kuma":
            self._send("success", self._kuma("up", message), None)
        else:
            self._send("success", self.url, message.encode("utf-8")[:MAX_BODY])

    def failure(self, message: str) -> None:
        if self.style == "uptime-kuma":
            self._send("failure", self._kuma("down", message), None)
        else:
            self._send("failure", self._with_path("fail"), message.encode("utf-8")[:MAX_BODY])

    # --- URLs ---------------------------------------------------------------------------
    def _kuma(self, status: str, message: str) -> str:
        parts = urlsplit(self.url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k not in ("status", "msg", "ping")]
        query += [("status", status), ("msg", one_line(message)[:MAX_KUMA_MESSAGE]), ("ping", "")]
        return urlunsplit(parts._replace(query=urlencode(query)))

    def _with_path(self, suffix: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + suffix))

    # --- the one HTTP call --------------------------------------------------------------
    def _send(self, what: str, url: str, body: bytes | None) -> None:
        """GET (body None) or POST ``url``; retried once; raises HeartbeatError (masked)."""
        method = "GET" if body is None else "POST"
        request = urllib.request.Request(url, data=body, method=method, headers={
            "User-Agent": f"restoredrill/{__version__}", "Content-Type": "text/plain; charset=utf-8"})
        problem = ""
        for attempt in range(self.attempts):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read(1024)
                return
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code} {exc.reason}"
                if exc.code < 500:
                    break
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
                problem = describe_error(exc, self.timeout)
            if attempt + 1 < self.attempts:
                time.sleep(1)
        raise HeartbeatError(scrub(f"heartbeat {what} ping ({self.style}, {method}) to {self.where} failed: "
                                   f"{problem}", self.url, url))


def describe_error(exc: BaseException, timeout: float) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        exc = reason
    elif reason:
        return str(reason)
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return f"no answer within {timeout:g} s"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text


def one_line(text: str) -> str:
    return " ".join(text.split())
