"""The lab's pxar writer: the container backups the Proxmox double serves are real pxar.

Lab only (the harness never writes archives for production). Written strictly from the
upstream encoder, github proxmox/pxar ``src/encoder/mod.rs``: ``EncoderImpl::new`` (FORMAT_VERSION
2 and an optional PRELUDE only for split archives, PAYLOAD_START_MARKER first in the
payload stream), ``encode_metadata`` (ENTRY), ``encode_filename`` (name + NUL),
``create_file_do`` (inline PAYLOAD, or PAYLOAD_REF pointing at the PAYLOAD header in the
payload stream; the goodbye item's size is meta size + file size either way),
``add_symlink``/``add_device``/``add_fifo``/``add_socket``/``add_hardlink`` (offset back
from the link's FILENAME to the target's), ``create_directory``/``finish`` and
``finish_goodbye_table`` (items sorted by name hash, laid out as a binary search tree,
offsets relative to the GOODBYE header, tail item pointing back to the directory's ENTRY),
``close`` (PAYLOAD_TAIL_MARKER). Entries of a directory are written sorted by name, as
proxmox-backup ``pbs-client/src/pxar/create.rs`` does (``file_list.sort_unstable_by``);
a hardlink names its target by its path from the archive root, as create.rs does.

``unchecked=True`` skips the name and hardlink checks so tests can write hostile archives.
"""
from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from restoredrill.pbsformat.pxar import name_problem
from restoredrill.pbsformat.pxarformat import (
    DEVICE, FORMAT_VERSION_2, GOODBYE_ITEM, HEADER, PAYLOAD_REF, PXAR_DEVICE, PXAR_ENTRY,
    PXAR_FILENAME, PXAR_FORMAT_VERSION, PXAR_GOODBYE, PXAR_GOODBYE_TAIL_MARKER,
    PXAR_HARDLINK, PXAR_PAYLOAD, PXAR_PAYLOAD_REF, PXAR_PAYLOAD_START_MARKER,
    PXAR_PAYLOAD_TAIL_MARKER, PXAR_PRELUDE, PXAR_SYMLINK, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO,
    S_IFLNK, S_IFREG, S_IFSOCK, STAT, U64, bst_order, hash_filename)

_TYPE_BITS = {"dir": S_IFDIR, "file": S_IFREG, "symlink": S_IFLNK, "fifo": S_IFIFO,
              "socket": S_IFSOCK, "chardev": S_IFCHR, "blockdev": S_IFBLK}


@dataclass
class Node:
    """One object to archive. ``kind``: dir, file, symlink, hardlink, fifo, socket,
    chardev, blockdev. ``target``: a symlink's target or a hardlink's target path from the
    root; ``device``: (major, minor); ``children``: a directory's entries by name."""
    kind: str
    perms: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    data: bytes = b""
    target: bytes = b""
    device: tuple[int, int] = (0, 0)
    children: dict[bytes, "Node"] = field(default_factory=dict)


def _item(htype: int, content: bytes) -> bytes:
    return HEADER.pack(htype, HEADER.size + len(content)) + content


class _Writer:
    def __init__(self, split: bool, unchecked: bool) -> None:
        self.meta = io.BytesIO()
        self.payload = io.BytesIO() if split else None
        self.unchecked = unchecked
        self.files: dict[bytes, int] = {}   # path -> FILENAME offset of a regular file

    def put(self, htype: int, content: bytes) -> None:
        self.meta.write(_item(htype, content))

    def entry(self, node: Node) -> None:
        mode = _TYPE_BITS[node.kind] | (node.perms & 0o7777)
        secs, nanos = divmod(node.mtime_ns, 1_000_000_000)
        self.put(PXAR_ENTRY, STAT.pack(mode, 0, node.uid, node.gid, secs, nanos, 0))

    def directory(self, node: Node, path: bytes, entry_offset: int) -> None:
        items = []
        for name in sorted(node.children):
            if not self.unchecked and name_problem(name):
                raise ValueError(f"cannot archive {path + name!r}: {name_problem(name)}")
            start = self.meta.tell()
            child_path = path + b"/" + name if path else name
            size_extra = self.child(node.children[name], name, child_path, start)
            items.append((hash_filename(name), start, self.meta.tell() - start + size_extra))
        goodbye_offset = self.meta.tell()
        items.sort(key=lambda item: item[0])
        table = b"".join(GOODBYE_ITEM.pack(items[src][0], goodbye_offset - items[src][1],
                                           items[src][2]) for src in bst_order(len(items)))
        tail_size = HEADER.size + len(table) + GOODBYE_ITEM.size
        table += GOODBYE_ITEM.pack(PXAR_GOODBYE_TAIL_MARKER, goodbye_offset - entry_offset,
                                   tail_size)
        self.put(PXAR_GOODBYE, table)

    def child(self, node: Node, name: bytes, path: bytes, start: int) -> int:
        """Write one directory entry; return what the goodbye size counts beyond the meta
        bytes (a split file's size, as create_file_do does)."""
        self.put(PXAR_FILENAME, name + b"\0")
        if node.kind == "hardlink":
            target_offset = self.files.get(node.target)
            if target_offset is None and not self.unchecked:
                raise ValueError(f"hardlink {path!r} to {node.target!r}: no earlier file")
            back = start - (target_offset if target_offset is not None else 0)
            self.put(PXAR_HARDLINK, U64.pack(back) + node.target + b"\0")
            return 0
        entry_offset = self.meta.tell()
        self.entry(node)
        if node.kind == "dir":
            self.directory(node, path, entry_offset)
        elif node.kind == "file":
            self.files[path] = start
            return self.file_content(node.data)
        elif node.kind == "symlink":
            self.put(PXAR_SYMLINK, node.target + b"\0")
        elif node.kind in ("chardev", "blockdev"):
            self.put(PXAR_DEVICE, DEVICE.pack(*node.device))
        return 0

    def file_content(self, data: bytes) -> int:
        if self.payload is None:
            self.put(PXAR_PAYLOAD, data)
            return 0
        self.put(PXAR_PAYLOAD_REF, PAYLOAD_REF.pack(self.payload.tell(), len(data)))
        self.payload.write(_item(PXAR_PAYLOAD, data))
        return len(data)


