"""Audit a PBS datastore's offsite copy in S3 (PBS 4 layout) without PBS and without the key.

Control flow: catalog (LIST ``<store>/.cnt/`` and ``<store>/.chunks/``) -> metadata
(read every manifest and every index/blob it lists: magic, sizes, csums against the
manifest) -> presence (every chunk an index references is in the chunk LISTING, never
a cache) -> sample (one rotating slice of the referenced chunks is read: magic, CRC-32,
and the digest where unencrypted; every chunk is read within ``runs`` runs) ->
retention and freshness per backup group. Bucket hardening (versioning, object lock,
lifecycle) and the cross-copy comparison are separate pure functions.

Everything here is pure: listings come in as iterables of objects with ``key``,
``size`` and ``last_modified``; reads come in through a ``read_many(keys)`` callable
yielding ``(key, bytes | MissingObject)``. Every problem names the object key.
"""
from __future__ import annotations

import hashlib
import os
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from restoredrill import retention
from restoredrill.checks.coverage import nothing_checked
from restoredrill.pbsformat import (BLOB_KINDS, MAX_BLOB_SIZE, MANIFEST_BLOB_NAME, DynamicIndex, FileEntry, FixedIndex,
                                    FormatError, Layout, LocalSource, Manifest, MissingObject,
                                    Problem, SnapshotRef, check_blob, classify_content_key,
                                    decode_chunk, decode_manifest_blob, parse_index)
from restoredrill.pbsformat.blob import ENCRYPTED_HEADER_SIZE

try:  # ISA-L's CRC-32 (PyPI isal) is about 5x zlib's; the same function, optional
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - depends on the installation
    from zlib import crc32

PROTECTED_NAME = ".protected"
IN_PROGRESS_GRACE = timedelta(hours=2)
MAX_LISTED = 5

# read_many(keys) -> (key, bytes | MissingObject), in any order
ReadMany = Callable[..., Iterator[tuple[str, object]]]
# scan_many(keys, make_scanner) -> (key, make_scanner(key) fed the object, then .finish() | MissingObject)
ScanMany = Callable[..., Iterator[tuple[str, object]]]


# --- catalog: what the bucket listing holds ---------------------------------------------

@dataclass
class SnapshotObjects:
    """One snapshot directory as listed: file name -> listed object."""

    ref: SnapshotRef
    files: dict[str, object] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.ref.path

    @property
    def group(self) -> str:
        return self.ref.group_path

    @property
    def finished(self) -> bool:
        return MANIFEST_BLOB_NAME in self.files

    @property
    def protected(self) -> bool:
        return PROTECTED_NAME in self.files

    @property
    def last_write(self) -> datetime | None:
        times = [getattr(info, "last_modified", None) for info in self.files.values()]
        times = [t for t in times if t is not None]
        return max(times) if times else None


@dataclass
class Catalog:
    layout: Layout
    snapshots: list[SnapshotObjects]
    chunks: dict[bytes, int]              # digest -> object size
    stray_chunk_keys: list[str]           # under .chunks/ but not <hex4>/<hex64> (e.g. .bad)
    content_objects: int
    content_bytes: int

    def groups(self) -> dict[str, list[SnapshotObjects]]:
        out: dict[str, list[SnapshotObjects]] = {}
        for snap in self.snapshots:
            out.setdefault(snap.group, []).append(snap)
        return out

    @property
    def chunk_bytes(self) -> int:
        return sum(self.chunks.values())


def parse_chunk_key(key: str, layout: Layout) -> bytes | None:
    """``<store>/.chunks/abcd/abcd...`` -> the 32-byte digest; None for anything else."""
    rest = key[len(layout.chunk_prefix):] if key.startswith(layout.chunk_prefix) else None
    if rest is None or len(rest) != 69 or rest[4] != "/" or rest[5:9] != rest[:4]:
        return None
    try:
        return bytes.fromhex(rest[5:])
    except ValueError:
        return None


