"""Hostile pxar archives through the streaming reader (pbsformat/pxar.py).

An attacker who controls a container's files controls the names, links and sizes in its
pxar backup; one who controls the datastore controls every byte. Each input below must
come back as a PxarError with ONE line naming the entry (escaped), never another exception,
never a hang, and symlinks are only reported. Hostile archives are written with the lab
writer's ``unchecked`` mode (the names/links the real encoder would refuse) or by patching
the bytes of a valid archive.
"""
from __future__ import annotations

import io
import struct

import pytest

from restoredrill.lab.pxarwrite import Node, encode
from restoredrill.pbsformat import pxarformat as fmt
from restoredrill.pbsformat.pxar import PxarError, iter_entries


def read_all(meta: bytes, payload: bytes | None = None, **options) -> list:
    return list(iter_entries(io.BytesIO(meta), io.BytesIO(payload) if payload is not None else None,
                             **options))


def refused(meta: bytes, payload: bytes | None = None, **options) -> str:
    with pytest.raises(PxarError) as caught:
        read_all(meta, payload, **options)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and message.startswith("pxar: ")
    return message


def tree_with(name: bytes, node: Node) -> Node:
    return Node("dir", children={b"etc": Node("dir", children={b"hostname": Node("file", data=b"h\n")}),
                                 name: node})


@pytest.mark.parametrize(("name", "problem"), [
    (b"..", "file name '..'"), (b".", "file name '.'"), (b"", "empty file name"),
    (b"a/b", "file name with '/'"), (b"/etc", "file name with '/'"),
    (b"a\0b", "file name with a NUL byte"), (b"x" * 4097, "item 0x16701121063917b3"),
])
def test_bad_names_are_refused(name: bytes, problem: str) -> None:
    meta, _ = encode(tree_with(name, Node("file", data=b"pwned")), unchecked=True)
    assert problem in refused(meta)


def test_name_twice_in_one_directory_is_refused() -> None:
    meta, _ = encode(Node("dir", children={b"aa": Node("file"), b"ab": Node("file")}))
    assert "name occurs twice" in refused(meta.replace(b"ab\0", b"aa\0"))


def test_hostile_name_is_escaped_in_the_message() -> None:
    evil = b"\x1b]0;owned\x07\x1b[2J\nroot:x:0:0"
    meta, _ = encode(Node("dir", children={evil: Node("dir", children={b"..": Node("file")})}),
                     unchecked=True)
    message = refused(meta)
    assert "\\x1b]0;owned\\x07\\x1b[2J\\x0aroot:x:0:0/.." in message


@pytest.mark.parametrize(("target", "problem"), [
    (b"../etc/passwd", "hardlink target has a bad component (file name '..')"),
    (b"/etc/shadow", "hardlink target is absolute"),
    (b"etc/../../x", "hardlink target has a bad component (file name '..')"),
    (b"etc//hostname", "hardlink target has a bad component (empty file name)"),
    (b"etc/missing", "hardlink to '/etc/missing' does not point to an earlier file of this archive"),
    (b"etc", "hardlink to '/etc' does not point to an earlier file of this archive"),
])
def test_hardlink_out_of_the_archive_is_refused(target: bytes, problem: str) -> None:
    meta, _ = encode(tree_with(b"link", Node("hardlink", target=target)), unchecked=True)
    assert refused(meta) == f"pxar: {problem} at '/link'"


def test_hardlink_whose_name_disagrees_with_its_offset_is_refused() -> None:
    meta, _ = encode(tree_with(b"link", Node("hardlink", target=b"etc/hostname")))
    assert len(read_all(meta)) == 4
    assert "does not point to an earlier file" in refused(meta.replace(b"etc/hostname\0", b"etc/hostnamf\0"))


@pytest.mark.parametrize("target", [b"/etc/shadow", b"../../../../etc/shadow", b"/proc/self/root"])
def test_symlinks_are_reported_never_followed(target: bytes) -> None:
    meta, _ = encode(tree_with(b"link", Node("symlink", target=target)))
    link = [entry for entry in read_all(meta) if entry.path == "link"][0]
    assert (link.kind, link.link_target, link.size, link.payload_offset) == (
        "symlink", target.decode(), None, None)


