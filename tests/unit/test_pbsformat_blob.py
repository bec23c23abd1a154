"""DataBlob encode/decode/check: every kind, CRC, key and size errors."""
import os
import struct
import zlib

import pytest
import zstandard

from restoredrill.pbsformat import blob
from restoredrill.pbsformat.blob import (BadMagic, BlobTooLarge, CrcMismatch, DecryptionFailed,
                                         DigestMismatch, FormatError, LengthMismatch, MissingKey,
                                         TruncatedData, check_blob, decode_blob, decode_chunk,
                                         encode_blob, verify_chunk)
from restoredrill.pbsformat.crypt import CryptConfig, chunk_digest

KEY = CryptConfig(bytes(range(32)))
COMPRESSIBLE = b"memory: 2048\ncores: 2\n" * 500
RANDOM = os.urandom(5000)


def test_magic_values_match_the_spec():
    assert blob.UNCOMPRESSED_BLOB_MAGIC.hex() == "42ab3807be8370a1"
    assert blob.COMPRESSED_BLOB_MAGIC.hex() == "31b958426fb6a37f"
    assert blob.ENCRYPTED_BLOB_MAGIC.hex() == "7b6785be222d4cf0"
    assert blob.ENCR_COMPR_BLOB_MAGIC.hex() == "e6591bbf0bbfd80b"


@pytest.mark.parametrize("data, compress, crypt, kind, header", [
    (RANDOM, False, None, "uncompressed", 12),
    (COMPRESSIBLE, True, None, "zstd", 12),
    (RANDOM, False, KEY, "encrypted", 44),
    (COMPRESSIBLE, True, KEY, "zstd+encrypted", 44),
])
def test_round_trip_every_kind(data, compress, crypt, kind, header):
    raw = encode_blob(data, compress=compress, crypt=crypt)
    info = check_blob(raw)
    assert (info.kind, info.header_size, info.crc_ok) == (kind, header, True)
    assert info.encrypted == (crypt is not None)
    assert info.compressed == compress
    assert decode_blob(raw, crypt) == data


def test_layout_of_a_plain_blob_is_magic_crc_payload():
    raw = encode_blob(b"abc", compress=False)
    assert raw == blob.UNCOMPRESSED_BLOB_MAGIC + struct.pack("<I", zlib.crc32(b"abc")) + b"abc"


def test_encrypted_crc_covers_ciphertext_only():
    raw = encode_blob(b"secret", compress=False, crypt=KEY)
    assert struct.unpack_from("<I", raw, 8)[0] == zlib.crc32(raw[44:])


def test_incompressible_data_is_stored_uncompressed_as_pbs_does():
    assert check_blob(encode_blob(RANDOM, compress=True)).kind == "uncompressed"
    assert check_blob(encode_blob(RANDOM, compress=True, crypt=KEY)).kind == "encrypted"


def test_empty_blob_round_trips():
    for crypt in (None, KEY):
        assert decode_blob(encode_blob(b"", compress=True, crypt=crypt), crypt) == b""


@pytest.mark.parametrize("crypt", [None, KEY])
def test_flipped_byte_is_a_crc_mismatch_without_the_key(crypt):
    raw = bytearray(encode_blob(COMPRESSIBLE, compress=True, crypt=crypt))
    raw[-3] ^= 0x40
    info = check_blob(bytes(raw))
    assert not info.crc_ok
    with pytest.raises(CrcMismatch, match="CRC mismatch"):
        decode_blob(bytes(raw), crypt)


def test_wrong_key_fails_the_gcm_tag():
    raw = encode_blob(COMPRESSIBLE, compress=True, crypt=KEY)
    with pytest.raises(DecryptionFailed, match="wrong key"):
        decode_blob(raw, CryptConfig(bytes(32)))


def test_encrypted_blob_without_key_names_the_need():
    with pytest.raises(MissingKey, match="needs the encryption key"):
        decode_blob(encode_blob(b"x", compress=False, crypt=KEY))


def test_tampered_tag_with_fixed_crc_fails_decryption():
    raw = bytearray(encode_blob(b"payload", compress=False, crypt=KEY))
    raw[30] ^= 1  # inside the tag; CRC does not cover the header
    assert check_blob(bytes(raw)).crc_ok
    with pytest.raises(DecryptionFailed):
        decode_blob(bytes(raw), KEY)


def test_bad_magic_and_truncated_headers():
    with pytest.raises(BadMagic, match="bad blob magic 0000000000000000"):
        check_blob(bytes(20))
    with pytest.raises(TruncatedData, match="truncated blob header"):
        check_blob(blob.UNCOMPRESSED_BLOB_MAGIC + b"\0")
    with pytest.raises(TruncatedData, match="truncated encrypted blob header"):
        check_blob(encode_blob(b"x", compress=False, crypt=KEY)[:30])
    assert issubclass(BadMagic, FormatError) and issubclass(FormatError, ValueError)


def test_too_large_is_refused_both_ways(monkeypatch):
    monkeypatch.setattr(blob, "MAX_BLOB_SIZE", 1000)
    with pytest.raises(BlobTooLarge, match="too large"):
        encode_blob(bytes(1001), compress=False)
    big = blob.UNCOMPRESSED_BLOB_MAGIC + struct.pack("<I", zlib.crc32(bytes(1001))) + bytes(1001)
    with pytest.raises(BlobTooLarge):
        check_blob(big)
    bomb = encode_blob(bytes(900), compress=True)
    monkeypatch.setattr(blob, "MAX_BLOB_SIZE", 800)
    with pytest.raises(BlobTooLarge, match="declares 900"):
        decode_blob(bomb)
    payload = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(900))
    unsized = blob.COMPRESSED_BLOB_MAGIC + struct.pack("<I", zlib.crc32(payload)) + payload
    with pytest.raises(FormatError, match="over 128 MiB"):
        decode_blob(unsized)


def test_corrupt_zstd_payload_with_valid_crc_is_a_format_error():
    payload = b"\x28\xb5\x2f\xfd" + b"garbage!" * 4
    raw = blob.COMPRESSED_BLOB_MAGIC + struct.pack("<I", zlib.crc32(payload)) + payload
    with pytest.raises(FormatError):
        decode_blob(raw)


def test_truncated_zstd_frame_with_valid_crc_is_a_format_error():
    payload = encode_blob(COMPRESSIBLE, compress=True)[12:-5]
    raw = blob.COMPRESSED_BLOB_MAGIC + struct.pack("<I", zlib.crc32(payload)) + payload
    with pytest.raises(FormatError):
        decode_blob(raw)


@pytest.mark.parametrize("crypt", [None, KEY])
def test_chunk_digest_and_length_checks(crypt):
    plain = COMPRESSIBLE
    digest = chunk_digest(plain, crypt)
    raw = encode_blob(plain, compress=True, crypt=crypt)
    assert decode_chunk(raw, digest, crypt, len(plain)) == plain
    assert verify_chunk(raw, digest, crypt=crypt, expect_encrypted=crypt is not None)
    with pytest.raises(DigestMismatch, match="hashes to"):
        decode_chunk(raw, bytes(32), crypt)
    with pytest.raises(LengthMismatch, match="index expects 7"):
        decode_chunk(raw, digest, crypt, 7)


def test_verify_chunk_without_key_checks_crc_only_and_crypt_mode():
    raw = encode_blob(b"x" * 100, compress=True, crypt=KEY)
    assert verify_chunk(raw, bytes(32), expect_encrypted=True) is False
    with pytest.raises(FormatError, match="expects unencrypted"):
        verify_chunk(raw, bytes(32), expect_encrypted=False)
