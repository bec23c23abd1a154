"""Snapshot identity (names and paths) and the snapshot manifest ``index.json.blob``.

The manifest blob (zstd, never encrypted: it is signed instead) holds JSON::

    {"backup-type": "vm", "backup-id": "100", "backup-time": 1714528803,
     "files": [{"filename": "drive-scsi0.img.fidx", "crypt-mode": "none",
                "size": 34359738368, "csum": "<hex>"}, ...],
     "unprotected": {"notes": "...", "verify_state": {...}, "key-fingerprint": "aa:..."},
     "signature": "<hex HMAC>" | null}

For a ``*.blob`` entry ``csum`` is SHA-256 of the raw blob file and ``size`` its
length in bytes; for a ``*.fidx``/``*.didx`` entry ``csum`` is the index csum and
``size`` the archive's data size (image size, or the last end offset). Every name
that becomes a path component is checked here, so a hostile manifest or listing
cannot point outside the datastore. Pure functions, no I/O.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from restoredrill.pbsformat.blob import (ChecksumMismatch, DecryptionFailed, FormatError,
                                         MissingKey, decode_blob, encode_blob)
from restoredrill.pbsformat.crypt import CryptConfig, verify_manifest_signature
from restoredrill.pbsformat.index import parse_index

MANIFEST_BLOB_NAME = "index.json.blob"
BACKUP_TYPES = ("vm", "ct", "host")
CRYPT_MODES = ("none", "encrypt", "sign-only")
ARCHIVE_SUFFIXES = (".fidx", ".didx", ".blob")
MAX_NAMESPACE_DEPTH = 7
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._\-]{0,127}")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIME_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
# PBS stores backup-time as i64 epoch seconds and names the snapshot directory with
# epoch_to_rfc3339_utc (proxmox repo, proxmox-time/src/posix.rs), which bails on a year outside
# 0..9999. Python's datetime also ends at 9999-12-31T23:59:59Z, and no real backup predates
# 1970: anything outside is refused (10**30 would otherwise raise OverflowError from
# datetime.fromtimestamp).
MIN_BACKUP_EPOCH = 0
MAX_BACKUP_EPOCH = 253_402_300_799
# A manifest nests 3 levels ("unprotected" -> "verify_state" -> values); json.loads recurses
# once per level and raises RecursionError near 1000, so deeper JSON is refused before it runs.
MAX_JSON_DEPTH = 64
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)|[\[\]{}]', re.DOTALL)


class UnsafeName(FormatError):
    """A name that would not be a single safe path component (``..``, ``/``, NUL ...)."""


def check_name(name: object, what: str) -> str:
    """Accept only ``[A-Za-z0-9_][A-Za-z0-9._-]*`` (<= 128 chars), PBS's id syntax."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise UnsafeName(f"unsafe {what} {brief(name)}: must match [A-Za-z0-9_][A-Za-z0-9._-]* "
                         "(no '/', '..', NUL, whitespace, leading dot, empty)")
    return name


def check_archive_name(filename: object) -> str:
    check_name(filename, "archive name")
    if not filename.endswith(ARCHIVE_SUFFIXES):
        raise UnsafeName(f"archive name {filename!r} must end in .fidx, .didx or .blob")
    return filename


def split_namespace(ns: str | None) -> tuple[str, ...]:
    """'a/b' -> ('a', 'b'); None or '' is the root namespace."""
    if not ns:
        return ()
    parts = tuple(ns.split("/"))
    if len(parts) > MAX_NAMESPACE_DEPTH:
        raise UnsafeName(f"namespace {ns!r} deeper than {MAX_NAMESPACE_DEPTH} levels")
    for part in parts:
        check_name(part, "namespace component")
    return parts


def namespace_dir(ns: str | None) -> str:
    """'a/b' -> 'ns/a/ns/b/' ('' for the root namespace)."""
    return "".join(f"ns/{part}/" for part in split_namespace(ns))


def format_backup_time(moment: datetime | int) -> str:
    return to_backup_datetime(moment).strftime(_TIME_FORMAT)


def to_backup_datetime(moment: datetime | int) -> datetime:
    """UTC datetime truncated to whole seconds (PBS snapshot times are epoch seconds)."""
    if isinstance(moment, int) and not isinstance(moment, bool):
        check_backup_epoch(moment)
        return datetime.fromtimestamp(moment, timezone.utc)
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(f"backup time must be an aware datetime or epoch int, got {brief(moment)}")
    moment = moment.astimezone(timezone.utc).replace(microsecond=0)
    if moment.year < 1970:
        raise FormatError(f"backup time {moment:%Y-%m-%d} is before 1970 (epoch 0)")
    return moment


def check_backup_epoch(value: int, what: str = "backup time") -> int:
    """Epoch seconds a snapshot time can have (see MIN/MAX_BACKUP_EPOCH); FormatError otherwise."""
    if not MIN_BACKUP_EPOCH <= value <= MAX_BACKUP_EPOCH:
        raise FormatError(f"{what} is out of range: epoch seconds must be {MIN_BACKUP_EPOCH}.."
                          f"{MAX_BACKUP_EPOCH} (1970-01-01 to 9999-12-31 UTC)")
    return value


