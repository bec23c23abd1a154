"""A PBS datastore on disk (or in an S3-style object layout), written and read without PBS.

Local layout: content at the datastore root (``[ns/<n>/...]<type>/<id>/<time>/<file>``,
group files ``owner``/``notes``), chunks at ``.chunks/<hex[0:4]>/<hex>``. S3 layout
(PBS 4): content under ``<store>/.cnt/`` (namespaces also get a ``.namespace``
object), chunks under ``<store>/.chunks/``, and a ``<store>/.in-use`` marker. Both are
the same keys with different prefixes (``Layout``), so one reader serves both through
an ``ObjectSource`` (``LocalSource`` here; an S3 source only needs list/read/exists).

Flow: ``DatastoreWriter.write_snapshot`` chunks and stores each archive, writes the
indexes and blobs, then ``index.json.blob`` last. ``DatastoreReader`` lists groups and
snapshots from object keys, verifies a snapshot (manifest, index csums, every chunk's
magic, CRC and, given the key or for plain chunks, digest) and restores archives.
"""
from __future__ import annotations

import io
import json
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, Union

from restoredrill.pbsformat.blob import (ChecksumMismatch, DecryptionFailed, FormatError,
                                         check_blob, decode_blob, decode_chunk, encode_blob,
                                         verify_chunk)
from restoredrill.pbsformat.crypt import CryptConfig, chunk_digest
from restoredrill.pbsformat.index import (DEFAULT_CHUNK_SIZE, DynamicIndex, FixedIndex,
                                          encode_dynamic_index, encode_fixed_index,
                                          parse_index, split_dynamic)
from restoredrill.pbsformat.manifest import (BACKUP_TYPES, MANIFEST_BLOB_NAME, FileEntry,
                                             Manifest, SnapshotRef, UnsafeName,
                                             blob_file_entry, build_manifest, index_file_entry,
                                             check_archive_name, check_manifest_key,
                                             decode_manifest_blob, encode_manifest_blob,
                                             classify_content_key, split_namespace)

ArchiveData = Union[bytes, bytearray, memoryview, BinaryIO]
PROTECTED_NAME = ".protected"
CHUNK_DIR_COUNT = 65536


class MissingObject(LookupError):
    """An object (file) that the layout says should exist does not."""


class MissingChunk(FormatError):
    pass