def build_catalog(content: Iterable, chunks: Iterable, layout: Layout) -> Catalog:
    """Group the content listing into snapshots and index the chunk listing by digest."""
    snapshots: dict[tuple, SnapshotObjects] = {}
    count = size = 0
    for info in content:
        count += 1
        size += info.size
        relative = info.key[len(layout.content_prefix):]
        parsed = classify_content_key(relative)
        if parsed is None or parsed[3] is None:
            continue  # group files (owner, notes), .namespace markers, junk
        ns, kind, ident, moment, name = parsed
        ident_key = (ns or "", kind, ident, moment)
        if ident_key not in snapshots:
            snapshots[ident_key] = SnapshotObjects(SnapshotRef(ns, kind, ident, moment))
        snapshots[ident_key].files[name] = info
    listed: dict[bytes, int] = {}
    stray: list[str] = []
    for info in chunks:
        digest = parse_chunk_key(info.key, layout)
        if digest is None:
            stray.append(info.key)
        else:
            listed[digest] = info.size
    ordered = [snapshots[k] for k in sorted(snapshots, key=lambda k: (k[0], k[1], k[2], k[3]))]
    return Catalog(layout, ordered, listed, stray, count, size)


# --- metadata: every manifest and every index/blob it lists ------------------------------

@dataclass(frozen=True)
class ChunkUse:
    """Where a chunk is first referenced: the index object and the chunk's place in it."""

    index_key: str
    position: int
    encrypted: bool          # the archive's crypt-mode is "encrypt"
    size: int                # plaintext bytes the index expects


@dataclass
class MetadataResult:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifests: dict[str, Manifest] = field(default_factory=dict)     # snapshot path -> manifest
    uses: dict[bytes, ChunkUse] = field(default_factory=dict)
    references: Counter = field(default_factory=Counter)              # digest -> references
    manifests_read: int = 0
    indexes_read: int = 0
    blobs_read: int = 0
    plain_archives: list[str] = field(default_factory=list)           # keys with crypt-mode none
    fingerprints: Counter = field(default_factory=Counter)            # key fingerprint -> manifests
    snapshots_by_key: dict = field(default_factory=dict)              # key fingerprint -> snapshot paths
    in_progress: list[str] = field(default_factory=list)

    def add(self, key: str, message: str) -> None:
        self.problems.append(Problem(key, message))


def audit_metadata(catalog: Catalog, read_many: ReadMany, now: datetime,
                   in_progress_grace: timedelta = IN_PROGRESS_GRACE) -> MetadataResult:
    """Read and check every manifest, then every archive (index or blob) the manifests list."""
    result = MetadataResult()
    layout = catalog.layout
    finished = [s for s in catalog.snapshots if s.finished]
    for snap in catalog.snapshots:
        if not snap.finished:
            judge_unfinished(snap, layout, now, in_progress_grace, result)
    manifest_keys = {layout.content_key(s.ref.file_path(MANIFEST_BLOB_NAME)): s for s in finished}
    archives: dict[str, tuple[SnapshotObjects, FileEntry]] = {}
    for key, raw in read_many(list(manifest_keys)):
        snap = manifest_keys[key]
        manifest = check_manifest(snap, key, raw, result)
        if manifest is None:
            continue
        result.manifests[snap.path] = manifest
        if manifest.key_fingerprint:
            result.fingerprints[manifest.key_fingerprint] += 1
            result.snapshots_by_key.setdefault(manifest.key_fingerprint, []).append(snap.path)
        for entry in manifest.files:
            archive_key = layout.content_key(snap.ref.file_path(entry.filename))
            if entry.filename not in snap.files:
                result.add(archive_key, f"missing from the bucket listing, but listed in the manifest "
                                        f"{key}")
                continue
            archives[archive_key] = (snap, entry)
            if entry.crypt_mode != "encrypt":
                result.plain_archives.append(archive_key)
    for key, raw in read_many(list(archives)):
        check_archive(key, raw, archives[key][1], result)
    result.problems.sort(key=lambda p: p.path)
    result.plain_archives.sort()
    return result


