"""TCP reach and the TLS certificate a server presents: the first two steps of every probe.

Nothing here sends a credential: the TLS handshake is done without one, before any token,
password or key is used, so a wrong pin or an untrusted certificate is named without
anything secret having crossed the wire.
"""
from __future__ import annotations

import errno
import hashlib
import socket
import ssl

from restoredrill.inventory.types import FINGERPRINT_FORMAT

TIMEOUT = 5.0


class Stop(Exception):
    """The probe of one endpoint ends here; the message is the line's cause (no secret in it)."""


def tcp_reach(host: str, port: int, timeout: float = TIMEOUT) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.gaierror:
        raise Stop(f"TCP {host}:{port}: the name {host} does not resolve (DNS, or a typo in the inventory)") from None
    except (TimeoutError, socket.timeout):
        raise Stop(f"TCP {host}:{port}: no answer within {timeout:.0f} s (host down, or a firewall drops "
                   f"the connection)") from None
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            raise Stop(f"TCP {host}:{port}: connection refused (nothing listens on that port; wrong port, or "
                       f"the service is stopped)") from None
        raise Stop(f"TCP {host}:{port}: {exc.strerror or exc}") from None


def format_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate in the form PVE and PBS show it (upper-case colon pairs)."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def presented_fingerprint(host: str, port: int, timeout: float = TIMEOUT) -> str:
    """The fingerprint of the certificate the server presents (read without trusting it)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except (ssl.SSLError, OSError) as exc:
        raise Stop(f"TLS {host}:{port}: no TLS handshake ({type(exc).__name__}: {exc}); is it an https port?") \
            from None
    if not der:
        raise Stop(f"TLS {host}:{port}: the server presented no certificate")
    return format_fingerprint(der)


def same_fingerprint(a: str, b: str) -> bool:
    return a.replace(":", "").lower() == b.replace(":", "").lower()


def check_tls(host: str, port: int, *, pin: str | None, verify: bool, ca_file: str | None = None,
              key: str = "fingerprint") -> str:
    """What the TLS step found, for the line; Stop when the drills could not trust the server."""
    presented = presented_fingerprint(host, port)
    if pin and verify:
        if not same_fingerprint(pin, presented):
            raise Stop(f"TLS: the server presents {presented}, the inventory pins {pin} ({key}: {FINGERPRINT_FORMAT}); "
                       f"a new certificate or a machine in the middle: check it on the node (pvenode cert info / "
                       f"proxmox-backup-manager cert info), then update {key}")
        return f"TLS pinned {presented} matches"
    if not verify:
        return f"TLS NOT verified (verify_tls: false; the server presents {presented})"
    context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT) as sock, \
                context.wrap_socket(sock, server_hostname=host):
            pass
    except ssl.SSLCertVerificationError as exc:
        fix = (f"after checking it on the server, pin it as {key}: \"{presented}\"" if key.endswith("fingerprint")
               else f"give the CA that signed it in {key}")
        raise Stop(f"TLS: the certificate is not trusted ({exc.verify_message}); the server presents {presented}: "
                   f"{fix}") from None
    except (ssl.SSLError, OSError) as exc:
        raise Stop(f"TLS {host}:{port}: {type(exc).__name__}: {exc}") from None
    return f"TLS certificate trusted (the server presents {presented})"
