"""PBS chunk indexes (``.fidx`` fixed, ``.didx`` dynamic) and the dynamic chunker.

Both start with a 4096-byte header: ``magic[8] | uuid[16] | ctime i64 | index_csum[32]``
then, for ``.fidx`` only, ``size u64 | chunk_size u64``; the rest is zero. A fixed
index then holds ``ceil(size / chunk_size)`` 32-byte digests (the last chunk may be
short) and ``index_csum = SHA-256(digest_0 || digest_1 || ...)``. A dynamic index holds
40-byte entries ``end_offset u64 | digest[32]`` with cumulative, strictly increasing
end offsets and ``index_csum = SHA-256(end_0_le || digest_0 || end_1_le || ...)``.
Pure functions, no I/O.
"""
from __future__ import annotations

import hashlib
import struct
import uuid as uuidlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from restoredrill.pbsformat.blob import (BadMagic, ChecksumMismatch, FormatError,
                                         LengthMismatch, TruncatedData, compute_magic)

FIXED_INDEX_MAGIC = compute_magic("Proxmox Backup fixed sized chunk index v1.0")
DYNAMIC_INDEX_MAGIC = compute_magic("Proxmox Backup dynamic sized chunk index v1.0")
HEADER_SIZE = 4096
DIGEST_SIZE = 32
DYNAMIC_ENTRY_SIZE = 40
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
_COMMON = struct.Struct("<8s16sq32s")  # magic, uuid, ctime, index_csum
_FIXED_TAIL = struct.Struct("<QQ")  # size, chunk_size at offset 64


@dataclass(frozen=True)
class FixedIndex:
    uuid: bytes
    ctime: int
    csum: bytes
    size: int
    chunk_size: int
    digests: tuple[bytes, ...]

    def chunk_range(self, position: int) -> tuple[int, int]:
        start = position * self.chunk_size
        return start, min(start + self.chunk_size, self.size)

    def chunks(self) -> Iterator[tuple[int, int, bytes]]:
        """(start, end, digest) for every chunk in file order."""
        for position, digest in enumerate(self.digests):
            yield (*self.chunk_range(position), digest)


@dataclass(frozen=True)
class DynamicIndex:
    uuid: bytes
    ctime: int
    csum: bytes
    entries: tuple[tuple[int, bytes], ...]  # (end_offset, digest)

    @property
    def size(self) -> int:
        return self.entries[-1][0] if self.entries else 0

    @property
    def digests(self) -> tuple[bytes, ...]:
        return tuple(digest for _, digest in self.entries)

    def chunks(self) -> Iterator[tuple[int, int, bytes]]:
        start = 0
        for end, digest in self.entries:
            yield start, end, digest
            start = end


def fixed_index_csum(digests: Iterable[bytes]) -> bytes:
    return hashlib.sha256(b"".join(digests)).digest()


def dynamic_index_csum(entries: Iterable[tuple[int, bytes]]) -> bytes:
    hasher = hashlib.sha256()
    for end, digest in entries:
        hasher.update(struct.pack("<Q", end) + digest)
    return hasher.digest()


def index_csum(index: FixedIndex | DynamicIndex) -> bytes:
    """Recompute the csum of a parsed index from its digests (and end offsets)."""
    if isinstance(index, FixedIndex):
        return fixed_index_csum(index.digests)
    return dynamic_index_csum(index.entries)