def judge_unfinished(snap: SnapshotObjects, layout: Layout, now: datetime, grace: timedelta,
                     result: MetadataResult) -> None:
    """No manifest: a sync still writing it (recent objects) or a snapshot that lost it."""
    key = layout.content_key(snap.ref.file_path(MANIFEST_BLOB_NAME))
    written = snap.last_write
    if written is not None and now - written < grace:
        result.in_progress.append(snap.path)
        result.notes.append(f"{snap.path}: no {MANIFEST_BLOB_NAME} yet, last object written "
                            f"{written:%Y-%m-%d %H:%M} UTC (a sync in progress?)")
        return
    when = f"; its objects were last written {written:%Y-%m-%d %H:%M} UTC" if written else ""
    result.add(key, f"missing: snapshot {snap.path} has {len(snap.files)} object(s) but no manifest, "
                    f"so it cannot be restored{when}")


def check_manifest(snap: SnapshotObjects, key: str, raw: bytes | MissingObject,
                   result: MetadataResult) -> Manifest | None:
    if isinstance(raw, MissingObject):
        result.add(key, "listed, but missing when read")
        return None
    result.manifests_read += 1
    try:
        manifest = decode_manifest_blob(raw)
    except FormatError as exc:
        result.add(key, f"manifest unreadable: {exc}")
        return None
    described = (manifest.backup_type, manifest.backup_id, manifest.backup_time)
    if described != (snap.ref.backup_type, snap.ref.backup_id, snap.ref.epoch):
        result.add(key, f"manifest describes {described}, but lies in {snap.path}")
        return None
    return manifest


def check_archive(key: str, raw: bytes | MissingObject, entry: FileEntry,
                  result: MetadataResult) -> None:
    """An index (magic, length, own csum, size/csum against the manifest) or a blob
    (size/csum against the manifest, magic, CRC, encryption as the manifest says)."""
    if isinstance(raw, MissingObject):
        result.add(key, "listed, but missing when read")
        return
    if entry.filename.endswith(".blob"):
        result.blobs_read += 1
        for problem in check_blob_archive(entry, raw):
            result.add(key, problem)
        return
    result.indexes_read += 1
    try:
        index = parse_index(raw)
    except FormatError as exc:
        result.add(key, f"index unreadable: {exc}")
        return
    if (index.size, index.csum) != (entry.size, entry.csum):
        result.add(key, f"index size/csum {index.size}/{index.csum.hex()} does not match the manifest's "
                        f"{entry.size}/{entry.csum.hex()}")
        return
    record_chunk_uses(key, index, entry.crypt_mode == "encrypt", result)


def check_blob_archive(entry: FileEntry, raw: bytes) -> list[str]:
    found_csum = hashlib.sha256(raw).digest()
    if (len(raw), found_csum) != (entry.size, entry.csum):
        return [f"blob size/csum {len(raw)}/{found_csum.hex()} does not match the manifest's "
                f"{entry.size}/{entry.csum.hex()}"]
    try:
        info = check_blob(raw)
    except FormatError as exc:
        return [f"not a blob: {exc}"]
    if not info.crc_ok:
        return [f"CRC mismatch in {info.kind} blob: stored {info.stored_crc:08x}, computed "
                f"{info.computed_crc:08x}"]
    if info.encrypted != (entry.crypt_mode == "encrypt"):
        return [f"{info.kind} blob, but the manifest's crypt-mode is {entry.crypt_mode}"]
    return []


def record_chunk_uses(key: str, index: FixedIndex | DynamicIndex, encrypted: bool,
                      result: MetadataResult) -> None:
    """The use named for each chunk is the smallest (index key, position): the same whatever
    order the reads complete in."""
    for position, (start, end, digest) in enumerate(index.chunks()):
        result.references[digest] += 1
        current = result.uses.get(digest)
        if current is None or (key, position) < (current.index_key, current.position):
            result.uses[digest] = ChunkUse(key, position, encrypted, end - start)


# --- presence: every referenced chunk is listed ---------------------------------------

