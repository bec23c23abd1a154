"""The one choke point for PVE and PBS API calls: TLS pinning, timing and counting of
every call, quiet proxmoxer logging, and errors that name the call and the guest.

TLS: with a fingerprint the certificate's SHA-256 must match (as PBS and the PVE
storage plugin pin) before the token is sent; without one the system CA store is
used; ``verify_tls: false`` turns checks off and warns loudly on every connection.

Answers are untrusted input. Every answer must be the JSON object ``{"data": ...}`` that
PVE and PBS send (pve-http-server ``src/PVE/APIServer/Formatter/Standard.pm``, its 'json'
formatter; proxmox-rest-server ``src/formatter.rs``, ``JsonFormatter::format_data``), else
the call ends in an :class:`ApiError` naming it; the clients
then read what they need through the typed accessors at the end of this file. Text from
the server reaches a message only through :func:`clip` (bounded, control characters
escaped, the token secret never quoted).

Retries (see :data:`TRANSIENT_STATUSES`): a GET is tried again, a few times with a growing
pause (:class:`~restoredrill.waiting.RetryPolicy`), after a connection reset, a timeout or
a transient 5xx; never after a 4xx or a 500. A POST/PUT/DELETE is never sent twice: after
a reset or a transient 5xx the error says the request may have been applied, so the caller
reads the state back and decides (a restore sent again would leave a second scratch guest).
"""
from __future__ import annotations

import json
import logging
import re
import reprlib
import threading
import time
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from restoredrill.waiting import RetriesExhausted, RetryPolicy, retry_transient

log = logging.getLogger("restoredrill.proxmox")
for noisy in ("proxmoxer", "proxmoxer.core", "proxmoxer.backends.https", "urllib3.connectionpool"):
    logging.getLogger(noisy).setLevel(logging.WARNING)   # proxmoxer logs POST bodies at INFO


class ApiError(RuntimeError):
    """An API call failed; the message names the call, the guest and the cause (never a secret)."""

    def __init__(self, message: str, *, status: int | None = None, call: str = "", errors: dict | None = None,
                 transient: bool = False, maybe_applied: bool = False):
        super().__init__(message)
        self.status = status
        self.call = call
        self.errors = errors or {}
        self.transient = transient            # a reset, a timeout or a transient 5xx: a GET may be tried again
        self.maybe_applied = maybe_applied    # a write whose outcome is unknown: read the state back


# Which failures are transient, so that a GET is tried again:
# * 502, 503, 504: a gateway or a restarting service. pveproxy itself never sends them
#   (pve-http-server src/PVE/APIServer/AnyEvent.pm answers its own failures with 500, 501
#   or 506), so they come from a reverse proxy in front of PVE/PBS, or while a daemon restarts.
# * 595, 596, 597: AnyEvent::HTTP's codes for a connection that failed while pveproxy
#   forwarded the call to another node (AnyEvent.pm ``proxy_request`` passes ``$hdr->{Status}``
#   on; proxmoxer core.py ``ANYEVENT_HTTP_STATUS_CODES``: connection establishment, TLS/request
#   sending, body receiving). 598 (aborted) and 599 ("usually nonretryable") are not retried.
# * never 500: PVE answers 500 for every error a handler dies with (AnyEvent.pm
#   ``handle_api2_request``: ``$err->{code} ||= HTTP_INTERNAL_SERVER_ERROR``), e.g. "VM 100
#   not running" or "storage 'x' does not exist" -- permanent; trying again changes nothing.
# * never 4xx: the request itself is wrong, or the token lacks a privilege.
# * a connection reset, refused or timed out (requests ConnectionError/Timeout), but not a
#   TLS failure (a pinning mismatch never heals by itself).
TRANSIENT_STATUSES = frozenset({502, 503, 504, 595, 596, 597})
READ_BACK = ("it is not sent again, because the server may have applied it (a restore sent twice would "
             "leave a second scratch guest): read the state back (the guest list, the task list) and "
             "decide from what is there")


SHAPE_FIX = ("the server does not answer as the Proxmox API documents: check that the url in the inventory "
             "points at the PVE/PBS API itself (not a proxy or another service) and that its version is supported")


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring, short.maxother, short.maxlong = 2, 4, 4, 60, 60, 60
    return short


_REPR = _short_repr()