def count_fixed_chunks(size: int, chunk_size: int) -> int:
    return -(-size // chunk_size)


def encode_fixed_index(digests: Sequence[bytes], *, size: int, chunk_size: int,
                       uuid: bytes | None = None, ctime: int = 0) -> bytes:
    if chunk_size <= 0 or size < 0:
        raise ValueError("fixed index needs chunk_size > 0 and size >= 0")
    expected = count_fixed_chunks(size, chunk_size)
    if len(digests) != expected:
        raise ValueError(f"fixed index of {size} bytes in {chunk_size}-byte chunks needs "
                         f"{expected} digests, got {len(digests)}")
    _check_digests(digests)
    header = _header(FIXED_INDEX_MAGIC, uuid, ctime, fixed_index_csum(digests),
                     _FIXED_TAIL.pack(size, chunk_size))
    return header + b"".join(digests)


def encode_dynamic_index(entries: Sequence[tuple[int, bytes]], *, uuid: bytes | None = None,
                         ctime: int = 0) -> bytes:
    _check_end_offsets([end for end, _ in entries])
    _check_digests([digest for _, digest in entries])
    header = _header(DYNAMIC_INDEX_MAGIC, uuid, ctime, dynamic_index_csum(entries), b"")
    return header + b"".join(struct.pack("<Q", end) + digest for end, digest in entries)


def _header(magic: bytes, uuid: bytes | None, ctime: int, csum: bytes, tail: bytes) -> bytes:
    uuid = uuidlib.uuid4().bytes if uuid is None else uuid
    if len(uuid) != 16:
        raise ValueError("index uuid must be 16 bytes")
    head = _COMMON.pack(magic, uuid, ctime, csum) + tail
    return head + bytes(HEADER_SIZE - len(head))


def _check_digests(digests: Iterable[bytes]) -> None:
    if any(len(digest) != DIGEST_SIZE for digest in digests):
        raise ValueError("every chunk digest must be 32 bytes")


def _check_end_offsets(ends: Sequence[int]) -> None:
    previous = 0
    for position, end in enumerate(ends):
        if end <= previous:
            raise LengthMismatch(f"dynamic index entry {position}: end offset {end} is not "
                                 f"greater than the previous one ({previous})")
        previous = end


def parse_index(raw: bytes) -> FixedIndex | DynamicIndex:
    """Parse either kind, chosen by magic."""
    magic = bytes(raw[:8])
    if magic == FIXED_INDEX_MAGIC:
        return parse_fixed_index(raw)
    if magic == DYNAMIC_INDEX_MAGIC:
        return parse_dynamic_index(raw)
    _read_header(raw, FIXED_INDEX_MAGIC, "index")  # raises the right error
    raise AssertionError("unreachable")


def parse_fixed_index(raw: bytes) -> FixedIndex:
    uuid, ctime, csum = _read_header(raw, FIXED_INDEX_MAGIC, "fixed index")
    size, chunk_size = _FIXED_TAIL.unpack_from(raw, 64)
    if chunk_size == 0:
        raise FormatError("fixed index header has chunk_size 0")
    count = count_fixed_chunks(size, chunk_size)
    if len(raw) != HEADER_SIZE + DIGEST_SIZE * count:
        raise LengthMismatch(
            f"fixed index length {len(raw)} != 4096 + 32 * {count} (size {size}, "
            f"chunk_size {chunk_size}): truncated or padded")
    body = memoryview(raw)[HEADER_SIZE:]
    digests = tuple(bytes(body[i:i + DIGEST_SIZE]) for i in range(0, len(body), DIGEST_SIZE))
    _check_csum(csum, fixed_index_csum(digests), "fixed index")
    return FixedIndex(uuid, ctime, csum, size, chunk_size, digests)


def parse_dynamic_index(raw: bytes) -> DynamicIndex:
    uuid, ctime, csum = _read_header(raw, DYNAMIC_INDEX_MAGIC, "dynamic index")
    body_length = len(raw) - HEADER_SIZE
    if body_length % DYNAMIC_ENTRY_SIZE:
        raise LengthMismatch(f"dynamic index length {len(raw)} != 4096 + 40 * n: "
                             f"{body_length % DYNAMIC_ENTRY_SIZE} stray bytes (truncated?)")
    entries = tuple((end, bytes(digest)) for end, digest in
                    struct.iter_unpack("<Q32s", memoryview(raw)[HEADER_SIZE:]))
    _check_end_offsets([end for end, _ in entries])
    _check_csum(csum, dynamic_index_csum(entries), "dynamic index")
    return DynamicIndex(uuid, ctime, csum, entries)


def _read_header(raw: bytes, magic: bytes, what: str) -> tuple[bytes, int, bytes]:
    if len(raw) < HEADER_SIZE:
        raise TruncatedData(f"truncated {what} header: {len(raw)} bytes, need {HEADER_SIZE}")
    found, uuid, ctime, csum = _COMMON.unpack_from(raw, 0)
    if found != magic:
        raise BadMagic(f"bad {what} magic {found.hex()}, expected {magic.hex()}")
    return uuid, ctime, csum


def _check_csum(stored: bytes, computed: bytes, what: str) -> None:
    if stored != computed:
        raise ChecksumMismatch(f"{what} csum mismatch: header says {stored.hex()}, "
                               f"digests give {computed.hex()}")


# --- dynamic chunking -------------------------------------------------------------
# A buzhash rolling hash over a 64-byte window (32-bit state, rotate-left by one per
# byte; with a 64-byte window the outgoing byte's table value needs no rotation). A
# chunk ends after byte i when hash % d == d - 1, searched only from min_size on and
# forced at max_size; min = avg / 4, max = avg * 4, d = avg - min so chunks average
# about ``avg_size``. The byte table is SHA-256-derived, so the split is deterministic
# and content-defined (an insertion only moves nearby boundaries). Same idea as PBS's
# chunker, not its exact boundaries (which need not match: any split is a valid index).
BUZHASH_WINDOW = 64
_BUZHASH_TABLE = tuple(
    int.from_bytes(hashlib.sha256(b"restoredrill buzhash %d" % i).digest()[:4], "little")
    for i in range(256))


def find_chunk_end(buffer: bytes, avg_size: int, at_eof: bool) -> int | None:
    """Length of the next chunk at the start of ``buffer``; None when more data is needed."""
    min_size, max_size = max(avg_size // 4, BUZHASH_WINDOW), avg_size * 4
    if len(buffer) < max_size and not at_eof:
        return None
    limit = min(len(buffer), max_size)
    if limit <= min_size:
        return limit
    return _scan_for_boundary(buffer, min_size, limit, max(avg_size - min_size, 1))


def _scan_for_boundary(buffer: bytes, start: int, limit: int, divisor: int) -> int:
    table, target, mask = _BUZHASH_TABLE, divisor - 1, 0xFFFFFFFF
    view = memoryview(buffer)
    h = 0
    for byte in view[start - BUZHASH_WINDOW:start]:
        h = (((h << 1) | (h >> 31)) & mask) ^ table[byte]
    position = start
    for outgoing, incoming in zip(view[start - BUZHASH_WINDOW:limit - BUZHASH_WINDOW],
                                  view[start:limit]):
        h = (((h << 1) | (h >> 31)) & mask) ^ table[outgoing] ^ table[incoming]
        position += 1
        if h % divisor == target:
            return position
    return limit


def split_dynamic(stream: BinaryIO | bytes, avg_size: int = DEFAULT_CHUNK_SIZE
                  ) -> Iterator[bytes]:
    """Cut a byte string or a binary stream into content-defined chunks."""
    if isinstance(stream, (bytes, bytearray, memoryview)):
        data, stream = bytes(stream), None
    else:
        data = b""
    buffer, at_eof = bytearray(data), stream is None
    while buffer or not at_eof:
        end = find_chunk_end(buffer, avg_size, at_eof)
        if end is None:
            block = stream.read(avg_size * 4)
            at_eof = not block
            buffer += block
            continue
        yield bytes(buffer[:end])
        del buffer[:end]