def find_missing_chunks(metadata: MetadataResult, catalog: Catalog) -> list[Problem]:
    """Referenced digests absent from the ``.chunks/`` listing, each naming its chunk key."""
    problems = []
    for digest, use in sorted(metadata.uses.items(), key=lambda item: (item[1].index_key, item[1].position)):
        if digest not in catalog.chunks:
            others = metadata.references[digest] - 1
            more = f" and {others} other reference(s)" if others else ""
            problems.append(Problem(catalog.layout.chunk_key(digest),
                                    f"missing from the bucket listing; referenced by {use.index_key} "
                                    f"(chunk {use.position}){more}"))
    return problems


# --- sample: a rotating slice of the chunks is read ------------------------------------

@dataclass(frozen=True)
class RotationPlan:
    """This run reads slice ``index`` (0-based) of ``runs``; a full cycle reads every chunk."""

    index: int
    runs: int
    cycle_started: str
    last_complete: str | None = None

    def describe(self) -> str:
        return f"slice {self.index + 1}/{self.runs}"

    @property
    def runs_left_after_this(self) -> int:
        return self.runs - self.index - 1


def plan_rotation(saved: Mapping | None, runs: int, now: datetime) -> RotationPlan:
    """Continue the saved cycle; start a new one when there is none, or ``runs`` changed."""
    if runs < 1:
        raise ValueError(f"the chunk read rotation needs at least 1 run, not {runs}")
    stamp = now.astimezone(timezone.utc).isoformat(timespec="seconds")
    if not saved or saved.get("runs") != runs or not 0 <= int(saved.get("next", 0)) < runs:
        last = saved.get("last_complete") if saved else None
        return RotationPlan(0, runs, stamp, last)
    index = int(saved["next"])
    return RotationPlan(index, runs, saved.get("cycle_started") or stamp if index else stamp,
                        saved.get("last_complete"))


def advance_rotation(plan: RotationPlan, now: datetime) -> dict:
    """The state to save after the slice was read completely."""
    stamp = now.astimezone(timezone.utc).isoformat(timespec="seconds")
    if plan.index + 1 >= plan.runs:
        return {"runs": plan.runs, "next": 0, "cycle_started": None, "last_complete": stamp}
    return {"runs": plan.runs, "next": plan.index + 1, "cycle_started": plan.cycle_started,
            "last_complete": plan.last_complete}


def slice_of(digest: bytes, runs: int) -> int:
    """Stable slice of a chunk: its digest (uniform) modulo the number of runs."""
    return int.from_bytes(digest[:8], "big") % runs


def select_slice(digests: Iterable[bytes], plan: RotationPlan) -> list[bytes]:
    return sorted(d for d in digests if slice_of(d, plan.runs) == plan.index)


@dataclass
class SampleResult:
    problems: list[Problem] = field(default_factory=list)
    chunks_read: int = 0
    bytes_read: int = 0
    digest_verified: int = 0
    crc_only: int = 0
    unencrypted: list[str] = field(default_factory=list)


def check_chunk(raw: bytes, digest: bytes, use: ChunkUse | None, encryption_required: bool
                ) -> tuple[list[str], str]:
    """Problems with one chunk object and how far it was checked: "crc" (encrypted, no key),
    "digest" (plain: decoded and hashed) or "bad"."""
    try:
        info = check_blob(raw)
    except FormatError as exc:
        return [f"not a chunk blob: {exc}"], "bad"
    if not info.crc_ok:
        return [f"CRC mismatch in {info.kind} chunk: stored {info.stored_crc:08x}, computed "
                f"{info.computed_crc:08x} (bit rot or tampering)"], "bad"
    problems = []
    if use is not None and info.encrypted != use.encrypted:
        wanted = "encrypted" if use.encrypted else "unencrypted"
        problems.append(f"{info.kind} chunk, but {use.index_key} is an {wanted} archive")
    if info.encrypted:
        return problems, "crc"
    if encryption_required:
        problems.append(f"unencrypted chunk ({info.kind}): the provider can read this data, but the "
                        "datastore requires client-side encryption")
    try:
        decode_chunk(raw, digest, None, use.size if use else None)
    except FormatError as exc:
        problems.append(str(exc))
        return problems, "bad"
    return problems, "digest"


