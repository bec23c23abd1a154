"""The pxar format's constants and its two small algorithms, shared by the reader
(:mod:`restoredrill.pbsformat.pxar`) and the lab's writer (``lab/pxarwrite.py``).

Written from the upstream ``pxar`` crate (github proxmox/pxar, v1.0.0):
``src/format/mod.rs`` (item types, ``Header``, ``Stat``, ``GoodbyeItem``, ``PayloadRef``,
``hash_filename`` = SipHash-2-4 keyed with ``PXAR_HASH_KEY_1/2``, ``Header::max_content_size``),
``src/util.rs`` (``MAX_PATH_LEN``, ``MAX_FILENAME_LEN``, ``MAX_XATTR_LEN``) and
``src/binary_tree_array.rs`` (the goodbye table's binary-search-tree order). All integers
are little endian. Pure logic: no I/O.
"""
from __future__ import annotations

import struct

# src/format/mod.rs: item types (each = hash_filename of a "__PROXMOX_FORMAT_...__" string,
# examples/mk-format-hashes.rs)
PXAR_FORMAT_VERSION = 0x730F6C75DF16A40D
PXAR_ENTRY = 0xD5956474E588ACEF
PXAR_ENTRY_V1 = 0x11DA850A1C1CCEFF
PXAR_PRELUDE = 0xE309D79D9F7B771B
PXAR_FILENAME = 0x16701121063917B3
PXAR_SYMLINK = 0x27F971E7DBF5DC5F
PXAR_DEVICE = 0x9FC9E906586D5CE9
PXAR_XATTR = 0x0DAB0229B57DCD03
PXAR_ACL_USER = 0x2CE8540A457D55B8
PXAR_ACL_GROUP = 0x136E3ECEB04C03AB
PXAR_ACL_GROUP_OBJ = 0x10868031E9582876
PXAR_ACL_DEFAULT = 0xBBBB13415A6896F5
PXAR_ACL_DEFAULT_USER = 0xC89357B40532CD1F
PXAR_ACL_DEFAULT_GROUP = 0xF90A8A5816038FFE
PXAR_FCAPS = 0x2DA9DD9DB5F7FB67
PXAR_QUOTA_PROJID = 0xE07540E82F7D1CBB
PXAR_HARDLINK = 0x51269C8422BD7275
PXAR_PAYLOAD = 0x28147A1B0B7C1A25
PXAR_PAYLOAD_REF = 0x419D3D6BC4BA977E
PXAR_GOODBYE = 0x2FEC4FA642D5731D
PXAR_GOODBYE_TAIL_MARKER = 0xEF5EED5B753E1555
PXAR_PAYLOAD_START_MARKER = 0x834C68C2194A4ED2
PXAR_PAYLOAD_TAIL_MARKER = 0x6C72B78B984C81B5

# src/format/mod.rs: PXAR_HASH_KEY_1/2 (sha1 of 'PROXMOX ARCHIVE FORMAT', first 2x8 bytes)
PXAR_HASH_KEY_1 = 0x83AC3F1CFBB450DB
PXAR_HASH_KEY_2 = 0xAA4F1B6879369FBD

# src/format/mod.rs `pub mod mode`
S_IFMT, S_IFSOCK, S_IFLNK, S_IFREG = 0o170000, 0o140000, 0o120000, 0o100000
S_IFBLK, S_IFDIR, S_IFCHR, S_IFIFO = 0o060000, 0o040000, 0o020000, 0o010000

# src/util.rs
MAX_PATH_LEN = 4 * 1024
MAX_FILENAME_LEN = MAX_PATH_LEN
MAX_XATTR_LEN = 255 + 64 * 1024

HEADER = struct.Struct("<QQ")            # Header { htype, full_size }: full_size includes it
STAT = struct.Struct("<QQIIqII")         # Stat { mode, flags, uid, gid, mtime: {secs i64, nanos u32, pad} }
STAT_V1 = struct.Struct("<QQIIQ")        # Stat_V1 { mode, flags, uid, gid, mtime ns u64 }
GOODBYE_ITEM = struct.Struct("<QQQ")     # GoodbyeItem { hash, offset, size }
PAYLOAD_REF = struct.Struct("<QQ")       # PayloadRef { offset, size }
DEVICE = struct.Struct("<QQ")            # Device { major, minor }
U64 = struct.Struct("<Q")

