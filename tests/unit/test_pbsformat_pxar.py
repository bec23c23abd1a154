"""The streaming pxar reader (pbsformat/pxar.py) against material we did not write.

No real .pxar/.mpxar/.ppxar sample exists in the upstream repositories we could fetch
(github proxmox/pxar has no binary test data; proxmox-backup's tests/catar_data are source
directories, archived only by the Rust client, which is not installable here). So the
reader is proven against:
- the crate's own values: every item type constant is hash_filename of its
  "__PROXMOX_FORMAT_...__" string (pxar examples/mk-format-hashes.rs), the SipHash-2-4
  reference vectors, and the binary_tree_array doc-test permutations;
- byte fixtures assembled here by hand with struct.pack from the format constants:
  pxar tests/compat.rs ``create_archive`` (a v1 archive, item by item), and a split
  (v2) archive laid out as src/encoder/mod.rs ``EncoderImpl::new``, ``create_file_do``,
  ``finish_goodbye_table`` and ``close`` write it;
- archives from the lab writer (lab/pxarwrite.py), written from src/encoder/mod.rs.
"""
from __future__ import annotations

import io
import struct

import pytest

from restoredrill.lab.pxarwrite import Node, encode
from restoredrill.pbsformat import pxarformat as fmt
from restoredrill.pbsformat.pxar import Entry, PxarError, iter_entries, read_file

# examples/mk-format-hashes.rs: (constant, hashed string)
FORMAT_HASHES = [
    ("PXAR_FORMAT_VERSION", "__PROXMOX_FORMAT_VERSION__"),
    ("PXAR_ENTRY", "__PROXMOX_FORMAT_ENTRY_V2__"), ("PXAR_ENTRY_V1", "__PROXMOX_FORMAT_ENTRY__"),
    ("PXAR_PRELUDE", "__PROXMOX_FORMAT_PRELUDE__"), ("PXAR_FILENAME", "__PROXMOX_FORMAT_FILENAME__"),
    ("PXAR_SYMLINK", "__PROXMOX_FORMAT_SYMLINK__"), ("PXAR_DEVICE", "__PROXMOX_FORMAT_DEVICE__"),
    ("PXAR_XATTR", "__PROXMOX_FORMAT_XATTR__"), ("PXAR_ACL_USER", "__PROXMOX_FORMAT_ACL_USER__"),
    ("PXAR_ACL_GROUP", "__PROXMOX_FORMAT_ACL_GROUP__"),
    ("PXAR_ACL_GROUP_OBJ", "__PROXMOX_FORMAT_ACL_GROUP_OBJ__"),
    ("PXAR_ACL_DEFAULT", "__PROXMOX_FORMAT_ACL_DEFAULT__"),
    ("PXAR_ACL_DEFAULT_USER", "__PROXMOX_FORMAT_ACL_DEFAULT_USER__"),
    ("PXAR_ACL_DEFAULT_GROUP", "__PROXMOX_FORMAT_ACL_DEFAULT_GROUP__"),
    ("PXAR_FCAPS", "__PROXMOX_FORMAT_FCAPS__"), ("PXAR_QUOTA_PROJID", "__PROXMOX_FORMAT_QUOTA_PROJID__"),
    ("PXAR_HARDLINK", "__PROXMOX_FORMAT_HARDLINK__"), ("PXAR_PAYLOAD", "__PROXMOX_FORMAT_PXAR_PAYLOAD__"),
    ("PXAR_PAYLOAD_REF", "__PROXMOX_FORMAT_PXAR_PAYLOAD_REF__"),
    ("PXAR_GOODBYE", "__PROXMOX_FORMAT_GOODBYE__"),
    ("PXAR_GOODBYE_TAIL_MARKER", "__PROXMOX_FORMAT_PXAR_GOODBYE_TAIL_MARKER__"),
    ("PXAR_PAYLOAD_START_MARKER", "__PROXMOX_FORMAT_PXAR_PAYLOAD_START_MARKER__"),
    ("PXAR_PAYLOAD_TAIL_MARKER", "__PROXMOX_FORMAT_PXAR_PAYLOAD_TAIL_MARKER__"),
]


@pytest.mark.parametrize(("constant", "text"), FORMAT_HASHES)
def test_hash_filename_reproduces_every_upstream_item_type(constant: str, text: str) -> None:
    assert fmt.hash_filename(text.encode()) == getattr(fmt, constant)


def test_siphash_reference_vectors() -> None:
    # SipHash paper, appendix A / reference vectors.h: key 00..0f, message 00..(n-1)
    key0, key1 = 0x0706050403020100, 0x0F0E0D0C0B0A0908
    assert fmt.siphash24(key0, key1, b"") == 0x726FDB47DD0E0E31
    assert fmt.siphash24(key0, key1, bytes(range(15))) == 0xA129CA6149BE45E5


