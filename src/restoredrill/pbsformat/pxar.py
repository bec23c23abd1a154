"""A streaming reader for pxar, the archive format of PBS container and file backups.

``iter_entries(meta, payload)`` walks a pxar stream once, front to back, and yields one
:class:`Entry` per archived file system object, root first (path ``''``). It reads a single
``root.pxar`` (``payload=None``) or the split pair PBS 3.3+ writes: the metadata stream
``root.mpxar`` and the payload stream ``root.ppxar``, into which each file's PAYLOAD_REF
points. Without ``payload`` a split archive is still listed (names, sizes, offsets), only
the payload references go unchecked.

Written from the upstream sources, not from examples: the ``pxar`` crate (github
proxmox/pxar) ``src/format/mod.rs`` (item layout, order of items in an entry, goodbye
items), ``src/decoder/mod.rs`` (``read_next_entry_or_eof``, ``read_current_item``:
which item ends an entry, FORMAT_VERSION/PRELUDE only at the start, PAYLOAD_START_MARKER
first in the payload stream), ``src/encoder/mod.rs`` (``finish_goodbye_table``: offsets
relative to the GOODBYE header, the tail item; ``add_hardlink``: the offset back to the
target's FILENAME; ``create_file_do``: PAYLOAD_REF points at the PAYLOAD header in the
payload stream) and ``src/util.rs`` (``validate_filename``); proxmox-backup
``pbs-client/src/pxar/create.rs`` (a hardlink names its target by the path from the
archive root) and ``extract.rs`` (``extract_hardlink``: that path must be relative).

Archives are hostile input. Every name is checked as upstream ``validate_filename`` does
(not empty, not ``.``/``..``, no ``/``, no NUL, at most 4096 bytes); a name twice in one
directory, a hardlink whose target is not an earlier regular file of this archive (by
offset and by name), any size or offset beyond its stream, a truncated stream, a goodbye
table that does not match the directory it closes (names' hashes, offsets, sizes, tree
order), nesting deeper than ``max_depth`` and trailing bytes all raise :class:`PxarError`
with one line naming the entry path (escaped: non-printable bytes as ``\\xNN``). Symlinks
are reported, never followed; nothing is extracted, nothing is executed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from restoredrill.pbsformat.blob import FormatError
from restoredrill.pbsformat.pxarformat import (
    ATTRIBUTE_ITEMS, DEVICE, FIXED_CONTENT, FORMAT_VERSION_2, GOODBYE_ITEM, HEADER,
    MAX_CONTENT, MAX_FILENAME_LEN, PAYLOAD_REF, PXAR_DEVICE, PXAR_ENTRY, PXAR_ENTRY_V1,
    PXAR_FILENAME, PXAR_FORMAT_VERSION, PXAR_GOODBYE, PXAR_GOODBYE_TAIL_MARKER,
    PXAR_HARDLINK, PXAR_PAYLOAD, PXAR_PAYLOAD_REF, PXAR_PAYLOAD_START_MARKER,
    PXAR_PAYLOAD_TAIL_MARKER, PXAR_PRELUDE, PXAR_SYMLINK, S_IFBLK, S_IFCHR, S_IFDIR,
    S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, STAT, STAT_V1, U64, hash_filename,
    bst_order)
from restoredrill.pbsformat.pxarstream import Stream, shown

__all__ = ["Entry", "PxarError", "iter_entries", "read_file"]

_SPECIAL_KINDS = {S_IFDIR: "dir", S_IFIFO: "fifo", S_IFSOCK: "socket"}


class PxarError(FormatError):
    """A pxar stream that is damaged, truncated or hostile (a ValueError)."""


@dataclass(frozen=True)
class Entry:
    """One archived object. ``path`` is relative (``'a/b/c'``, ``''`` for the root), names
    decoded with ``os.fsdecode`` (bytes that are not UTF-8 survive as surrogates).
    ``mode`` is the full ``st_mode`` (type and permission bits). ``size`` is set for files.
    ``link_target`` is a symlink's target (never followed, may be absolute) or a hardlink's
    target path; a hardlink has no metadata of its own in pxar, so it carries its target's
    mode, owner, mtime, size and payload offset. ``payload_offset`` is where the content
    starts: in a single archive the offset of the content bytes in ``meta``, in a split
    archive the offset of the PAYLOAD header in ``payload`` (upstream ``PayloadRef.offset``).
    ``device`` is a device node's (major, minor)."""
    path: str
    kind: str  # 'dir','file','symlink','hardlink','device','fifo','socket'
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int | None
    link_target: str | None
    payload_offset: int | None
    device: tuple[int, int] | None = None