def clip(value: object, limit: int = 300) -> str:
    """``value`` as a message may show it: at most ``limit`` characters (the rest is counted,
    not quoted) and no character that is not printable (a newline, ESC, a bidi override is
    shown escaped, as ``repr`` does), so a server cannot flood or repaint a report."""
    text = value if isinstance(value, str) else _REPR.repr(value)
    head = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])[:limit]
    more = len(text) - limit
    return head + (f"... ({more} more characters)" if more > 0 else "")


def describe(value: object) -> str:
    """What a value of an answer is. A string's content is not quoted: it could be anything,
    even an echo of the token secret."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({clip(value, 60)})"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' * (len(value) != 1)}"
    if isinstance(value, dict):
        return f"an object with {len(value)} member{'s' * (len(value) != 1)}"
    return f"a {type(value).__name__}"


class NotAnEnvelope(ValueError):
    """A JSON body that is not the ``{"data": ...}`` object of every PVE/PBS answer."""


def read_envelope(content: bytes, *, whole: bool = False) -> object:
    """The ``data`` of an answer body (``whole``: the answer object itself, checked the same
    way, for what sits beside ``data``). A body that is not JSON comes back as proxmoxer's own
    ``{"errors": <bytes>}`` (its ``JsonSerializer.loads``): a PBS download answers the file
    itself, and :meth:`ApiChokePoint.call` refuses it for every other call."""
    try:
        document = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):     # RecursionError: '[[[[...' nested deeply
        return {"errors": content}
    if not isinstance(document, dict):
        raise NotAnEnvelope(f"the answer is {describe(document)}, not a JSON object with 'data'")
    if "data" not in document:
        raise NotAnEnvelope(f"the answer is a JSON object without 'data' ({describe(document)})")
    return document if whole else document["data"]


def is_raw_body(answer: object) -> bool:
    """proxmoxer's way of handing back a body that is not JSON (no JSON parse makes bytes)."""
    return isinstance(answer, dict) and len(answer) == 1 and isinstance(answer.get("errors"), (bytes, bytearray))


def _serializer(*, whole: bool = False):
    """proxmoxer's JsonSerializer, but a JSON body that is not ``{"data": ...}`` raises
    :class:`NotAnEnvelope` instead of a KeyError/TypeError from ``json.loads(...)["data"]``.
    ``whole``: hand back the answer object, not only its ``data`` (proxmoxer drops the rest)."""
    from proxmoxer.backends.https import JsonSerializer

    class EnvelopeSerializer(JsonSerializer):
        def loads(self, response):
            return read_envelope(response.content, whole=whole)

        def loads_errors(self, response):
            try:
                document = json.loads(response.content.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                return {"errors": response.content}
            return document.get("errors") if isinstance(document, dict) else None

    return EnvelopeSerializer()


class PinnedAdapter(HTTPAdapter):
    """Hands ``assert_fingerprint`` to urllib3: the TLS handshake fails on a mismatch."""

    def __init__(self, fingerprint: str, **kwargs):
        self.fingerprint = fingerprint.replace(":", "").lower()
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["assert_fingerprint"] = self.fingerprint
        return super().init_poolmanager(*args, **kwargs)


@dataclass
class CallStats:
    calls: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, seconds: float) -> None:
        with self.lock:
            self.calls[key] += 1
            self.seconds[key] += seconds

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


@dataclass(frozen=True)
class Endpoint:
    url: str
    token_id: str            # user@realm!name
    token_secret: str = field(repr=False)   # resolved late by the caller, kept out of every message and repr
    fingerprint: str | None
    verify_tls: bool = True
    service: str = "PVE"     # or "PBS"
    timeout: float = 30.0


def connect(endpoint: Endpoint):
    """A proxmoxer API object for the endpoint, with pinning mounted on its session."""
    from proxmoxer import ProxmoxAPI
    parts = urlsplit(endpoint.url)
    if parts.username or parts.password:       # checked first: the messages below show the URL
        raise ApiError(f"{endpoint.service} url must not hold credentials; use token_id/token_secret")
    if parts.scheme != "https" or not parts.hostname:
        raise ApiError(f"{endpoint.service} url {endpoint.url!r} must be https://HOST[:PORT]")
    user, _, token_name = endpoint.token_id.partition("!")
    verify: bool = endpoint.verify_tls and not endpoint.fingerprint
    if not endpoint.verify_tls:
        warnings.warn(f"TLS verification of {endpoint.url} is OFF (verify_tls: false): a machine in the "
                      f"middle can read the API token", stacklevel=2)
        log.warning("TLS verification of %s is OFF", endpoint.url)
    api = ProxmoxAPI(parts.hostname, port=parts.port or (8007 if endpoint.service == "PBS" else 8006),
                     user=user, token_name=token_name, token_value=endpoint.token_secret,
                     verify_ssl=verify, service=endpoint.service, timeout=endpoint.timeout)
    session = api._store["session"]
    if endpoint.fingerprint and endpoint.verify_tls:
        session.mount("https://", PinnedAdapter(endpoint.fingerprint))
    api._store["serializer"] = _serializer()     # copied into every resource made from here on
    return api


