"""Fixed and dynamic index encode/parse/csum, and the dynamic chunker."""
import hashlib
import io
import random
import struct

import pytest

from restoredrill.pbsformat.blob import BadMagic, ChecksumMismatch, LengthMismatch, TruncatedData
from restoredrill.pbsformat.index import (DYNAMIC_INDEX_MAGIC, FIXED_INDEX_MAGIC, HEADER_SIZE,
                                          DynamicIndex, FixedIndex, encode_dynamic_index,
                                          encode_fixed_index, fixed_index_csum, index_csum,
                                          parse_dynamic_index, parse_fixed_index, parse_index,
                                          split_dynamic)

DIGESTS = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
UUID = bytes(range(16))


def test_index_magic_values_match_the_spec():
    assert FIXED_INDEX_MAGIC.hex() == "2f7f41ed91fd0fcd"
    assert DYNAMIC_INDEX_MAGIC.hex() == "1c914ea519bab3cd"


def test_fixed_index_layout_and_round_trip():
    raw = encode_fixed_index(DIGESTS, size=2 * 4096 + 100, chunk_size=4096, uuid=UUID,
                             ctime=1714528803)
    assert len(raw) == HEADER_SIZE + 32 * 3
    assert raw[:8] == FIXED_INDEX_MAGIC and raw[8:24] == UUID
    assert struct.unpack_from("<q", raw, 24)[0] == 1714528803
    assert raw[32:64] == hashlib.sha256(b"".join(DIGESTS)).digest()
    assert struct.unpack_from("<QQ", raw, 64) == (8292, 4096)
    assert raw[80:HEADER_SIZE] == bytes(HEADER_SIZE - 80)
    index = parse_fixed_index(raw)
    assert isinstance(index, FixedIndex) and index.digests == tuple(DIGESTS)
    assert (index.size, index.chunk_size, index.ctime, index.uuid) == (8292, 4096, 1714528803, UUID)
    assert index.csum == index_csum(index) == fixed_index_csum(DIGESTS)
    assert list(index.chunks())[-1] == (8192, 8292, DIGESTS[2])
    assert parse_index(raw) == index


def test_dynamic_index_layout_and_round_trip():
    entries = [(100, DIGESTS[0]), (5000, DIGESTS[1]), (5001, DIGESTS[2])]
    raw = encode_dynamic_index(entries, uuid=UUID, ctime=7)
    assert len(raw) == HEADER_SIZE + 40 * 3
    assert raw[:8] == DYNAMIC_INDEX_MAGIC
    expected_csum = hashlib.sha256(b"".join(struct.pack("<Q", e) + d for e, d in entries))
    assert raw[32:64] == expected_csum.digest()
    assert raw[64:HEADER_SIZE] == bytes(HEADER_SIZE - 64)
    assert raw[HEADER_SIZE:HEADER_SIZE + 8] == struct.pack("<Q", 100)
    index = parse_dynamic_index(raw)
    assert isinstance(index, DynamicIndex) and index.size == 5001
    assert list(index.chunks()) == [(0, 100, DIGESTS[0]), (100, 5000, DIGESTS[1]),
                                    (5000, 5001, DIGESTS[2])]
    assert index.csum == index_csum(index)
    assert parse_index(raw) == index


def test_empty_indexes():
    assert parse_fixed_index(encode_fixed_index([], size=0, chunk_size=4096)).digests == ()
    assert parse_dynamic_index(encode_dynamic_index([])).size == 0


def test_fixed_index_length_must_match_size():
    raw = encode_fixed_index(DIGESTS, size=3 * 4096, chunk_size=4096)
    with pytest.raises(LengthMismatch, match="4096 \\+ 32 \\* 3"):
        parse_fixed_index(raw[:-1])
    with pytest.raises(LengthMismatch):
        parse_fixed_index(raw + bytes(32))
    with pytest.raises(ValueError, match="needs 3 digests"):
        encode_fixed_index(DIGESTS[:2], size=3 * 4096, chunk_size=4096)


def test_dynamic_index_truncation_and_order():
    raw = encode_dynamic_index([(10, DIGESTS[0]), (20, DIGESTS[1])])
    with pytest.raises(LengthMismatch, match="stray bytes"):
        parse_dynamic_index(raw[:-3])
    with pytest.raises(LengthMismatch, match="not greater"):
        encode_dynamic_index([(10, DIGESTS[0]), (10, DIGESTS[1])])


@pytest.mark.parametrize("raw", [
    encode_fixed_index(DIGESTS, size=3 * 4096, chunk_size=4096),
    encode_dynamic_index([(10, DIGESTS[0]), (20, DIGESTS[1])])])
def test_tampered_digest_fails_the_csum(raw):
    tampered = bytearray(raw)
    tampered[-1] ^= 1
    with pytest.raises(ChecksumMismatch, match="csum mismatch"):
        parse_index(bytes(tampered))


def test_header_errors():
    with pytest.raises(TruncatedData, match="truncated fixed index header"):
        parse_fixed_index(FIXED_INDEX_MAGIC + bytes(100))
    with pytest.raises(BadMagic, match="bad dynamic index magic"):
        parse_dynamic_index(encode_fixed_index([], size=0, chunk_size=1))
    with pytest.raises(BadMagic):
        parse_index(bytes(HEADER_SIZE))


def test_chunker_is_deterministic_bounded_and_lossless():
    rng = random.Random(1)  # fixed seed: reproducible chunk boundaries
    data = rng.randbytes(300_000) + bytes(200_000) + rng.randbytes(100_000)
    chunks = list(split_dynamic(data, avg_size=16384))
    assert b"".join(chunks) == data
    assert all(len(c) <= 4 * 16384 for c in chunks)
    assert all(len(c) >= 4096 for c in chunks[:-1])
    assert chunks == list(split_dynamic(io.BytesIO(data), avg_size=16384))
    average = len(data) / len(chunks)
    assert 8000 < average < 40000


def test_chunker_resynchronises_after_an_insertion():
    data = random.Random(2).randbytes(400_000)
    before = set(split_dynamic(data, avg_size=8192))
    after = set(split_dynamic(b"inserted" + data, avg_size=8192))
    assert len(before & after) >= len(before) - 3


def test_chunker_small_and_empty_inputs():
    assert list(split_dynamic(b"", avg_size=4096)) == []
    assert list(split_dynamic(b"abc", avg_size=4096)) == [b"abc"]