@dataclass(frozen=True)
class ChunkVerdict:
    size: int
    problems: list[str]
    depth: str


class ChunkScanner:
    """``check_chunk`` fed in pieces: an encrypted chunk (all a keyless reader can check is
    magic and CRC) is CRC'd piece by piece and never held whole; a plain chunk is kept
    and checked by ``check_chunk`` at the end (decoded and hashed). Same verdicts."""

    def __init__(self, digest: bytes, use: ChunkUse | None, encryption_required: bool):
        self.digest, self.use, self.encryption_required = digest, use, encryption_required
        self.head = bytearray()
        self.kind: tuple[str, bool, bool] | None = None
        self.header_size = 0
        self.size = 0
        self.crc = 0
        self.kept: list[bytes] | None = None

    def feed(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.kept is not None:
            self.kept.append(piece)
            return
        if self.kind is None:
            self.head += piece
            self._read_header()
            return
        self.crc = crc32(piece, self.crc)

    def _read_header(self) -> None:
        if len(self.head) < 8:
            return
        kind = BLOB_KINDS.get(bytes(self.head[:8]))
        if kind is None or not kind[1]:          # plain (or not a blob): check the whole thing
            self.kept = [bytes(self.head)]
            self.kind = kind
            return
        if len(self.head) < ENCRYPTED_HEADER_SIZE:
            return
        self.kind, self.header_size = kind, ENCRYPTED_HEADER_SIZE
        self.crc = crc32(memoryview(self.head)[ENCRYPTED_HEADER_SIZE:])

    def finish(self) -> ChunkVerdict:
        if self.kept is not None or self.kind is None:
            raw = b"".join(self.kept) if self.kept is not None else bytes(self.head)
            problems, depth = check_chunk(raw, self.digest, self.use, self.encryption_required)
            return ChunkVerdict(self.size, problems, depth)
        name = self.kind[0]
        if self.size > MAX_BLOB_SIZE + self.header_size:
            return ChunkVerdict(self.size, [f"not a chunk blob: blob too large: {self.size} bytes > 128 MiB "
                                            "+ header"], "bad")
        (stored,) = struct.unpack_from("<I", self.head, 8)
        if stored != self.crc:
            return ChunkVerdict(self.size, [f"CRC mismatch in {name} chunk: stored {stored:08x}, computed "
                                            f"{self.crc:08x} (bit rot or tampering)"], "bad")
        problems = []
        if self.use is not None and not self.use.encrypted:
            problems.append(f"{name} chunk, but {self.use.index_key} is an unencrypted archive")
        return ChunkVerdict(self.size, problems, "crc")


def audit_sample(digests: list[bytes], metadata: MetadataResult, catalog: Catalog,
                 scan_many: ScanMany, encryption_required: bool) -> SampleResult:
    """Stream the chunks through a ``ChunkScanner`` each (in the reading threads)."""
    result = SampleResult()
    keys = {catalog.layout.chunk_key(d): d for d in digests}

    def make_scanner(key: str) -> ChunkScanner:
        return ChunkScanner(keys[key], metadata.uses.get(keys[key]), encryption_required)

    for key, verdict in scan_many(list(keys), make_scanner):
        if isinstance(verdict, MissingObject):
            result.problems.append(Problem(key, "listed, but missing when read"))
            continue
        result.chunks_read += 1
        result.bytes_read += verdict.size
        result.digest_verified += verdict.depth == "digest"
        result.crc_only += verdict.depth == "crc"
        use = metadata.uses.get(keys[key])
        where = f" (chunk {use.position} of {use.index_key})" if use else ""
        for problem in verdict.problems:
            if problem.startswith("unencrypted chunk"):
                result.unencrypted.append(key)
            result.problems.append(Problem(key, problem + where))
    result.problems.sort(key=lambda p: p.path)
    result.unencrypted.sort()
    return result


# --- retention and freshness per group -------------------------------------------------

def group_points(catalog: Catalog) -> dict[str, list[retention.Point]]:
    return {group: [retention.Point(time=s.ref.backup_time, name=s.path, protected=s.protected,
                                    unfinished=not s.finished) for s in snaps]
            for group, snaps in catalog.groups().items()}


def audit_retention(catalog: Catalog, policy: retention.Policy, tz: str, now: datetime,
                    rpo: timedelta) -> dict[str, retention.Audit]:
    """The PBS prune engine's audit, one backup group at a time (PBS prunes per group)."""
    return {group: retention.audit(points, policy, "pbs", tz, now, rpo=rpo)
            for group, points in group_points(catalog).items()}


@dataclass(frozen=True)
class GroupFreshness:
    group: str
    newest: str | None
    age: timedelta | None

    @property
    def age_hours(self) -> float | None:
        return None if self.age is None else round(self.age.total_seconds() / 3600, 2)


def check_freshness(catalog: Catalog, now: datetime, limit: timedelta
                    ) -> tuple[list[str], list[GroupFreshness]]:
    """Each group's newest finished snapshot must be younger than ``limit``."""
    problems, facts = [], []
    groups = catalog.groups()
    if not groups:
        return ["no snapshots at all under the store prefix: nothing to restore"], []
    for group, snaps in groups.items():
        finished = [s for s in snaps if s.finished]
        if not finished:
            problems.append(f"{group}: no finished snapshot ({len(snaps)} without a manifest)")
            facts.append(GroupFreshness(group, None, None))
            continue
        newest = max(finished, key=lambda s: s.ref.backup_time)
        age = now - newest.ref.backup_time
        facts.append(GroupFreshness(group, newest.path, age))
        if age > limit:
            problems.append(f"{group}: newest snapshot {newest.path} is {age.total_seconds() / 3600:.1f} h "
                            f"old, older than {limit.total_seconds() / 3600:g} h")
    return problems, facts


# --- bucket hardening ---------------------------------------------------------------------

@dataclass
class Hardening:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)