class ApiChokePoint:
    """Every request of one client goes through :meth:`call`. ``retry``: how a GET is tried
    again after a transient failure (``RetryPolicy(attempts=1)`` turns retries off)."""

    def __init__(self, endpoint: Endpoint, api=None, retry: RetryPolicy | None = None):
        self.endpoint = endpoint
        self.api = api if api is not None else connect(endpoint)
        self.stats = CallStats()          # every request sent, retries included
        self.retry = retry or RetryPolicy()

    def call(self, method: str, path: str, /, *, guest: str = "", binary: bool = False, envelope: bool = False,
             **params):
        """One API call; its answer's ``data`` (``envelope``: the whole answer object, for the
        attributes PVE/PBS put beside ``data``, e.g. a task log's ``total``). ``binary``: the call
        answers a file (PBS download), handed back as ``{"errors": <bytes>}``; any other call
        must answer JSON. A GET is retried after a transient failure; any other method never."""
        name = f"{method.upper()} {path}"
        where = f"{self.endpoint.service} {name}{_for(guest)}"

        def once():
            return self._send(method, path, name, where, binary=binary, envelope=envelope, **params)

        if method.lower() != "get":
            try:
                return once()
            except ApiError as exc:
                if not exc.transient or not getattr(exc, "sent", True):
                    raise
                raise ApiError(f"{exc}; {READ_BACK}", status=exc.status, call=name, errors=exc.errors,
                               maybe_applied=True) from None
        try:
            return retry_transient(once, policy=self.retry,
                                   transient=lambda exc: isinstance(exc, ApiError) and exc.transient)
        except RetriesExhausted as gave_up:
            last = gave_up.last
            raise ApiError(f"{last} (gave up after {gave_up.attempts} tries in {gave_up.seconds:.1f} s, "
                           f"each a transient failure; check that the {self.endpoint.service} API and any "
                           f"proxy in front of it are up)", status=getattr(last, "status", None), call=name,
                           errors=getattr(last, "errors", None), transient=True) from None

    def _send(self, method: str, path: str, name: str, where: str, /, *, binary: bool, envelope: bool, **params):
        """One request, once."""
        from proxmoxer.core import ResourceException
        started = time.monotonic()
        try:
            resource = self.api(path.lstrip("/"))
            if envelope:       # this resource only: its store is a copy (proxmoxer ProxmoxResource.__call__)
                resource._store["serializer"] = _serializer(whole=True)
            answer = getattr(resource, method.lower())(**params)
        except NotAnEnvelope as exc:
            raise ApiError(f"{where}: {exc}; {SHAPE_FIX}", call=name) from None
        except ResourceException as exc:
            errors = getattr(exc, "errors", None) or {}
            if isinstance(errors, dict):
                # proxmoxer hands a body that is not JSON back as {"errors": <bytes>}: PBS answers a
                # refused privilege as plain text ("permission check failed"), not as b'...'
                errors = {k: bytes(v).decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else v
                          for k, v in errors.items()}
                raw_text = set(errors) == {"errors"} and isinstance(getattr(exc, "errors", None), dict) \
                    and isinstance(exc.errors.get("errors"), (bytes, bytearray))
                detail = errors["errors"].strip() if raw_text else "; ".join(f"{k}: {v}" for k, v in errors.items())
            else:
                detail = str(errors)
            content = str(getattr(exc, "content", "") or "").strip()
            if content and content not in detail:
                detail = f"{detail}; {content}" if detail else content
            detail = self._quote(detail, 400)
            errors = {clip(k, 100): self._quote(str(v), 400) for k, v in errors.items()} \
                if isinstance(errors, dict) else {}
            raise ApiError(f"{where} failed: HTTP {exc.status_code} "
                           f"{exc.status_message}{': ' + detail if detail else ''}"
                           f"{_hint(exc.status_code, self.endpoint.service)}",
                           status=exc.status_code, call=name, errors=errors,
                           transient=exc.status_code in TRANSIENT_STATUSES) from None
        except requests.exceptions.SSLError as exc:
            cause = "the TLS certificate does not match the pinned fingerprint" if "fingerprint" in str(exc).lower() \
                else "TLS verification failed"
            raise ApiError(f"{where}: {cause} ({self.endpoint.url}); the token "
                           f"was not sent. Check the fingerprint in the inventory against the server's certificate",
                           call=name) from None
        except requests.exceptions.RequestException as exc:
            cause, sent = _connection_failure(exc)
            failure = ApiError(f"{where}: {self.endpoint.url} is unreachable ({cause})", call=name, transient=True)
            failure.sent = sent
            raise failure from None
        finally:
            self.stats.add(name, time.monotonic() - started)
        if not binary and is_raw_body(answer):
            raise ApiError(f"{where}: the answer is not JSON (it starts with "
                           f"'{self._quote(bytes(answer['errors'][:4096]).decode('utf-8', 'replace'), 80)}'); "
                           f"{SHAPE_FIX}", call=name)
        return answer

    def _quote(self, text: str, limit: int) -> str:
        """Server text for a message: the token secret replaced (a proxy page may echo the
        request's headers), then clipped."""
        secret = self.endpoint.token_secret
        return clip(text.replace(secret, "[token secret]") if secret else text, limit)


