"""Small value types shared by the inventory schema: durations, sizes, secret references."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from restoredrill.secrets import SecretRef

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50}


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError("must be a duration such as 90s, 30m, 25h, 7d or 2w")
    return timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[match.group(2)])


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("must not be negative")
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError("must be a size such as 500MiB, 2GiB or 10GB")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])


def parse_secret(value: Any) -> SecretRef:
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a secret reference string (env:NAME, file:PATH or command:...)")
    return SecretRef.parse(value)


# A SHA-256 fingerprint as PVE and PBS write and accept it: 32 hex pairs joined by colons
# (pve-common src/PVE/JSONSchema.pm, standard option 'fingerprint-sha256'; proxmox-backup
# pbs-api-types FINGERPRINT_SHA256_REGEX). Key fingerprints are shown in the same form.
_FINGERPRINT = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){31}$")
FINGERPRINT_FORMAT = ("32 hex pairs joined by colons, 95 characters, e.g. "
                      "3F:1A:" + ":".join(["00"] * 29) + ":9C")
TLS_HINT = ("on the node: `pvenode cert info` (PVE, fingerprint of pve-ssl.pem or pveproxy-ssl.pem) or "
            "`proxmox-backup-manager cert info` (PBS); or `openssl s_client -connect HOST:PORT </dev/null | "
            "openssl x509 -noout -fingerprint -sha256`; `restoredrill preflight` shows the one the server presents")
KEY_HINT = "`proxmox-backup-client key show KEYFILE` prints it"


def fingerprint_parser(hint: str):
    def parse(value: Any) -> str:
        text = str(value).strip() if isinstance(value, str) else None
        if text is not None and _FINGERPRINT.match(text):
            return text
        if text is None:
            found = f"a {type(value).__name__}"
        else:
            pairs = [p for p in text.split(":") if p]
            found = (f"{len(pairs)} hex pair(s)" if all(re.fullmatch(r"[0-9A-Fa-f]{2}", p) for p in pairs)
                     and pairs else f"{len(text)} characters that are not hex pairs")
            if re.fullmatch(r"[0-9A-Fa-f]{64}", text):
                found = "64 hex digits without colons"
        raise ValueError(f"must be a SHA-256 fingerprint: {FINGERPRINT_FORMAT}; found {found} (truncated or "
                         f"another hash?); {hint}")
    return parse


def parse_zone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin or UTC") from None
    return str(value)


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration),
                     WithJsonSchema({"type": "string", "examples": ["25h"]})]
Size = Annotated[int, BeforeValidator(parse_size), WithJsonSchema({"type": ["string", "integer"]})]
Secret = Annotated[SecretRef, BeforeValidator(parse_secret), PlainSerializer(str),
                   WithJsonSchema({"type": "string", "pattern": "^(env|file|command):.+"})]
TimeZone = Annotated[str, BeforeValidator(parse_zone)]
TlsFingerprint = Annotated[str, BeforeValidator(fingerprint_parser(TLS_HINT)),
                           WithJsonSchema({"type": "string", "pattern": _FINGERPRINT.pattern})]
KeyFingerprint = Annotated[str, BeforeValidator(fingerprint_parser(KEY_HINT)),
                           WithJsonSchema({"type": "string", "pattern": _FINGERPRINT.pattern})]