def brief(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: hostile metadata must not make a long message."""
    try:
        text = repr(value)
    except ValueError:          # an int of more than 4,300 digits (sys.int_info.default_max_str_digits)
        return "(a number too large to show)"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def parse_backup_time(text: str) -> datetime:
    if not _TIME_PATTERN.fullmatch(text):
        raise FormatError(f"{brief(text)} is not a snapshot time like 2024-05-01T02:00:03Z")
    try:
        return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:      # month 13, day 45, year 0000...: not a date at all
        raise FormatError(f"{text!r} is not a valid date and time") from None


@dataclass(frozen=True)
class SnapshotRef:
    """One snapshot: ``[ns/<n>/...]<type>/<id>/<RFC3339 UTC>``."""

    ns: str | None
    backup_type: str
    backup_id: str
    backup_time: datetime

    def __post_init__(self) -> None:
        split_namespace(self.ns)
        if self.backup_type not in BACKUP_TYPES:
            raise UnsafeName(f"backup type {self.backup_type!r} is not one of {BACKUP_TYPES}")
        check_name(self.backup_id, "backup id")
        object.__setattr__(self, "ns", self.ns or None)
        object.__setattr__(self, "backup_time", to_backup_datetime(self.backup_time))

    @property
    def epoch(self) -> int:
        return int(self.backup_time.timestamp())

    @property
    def time_string(self) -> str:
        return format_backup_time(self.backup_time)

    @property
    def group_path(self) -> str:
        return f"{namespace_dir(self.ns)}{self.backup_type}/{self.backup_id}"

    @property
    def path(self) -> str:
        return f"{self.group_path}/{self.time_string}"

    def file_path(self, filename: str) -> str:
        if filename not in (MANIFEST_BLOB_NAME, ".protected"):
            check_archive_name(filename)
        return f"{self.path}/{filename}"

    def __str__(self) -> str:
        return self.path


def parse_snapshot_path(path: str) -> SnapshotRef:
    """Inverse of ``SnapshotRef.path``; raises FormatError for anything else."""
    parts = path.strip("/").split("/")
    ns_parts: list[str] = []
    while len(parts) > 3 and parts[0] == "ns":
        ns_parts.append(parts[1])
        parts = parts[2:]
    if len(parts) != 3:
        raise FormatError(f"{path!r} is not [ns/<n>/...]<type>/<id>/<time>")
    return SnapshotRef("/".join(ns_parts) or None, parts[0], parts[1],
                       parse_backup_time(parts[2]))


def classify_content_key(relative: str
                         ) -> tuple[str | None, str, str, datetime | None, str] | None:
    """'ns/a/vm/100/<time>/x.fidx' -> ('a', 'vm', '100', time, 'x.fidx'); group files get
    time None; keys that are no group or snapshot file (``.namespace``, junk) give None."""
    parts, ns_parts = relative.split("/"), []
    while len(parts) > 2 and parts[0] == "ns":
        ns_parts.append(parts[1])
        parts = parts[2:]
    if len(parts) not in (3, 4) or parts[0] not in BACKUP_TYPES:
        return None
    try:
        moment = parse_backup_time(parts[2]) if len(parts) == 4 else None
        ref = SnapshotRef("/".join(ns_parts) or None, parts[0], parts[1], moment or 0)
    except FormatError:
        return None
    return ref.ns, ref.backup_type, ref.backup_id, moment, parts[-1]


@dataclass(frozen=True)
class FileEntry:
    filename: str
    crypt_mode: str
    size: int
    csum: bytes

    def to_json(self) -> dict[str, Any]:
        return {"filename": self.filename, "crypt-mode": self.crypt_mode,
                "size": self.size, "csum": self.csum.hex()}


@dataclass(frozen=True)
class Manifest:
    backup_type: str
    backup_id: str
    backup_time: int
    files: tuple[FileEntry, ...]
    unprotected: dict[str, Any] = field(default_factory=dict)
    signature: str | None = None
    document: dict[str, Any] = field(default_factory=dict, repr=False)

    def file(self, filename: str) -> FileEntry:
        for entry in self.files:
            if entry.filename == filename:
                return entry
        raise FormatError(f"manifest does not list {filename!r}")

    @property
    def key_fingerprint(self) -> str | None:
        value = self.unprotected.get("key-fingerprint")
        return value if isinstance(value, str) else None

    @property
    def encrypted(self) -> bool:
        return any(entry.crypt_mode == "encrypt" for entry in self.files)


def blob_file_entry(filename: str, raw_blob: bytes, crypt_mode: str = "none") -> FileEntry:
    check_archive_name(filename)
    return FileEntry(filename, crypt_mode, len(raw_blob), hashlib.sha256(raw_blob).digest())


def index_file_entry(filename: str, raw_index: bytes, crypt_mode: str = "none") -> FileEntry:
    check_archive_name(filename)
    index = parse_index(raw_index)
    return FileEntry(filename, crypt_mode, index.size, index.csum)


def build_manifest(backup_type: str, backup_id: str, backup_time: datetime | int,
                   files: list[FileEntry], *, unprotected: dict[str, Any] | None = None,
                   crypt: CryptConfig | None = None) -> dict[str, Any]:
    """The manifest JSON document; signed, with ``key-fingerprint``, when ``crypt``."""
    ref = SnapshotRef(None, backup_type, backup_id, to_backup_datetime(backup_time))
    document: dict[str, Any] = {
        "backup-type": backup_type, "backup-id": backup_id, "backup-time": ref.epoch,
        "files": [entry.to_json() for entry in files],
        "unprotected": dict(unprotected or {}), "signature": None}
    if crypt is not None:
        document["signature"] = crypt.sign_manifest(document)
        document["unprotected"]["key-fingerprint"] = crypt.fingerprint()
    return document


def encode_manifest_blob(document: dict[str, Any]) -> bytes:
    """Pretty-printed JSON (as PBS writes it) in a zstd blob."""
    text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)
    return encode_blob(text.encode("utf-8"), compress=True, crypt=None)


def decode_manifest_blob(raw: bytes) -> Manifest:
    return parse_manifest(decode_blob(raw))


def check_json_depth(text: str, what: str = "manifest") -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH before json.loads recurses into it.

    One regular-expression pass over strings and brackets (an unterminated string runs to the
    end, so the scan stays linear); most documents skip it on the bracket count alone.
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        first = match.group()[0]
        if first in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise FormatError(f"{what} JSON nests deeper than {MAX_JSON_DEPTH} levels (a PBS "
                                  "manifest nests 3): damaged or hostile")
        elif first in "]}":
            depth -= 1


def load_json(data: bytes | str, what: str) -> Any:
    """``json.loads`` within the depth bound; every fault is a FormatError."""
    try:
        text = data if isinstance(data, str) else data.decode(json.detect_encoding(data), "surrogatepass")
        check_json_depth(text, what)
        return json.loads(text)
    except RecursionError:
        raise FormatError(f"{what} JSON nests too deep to parse: damaged or hostile") from None
    except FormatError:
        raise
    except ValueError as exc:   # JSONDecodeError, UnicodeDecodeError, int over 4300 digits
        raise FormatError(f"{what} is not JSON: {exc}") from None   # json's messages quote no content


def parse_manifest(data: bytes | str) -> Manifest:
    document = load_json(data, "manifest")
    if not isinstance(document, dict):
        raise FormatError("manifest JSON is not an object")
    for key in ("backup-type", "backup-id", "backup-time", "files"):
        if key not in document:
            raise FormatError(f"manifest lacks {key!r}")
    backup_time = document["backup-time"]
    if not isinstance(backup_time, int) or isinstance(backup_time, bool):
        raise FormatError(f"manifest backup-time {brief(backup_time)} is not an integer")
    check_backup_epoch(backup_time, "manifest backup-time")
    SnapshotRef(None, document["backup-type"], document["backup-id"], backup_time)
    if not isinstance(document["files"], list):
        raise FormatError("manifest 'files' is not a list")
    unprotected = document.get("unprotected") or {}
    signature = document.get("signature")
    if not isinstance(unprotected, dict) or not isinstance(signature, (str, type(None))):
        raise FormatError("manifest 'unprotected' must be an object, 'signature' a string")
    return Manifest(document["backup-type"], document["backup-id"], backup_time,
                    tuple(_parse_file_entry(item) for item in document["files"]),
                    unprotected, signature, document)


def _parse_file_entry(item: Any) -> FileEntry:
    if not isinstance(item, dict):
        raise FormatError(f"manifest file entry {brief(item)} is not an object")
    filename = check_archive_name(item.get("filename"))
    crypt_mode = item.get("crypt-mode", "none")  # absent in very old manifests
    if crypt_mode not in CRYPT_MODES:
        raise FormatError(f"{filename}: crypt-mode {brief(crypt_mode)} not one of {CRYPT_MODES}")
    size, csum = item.get("size"), item.get("csum")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise FormatError(f"{filename}: size {brief(size)} is not a non-negative integer")
    if not isinstance(csum, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", csum):
        raise FormatError(f"{filename}: csum {brief(csum)} is not 64 hex digits")
    return FileEntry(filename, crypt_mode, size, bytes.fromhex(csum))


def check_manifest_key(manifest: Manifest, crypt: CryptConfig | None) -> None:
    """PBS's rule: a manifest with a key fingerprint needs that key; a signature must match.

    Without ``crypt`` an unsigned manifest passes and a signed one raises MissingKey.
    """
    fingerprint = manifest.key_fingerprint
    if crypt is None:
        if fingerprint or manifest.signature:
            raise MissingKey(f"manifest was written with key {fingerprint or '(unknown)'}; "
                             "its signature cannot be checked without that key")
        return
    if fingerprint and fingerprint.lower() != crypt.fingerprint():
        raise DecryptionFailed(f"wrong key: manifest's key is {fingerprint}, the given key "
                               f"is {crypt.fingerprint()}")
    if manifest.signature and not verify_manifest_signature(manifest.document, crypt):
        raise ChecksumMismatch("manifest signature does not match (manifest altered, or "
                               "signed with another key)")