def test_bst_order_matches_the_binary_tree_array_doc_tests() -> None:
    assert fmt.bst_order(5) == [3, 1, 4, 0, 2]
    values = [0, 1, 2, 2, 2, 3, 4, 5, 6, 6, 7, 8, 8, 8]
    assert [values[i] for i in fmt.bst_order(len(values))] == [5, 2, 8, 1, 3, 6, 8, 0, 2, 2, 4, 6, 7, 8]


def item(htype: int, content: bytes) -> bytes:
    return struct.pack("<QQ", htype, 16 + len(content)) + content


MAY_1_2015_1530 = 1430487000
COMPAT_CONTENT = b"This is a small text file.\n"


def compat_archive(*, upstream_goodbye: bool) -> bytes:
    """pxar tests/compat.rs create_archive(): Stat_V1 root (dir 0755, uid/gid 1000) and
    file.txt. compat.rs writes its goodbye item with the absolute file offset and the content
    size; the decoder it tests never reads the table. The encoder (finish_goodbye_table)
    writes goodbye_offset - file_offset and the item's whole size: ``upstream_goodbye=False``."""
    stat_v1 = struct.Struct("<QQIIQ")
    mtime = MAY_1_2015_1530 * 1_000_000_000
    out = item(fmt.PXAR_ENTRY_V1, stat_v1.pack(fmt.S_IFDIR | 0o755, 0, 1000, 1000, mtime))
    file_offset = len(out)
    out += item(fmt.PXAR_FILENAME, b"file.txt\0")
    out += item(fmt.PXAR_ENTRY_V1, stat_v1.pack(fmt.S_IFREG | 0o644, 0, 1000, 1000, mtime))
    out += item(fmt.PXAR_PAYLOAD, COMPAT_CONTENT)
    goodbye_offset = len(out)
    if upstream_goodbye:
        first = (fmt.hash_filename(b"file.txt"), file_offset, len(COMPAT_CONTENT))
    else:
        first = (fmt.hash_filename(b"file.txt"), goodbye_offset - file_offset, goodbye_offset - file_offset)
    table = struct.pack("<QQQ", *first)
    table += struct.pack("<QQQ", fmt.PXAR_GOODBYE_TAIL_MARKER, goodbye_offset, 16 + 48)
    return out + item(fmt.PXAR_GOODBYE, table)


def test_compat_archive_reads_as_the_upstream_test_expects() -> None:
    archive = compat_archive(upstream_goodbye=False)
    root, file = list(iter_entries(io.BytesIO(archive)))
    assert (root.path, root.kind, root.mode, root.uid, root.gid) == ("", "dir", fmt.S_IFDIR | 0o755, 1000, 1000)
    assert root.mtime_ns == MAY_1_2015_1530 * 1_000_000_000
    assert (file.path, file.kind, file.size) == ("file.txt", "file", len(COMPAT_CONTENT))
    assert read_file(io.BytesIO(archive), None, file, 100) == COMPAT_CONTENT


def test_compat_archive_with_its_sloppy_goodbye_table_is_refused() -> None:
    with pytest.raises(PxarError, match="goodbye table item does not match"):
        list(iter_entries(io.BytesIO(compat_archive(upstream_goodbye=True))))


def split_by_hand() -> tuple[bytes, bytes]:
    """A v2 split archive laid out from src/encoder/mod.rs: FORMAT_VERSION(2), PRELUDE,
    root ENTRY, FILENAME 'a', ENTRY, PAYLOAD_REF(offset of the PAYLOAD header in the payload
    stream, size), GOODBYE (one item: size counts meta + file size, create_file_do; tail);
    payload stream: PAYLOAD_START_MARKER, PAYLOAD header + data, PAYLOAD_TAIL_MARKER."""
    stat = struct.Struct("<QQIIqII")
    data = b"payload bytes\n"
    meta = item(fmt.PXAR_FORMAT_VERSION, struct.pack("<Q", 2)) + item(fmt.PXAR_PRELUDE, b"prelude")
    entry_offset = len(meta)
    meta += item(fmt.PXAR_ENTRY, stat.pack(fmt.S_IFDIR | 0o700, 0, 0, 0, 1_700_000_000, 5, 0))
    file_offset = len(meta)
    meta += item(fmt.PXAR_FILENAME, b"a\0")
    meta += item(fmt.PXAR_ENTRY, stat.pack(fmt.S_IFREG | 0o600, 0, 33, 44, 1_700_000_001, 7, 0))
    meta += item(fmt.PXAR_PAYLOAD_REF, struct.pack("<QQ", 16, len(data)))
    goodbye = len(meta)
    table = struct.pack("<QQQ", fmt.hash_filename(b"a"), goodbye - file_offset,
                        goodbye - file_offset + len(data))
    table += struct.pack("<QQQ", fmt.PXAR_GOODBYE_TAIL_MARKER, goodbye - entry_offset, 16 + 48)
    meta += item(fmt.PXAR_GOODBYE, table)
    payload = struct.pack("<QQ", fmt.PXAR_PAYLOAD_START_MARKER, 16) + item(fmt.PXAR_PAYLOAD, data)
    payload += struct.pack("<QQ", fmt.PXAR_PAYLOAD_TAIL_MARKER, 16)
    return meta, payload