def rule_prefix(rule: Mapping) -> tuple[str, bool]:
    """(key prefix the rule applies to, whether tags or sizes narrow it further)."""
    filt = rule.get("Filter")
    if filt is None:
        return str(rule.get("Prefix", "")), False
    if "And" in filt:
        inner = filt["And"]
        narrowed = bool(inner.get("Tags")) or "ObjectSizeGreaterThan" in inner or \
            "ObjectSizeLessThan" in inner
        return str(inner.get("Prefix", "")), narrowed
    narrowed = "Tag" in filt or "ObjectSizeGreaterThan" in filt or "ObjectSizeLessThan" in filt
    return str(filt.get("Prefix", "")), narrowed


def rule_covers_store(prefix: str, store_prefix: str) -> bool:
    """A rule prefix touches the store when it is empty, a parent of it, or inside it."""
    store = store_prefix.rstrip("/") + "/" if store_prefix else ""
    return prefix == "" or store.startswith(prefix) or prefix.startswith(store)


def describe_expiration(expiration: Mapping) -> str | None:
    if "Days" in expiration:
        return f"after {expiration['Days']} days"
    if "Date" in expiration:
        when = expiration["Date"]
        return f"on {when:%Y-%m-%d}" if isinstance(when, datetime) else f"on {when}"
    return None


def evaluate_hardening(versioning: Mapping, lock: Mapping | None, rules: list[Mapping],
                       store_prefix: str, require_object_lock: bool) -> Hardening:
    """Versioning, object lock (mode, default retention) and lifecycle rules, judged."""
    report = Hardening()
    status = versioning.get("Status") or "Off"
    report.facts["versioning"] = status
    lock_on = bool(lock) and lock.get("ObjectLockEnabled") == "Enabled"
    default = ((lock or {}).get("Rule") or {}).get("DefaultRetention") or {}
    report.facts["object_lock"] = "Enabled" if lock_on else "Off"
    if default:
        span = f"{default['Days']} days" if "Days" in default else f"{default.get('Years')} years"
        report.facts["object_lock_mode"] = default.get("Mode")
        report.facts["object_lock_retention"] = span
    judge = report.problems if require_object_lock else report.notes
    if status != "Enabled":
        judge.append(f"versioning is {status}: an overwritten or deleted object is gone for good")
    if not lock_on:
        judge.append("object lock is off: anyone holding a write key (ransomware on the PBS host) can "
                     "delete or overwrite the offsite copy" + ("; require_object_lock is set" if
                                                               require_object_lock else ""))
    elif not default:
        judge.append("object lock is enabled but has no default retention: new objects (PBS writes "
                     "no per-object retention) are not locked")
    elif default.get("Mode") == "GOVERNANCE":
        report.notes.append(f"object lock in GOVERNANCE mode ({report.facts['object_lock_retention']}): "
                            "a user with s3:BypassGovernanceRetention can still delete; COMPLIANCE "
                            "mode cannot be bypassed")
    for rule in rules:
        judge_lifecycle_rule(rule, store_prefix, report)
    report.facts["lifecycle_rules"] = len(rules)
    return report


