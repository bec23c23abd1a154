"""What a restored VM disk image holds, read as bytes (never mounted, never executed): the
partition table (MBR, GPT or none) and where ext2/3/4 filesystems start. Pure functions over a
``read_at(offset, length) -> bytes`` callable, so the image can be a file of any size.

Formats: the MBR's four 16-byte entries at offset 446 and the 0x55AA signature at 510 (type
0xEE marks a protective MBR in front of a GPT); the GPT header at LBA 1 ("EFI PART", the
partition entry array's LBA at byte 72, its entry count at 80 and entry size at 84; UEFI
spec 2.10 section 5.3); an entry's first and last LBA at bytes 32 and 40. The ext superblock
sits 1024 bytes into the filesystem: ``s_magic`` 0xEF53 at 0x38, ``s_blocks_count_lo`` at 0x04,
``s_log_block_size`` at 0x18, ``s_feature_incompat`` at 0x60 (e2fsprogs ``lib/ext2fs/ext2_fs.h``).
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

SECTOR = 512
EXT_MAGIC = 0xEF53
EXTENDED_TYPES = (0x05, 0x0F, 0x85)
MAX_GPT_ENTRIES = 1024
INCOMPAT_64BIT = 0x80
INCOMPAT_EXTENTS = 0x40

ReadAt = Callable[[int, int], bytes]


@dataclass(frozen=True)
class Partition:
    number: int
    start: int          # bytes
    size: int           # bytes
    type: str           # MBR type byte (0x83) or GPT type GUID


@dataclass
class PartitionTable:
    kind: str                                       # mbr | gpt | none
    partitions: list[Partition] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExtFilesystem:
    where: str          # "whole disk" or "partition N"
    offset: int
    size: int           # bytes the superblock claims
    flavour: str        # ext4 (extents) | ext2/3


def read_partition_table(read_at: ReadAt, image_size: int) -> PartitionTable:
    mbr = read_at(0, SECTOR)
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        return PartitionTable("none", notes=["no MBR signature: a bare filesystem or an unpartitioned disk"])
    entries = [struct.unpack_from("<B3sB3sII", mbr, 446 + 16 * i) for i in range(4)]
    if any(entry[2] == 0xEE for entry in entries):
        return read_gpt(read_at, image_size)
    table = PartitionTable("mbr")
    for number, (_status, _chs, kind, _chs_end, first, count) in enumerate(entries, 1):
        if kind == 0 or count == 0:
            continue
        part = Partition(number, first * SECTOR, count * SECTOR, f"0x{kind:02x}")
        if kind in EXTENDED_TYPES:
            table.notes.append(f"partition {number} is an extended partition: its logical partitions are "
                               "not read")
            continue
        check_bounds(table, part, image_size)
        table.partitions.append(part)
    return table


def read_gpt(read_at: ReadAt, image_size: int) -> PartitionTable:
    table = PartitionTable("gpt")
    header = read_at(SECTOR, 92)
    if header[:8] != b"EFI PART":
        table.problems.append("a protective MBR (type 0xEE) but no GPT header (\"EFI PART\") at LBA 1")
        return table
    entries_lba, count, size = struct.unpack_from("<QII", header, 72)
    if not 128 <= size <= 4096 or size % 8 or count > MAX_GPT_ENTRIES:
        table.problems.append(f"GPT header with {count} entries of {size} bytes: not a table this drill reads")
        return table
    start = entries_lba * SECTOR
    if start + count * size > image_size:
        table.problems.append("the GPT partition entry array lies past the end of the image (truncated?)")
        return table
    array = read_at(start, count * size)
    for number in range(1, count + 1):
        entry = array[(number - 1) * size:number * size]
        if entry[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        if last < first:
            table.problems.append(f"partition {number}: last LBA {last} before first LBA {first}")
            continue
        part = Partition(number, first * SECTOR, (last - first + 1) * SECTOR, guid_text(entry[:16]))
        check_bounds(table, part, image_size)
        table.partitions.append(part)
    return table


def guid_text(raw: bytes) -> str:
    a, b, c = struct.unpack_from("<IHH", raw)
    return f"{a:08X}-{b:04X}-{c:04X}-{raw[8:10].hex().upper()}-{raw[10:16].hex().upper()}"


def check_bounds(table: PartitionTable, part: Partition, image_size: int) -> None:
    if part.start + part.size > image_size:
        table.problems.append(f"partition {part.number} ends at byte {part.start + part.size:,}, past the end "
                              f"of the {image_size:,}-byte image (truncated image or damaged table)")


def ext_superblock(read_at: ReadAt, offset: int) -> tuple[int, int] | None:
    """(size in bytes, incompat features) of an ext2/3/4 filesystem at ``offset``; None if none."""
    block = read_at(offset + 1024, 1024)
    if len(block) < 1024 or struct.unpack_from("<H", block, 0x38)[0] != EXT_MAGIC:
        return None
    blocks_lo, = struct.unpack_from("<I", block, 0x04)
    log_size, = struct.unpack_from("<I", block, 0x18)
    incompat, = struct.unpack_from("<I", block, 0x60)
    blocks_hi = struct.unpack_from("<I", block, 0x150)[0] if incompat & INCOMPAT_64BIT else 0
    if log_size > 6:            # block sizes 1 KiB .. 64 KiB
        return None
    return ((blocks_hi << 32) | blocks_lo) * (1024 << log_size), incompat


def find_ext_filesystems(read_at: ReadAt, table: PartitionTable, image_size: int
                         ) -> tuple[list[ExtFilesystem], list[str]]:
    """The ext filesystems of the image (the whole disk when there is no table), and problems."""
    places = [("whole disk", 0, image_size)] if table.kind == "none" else \
        [(f"partition {p.number}", p.start, p.size) for p in table.partitions]
    found, problems = [], []
    for where, offset, room in places:
        superblock = ext_superblock(read_at, offset)
        if superblock is None:
            continue
        size, incompat = superblock
        flavour = "ext4" if incompat & INCOMPAT_EXTENTS else "ext2/3"
        if size > room:
            problems.append(f"{where}: the {flavour} superblock claims {size:,} bytes, but only {room:,} are "
                            "there (truncated image)")
            continue
        found.append(ExtFilesystem(where, offset, size, flavour))
    return found, problems