def test_split_archive_by_hand() -> None:
    meta, payload = split_by_hand()
    root, file = list(iter_entries(io.BytesIO(meta), io.BytesIO(payload)))
    assert root.mtime_ns == 1_700_000_000_000_000_005
    assert file == Entry("a", "file", fmt.S_IFREG | 0o600, 33, 44, 1_700_000_001_000_000_007,
                         14, None, 16)
    assert read_file(io.BytesIO(meta), io.BytesIO(payload), file, 14) == b"payload bytes\n"
    with pytest.raises(PxarError, match="over the read limit 13"):
        read_file(io.BytesIO(meta), io.BytesIO(payload), file, 13)
    # the metadata stream alone still lists the archive (what a file list needs)
    assert [e.path for e in iter_entries(io.BytesIO(meta))] == ["", "a"]


def test_split_file_reused_by_payload_ref_counts_only_meta_bytes() -> None:
    """add_payload_ref (a payload reused from the previous backup) goes through
    add_file_entry: its goodbye size is the meta bytes alone. Both forms are accepted."""
    meta, payload = split_by_hand()
    table_at = meta.rindex(struct.pack("<Q", fmt.hash_filename(b"a")))
    size = struct.unpack_from("<Q", meta, table_at + 16)[0]
    patched = meta[:table_at + 16] + struct.pack("<Q", size - 14) + meta[table_at + 24:]
    assert len(list(iter_entries(io.BytesIO(patched), io.BytesIO(payload)))) == 2


class Pipe(io.RawIOBase):
    """A non-seekable stream handing out 5 bytes at a time."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.data.read(min(len(buffer), 5))
        buffer[:len(chunk)] = chunk
        return len(chunk)


def sample_tree() -> Node:
    return Node("dir", perms=0o755, children={
        b"etc": Node("dir", perms=0o755, children={
            b"hostname": Node("file", data=b"ct\n", uid=0, mtime_ns=5),
            b"shadow": Node("file", perms=0o600, data=b"x" * 5000)}),
        b"bin": Node("symlink", perms=0o777, target=b"usr/bin"),
        b"escape": Node("symlink", perms=0o777, target=b"../../../etc/shadow"),
        b"hostname2": Node("hardlink", target=b"etc/hostname"),
        b"dev": Node("dir", children={b"null": Node("chardev", perms=0o666, device=(1, 3)),
                                      b"sda": Node("blockdev", device=(8, 0))}),
        b"run": Node("dir", children={b"fifo": Node("fifo"), b"sock": Node("socket")}),
        "café-\udcff".encode("utf-8", "surrogateescape"): Node("file", data=b""),
    })


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("pipe", [False, True])
def test_every_kind_round_trips(split: bool, pipe: bool) -> None:
    meta, payload = encode(sample_tree(), split=split)
    wrap = Pipe if pipe else io.BytesIO
    entries = {e.path: e for e in iter_entries(wrap(meta), wrap(payload) if split else None)}
    assert {path: e.kind for path, e in entries.items()} == {
        "": "dir", "bin": "symlink", "dev": "dir", "dev/null": "device", "dev/sda": "device",
        "escape": "symlink", "etc": "dir", "etc/hostname": "file", "etc/shadow": "file",
        "hostname2": "hardlink", "run": "dir", "run/fifo": "fifo", "run/sock": "socket",
        "café-\udcff": "file"}
    assert entries["escape"].link_target == "../../../etc/shadow"   # reported, not followed
    assert entries["hostname2"].link_target == "etc/hostname"
    assert entries["etc/shadow"].mode == fmt.S_IFREG | 0o600 and entries["etc/shadow"].size == 5000
    assert entries["dev/null"].mode == fmt.S_IFCHR | 0o666 and entries["dev/null"].device == (1, 3)
    assert entries["dev/sda"].mode & fmt.S_IFMT == fmt.S_IFBLK and entries["dev/sda"].device == (8, 0)
    streams = (io.BytesIO(meta), io.BytesIO(payload) if split else None)
    assert read_file(*streams, entries["hostname2"], 10) == b"ct\n"
    assert read_file(*streams, entries["etc/shadow"], 5000) == b"x" * 5000
    with pytest.raises(PxarError, match="is a symlink, not a file"):
        read_file(*streams, entries["bin"], 10)


def test_many_names_build_a_deep_goodbye_tree() -> None:
    root = Node("dir", children={f"f{i:03}".encode(): Node("file", data=bytes([i % 256])) for i in range(300)})
    meta, _ = encode(root)
    assert len(list(iter_entries(io.BytesIO(meta)))) == 301


def test_split_file_read_without_its_payload_stream_fails_clearly() -> None:
    meta, payload = encode(sample_tree(), split=True)
    file = next(e for e in iter_entries(io.BytesIO(meta), io.BytesIO(payload)) if e.path == "etc/shadow")
    with pytest.raises(PxarError, match="no PAYLOAD of 5000 bytes"):
        read_file(io.BytesIO(meta), None, file, 10_000)