def judge_lifecycle_rule(rule: Mapping, store_prefix: str, report: Hardening) -> None:
    name = rule.get("ID") or "(no id)"
    prefix, narrowed = rule_prefix(rule)
    if not rule_covers_store(prefix, store_prefix):
        return
    scope = f"lifecycle rule {name!r} (prefix {prefix!r}{', narrowed by tags/size' if narrowed else ''})"
    if rule.get("Status") != "Enabled":
        report.notes.append(f"{scope} is disabled")
        return
    expiration = describe_expiration(rule.get("Expiration") or {})
    if expiration:
        maybe = "may expire (it is narrowed by tags or size, which cannot be proven to spare backups)" \
            if narrowed else "expires"
        report.problems.append(f"{scope} {maybe} objects under {store_prefix!r} {expiration}: it would "
                               "delete chunks and manifests of snapshots that PBS still keeps")
    elif (rule.get("Expiration") or {}).get("ExpiredObjectDeleteMarker"):
        report.notes.append(f"{scope} removes expired delete markers (harmless)")
    noncurrent = rule.get("NoncurrentVersionExpiration") or {}
    if "NoncurrentDays" in noncurrent:
        report.notes.append(f"{scope} expires noncurrent versions after {noncurrent['NoncurrentDays']} days: "
                            "a rollback of deleted or overwritten objects is possible only that long")
    for transition in rule.get("Transitions") or ():
        report.notes.append(f"{scope} moves objects to {transition.get('StorageClass')} "
                            f"{describe_expiration(transition) or ''}: reads may then need a restore "
                            "request first")


# --- cross-copy consistency (local PBS datastore vs offsite copy) ----------------------------

@dataclass(frozen=True)
class CopyListing:
    """One snapshot on one side: backup time and file name -> csum (hex) from its manifest."""

    backup_time: datetime
    files: Mapping[str, str]


@dataclass
class CopyComparison:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    compared: int = 0
    pending: int = 0
    pruned_offsite: int = 0


def compare_copies(local: Mapping[str, CopyListing], offsite: Mapping[str, CopyListing],
                   now: datetime, sync_window: timedelta, *, policy: retention.Policy | None = None,
                   tz: str | None = None) -> CopyComparison:
    """Local snapshots older than the sync window must be offsite with the same csums.

    Keys are snapshot paths (``vm/100/2024-05-01T02:00:03Z``). A snapshot newer than
    ``now - sync_window`` that is not offsite yet is pending (the next sync copies it); one
    that is offsite already is compared like any other (a copy that is there must match).
    Without that, a site that keeps only the last two local snapshots compares nothing for
    hours every night, between its backup and the end of the window. With ``policy``
    (the offsite store's retention) a local snapshot the offsite prune removes is not
    expected there. Offsite-only snapshots are normal (the offsite store keeps more).
    """
    result = CopyComparison()
    pruned = offsite_prunes(local, offsite, policy, tz) if policy is not None else set()
    for path, mine in sorted(local.items()):
        theirs = offsite.get(path)
        if theirs is None and mine.backup_time > now - sync_window:
            result.pending += 1
            continue
        if theirs is None:
            if path in pruned:
                result.pruned_offsite += 1
                continue
            result.problems.append(f"{path}: in the local datastore since {mine.backup_time:%Y-%m-%d %H:%M} "
                                   f"UTC, but not offsite although the sync window ({sync_window}) has passed")
            continue
        result.compared += 1
        for filename, csum in sorted(mine.files.items()):
            other = theirs.files.get(filename)
            if other is None:
                result.problems.append(f"{path}/{filename}: missing from the offsite manifest")
            elif other.lower() != csum.lower():
                result.problems.append(f"{path}/{filename}: csum differs: local {csum}, offsite {other}")
        extra = sorted(set(theirs.files) - set(mine.files))
        if extra:
            result.notes.append(f"{path}: offsite manifest lists more files: {', '.join(extra)}")
    return result


