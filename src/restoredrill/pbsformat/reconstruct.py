"""Reassemble an archive from its chunk index, streaming: each distinct chunk is fetched once,
decoded (decrypted, decompressed), checked against the digest it is stored under and the length
the index gives it, and written at every offset the index places it. Only the chunks in flight
are held in memory; the output is a sparse file (runs of zero chunks are never written).

This is what ``proxmox-backup-client restore`` does for an image or a pxar stream (upstream
``pbs-client/src/remote_chunk_reader.rs`` fetches and decodes a chunk by digest,
``pbs-datastore/src/fixed_index.rs`` / ``dynamic_index.rs`` map offsets to chunks), here without
PBS, reading the datastore's objects directly (a PBS 4 S3 datastore: ``.chunks/<hex4>/<digest>``,
``pbs-datastore/src/s3.rs``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from restoredrill.pbsformat.blob import FormatError, check_blob, decode_chunk
from restoredrill.pbsformat.crypt import CryptConfig
from restoredrill.pbsformat.datastore import Layout, MissingChunk, MissingObject
from restoredrill.pbsformat.index import DynamicIndex, FixedIndex

# the largest header a chunk blob adds to its payload (encrypted: magic 8 + CRC 4 + IV 16 + tag 16;
# upstream pbs-datastore/src/data_blob.rs); PBS stores a chunk uncompressed when zstd does not shrink
# it, so a stored chunk is at most its plain length plus this
BLOB_OVERHEAD = 64


@dataclass
class ChunkPlan:
    """Every distinct chunk of one index, in first-use order, with the ranges it fills."""
    archive: str
    size: int
    entries: int
    ranges: dict[bytes, list[tuple[int, int]]]

    @property
    def unique(self) -> int:
        return len(self.ranges)

    def length(self, digest: bytes) -> int:
        start, end = self.ranges[digest][0]
        return end - start

    def stored_upper_bound(self) -> int:
        """The most the chunk objects can weigh in the bucket (for an egress budget check)."""
        return sum(self.length(d) + BLOB_OVERHEAD for d in self.ranges)


def plan_chunks(archive: str, index: FixedIndex | DynamicIndex) -> ChunkPlan:
    ranges: dict[bytes, list[tuple[int, int]]] = {}
    entries = 0
    for start, end, digest in index.chunks():
        entries += 1
        taken = ranges.setdefault(digest, [])
        if taken and taken[0][1] - taken[0][0] != end - start:
            raise FormatError(f"{archive}: chunk {digest.hex()} appears with two lengths "
                              f"({taken[0][1] - taken[0][0]} and {end - start} bytes)")
        taken.append((start, end))
    return ChunkPlan(archive, index.size, entries, ranges)


@dataclass
class Reassembled:
    archive: str
    size: int
    entries: int
    unique_chunks: int = 0
    stored_bytes: int = 0            # what the chunk objects weighed (fetched bytes)
    encrypted_chunks: int = 0
    zero_chunks: int = 0             # distinct all-zero chunks (left as holes)
    written_bytes: int = 0
    problems: list[str] = field(default_factory=list)


def decoder(layout: Layout, plan: ChunkPlan, crypt: CryptConfig | None, *, encrypted_index: bool
            ) -> Callable[[str, bytes], tuple[int, bool, bytes]]:
    """``process(key, raw) -> (stored size, encrypted, plain)`` for a bucket's ``read_many``:
    runs in its worker thread, so only decoded chunks wait for the writer. A chunk must be
    encrypted exactly when its index is (crypt-mode ``encrypt`` in the manifest), as
    ``RemoteChunkReader::read_raw_chunk`` demands ("Index and chunk CryptMode don't match.",
    pbs-client/src/remote_chunk_reader.rs)."""
    by_key = {layout.chunk_key(d): d for d in plan.ranges}

    def process(key: str, raw: bytes) -> tuple[int, bool, bytes]:
        digest = by_key[key]
        try:
            encrypted = check_blob(raw).encrypted
            if encrypted != encrypted_index:
                raise FormatError("stored unencrypted, but its index is encrypted" if encrypted_index else
                                  "stored encrypted, but its index is not")
            return len(raw), encrypted, decode_chunk(raw, digest, crypt, plan.length(digest))
        except FormatError as exc:
            raise type(exc)(f"chunk {key}: {exc}") from None
    return process


def reassemble(plan: ChunkPlan, layout: Layout, results: Iterable[tuple[str, object]], out: BinaryIO,
               ) -> Reassembled:
    """Write the chunks ``results`` yields (``(key, (stored, encrypted, plain))`` in any order,
    a missing object as ``MissingObject``) where the plan puts them; ``out`` is truncated to
    the archive's size first. Raises ``MissingChunk`` naming the first missing object."""
    by_key = {layout.chunk_key(d): d for d in plan.ranges}
    done = Reassembled(plan.archive, plan.size, plan.entries)
    out.truncate(0)
    out.truncate(plan.size)
    for key, value in results:
        if isinstance(value, MissingObject):
            raise MissingChunk(f"chunk {key} of {plan.archive} is missing from the store")
        stored, encrypted, plain = value
        digest = by_key[key]
        done.unique_chunks += 1
        done.stored_bytes += stored
        done.encrypted_chunks += int(encrypted)
        if plain.count(0) == len(plain):
            done.zero_chunks += 1
            continue
        for start, _end in plan.ranges[digest]:
            out.seek(start)
            out.write(plain)
            done.written_bytes += len(plain)
    if done.unique_chunks != plan.unique:
        raise FormatError(f"{plan.archive}: {plan.unique - done.unique_chunks} of {plan.unique} chunks "
                          "were never delivered")
    out.flush()
    return done


def fetch_sequential(source, keys: Iterable[str], process: Callable[[str, bytes], object]
                     ) -> Iterator[tuple[str, object]]:
    """``read_many`` for an ObjectSource without one (a local datastore)."""
    for key in keys:
        try:
            raw = source.read(key)
        except MissingObject as missing:
            yield key, missing
            continue
        yield key, process(key, raw)
