"""Which PBS release serves which call: pure logic over the ``GET /version`` answer.

PBS answers ``{"version": "MAJOR.MINOR", "release": "PATCH", "repoid": <commit>}``
(proxmox-backup ``src/api2/version.rs``: ``PROXMOX_PKG_VERSION`` / ``PROXMOX_PKG_RELEASE``
from pbs-buildcfg, the Cargo version's major.minor and patch). The client reads it once
and never sends what the release does not know: proxmox-router refuses an unknown
parameter with HTTP 400 ("parameter verification errors"), proxmox-rest-server answers
a path it does not serve with 404 ("Path '/api2/json/...' not found.").

Since when (read in the upstream changelog, debian/changelog of proxmox-backup):
- ``GET /admin/gc`` (list of GC jobs) and ``GET /config/notifications/targets``: 3.2.0-1
  ("fix #3217: ui: add global prune and GC job view", "api: add endpoints for
  querying/testing notification targets"); 3.2.4's ``src/api2/admin/gc.rs`` has it, 3.1 none.
- ``sync-direction`` on ``GET /admin/sync`` (pbs-api-types ``SyncDirection``, push sync
  jobs): 3.3 (3.2.4's ``src/api2/admin/sync.rs`` takes only ``store``; sync.cfg gained
  ``sync-direction pull|push (default=pull)`` with the push jobs of PBS 3.3).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from restoredrill.clients.proxmox_api import ApiError, clip

OLDEST_TESTED = (3, 1)


@dataclass(frozen=True)
class Feature:
    call: str                 # what the client would send
    since: tuple[int, int]    # first PBS release (major, minor) that serves it
    audits: str               # what cannot be audited without it


FEATURES = {
    "gc-jobs": Feature("GET /admin/gc", (3, 2), "the garbage collection jobs (last run, state)"),
    "notification-targets": Feature("GET /config/notifications/targets", (3, 2),
                                    "the notification targets job failures are sent to"),
    "sync-direction": Feature("GET /admin/sync?sync-direction=all", (3, 3),
                              "push sync jobs (before 3.3 every sync job is a pull and is listed anyway)"),
}


@dataclass(frozen=True)
class PbsVersion:
    major: int
    minor: int
    release: str

    @property
    def text(self) -> str:
        return f"{self.major}.{self.minor}.{self.release}"

    def has(self, feature: str) -> bool:
        return (self.major, self.minor) >= FEATURES[feature].since


class NotAvailable(ApiError):
    """A call the server's release does not serve: the case could not run (never a pass)."""

    def __init__(self, version: PbsVersion, feature: str):
        wanted = FEATURES[feature]
        since = ".".join(map(str, wanted.since))
        super().__init__(f"NOT RUN: PBS {version.text} does not serve {wanted.call} (PBS {since} and later do), "
                         f"so {wanted.audits} cannot be audited: upgrade PBS to {since} or later, or remove "
                         f"this check from the inventory", call=wanted.call)
        self.version = version
        self.feature = feature


def parse_version(answer: object) -> PbsVersion:
    """``GET /version`` of PBS; anything else is an ApiError naming what was found."""
    text = answer.get("version") if isinstance(answer, Mapping) else None
    match = re.fullmatch(r"(\d{1,4})\.(\d{1,4})", text) if isinstance(text, str) else None
    release = answer.get("release") if isinstance(answer, Mapping) else None
    if match is None:
        raise ApiError(f"PBS GET /version: expected a version \"MAJOR.MINOR\" (proxmox-backup api2/version.rs); "
                       f"found {clip(answer, 120)}: check that the url points at a Proxmox Backup Server",
                       call="GET /version")
    return PbsVersion(int(match[1]), int(match[2]), str(release) if release is not None else "?")
