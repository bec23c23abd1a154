"""Names and IDs that come from requests, checked before anything touches the disk.

The double runs as root in the lab, so every vmid, node, storage, datastore, volid,
backup id and UPID taken from a request passes one of these functions first (the schema
validation in front of them is the first line; this is the second, and it also holds
when the schema files are absent). Each raises ``UnsafeValue``, which the HTTP layer
answers with 400 and the parameter name. Pure functions, no I/O.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from restoredrill.pbsformat import UnsafeName, check_name, format_backup_time, parse_backup_time

NODE_RE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?")
STORAGE_ID_RE = re.compile(r"[a-z][a-z0-9\-_.]*[a-z0-9]")
POOL_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")
DATASTORE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._\-]{2,31}")
BACKUP_VOLNAME_RE = re.compile(
    r"backup/(vm|ct|host)/([A-Za-z0-9_][A-Za-z0-9._\-]*)/(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")
VMID_MIN, VMID_MAX = 100, 999_999_999


class UnsafeValue(ValueError):
    """A request value that must not reach the disk; ``param`` names where it came from."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


def check_node(name: object, param: str = "node") -> str:
    if not isinstance(name, str) or len(name) > 63 or not NODE_RE.fullmatch(name):
        raise UnsafeValue(param, f"invalid node name {name!r}")
    return name


def check_vmid(value: object, param: str = "vmid") -> int:
    text = str(value)
    if not text.isdigit() or not VMID_MIN <= int(text) <= VMID_MAX:
        raise UnsafeValue(param, f"invalid vmid {value!r} (an integer {VMID_MIN}..{VMID_MAX})")
    return int(text)


def check_storage_id(name: object, param: str = "storage") -> str:
    if not isinstance(name, str) or len(name) > 64 or not STORAGE_ID_RE.fullmatch(name):
        raise UnsafeValue(param, f"invalid storage ID {name!r}")
    return name


def check_pool_id(name: object, param: str = "poolid") -> str:
    if not isinstance(name, str) or len(name) > 64 or not POOL_ID_RE.fullmatch(name):
        raise UnsafeValue(param, f"invalid pool ID {name!r}")
    return name


def check_datastore(name: object, param: str = "store") -> str:
    if not isinstance(name, str) or not DATASTORE_RE.fullmatch(name):
        raise UnsafeValue(param, f"invalid datastore name {name!r}")
    return _pbs_name(name, param, "datastore name")


def check_backup_id(name: object, param: str = "backup-id") -> str:
    return _pbs_name(name, param, "backup id")


def check_backup_type(name: object, param: str = "backup-type") -> str:
    if name not in ("vm", "ct", "host"):
        raise UnsafeValue(param, f"invalid backup type {name!r}")
    return str(name)


def _pbs_name(name: object, param: str, what: str) -> str:
    try:
        return check_name(name, what)
    except UnsafeName as exc:
        raise UnsafeValue(param, str(exc)) from None


@dataclass(frozen=True)
class BackupVolume:
    """``<storeid>:backup/<vm|ct>/<id>/<UTC %FT%TZ>`` (a PBS-backed PVE storage's volid)."""

    storage: str
    backup_type: str
    backup_id: str
    backup_time: datetime

    @property
    def volid(self) -> str:
        return f"{self.storage}:{self.volname}"

    @property
    def volname(self) -> str:
        return f"backup/{self.backup_type}/{self.backup_id}/{format_backup_time(self.backup_time)}"

    @property
    def epoch(self) -> int:
        return int(self.backup_time.timestamp())


def parse_backup_volid(volid: object, param: str = "volume") -> BackupVolume:
    """Split a PBS backup volid; anything else (``..``, ``/``, other content) is refused."""
    if not isinstance(volid, str) or ":" not in volid or len(volid) > 300:
        raise UnsafeValue(param, f"unable to parse volume ID '{volid}'")
    storage, volname = volid.split(":", 1)
    check_storage_id(storage, param)
    match = BACKUP_VOLNAME_RE.fullmatch(volname)
    if not match:
        raise UnsafeValue(param, f"unable to parse PBS volume name '{volname}'")
    kind, ident, moment = match.groups()
    check_backup_id(ident, param)
    try:
        when = parse_backup_time(moment)
    except ValueError as exc:     # FormatError, or strptime's range errors
        raise UnsafeValue(param, str(exc)) from None
    return BackupVolume(storage, kind, ident, when)


def backup_volume(storage: str, backup_type: str, backup_id: str, epoch: int) -> BackupVolume:
    return BackupVolume(storage, backup_type, backup_id, datetime.fromtimestamp(epoch, timezone.utc))


def check_config_key(key: object, param: str = "delete") -> str:
    """A guest config key (``net0``, ``hostpci0``, ``onboot``): letters, digits, '-', '_'."""
    if not isinstance(key, str) or not re.fullmatch(r"[a-z][a-z0-9_\-]*", key):
        raise UnsafeValue(param, f"invalid format - invalid configuration ID '{key}'")
    return key