@dataclass
class _Dir:
    path: str
    entry_offset: int             # offset of the directory's ENTRY header
    filename_offset: int | None   # offset of its FILENAME header (None: the root)
    name: bytes
    children: dict                # FILENAME offset -> (hash, acceptable end offsets)
    names: set


class _Reader:
    def __init__(self, meta: BinaryIO, payload: BinaryIO | None, max_depth: int) -> None:
        self.meta = Stream(meta, "archive", PxarError)
        self.payload = Stream(payload, "payload stream", PxarError) if payload is not None else None
        self.max_depth = max_depth
        self.files: dict[int, Entry] = {}   # FILENAME offset -> regular file entry
        self.split = False

    def fail(self, path: str, what: str) -> PxarError:
        return PxarError(f"pxar: {what} at '/{shown(path)}'")

    def header(self, path: str, *, eof_ok: bool = False) -> tuple[int, int, int] | None:
        """(htype, content size, offset of the header), or None at a clean end of stream."""
        offset = self.meta.pos
        raw = self.meta.read_exact(HEADER.size, path, eof_ok=eof_ok)
        if raw is None:
            return None
        htype, full_size = HEADER.unpack(raw)
        if full_size < HEADER.size:
            raise self.fail(path, f"item header at offset {offset} is smaller than a header")
        size = full_size - HEADER.size
        if htype in FIXED_CONTENT and size != FIXED_CONTENT[htype]:
            raise self.fail(path, f"item {htype:#x} at offset {offset} has size {size}, "
                                  f"expected {FIXED_CONTENT[htype]}")
        if htype in MAX_CONTENT and size > MAX_CONTENT[htype]:
            raise self.fail(path, f"item {htype:#x} at offset {offset} is {size} bytes, "
                                  f"over the format's limit {MAX_CONTENT[htype]}")
        self.meta.check_room(size, path)
        return htype, size, offset

    def run(self) -> Iterator[Entry]:
        if self.payload is not None:
            self.payload.expect_marker(PXAR_PAYLOAD_START_MARKER, "", "does not start with "
                                       "PAYLOAD_START_MARKER")
        htype, size, offset = self.header("")
        if htype == PXAR_FORMAT_VERSION:
            version = U64.unpack(self.meta.read_exact(size, ""))[0]
            if version != FORMAT_VERSION_2:
                raise self.fail("", f"unknown pxar format version {version}")
            self.split = True
            htype, size, offset = self.header("")
            if htype == PXAR_PRELUDE:
                self.meta.skip(size, "")
                htype, size, offset = self.header("")
        if htype not in (PXAR_ENTRY, PXAR_ENTRY_V1):
            raise self.fail("", f"archive does not start with an ENTRY (item {htype:#x})")
        root, pending = self.read_entry("", htype, size)
        if root.kind != "dir":
            raise self.fail("", f"archive root is a {root.kind}, not a directory")
        yield root
        stack = [_Dir("", offset, None, b"", {}, set())]
        while stack:
            directory = stack[-1]
            htype, size, offset = pending or self.header(directory.path)
            pending = None
            if htype == PXAR_GOODBYE:
                self.check_goodbye(directory, size, offset)
                stack.pop()
                if stack:
                    stack[-1].children[directory.filename_offset] = (
                        hash_filename(directory.name), {self.meta.pos})
                continue
            if htype != PXAR_FILENAME:
                raise self.fail(directory.path, f"expected FILENAME or GOODBYE, found item "
                                                f"{htype:#x} at offset {offset}")
            name = self.read_name(directory, size)
            path = f"{directory.path}/{os.fsdecode(name)}" if directory.path else os.fsdecode(name)
            htype, size, entry_offset = self.header(path)
            if htype == PXAR_HARDLINK:
                entry = self.read_hardlink(path, size, offset)
                directory.children[offset] = (hash_filename(name), {self.meta.pos})
                yield entry
                continue
            if htype not in (PXAR_ENTRY, PXAR_ENTRY_V1):
                raise self.fail(path, f"FILENAME not followed by ENTRY or HARDLINK (item {htype:#x})")
            entry, pending = self.read_entry(path, htype, size)
            if entry.kind == "dir":
                if len(stack) >= self.max_depth:
                    raise self.fail(path, f"directories nested deeper than {self.max_depth}")
                stack.append(_Dir(path, entry_offset, offset, name, {}, set()))
            else:
                end = pending[2] if pending else self.meta.pos
                ends = {end}
                if entry.kind == "file" and self.split:
                    # encoder create_file_do: a file written through create_file counts its
                    # size into the goodbye item although its bytes went to the payload
                    # stream; add_payload_ref (a reused payload) does not
                    ends.add(end + entry.size)
                directory.children[offset] = (hash_filename(name), ends)
                if entry.kind == "file":
                    self.files[offset] = entry
            yield entry
        if self.meta.read_exact(1, "", eof_ok=True) is not None:
            raise self.fail("", f"trailing bytes after the root directory's GOODBYE at offset "
                                f"{self.meta.pos - 1}")
        if self.payload is not None:
            self.payload.expect_tail(PXAR_PAYLOAD_TAIL_MARKER, "")

    def read_name(self, directory: _Dir, size: int) -> bytes:
        data = self.meta.read_exact(size, directory.path)
        name = data[:-1]
        shown_path = f"{directory.path}/{os.fsdecode(name)}" if directory.path else os.fsdecode(name)
        if not data.endswith(b"\0"):
            raise self.fail(shown_path, "file name without its terminating NUL")
        problem = name_problem(name)
        if problem:
            raise self.fail(shown_path, problem)
        if name in directory.names:
            raise self.fail(shown_path, "name occurs twice in one directory")
        directory.names.add(name)
        return name

    def read_entry(self, path: str, htype: int, size: int):
        """ENTRY (stat) and the items up to what ends it: (Entry, pending header or None)."""
        raw = self.meta.read_exact(size, path)
        if htype == PXAR_ENTRY:
            mode, _flags, uid, gid, secs, nanos, _pad = STAT.unpack(raw)
            if nanos >= 1_000_000_000:
                raise self.fail(path, f"mtime nanoseconds {nanos} out of range")
            mtime_ns = secs * 1_000_000_000 + nanos
        else:   # Stat_V1: mtime in nanoseconds since the epoch
            mode, _flags, uid, gid, mtime_ns = STAT_V1.unpack(raw)
        file_type = mode & S_IFMT
        fields = dict(path=path, mode=mode, uid=uid, gid=gid, mtime_ns=mtime_ns,
                      size=None, link_target=None, payload_offset=None)
        while True:
            htype, size, offset = self.header(path)
            if htype in ATTRIBUTE_ITEMS:
                self.meta.skip(size, path)
                continue
            if htype in (PXAR_FILENAME, PXAR_GOODBYE):
                kind = _SPECIAL_KINDS.get(file_type)
                if kind is None:
                    raise self.fail(path, f"mode {mode:#o} has no content item")
                return Entry(kind=kind, **fields), (htype, size, offset)
            expected = {PXAR_PAYLOAD: (S_IFREG,), PXAR_PAYLOAD_REF: (S_IFREG,),
                        PXAR_SYMLINK: (S_IFLNK,), PXAR_DEVICE: (S_IFCHR, S_IFBLK)}.get(htype)
            if expected is None:
                raise self.fail(path, f"unexpected item {htype:#x} at offset {offset}")
            if file_type not in expected:
                raise self.fail(path, f"item {htype:#x} does not fit mode {mode:#o}")
            return self.read_content(path, htype, size, fields), None

    def read_content(self, path: str, htype: int, size: int, fields: dict) -> Entry:
        if htype == PXAR_PAYLOAD:
            if self.split:
                raise self.fail(path, "inline PAYLOAD in a split (format version 2) archive")
            fields.update(size=size, payload_offset=self.meta.pos)
            self.meta.skip(size, path)
            return Entry(kind="file", **fields)
        if htype == PXAR_PAYLOAD_REF:
            if not self.split:
                raise self.fail(path, "PAYLOAD_REF in an archive without format version 2")
            offset, length = PAYLOAD_REF.unpack(self.meta.read_exact(size, path))
            if self.payload is not None:
                self.payload.check_payload(offset, length, path)
            fields.update(size=length, payload_offset=offset)
            return Entry(kind="file", **fields)
        if htype == PXAR_DEVICE:
            major, minor = DEVICE.unpack(self.meta.read_exact(DEVICE.size, path))
            return Entry(kind="device", device=(major, minor), **fields)
        data = self.meta.read_exact(size, path)
        if len(data) < 2 or not data.endswith(b"\0") or b"\0" in data[:-1]:
            raise self.fail(path, "symlink target empty, unterminated or with a NUL inside")
        fields.update(link_target=os.fsdecode(data[:-1]))
        return Entry(kind="symlink", **fields)

    def read_hardlink(self, path: str, size: int, filename_offset: int) -> Entry:
        data = self.meta.read_exact(size, path)
        if len(data) <= U64.size + 1 or not data.endswith(b"\0"):
            raise self.fail(path, "hardlink item too small or unterminated")
        back = U64.unpack_from(data)[0]
        target = data[U64.size:-1]
        problem = path_problem(target)
        if problem:
            raise self.fail(path, f"hardlink target {problem}")
        shown_target = os.fsdecode(target)
        original = self.files.get(filename_offset - back) if 0 < back <= filename_offset else None
        if original is None or original.path != shown_target:
            raise self.fail(path, f"hardlink to '/{shown(shown_target)}' does not point to an "
                                  f"earlier file of this archive")
        return Entry(path=path, kind="hardlink", mode=original.mode, uid=original.uid,
                     gid=original.gid, mtime_ns=original.mtime_ns, size=original.size,
                     link_target=shown_target, payload_offset=original.payload_offset)

    def check_goodbye(self, directory: _Dir, size: int, offset: int) -> None:
        count = len(directory.children)
        if size != (count + 1) * GOODBYE_ITEM.size:
            raise self.fail(directory.path, f"goodbye table of {size} bytes for {count} entries")
        raw = self.meta.read_exact(size, directory.path)
        items = [GOODBYE_ITEM.unpack_from(raw, at) for at in range(0, size, GOODBYE_ITEM.size)]
        tail_hash, tail_offset, tail_size = items.pop()
        if (tail_hash, tail_offset, tail_size) != (
                PXAR_GOODBYE_TAIL_MARKER, offset - directory.entry_offset, size + HEADER.size):
            raise self.fail(directory.path, "goodbye table tail does not point to its directory")
        expected = sorted(item_hash for item_hash, _ in directory.children.values())
        if [item[0] for item in items] != [expected[index] for index in bst_order(count)]:
            raise self.fail(directory.path, "goodbye table is not the hash tree of its entries")
        unseen = dict(directory.children)
        for item_hash, item_offset, item_size in items:
            start = offset - item_offset if item_offset <= offset else None
            child = unseen.pop(start, None)
            if child is None or child[0] != item_hash or start + item_size not in child[1]:
                raise self.fail(directory.path, "goodbye table item does not match an entry "
                                                f"(offset {item_offset}, size {item_size})")