def payload_header_at(meta: bytes, data: bytes) -> int:
    return meta.index(struct.pack("<QQ", fmt.PXAR_PAYLOAD, 16 + len(data)))


def test_file_size_beyond_the_archive_is_refused() -> None:
    meta, _ = encode(tree_with(b"big", Node("file", data=b"0123456789")))
    at = payload_header_at(meta, b"0123456789")
    huge = meta[:at] + struct.pack("<QQ", fmt.PXAR_PAYLOAD, 2 ** 63) + meta[at + 16:]
    assert "go beyond the end of the archive" in refused(huge)


@pytest.mark.parametrize(("offset", "size", "problem"), [
    (10 ** 12, 10, "outside the payload stream"), (0, 10, "points into the start marker"),
    (16, 2 ** 62, "no PAYLOAD of"), (17, 10, "no PAYLOAD of"),
])
def test_payload_reference_beyond_the_payload_stream_is_refused(offset: int, size: int, problem: str) -> None:
    meta, payload = encode(tree_with(b"big", Node("file", data=b"0123456789")), split=True)
    ref = struct.pack("<QQ", fmt.PXAR_PAYLOAD_REF, 32)
    at = meta.index(ref) + 16
    original = struct.unpack_from("<QQ", meta, at)
    patched = meta[:at] + struct.pack("<QQ", offset, size) + meta[at + 16:]
    assert original[1] == 10
    assert problem in refused(patched, payload)


def test_nesting_deeper_than_the_bound_is_refused() -> None:
    root = leaf = Node("dir")
    for _ in range(300):
        leaf.children[b"d"] = Node("dir")
        leaf = leaf.children[b"d"]
    meta, _ = encode(root)
    assert "nested deeper than 256" in refused(meta)
    assert "nested deeper than 5" in refused(encode(root)[0], max_depth=5)


@pytest.mark.parametrize("split", [False, True])
def test_every_truncation_is_refused(split: bool) -> None:
    meta, payload = encode(tree_with(b"f", Node("file", data=b"content")), split=split)
    for length in range(len(meta)):
        refused(meta[:length], payload)
    if split:
        for length in range(len(payload)):
            refused(meta, payload[:length])


def test_trailing_bytes_and_unknown_versions_are_refused() -> None:
    meta, payload = encode(tree_with(b"f", Node("file", data=b"x")), split=True)
    assert "trailing bytes" in refused(encode(tree_with(b"f", Node("file")))[0] + b"\0")
    version = struct.pack("<QQQ", fmt.PXAR_FORMAT_VERSION, 24, 2)
    assert "unknown pxar format version 3" in refused(
        meta.replace(version, struct.pack("<QQQ", fmt.PXAR_FORMAT_VERSION, 24, 3)), payload)


@pytest.mark.parametrize("field", [1, 2])
def test_goodbye_item_with_a_wrong_offset_or_size_is_refused(field: int) -> None:
    meta, _ = encode(Node("dir", children={b"a": Node("file", data=b"12345")}))
    at = meta.rindex(struct.pack("<Q", fmt.hash_filename(b"a"))) + 8 * field
    value = struct.unpack_from("<Q", meta, at)[0]
    assert "goodbye table item does not match" in refused(meta[:at] + struct.pack("<Q", value + 1) + meta[at + 8:])


def test_goodbye_table_that_lies_is_refused() -> None:
    meta, _ = encode(Node("dir", children={b"a": Node("file"), b"b": Node("file")}))
    table = meta.rindex(struct.pack("<Q", fmt.PXAR_GOODBYE))
    first, second = table + 16, table + 40
    swapped = meta[:first] + meta[second:second + 24] + meta[first:first + 24] + meta[second + 24:]
    assert "not the hash tree" in refused(swapped)


@pytest.mark.parametrize("split", [False, True])
def test_every_flipped_byte_is_refused_or_read_never_crashes(split: bool) -> None:
    meta, payload = encode(tree_with(b"link", Node("hardlink", target=b"etc/hostname")), split=split)
    for at in range(len(meta)):
        damaged = meta[:at] + bytes([meta[at] ^ 0xFF]) + meta[at + 1:]
        try:
            read_all(damaged, payload)
        except PxarError as error:
            assert "\n" not in str(error)
