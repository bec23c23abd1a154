"""One preflight line per endpoint: what was probed, and whether the drills that use it can run."""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from restoredrill.preflight.net import Stop, check_tls, tcp_reach


@dataclass
class Line:
    key: str            # what the drills depend on: pve, pbs, borg:NAME, box:NAME, node:NODE, s3:NAME, kuma, smtp
    what: str           # e.g. "PVE API", "Borg repository photos"
    where: str          # URL, host:port or path (never a secret)
    steps: list[str] = field(default_factory=list)     # what passed, in order
    stop: str | None = None       # the cause that blocks every drill using this endpoint
    findings: list[str] = field(default_factory=list)  # reachable, but something the drills will trip over
    blocks_drills: bool = True    # False for endpoints no drill case uses (SMTP)

    @property
    def ok(self) -> bool:
        return self.stop is None and not self.findings

    def __str__(self) -> str:
        verdict = "OK  " if self.ok else ("FAIL" if self.stop else "WARN")
        body = "; ".join([*self.steps, *([self.stop] if self.stop else []), *self.findings]) or "nothing to check"
        return f"{verdict}  {self.key:<18} {self.where}  {body}"


def host_port(url: str, default: int) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise Stop(f"url {url!r} has a port that is not a number") from None
    if not parts.hostname:
        raise Stop(f"url {url!r} names no host")
    return parts.hostname, port or default


def reach_url(line: Line, url: str, *, default_port: int | None = None, pin: str | None = None,
              verify: bool = True, ca_file: str | None = None, key: str = "fingerprint") -> None:
    """TCP to the URL's host and port, then (https) the TLS step: each adds to the line or stops it."""
    https = url.startswith("https")
    host, port = host_port(url, default_port or (443 if https else 80))
    tcp_reach(host, port)
    line.steps.append("TCP ok")
    if https:
        line.steps.append(check_tls(host, port, pin=pin, verify=verify, ca_file=ca_file, key=key))


def probe(line: Line, steps) -> Line:
    """Run ``steps(line)``; a Stop ends the line with its cause, anything else unexpected too
    (one line naming it, never a traceback)."""
    try:
        steps(line)
    except Stop as stop:
        line.stop = str(stop)
    except Exception as exc:  # noqa: BLE001 - a probe must end in a line, whatever broke
        line.stop = f"{type(exc).__name__}: {str(exc)[:300]}"
    return line