FORMAT_VERSION_2 = 2   # FormatVersion::Version2: written only for split (mpxar + ppxar) archives

# Header::max_content_size: items read into memory, with the bound upstream enforces;
# everything not listed here (PRELUDE, PAYLOAD, GOODBYE) is skipped or checked otherwise.
MAX_CONTENT = {
    PXAR_FILENAME: MAX_FILENAME_LEN + 1,          # + NUL
    PXAR_SYMLINK: MAX_PATH_LEN + 1,               # + NUL
    PXAR_HARDLINK: MAX_PATH_LEN + 1 + 8,          # + NUL + offset
    PXAR_XATTR: MAX_XATTR_LEN, PXAR_FCAPS: MAX_XATTR_LEN,
}
# items of a fixed size (src/format/mod.rs and src/format/acl.rs struct sizes)
FIXED_CONTENT = {
    PXAR_ENTRY: STAT.size, PXAR_ENTRY_V1: STAT_V1.size, PXAR_DEVICE: DEVICE.size,
    PXAR_PAYLOAD_REF: PAYLOAD_REF.size, PXAR_FORMAT_VERSION: U64.size,
    PXAR_ACL_USER: 16, PXAR_ACL_DEFAULT_USER: 16, PXAR_ACL_GROUP: 16,
    PXAR_ACL_DEFAULT_GROUP: 16, PXAR_ACL_GROUP_OBJ: 8, PXAR_ACL_DEFAULT: 32,
    PXAR_QUOTA_PROJID: 8,
}
# metadata items between an ENTRY and what ends it (src/format/mod.rs module docs)
ATTRIBUTE_ITEMS = frozenset({
    PXAR_XATTR, PXAR_ACL_USER, PXAR_ACL_GROUP, PXAR_ACL_GROUP_OBJ, PXAR_ACL_DEFAULT,
    PXAR_ACL_DEFAULT_USER, PXAR_ACL_DEFAULT_GROUP, PXAR_FCAPS, PXAR_QUOTA_PROJID})

_MASK = (1 << 64) - 1


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def siphash24(key0: int, key1: int, data: bytes) -> int:
    """SipHash-2-4 (Aumasson/Bernstein) as Rust's ``SipHasher24::new_with_keys(k0, k1)``
    followed by one ``write(data)`` and ``finish()``."""
    v0, v1 = key0 ^ 0x736F6D6570736575, key1 ^ 0x646F72616E646F6D
    v2, v3 = key0 ^ 0x6C7967656E657261, key1 ^ 0x7465646279746573

    def rounds(count: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(count):
            v0 = (v0 + v1) & _MASK
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _MASK
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _MASK
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _MASK
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    whole = len(data) - len(data) % 8
    for start in range(0, whole, 8):
        word = int.from_bytes(data[start:start + 8], "little")
        v3 ^= word
        rounds(2)
        v0 ^= word
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v3 ^= last
    rounds(2)
    v0 ^= last
    v2 ^= 0xFF
    rounds(4)
    return v0 ^ v1 ^ v2 ^ v3


def hash_filename(name: bytes) -> int:
    """The goodbye-table hash of a directory entry's name (``format::hash_filename``)."""
    return siphash24(PXAR_HASH_KEY_1, PXAR_HASH_KEY_2, name)


def bst_order(count: int) -> list[int]:
    """For ``count`` items sorted ascending, the source index stored at each position of
    the goodbye table: a binary search tree in an array, children of ``i`` at ``2i+1`` and
    ``2i+2`` (``binary_tree_array::copy``, after casync's camakebst.c). ``bst_order(5)`` is
    ``[3, 1, 4, 0, 2]``, the crate's doc example."""
    order = [0] * count

    def place(size: int, first: int, exponent: int, slot: int) -> None:
        power = 1 << exponent
        threshold = power + (power >> 1) - 1
        middle = power - 1 if size > threshold else power - 1 - (threshold - size)
        order[slot] = first + middle
        if middle > 0:
            place(middle, first, exponent - 1, 2 * slot + 1)
        if middle + 1 < size:
            place(size - middle - 1, first + middle + 1, exponent - 1, 2 * slot + 2)

    if count:
        place(count, 0, count.bit_length() - 1, 0)
    return order
