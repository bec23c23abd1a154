"""Task ids of PVE (9 fields) and PBS (10 fields), parsed without proxmoxer (whose
``Tasks`` helper raises on PBS UPIDs).

A UPID comes from the server and goes back into an API path (``/nodes/{node}/tasks/{upid}``)
and into messages, so it is matched whole against the formats the servers themselves parse:

* PVE: pve-common ``src/PVE/Tools.pm``: ``upid_encode`` writes
  ``sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", node, pid, pstart, starttime, type, id, user)``
  and ``upid_decode`` accepts ``^UPID:NODE:([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):``
  ``([^:\\s]+):([^:\\s]*):([^:\\s]+):$`` (pstart may take a 9th digit after 497 days of uptime).
* PBS: proxmox-rs ``proxmox-schema/src/upid.rs`` (formerly proxmox-backup ``pbs-api-types/src/upid.rs``),
  ``PROXMOX_UPID_REGEX``: the same with a task counter ``[0-9A-Fa-f]{8,16}`` before the start time,
  and the worker id escaped like a systemd unit name (``\\x3a`` for ':', '-' for '/').
* NODE: PVE's ``pve-node`` format (pve-common ``src/PVE/JSONSchema.pm``, ``pve_verify_node_name``),
  the same pattern in both regexes, ``[a-zA-Z0-9]([a-zA-Z0-9\\-]*[a-zA-Z0-9])?``; bounded here to
  63 characters, a DNS label (RFC 1035 2.3.4): the node name is the host name's first label.

Stricter than upstream, on purpose: exactly these ASCII hex digits (``int(x, 16)`` alone
would take '-1', '0x..', '1_0', ' A ' and Arabic-Indic digits), at most 512 characters, and no
'/', '?', '#', '%' or control character in type, id and user: a UPID is one path segment
and PVE/PBS themselves could not address a task whose UPID held one. Every refusal is a
:class:`UpidError` whose message quotes the text clipped and with control characters escaped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from restoredrill.clients.proxmox_api import clip

MAX_LENGTH = 512
_TEXT = r"[^:\s/?#%\x00-\x1f\x7f]"        # upstream: [^:\s]
# field -> (pattern, what it must be); the regexes and the refusal messages come from this one table
FIELDS = {
    "node": (r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?", "a host name (letters, digits, '-'; at most 63)"),
    "pid": (r"[0-9A-Fa-f]{8}", "8 hex digits"),
    "pstart": (r"[0-9A-Fa-f]{8,9}", "8 or 9 hex digits"),
    "task": (r"[0-9A-Fa-f]{8,16}", "8 to 16 hex digits"),
    "starttime": (r"[0-9A-Fa-f]{8}", "8 hex digits"),
    "type": (rf"{_TEXT}+", "a word without ':', '/', '?', '#', '%', spaces or control characters"),
    "id": (rf"{_TEXT}*", "empty or a word without ':', '/', '?', '#', '%', spaces or control characters"),
    "user": (rf"{_TEXT}+", "a word without ':', '/', '?', '#', '%', spaces or control characters"),
}
PVE_FIELDS = ("node", "pid", "pstart", "starttime", "type", "id", "user")
PBS_FIELDS = ("node", "pid", "pstart", "task", "starttime", "type", "id", "user")


def _regex(names: tuple[str, ...]) -> re.Pattern:
    return re.compile("UPID:" + "".join(f"(?P<{name}>{FIELDS[name][0]}):" for name in names))


PVE_UPID, PBS_UPID = _regex(PVE_FIELDS), _regex(PBS_FIELDS)
_FORMS = "UPID:NODE:PID:PSTART:STARTTIME:TYPE:ID:USER: (PVE) or UPID:NODE:PID:PSTART:TASK:STARTTIME:TYPE:ID:USER: (PBS)"


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


def parse_upid(text: object) -> Upid:
    """The UPID ``text`` names, or UpidError saying why it is none."""
    if not isinstance(text, str):
        raise UpidError(f"not a UPID: found a {type(text).__name__}, not a string; expected {_FORMS}")
    if len(text) > MAX_LENGTH:
        raise UpidError(f"not a UPID: {len(text)} characters, at most {MAX_LENGTH} ('{clip(text, 60)}')")
    pve, pbs = PVE_UPID.fullmatch(text), PBS_UPID.fullmatch(text)
    if pve:
        return Upid(text, "pve", pve["node"], int(pve["pid"], 16), int(pve["pstart"], 16), _time(pve["starttime"]),
                    pve["type"], pve["id"], pve["user"])
    if pbs:
        return Upid(text, "pbs", pbs["node"], int(pbs["pid"], 16), int(pbs["pstart"], 16), _time(pbs["starttime"]),
                    pbs["type"], _unescape(pbs["id"]), pbs["user"], int(pbs["task"], 16))
    raise UpidError(f"not a UPID: '{clip(text, 150)}': {_why(text)}; expected {_FORMS}")


def _why(text: str) -> str:
    """The first thing wrong with a text that is no UPID, for the message."""
    parts = text.split(":")
    if parts[0] != "UPID":
        return "it does not start with 'UPID:'"
    if parts[-1] != "" or len(parts) < 3:
        return "it does not end with ':'"
    values = parts[1:-1]
    names = {len(PVE_FIELDS): PVE_FIELDS, len(PBS_FIELDS): PBS_FIELDS}.get(len(values))
    if names is None:
        return f"{len(values)} fields, not {len(PVE_FIELDS)} (PVE) or {len(PBS_FIELDS)} (PBS)"
    for name, value in zip(names, values, strict=True):
        pattern, what = FIELDS[name]
        if not re.fullmatch(pattern, value):
            return f"its {name.upper()} field is not {what}"
    return "its fields do not match"


def _time(hex_epoch: str) -> datetime:
    """Eight hex digits: at most 0xFFFFFFFF, in 2106, well inside datetime's range."""
    return datetime.fromtimestamp(int(hex_epoch, 16), tz=timezone.utc)