def _connection_failure(exc: requests.exceptions.RequestException) -> tuple[str, bool]:
    """What went wrong with the connection (never the URL: its query may carry parameters),
    and whether the request may have reached the server."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(exc, requests.exceptions.ConnectTimeout) or isinstance(reason, NewConnectionError):
        return f"{type(exc).__name__}: no connection, the request was not sent", False
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "ReadTimeout: no answer in time", True
    return f"{type(exc).__name__}: the connection broke", True


def _for(guest: str) -> str:
    return f" for {guest}" if guest else ""


def _hint(status: int, service: str = "PVE") -> str:
    if status == 401:
        return " (the API token is wrong or expired)"
    if status == 403:
        where = "; for a scratch guest: is it in the drill pool?" if service == "PVE" else ""
        return f" (the token lacks a privilege this call needs: README, Token privileges{where})"
    return ""


# --- typed accessors: the clients read answers only through these ------------------------

_INTEGER = re.compile(r"-?[0-9]{1,19}")      # ASCII digits only: int() would take '\u0661', ' 1', '1_0'
LAST_EPOCH = 253402300799                    # 9999-12-31T23:59:59Z, the end of datetime's range
_KINDS = {str: "a string", int: "an integer", dict: "an object", list: "a list"}


def shape_error(call: str, problem: str) -> ApiError:
    """The one error of a malformed answer: names the call (e.g. 'PVE GET /cluster/resources')."""
    return ApiError(f"{clip(call)}: {problem}; {SHAPE_FIX}", call=call)


def as_kind(value: object, kind: type, *, call: str, what: str = "the answer") -> Any:
    """``value`` if it is a ``kind``; an int may come as a decimal string (PVE's Perl JSON
    sometimes sends numbers so); a bool is never an int."""
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INTEGER.fullmatch(value):
            return int(value)
    elif isinstance(value, kind):
        return value
    raise shape_error(call, f"{what} is {describe(value)}, expected {_KINDS.get(kind, kind.__name__)}")


def field(obj: Mapping, name: str, kind: type, *, call: str, required: bool = True) -> Any:
    """``obj[name]`` as a ``kind``; a missing or null field is None, or an error if ``required``."""
    value = obj.get(name)
    if value is None:
        if required:
            raise shape_error(call, f"answer field {name!r} is missing or null")
        return None
    return as_kind(value, kind, call=call, what=f"answer field {name!r}")


def epoch_field(obj: Mapping, name: str, *, call: str) -> datetime:
    """A required epoch field as a UTC time; outside 1970..9999 it is an error, not an OverflowError."""
    seconds = field(obj, name, int, call=call)
    if not 0 <= seconds <= LAST_EPOCH:
        raise shape_error(call, f"answer field {name!r} is {describe(seconds)}, not a time between 1970 and 9999")
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def answer_object(answer: object, call: str) -> dict:
    return as_kind(answer, dict, call=call)


def answer_list(answer: object, call: str) -> list[dict]:
    """A list of JSON objects (most PVE/PBS index calls), else an error naming the first bad item."""
    as_kind(answer, list, call=call)
    for index, item in enumerate(answer):
        as_kind(item, dict, call=call, what=f"item {index} of the answer")
    return answer