def name_problem(name: bytes) -> str | None:
    """Why ``name`` cannot be one directory entry (upstream util::validate_filename, plus
    NUL), or None."""
    if not name:
        return "empty file name"
    if name in (b".", b".."):
        return f"file name '{name.decode()}'"
    if b"/" in name:
        return "file name with '/'"
    if b"\0" in name:
        return "file name with a NUL byte"
    if len(name) > MAX_FILENAME_LEN:
        return f"file name longer than {MAX_FILENAME_LEN} bytes"
    return None


def path_problem(path: bytes) -> str | None:
    """Why ``path`` is not a relative path inside the archive (extract.rs
    assert_relative_path, tightened: every component must be a valid name), or None."""
    if path.startswith(b"/"):
        return "is absolute"
    for part in path.split(b"/"):
        problem = name_problem(part)
        if problem:
            return f"has a bad component ({problem})"
    return None


def iter_entries(meta: BinaryIO, payload: BinaryIO | None = None, *,
                 max_depth: int = 256) -> Iterator[Entry]:
    """Every entry of the pxar archive in ``meta`` (and, for a split archive, ``payload``),
    in archive order, checked as the module docstring says. Streams are read front to back
    once; a seekable stream is skipped by seeking and its size bounds every offset."""
    return _Reader(meta, payload, max_depth).run()


def read_file(meta: BinaryIO, payload: BinaryIO | None, entry: Entry, limit: int) -> bytes:
    """The content of a ``file`` (or ``hardlink``) entry from seekable streams, at most
    ``limit`` bytes (a larger file raises). The bytes are hostile: never execute them."""
    if entry.payload_offset is None or entry.size is None:
        raise PxarError(f"pxar: '/{shown(entry.path)}' is a {entry.kind}, not a file")
    if entry.size > limit:
        raise PxarError(f"pxar: '/{shown(entry.path)}' is {entry.size} bytes, over the "
                        f"read limit {limit}")
    if payload is None:
        stream = Stream(meta, "archive", PxarError)
        stream.seek(entry.payload_offset - HEADER.size, entry.path)
    else:
        stream = Stream(payload, "payload stream", PxarError)
        stream.seek(entry.payload_offset, entry.path)
    htype, full_size = HEADER.unpack(stream.read_exact(HEADER.size, entry.path))
    if htype != PXAR_PAYLOAD or full_size - HEADER.size != entry.size:
        raise PxarError(f"pxar: no PAYLOAD of {entry.size} bytes where '/{shown(entry.path)}' "
                        f"points")
    return stream.read_exact(entry.size, entry.path)