def encode(root: Node, *, split: bool = False, prelude: bytes | None = None,
           unchecked: bool = False) -> tuple[bytes, bytes | None]:
    """The archive of ``root``: ``(pxar, None)``, or ``(mpxar, ppxar)`` when ``split``."""
    if root.kind != "dir":
        raise ValueError("the archive root must be a directory")
    writer = _Writer(split, unchecked)
    if split:
        writer.payload.write(HEADER.pack(PXAR_PAYLOAD_START_MARKER, HEADER.size))
        writer.put(PXAR_FORMAT_VERSION, U64.pack(FORMAT_VERSION_2))
        if prelude is not None:
            writer.put(PXAR_PRELUDE, prelude)
    elif prelude is not None:
        raise ValueError("a prelude needs format version 2 (a split archive)")
    entry_offset = writer.meta.tell()
    writer.entry(root)
    writer.directory(root, b"", entry_offset)
    if writer.payload is None:
        return writer.meta.getvalue(), None
    writer.payload.write(HEADER.pack(PXAR_PAYLOAD_TAIL_MARKER, HEADER.size))
    return writer.meta.getvalue(), writer.payload.getvalue()


def tree_of_files(files: dict[str, bytes], mtime_ns: int) -> Node:
    """A root directory holding ``files`` ('a/b' paths), owner root, mode 0644/0755."""
    root = Node("dir", perms=0o755, mtime_ns=mtime_ns)
    for name, data in files.items():
        *parents, leaf = name.encode().split(b"/")
        here = root
        for part in parents:
            here = here.children.setdefault(part, Node("dir", perms=0o755, mtime_ns=mtime_ns))
        here.children[leaf] = Node("file", data=data, mtime_ns=mtime_ns)
    return root


def tree_of_directory(source: Path, mtime_ns: int) -> Node:
    """``source`` as a Node tree (owner root, mtime = backup time, as the tar stand-in did);
    hard-linked files become pxar hardlinks to their first path, as create.rs does."""
    seen: dict[tuple[int, int], bytes] = {}

    def walk(directory: Path, prefix: bytes) -> Node:
        node = Node("dir", perms=directory.stat().st_mode & 0o7777, mtime_ns=mtime_ns)
        for child in sorted(directory.iterdir(), key=lambda item: os.fsencode(item.name)):
            name = os.fsencode(child.name)
            path = prefix + b"/" + name if prefix else name
            info = child.lstat()
            perms = info.st_mode & 0o7777
            if stat.S_ISDIR(info.st_mode):
                node.children[name] = walk(child, path)
            elif stat.S_ISLNK(info.st_mode):
                node.children[name] = Node("symlink", perms=0o777, mtime_ns=mtime_ns,
                                           target=os.fsencode(os.readlink(child)))
            elif stat.S_ISREG(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if info.st_nlink > 1 and key in seen:
                    node.children[name] = Node("hardlink", target=seen[key])
                    continue
                seen[key] = path
                node.children[name] = Node("file", perms=perms, mtime_ns=mtime_ns,
                                           data=child.read_bytes())
        return node

    return walk(source, b"")