def nothing_compared(result: CopyComparison, *, where: str, empty_ok: bool = False) -> tuple[str, str] | None:
    """The zero rule for a comparison without problems and 0 compared: ``("skip", reason)``
    when the chosen snapshots are all still pending inside the sync window (a later run
    compares them), else ``("fail", message)``, or ``("pass", why)`` when the target declares
    ``expect_empty``. None when something was compared or there are problems (they fail)."""
    if result.compared or result.problems:
        return None
    if result.pending and not result.pruned_offsite:
        return "skip", (f"{where}: all {result.pending} snapshot(s) chosen are newer than the sync window, so "
                        "none is due offsite yet; nothing was compared this run (a later run compares them)")
    cause = (f"the {result.pruned_offsite} snapshot(s) due offsite are all removed by the offsite prune"
             if result.pruned_offsite else
             "the local datastore lists no finished snapshot: a token without Datastore.Audit on it, a wrong "
             "datastore or namespace, or a datastore nothing has been backed up to")
    failure = nothing_checked(0, "snapshots compared", where, empty_ok=empty_ok, cause=cause)
    if failure is None:
        return "pass", "expect_empty: true on the target: an empty datastore is expected"
    return "fail", str(failure)


def offsite_prunes(local: Mapping[str, CopyListing], offsite: Mapping[str, CopyListing],
                   policy: retention.Policy, tz: str | None) -> set[str]:
    """Snapshot paths the offsite prune removes, over the union of both sides, per group."""
    groups: dict[str, dict[str, datetime]] = {}
    for side in (offsite, local):
        for path, listing in side.items():
            groups.setdefault(path.rsplit("/", 1)[0], {})[path] = listing.backup_time
    removed: set[str] = set()
    for members in groups.values():
        points = [retention.Point(time=t, name=p) for p, t in members.items()]
        removed.update(d.point.name for d in retention.simulate_pbs(points, policy, tz) if not d.keep)
    return removed


# --- a local bucket copy (unit tests, or an `aws s3 sync` mirror) ---------------------------

@dataclass(frozen=True)
class LocalObject:
    key: str
    size: int
    last_modified: datetime | None


class LocalObjects:
    """The listing/reading side of the audit over a local folder holding the bucket's keys."""

    def __init__(self, root: str | os.PathLike[str]):
        self.source = LocalSource(root)

    def list_objects(self, prefix: str) -> Iterator[LocalObject]:
        for key in self.source.list(prefix):
            stat = self.source.path(key).stat()
            yield LocalObject(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, timezone.utc))

    def read_many(self, keys: Iterable[str], process: Callable[[str, bytes], object] | None = None
                  ) -> Iterator[tuple[str, object]]:
        for key in keys:
            try:
                data = self.source.read(key)
            except MissingObject as missing:
                yield key, missing
                continue
            yield key, process(key, data) if process is not None else data

    def scan_many(self, keys: Iterable[str], make_scanner: Callable[[str], object], piece: int = 65536
                  ) -> Iterator[tuple[str, object]]:
        for key, data in self.read_many(keys):
            if isinstance(data, MissingObject):
                yield key, data
                continue
            scanner = make_scanner(key)
            for start in range(0, len(data), piece):
                scanner.feed(data[start:start + piece])
            yield key, scanner.finish()

    def path(self, key: str) -> Path:
        return self.source.path(key)


def list_some(items: list[str], limit: int = MAX_LISTED) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")
