"""Task ids of PVE (9 fields) and PBS (10 fields), parsed without proxmoxer (whose
``Tasks`` helper raises on PBS UPIDs)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone


class UpidError(ValueError):
    pass


@dataclass(frozen=True)
class Upid:
    text: str
    product: str            # "pve" or "pbs"
    node: str
    pid: int
    pstart: int
    starttime: datetime
    type: str
    id: str
    user: str
    task_id: int | None = None   # PBS only


def _unescape(value: str) -> str:
    """PBS escapes worker ids like systemd: '\\x2d' for '-', '\\x3a' for ':' ..."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def parse_upid(text: str) -> Upid:
    parts = text.split(":")
    if len(parts) < 9 or parts[0] != "UPID" or parts[-1] != "":
        raise UpidError(f"not a UPID: {text!r}")
    try:
        if len(parts) == 9:
            _, node, pid, pstart, start, kind, ident, user, _ = parts
            return Upid(text, "pve", node, int(pid, 16), int(pstart, 16), _time(start), kind, ident, user)
        if len(parts) == 10:
            _, node, pid, pstart, task_id, start, kind, ident, user, _ = parts
            return Upid(text, "pbs", node, int(pid, 16), int(pstart, 16), _time(start), kind, _unescape(ident),
                        user, int(task_id, 16))
    except ValueError:
        raise UpidError(f"not a UPID (a number field is not hex): {text!r}") from None
    raise UpidError(f"not a UPID ({len(parts) - 1} fields, expected 8 for PVE or 9 for PBS): {text!r}")


def _time(hex_epoch: str) -> datetime:
    return datetime.fromtimestamp(int(hex_epoch, 16), tz=timezone.utc)