class ObjectSource(Protocol):
    """Read-only object storage: keys are '/'-separated, relative, never '..'."""

    def list(self, prefix: str) -> Iterator[str]: ...
    def read(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or "\0" in key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UnsafeName(f"unsafe object key {key!r}")
    return key


class LocalSource:
    """An ObjectSource over a local directory (a PBS datastore path or a bucket copy)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def list(self, prefix: str) -> Iterator[str]:
        """Every file key starting with ``prefix``, sorted, walking only below it."""
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = self.path(base) if base else self.root
        if not top.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in sorted(filenames):
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    yield key

    def read(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise MissingObject(key) from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()


@dataclass(frozen=True)
class Layout:
    content_prefix: str
    chunk_prefix: str
    store: str | None = None

    @classmethod
    def local(cls) -> Layout:
        return cls("", ".chunks/")

    @classmethod
    def s3(cls, store: str | None) -> Layout:
        base = f"{check_key(store)}/" if store else ""
        return cls(f"{base}.cnt/", f"{base}.chunks/", store)

    def content_key(self, relative: str) -> str:
        return self.content_prefix + relative

    def chunk_key(self, digest: bytes) -> str:
        hex_digest = digest.hex()
        return f"{self.chunk_prefix}{hex_digest[:4]}/{hex_digest}"

    @property
    def marker_key(self) -> str:
        return f"{self.store}/.in-use" if self.store else ".in-use"


def make_layout(layout: str | Layout, store: str | None = None) -> Layout:
    if isinstance(layout, Layout):
        return layout
    if layout == "local":
        return Layout.local()
    if layout == "s3":
        return Layout.s3(store)
    raise ValueError(f"layout must be 'local' or 's3', not {layout!r}")


class DatastoreWriter:
    """Writes snapshots in the real PBS format (the test double's datastore)."""

    def __init__(self, root: str | os.PathLike[str], *, precreate_chunk_dirs: bool = True,
                 layout: str | Layout = "local", store: str | None = None,
                 owner: str = "root@pam"):
        """``layout="s3"`` writes the bucket's key tree under ``root`` (``store`` as the
        prefix, an ``.in-use`` marker, no chunk directories); ``owner`` goes into each new
        group's ``owner`` file. Precreating 65536 chunk dirs takes seconds on slow disks."""
        self.root = Path(root)
        self.layout = make_layout(layout, store)
        self.owner = owner
        self._known: set[bytes] = set()
        self._made_dirs: set[str] = set()
        self.root.mkdir(parents=True, exist_ok=True)
        if self.layout.content_prefix == "":
            self.root.joinpath(".chunks").mkdir(exist_ok=True)
            if precreate_chunk_dirs:
                self.create_chunk_dirs()
        elif not self._path(self.layout.marker_key).exists():
            marker = json.dumps({"hostname": socket.gethostname()}).encode()
            self._write_file(self.layout.marker_key, marker)

    def create_chunk_dirs(self) -> None:
        """``.chunks/0000`` .. ``.chunks/ffff``, as PBS creates them up front."""
        chunk_root = self.root / ".chunks"
        if (chunk_root / f"{CHUNK_DIR_COUNT - 1:04x}").is_dir():
            return
        fd = os.open(chunk_root, os.O_RDONLY | os.O_DIRECTORY)
        try:  # mkdirat relative to one open directory: about twice as fast as full paths
            for number in range(CHUNK_DIR_COUNT):
                try:
                    os.mkdir(f"{number:04x}", dir_fd=fd)
                except FileExistsError:
                    pass
        finally:
            os.close(fd)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _write_file(self, key: str, data: bytes) -> None:
        """Atomic: write ``<name>.tmp_<pid>`` beside it, then rename over."""
        path = self._path(key)
        if str(path.parent) not in self._made_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(str(path.parent))
        tmp = path.with_name(f"{path.name}.tmp_{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def has_chunk(self, digest: bytes) -> bool:
        if digest in self._known:
            return True
        found = self._path(self.layout.chunk_key(digest)).is_file()
        if found:
            self._known.add(digest)
        return found

    def write_chunk(self, raw_blob: bytes, digest: bytes, *, check: bool = True) -> bool:
        """Store one raw chunk blob; False when a chunk with that digest already exists."""
        if len(digest) != 32:
            raise ValueError("a chunk digest is 32 bytes")
        if check and not check_blob(raw_blob).crc_ok:
            raise FormatError(f"refusing chunk {digest.hex()}: blob CRC does not match")
        if self.has_chunk(digest):
            return False
        self._write_file(self.layout.chunk_key(digest), bytes(raw_blob))
        self._known.add(digest)
        return True

    def store_chunk(self, plain: bytes, crypt: CryptConfig | None, compress: bool) -> bytes:
        """Digest, encode (only if new) and store one chunk; returns its digest."""
        digest = chunk_digest(plain, crypt)
        if not self.has_chunk(digest):
            self.write_chunk(encode_blob(plain, compress=compress, crypt=crypt), digest,
                             check=False)
        return digest

    def write_snapshot(self, ns: str | None, backup_type: str, backup_id: str,
                       backup_time: datetime | int, archives: Mapping[str, ArchiveData], *,
                       crypt: CryptConfig | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                       dynamic_avg_size: int = DEFAULT_CHUNK_SIZE, protected: bool = False,
                       notes: str = "", unprotected: Mapping | None = None,
                       compress: bool = True) -> SnapshotRef:
        """Write a finished snapshot: archives, ``.protected``, then ``index.json.blob``.

        Archive names pick the format: ``*.img.fidx``-style ``.fidx`` (fixed chunks of
        ``chunk_size``, a power of two), ``.didx`` (content-defined chunks averaging
        ``dynamic_avg_size``) or ``.blob``. With ``crypt`` everything but the manifest is
        encrypted and the manifest is signed (crypt-mode ``encrypt``).
        """
        ref, entries = self._write_content(ns, backup_type, backup_id, backup_time, archives,
                                           crypt, chunk_size, dynamic_avg_size, compress)
        if protected:
            self._write_file(self.layout.content_key(ref.file_path(PROTECTED_NAME)), b"")
        extra = dict(unprotected or {})
        if notes:
            extra["notes"] = notes
        document = build_manifest(backup_type, backup_id, ref.epoch, entries,
                                  unprotected=extra, crypt=crypt)
        self._write_file(self.layout.content_key(ref.file_path(MANIFEST_BLOB_NAME)),
                         encode_manifest_blob(document))
        return ref

    def write_unfinished_snapshot(self, ns: str | None, backup_type: str, backup_id: str,
                                  backup_time: datetime | int,
                                  archives: Mapping[str, ArchiveData], *,
                                  crypt: CryptConfig | None = None,
                                  chunk_size: int = DEFAULT_CHUNK_SIZE,
                                  dynamic_avg_size: int = DEFAULT_CHUNK_SIZE) -> SnapshotRef:
        """Like an interrupted backup: archives and chunks, but no ``index.json.blob``."""
        ref, _ = self._write_content(ns, backup_type, backup_id, backup_time, archives, crypt,
                                     chunk_size, dynamic_avg_size, True)
        return ref

    def _write_content(self, ns, backup_type, backup_id, backup_time, archives, crypt,
                       chunk_size, dynamic_avg_size, compress
                       ) -> tuple[SnapshotRef, list[FileEntry]]:
        ref = SnapshotRef(ns, backup_type, backup_id, backup_time)
        for name in archives:
            if check_archive_name(name) == MANIFEST_BLOB_NAME:
                raise UnsafeName("index.json.blob is written by write_snapshot itself")
        if chunk_size <= 0 or chunk_size & (chunk_size - 1):
            raise ValueError(f"fixed chunk_size {chunk_size} must be a power of two")
        snapshot_dir = self._path(self.layout.content_key(ref.path))
        if snapshot_dir.exists():
            raise FileExistsError(f"snapshot {ref.path} already exists in {self.root}")
        self._write_group_files(ref)
        mode = "encrypt" if crypt else "none"
        entries = []
        for name, data in archives.items():
            if name.endswith(".fidx"):
                raw = self._index_fixed(data, crypt, chunk_size, compress, ref.epoch)
            elif name.endswith(".didx"):
                raw = self._index_dynamic(data, crypt, dynamic_avg_size, compress, ref.epoch)
            else:
                raw = encode_blob(_read_all(data), compress=compress, crypt=crypt)
            self._write_file(self.layout.content_key(ref.file_path(name)), raw)
            entries.append(blob_file_entry(name, raw, mode) if name.endswith(".blob")
                           else index_file_entry(name, raw, mode))
        return ref, entries

    def _write_group_files(self, ref: SnapshotRef) -> None:
        if "\n" in self.owner or "\0" in self.owner or not self.owner:
            raise UnsafeName(f"unsafe owner {self.owner!r}")
        if self.layout.content_prefix:
            parts = split_namespace(ref.ns)
            for depth in range(1, len(parts) + 1):
                ns_dir = "".join(f"ns/{p}/" for p in parts[:depth])
                self._write_file(self.layout.content_key(f"{ns_dir}.namespace"), b"")
        owner_key = self.layout.content_key(f"{ref.group_path}/owner")
        if not self._path(owner_key).exists():
            self._write_file(owner_key, f"{self.owner}\n".encode())

    def _index_fixed(self, data: ArchiveData, crypt, chunk_size, compress, ctime) -> bytes:
        stream = _as_stream(data)
        digests, size = [], 0
        while block := _read_exact(stream, chunk_size):
            digests.append(self.store_chunk(block, crypt, compress))
            size += len(block)
        return encode_fixed_index(digests, size=size, chunk_size=chunk_size, ctime=ctime)

    def _index_dynamic(self, data: ArchiveData, crypt, avg_size, compress, ctime) -> bytes:
        entries, end = [], 0
        for chunk in split_dynamic(data, avg_size):
            end += len(chunk)
            entries.append((end, self.store_chunk(chunk, crypt, compress)))
        return encode_dynamic_index(entries, ctime=ctime)


def _as_stream(data: ArchiveData) -> BinaryIO:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return io.BytesIO(data)
    return data


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    parts, wanted = [], size
    while wanted and (part := stream.read(wanted)):
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def _read_all(data: ArchiveData) -> bytes:
    return bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else data.read()


@dataclass(frozen=True)
class SnapshotInfo(SnapshotRef):
    finished: bool = False
    protected: bool = False
    files: tuple[str, ...] = ()

    @property
    def ref(self) -> SnapshotRef:
        return SnapshotRef(self.ns, self.backup_type, self.backup_id, self.backup_time)


@dataclass(frozen=True)
class GroupInfo:
    ns: str | None
    backup_type: str
    backup_id: str
    owner: str | None
    snapshot_count: int


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class VerifyReport:
    """A failed check is data: each problem names the object key it is about."""

    snapshot: SnapshotRef
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files_checked: int = 0
    chunks_checked: int = 0
    chunks_verified: int = 0
    chunks_crc_only: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def summary(self) -> str:
        state = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        return (f"{self.snapshot.path}: {state}; {self.files_checked} files, "
                f"{self.chunks_checked} chunks ({self.chunks_verified} content-verified, "
                f"{self.chunks_crc_only} CRC only)")


class DatastoreReader:
    """Reads and verifies a datastore through an ObjectSource; needs no PBS, no key."""

    def __init__(self, source: str | os.PathLike[str] | ObjectSource, *,
                 layout: str | Layout = "local", store: str | None = None):
        is_path = isinstance(source, (str, os.PathLike))
        self.source: ObjectSource = LocalSource(source) if is_path else source
        self.layout = make_layout(layout, store)

    def _scan(self) -> Iterator[tuple[str, tuple]]:
        prefix = self.layout.content_prefix
        for top in BACKUP_TYPES + ("ns",):
            for key in self.source.list(f"{prefix}{top}/"):
                parsed = classify_content_key(key[len(prefix):])
                if parsed:
                    yield key, parsed

    def list_groups(self) -> list[GroupInfo]:
        """Like ``proxmox-backup-client list`` (without PBS)."""
        owners: dict[tuple, str | None] = {}
        counts: dict[tuple, set] = {}
        for key, (ns, kind, ident, moment, name) in self._scan():
            group = (ns or "", kind, ident)
            owners.setdefault(group, None)
            counts.setdefault(group, set())
            if moment is not None:
                counts[group].add(moment)
            elif name == "owner":
                owners[group] = self.source.read(key).decode("utf-8", "replace").strip()
        return [GroupInfo(g[0] or None, g[1], g[2], owners[g], len(counts[g]))
                for g in sorted(owners)]

    def list_snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot with finished (has index.json.blob) and protected flags."""
        files: dict[tuple, list[str]] = {}
        for _key, (ns, kind, ident, moment, name) in self._scan():
            if moment is not None:
                files.setdefault((ns or "", kind, ident, moment), []).append(name)
        return [SnapshotInfo(s[0] or None, s[1], s[2], s[3],
                             finished=MANIFEST_BLOB_NAME in names,
                             protected=PROTECTED_NAME in names, files=tuple(sorted(names)))
                for s, names in sorted(files.items())]

    def _key(self, snapshot: SnapshotRef, filename: str) -> str:
        return self.layout.content_key(snapshot.file_path(filename))

    def read_file(self, snapshot: SnapshotRef, filename: str) -> bytes:
        return self.source.read(self._key(snapshot, filename))

    def read_manifest(self, snapshot: SnapshotRef) -> Manifest:
        """Decode ``index.json.blob`` and check it describes the snapshot it lies in."""
        manifest = decode_manifest_blob(self.read_file(snapshot, MANIFEST_BLOB_NAME))
        described = (manifest.backup_type, manifest.backup_id, manifest.backup_time)
        if described != (snapshot.backup_type, snapshot.backup_id, snapshot.epoch):
            raise FormatError(f"manifest describes {described}, but lies in {snapshot.path}")
        return manifest

    def read_archive_index(self, snapshot: SnapshotRef, filename: str
                           ) -> FixedIndex | DynamicIndex:
        return parse_index(self.read_file(snapshot, filename))

    def read_blob_archive(self, snapshot: SnapshotRef, filename: str,
                          crypt: CryptConfig | None = None) -> bytes:
        """A ``*.blob`` archive's content, checked against the manifest csum first."""
        entry = self.read_manifest(snapshot).file(filename)
        raw = self.read_file(snapshot, filename)
        _check_blob_entry(entry, raw)
        return decode_blob(raw, crypt)

    def read_chunk(self, digest: bytes, crypt: CryptConfig | None = None,
                   expected_size: int | None = None) -> bytes:
        key = self.layout.chunk_key(digest)
        try:
            return decode_chunk(self.source.read(key), digest, crypt, expected_size)
        except MissingObject:
            raise MissingChunk(f"chunk {key} is missing") from None
        except FormatError as exc:
            raise type(exc)(f"chunk {key}: {exc}") from None

    def restore_fixed(self, snapshot: SnapshotRef, filename: str, out_file: BinaryIO,
                      crypt: CryptConfig | None = None) -> int:
        """Reassemble a ``.fidx`` image into ``out_file``; returns the bytes written."""
        return self._restore(snapshot, filename, out_file, crypt, FixedIndex)

    def restore_dynamic(self, snapshot: SnapshotRef, filename: str, out_file: BinaryIO,
                        crypt: CryptConfig | None = None) -> int:
        """Reassemble a ``.didx`` stream (e.g. a pxar archive) into ``out_file``."""
        return self._restore(snapshot, filename, out_file, crypt, DynamicIndex)

    def _restore(self, snapshot, filename, out_file, crypt, index_type) -> int:
        manifest = self.read_manifest(snapshot)
        check_manifest_key(manifest, crypt)
        index = self.read_archive_index(snapshot, filename)
        if not isinstance(index, index_type):
            raise FormatError(f"{filename} is not a {index_type.__name__}")
        _check_index_entry(manifest.file(filename), index)
        written, last = 0, (b"", b"")
        for start, end, digest in index.chunks():
            if digest != last[0]:
                last = (digest, self.read_chunk(digest, crypt, end - start))
            out_file.write(last[1])
            written += end - start
        return written

    def verify_snapshot(self, snapshot: SnapshotRef, crypt: CryptConfig | None = None, *,
                        verified_chunks: set[bytes] | None = None) -> VerifyReport:
        """Check manifest, every archive's csum/size, and every referenced chunk.

        Without the key encrypted chunks get magic + CRC only (as PBS's verify does);
        ``verified_chunks`` carries good digests across snapshots to skip re-reading
        (share one set only between runs with the same key, or none).
        """
        report = VerifyReport(snapshot)
        manifest_key = self._key(snapshot, MANIFEST_BLOB_NAME)
        try:
            manifest = self.read_manifest(snapshot)
        except MissingObject:
            report.add(manifest_key, "index.json.blob is missing: the snapshot is unfinished")
            return report
        except FormatError as exc:
            report.add(manifest_key, f"manifest unreadable: {exc}")
            return report
        crypt = _check_key_for_verify(manifest, crypt, manifest_key, report)
        seen = verified_chunks if verified_chunks is not None else set()
        for entry in manifest.files:
            key = self._key(snapshot, entry.filename)
            try:
                raw = self.source.read(key)
            except MissingObject:
                report.add(key, "missing, but listed in the manifest")
                continue
            report.files_checked += 1
            try:
                if entry.filename.endswith(".blob"):
                    _verify_blob_archive(entry, raw, crypt, report)
                else:
                    index = parse_index(raw)
                    _check_index_entry(entry, index)
                    self._verify_chunks(entry, index, crypt, report, seen)
            except FormatError as exc:
                report.add(key, str(exc))
        return report

    def verify_all(self, crypt: CryptConfig | None = None) -> list[VerifyReport]:
        seen: set[bytes] = set()
        return [self.verify_snapshot(info, crypt, verified_chunks=seen)
                for info in self.list_snapshots()]

    def _verify_chunks(self, entry, index, crypt, report, seen) -> None:
        failed: set[bytes] = set()
        for position, (start, end, digest) in enumerate(index.chunks()):
            if digest in seen or digest in failed:
                continue
            report.chunks_checked += 1
            key = self.layout.chunk_key(digest)
            try:
                verified = verify_chunk(self.source.read(key), digest, crypt=crypt,
                                        expect_encrypted=entry.crypt_mode == "encrypt",
                                        expected_size=end - start)
            except (MissingObject, FormatError) as exc:
                problem = "missing" if isinstance(exc, MissingObject) else str(exc)
                report.add(key, f"{problem} (chunk {position} of {entry.filename}, "
                                f"bytes {start}..{end})")
                failed.add(digest)
                continue
            report.chunks_verified += verified
            report.chunks_crc_only += not verified
            seen.add(digest)


def _check_key_for_verify(manifest: Manifest, crypt: CryptConfig | None, manifest_key: str,
                          report: VerifyReport) -> CryptConfig | None:
    """Report key problems once; with a key of another fingerprint verify as keyless."""
    if crypt is None:
        if manifest.signature:
            report.notes.append(f"signed by key {manifest.key_fingerprint}; signature not "
                                "checked without the key")
        return None
    try:
        check_manifest_key(manifest, crypt)
    except DecryptionFailed as exc:
        report.add(manifest_key, f"{exc}; chunks checked by CRC only")
        return None
    except FormatError as exc:
        report.add(manifest_key, str(exc))
    return crypt


def _check_blob_entry(entry: FileEntry, raw: bytes) -> None:
    found = blob_file_entry(entry.filename, raw, entry.crypt_mode)
    if (found.size, found.csum) != (entry.size, entry.csum):
        raise ChecksumMismatch(f"{entry.filename}: size/csum {found.size}/{found.csum.hex()} "
                               f"!= manifest {entry.size}/{entry.csum.hex()}")


def _check_index_entry(entry: FileEntry, index: FixedIndex | DynamicIndex) -> None:
    if (index.size, index.csum) != (entry.size, entry.csum):
        raise ChecksumMismatch(f"{entry.filename}: index size/csum {index.size}/"
                               f"{index.csum.hex()} != manifest {entry.size}/"
                               f"{entry.csum.hex()}")


def _verify_blob_archive(entry: FileEntry, raw: bytes, crypt, report: VerifyReport) -> None:
    _check_blob_entry(entry, raw)
    info = check_blob(raw)
    if info.encrypted != (entry.crypt_mode == "encrypt"):
        raise FormatError(f"{info.kind} blob, but manifest crypt-mode is {entry.crypt_mode}")
    if not info.encrypted or crypt is not None:
        decode_blob(raw, crypt)
