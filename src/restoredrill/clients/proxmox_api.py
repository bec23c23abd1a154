"""The one choke point for PVE and PBS API calls: TLS pinning, timing and counting of
every call, quiet proxmoxer logging, and errors that name the call and the guest.

TLS: with a fingerprint the certificate's SHA-256 must match (as PBS and the PVE
storage plugin pin) before the token is sent; without one the system CA store is
used; ``verify_tls: false`` turns checks off and warns loudly on every connection.
"""
from __future__ import annotations

import logging
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

log = logging.getLogger("restoredrill.proxmox")
for noisy in ("proxmoxer", "proxmoxer.core", "proxmoxer.backends.https", "urllib3.connectionpool"):
    logging.getLogger(noisy).setLevel(logging.WARNING)   # proxmoxer logs POST bodies at INFO


class ApiError(RuntimeError):
    """An API call failed; the message names the call, the guest and the cause (never a secret)."""

    def __init__(self, message: str, *, status: int | None = None, call: str = "", errors: dict | None = None):
        super().__init__(message)
        self.status = status
        self.call = call
        self.errors = errors or {}


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
    return api


class ApiChokePoint:
    """Every request of one client goes through :meth:`call`."""

    def __init__(self, endpoint: Endpoint, api=None):
        self.endpoint = endpoint
        self.api = api if api is not None else connect(endpoint)
        self.stats = CallStats()

    def call(self, method: str, path: str, *, guest: str = "", **params):
        from proxmoxer.core import ResourceException
        name = f"{method.upper()} {path}"
        started = time.monotonic()
        try:
            resource = self.api(path.lstrip("/"))
            return getattr(resource, method.lower())(**params)
        except ResourceException as exc:
            errors = getattr(exc, "errors", None) or {}
            detail = "; ".join(f"{k}: {v}" for k, v in errors.items()) if isinstance(errors, dict) else str(errors)
            content = str(getattr(exc, "content", "") or "").strip()
            if content and content not in detail:
                detail = f"{detail}; {content}" if detail else content
            detail = detail[:400]
            raise ApiError(f"{self.endpoint.service} {name}{_for(guest)} failed: HTTP {exc.status_code} "
                           f"{exc.status_message}{': ' + detail if detail else ''}{_hint(exc.status_code)}",
                           status=exc.status_code, call=name, errors=errors if isinstance(errors, dict) else {}) \
                from None
        except requests.exceptions.SSLError as exc:
            cause = "the TLS certificate does not match the pinned fingerprint" if "fingerprint" in str(exc).lower() \
                else "TLS verification failed"
            raise ApiError(f"{self.endpoint.service} {name}{_for(guest)}: {cause} ({self.endpoint.url}); the token "
                           f"was not sent. Check the fingerprint in the inventory against the server's certificate",
                           call=name) from None
        except requests.exceptions.RequestException as exc:
            raise ApiError(f"{self.endpoint.service} {name}{_for(guest)}: {self.endpoint.url} is unreachable "
                           f"({type(exc).__name__})", call=name) from None
        finally:
            self.stats.add(name, time.monotonic() - started)


def _for(guest: str) -> str:
    return f" for {guest}" if guest else ""


def _hint(status: int) -> str:
    return {401: " (the API token is wrong or expired)",
            403: " (the token lacks the privilege: is the guest in the drill pool?)"}.get(status, "")
