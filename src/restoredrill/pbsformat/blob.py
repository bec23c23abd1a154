"""PBS DataBlob: the container of every chunk and every ``*.blob`` file.

Layout (little-endian): ``magic[8] | crc32 u32 | payload`` for plain blobs (12-byte
header) and ``magic[8] | crc32 u32 | iv[16] | tag[16] | ciphertext`` for encrypted
ones (44-byte header). The CRC is zlib CRC-32 over everything after the header, so
for encrypted blobs it covers the ciphertext and can be checked without the key.

Compression is zstd level 1 and, as in PBS, only used when the result is smaller
than the input: ``encode_blob(data, compress=True)`` of incompressible data yields
an uncompressed (or encrypted-uncompressed) blob. Pure functions, no I/O.
"""
from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import zstandard

if TYPE_CHECKING:  # pragma: no cover
    from restoredrill.pbsformat.crypt import CryptConfig

MAX_BLOB_SIZE = 128 * 1024 * 1024
PLAIN_HEADER_SIZE = 12
ENCRYPTED_HEADER_SIZE = 44
ZSTD_LEVEL = 1


def compute_magic(text: str) -> bytes:
    """PBS magic numbers are the first 8 bytes of SHA-256 of a fixed text."""
    return hashlib.sha256(text.encode("ascii")).digest()[:8]


UNCOMPRESSED_BLOB_MAGIC = compute_magic("Proxmox Backup uncompressed blob v1.0")
COMPRESSED_BLOB_MAGIC = compute_magic("Proxmox Backup zstd compressed blob v1.0")
ENCRYPTED_BLOB_MAGIC = compute_magic("Proxmox Backup encrypted blob v1.0")
ENCR_COMPR_BLOB_MAGIC = compute_magic("Proxmox Backup zstd compressed encrypted blob v1.0")

# magic -> (kind, encrypted, compressed)
BLOB_KINDS = {
    UNCOMPRESSED_BLOB_MAGIC: ("uncompressed", False, False),
    COMPRESSED_BLOB_MAGIC: ("zstd", False, True),
    ENCRYPTED_BLOB_MAGIC: ("encrypted", True, False),
    ENCR_COMPR_BLOB_MAGIC: ("zstd+encrypted", True, True),
}


class FormatError(ValueError):
    """Bytes that are not valid PBS format; the message says what and where."""


class BadMagic(FormatError):
    pass


class TruncatedData(FormatError):
    pass


class CrcMismatch(FormatError):
    pass


class BlobTooLarge(FormatError):
    pass


class DecompressionFailed(FormatError):
    pass


class MissingKey(FormatError):
    pass


class DecryptionFailed(FormatError):
    """AES-GCM tag check failed: wrong key or tampered ciphertext."""


class DigestMismatch(FormatError):
    pass


class ChecksumMismatch(FormatError):
    """An index csum, manifest csum/size or signature does not match."""


class LengthMismatch(FormatError):
    pass


@dataclass(frozen=True)
class BlobInfo:
    """What can be learned about a blob without the key."""

    kind: str
    encrypted: bool
    compressed: bool
    stored_crc: int
    computed_crc: int
    raw_size: int
    header_size: int

    @property
    def crc_ok(self) -> bool:
        return self.stored_crc == self.computed_crc

    @property
    def payload_size(self) -> int:
        return self.raw_size - self.header_size


def check_blob(raw: bytes) -> BlobInfo:
    """Read magic and CRC of a raw blob; needs no key.

    Raises for bytes that cannot be a blob at all (too short, unknown magic, too
    large); a CRC mismatch is reported in ``BlobInfo.crc_ok``, not raised.
    """
    if len(raw) < PLAIN_HEADER_SIZE:
        raise TruncatedData(f"truncated blob header: {len(raw)} bytes, need at least "
                            f"{PLAIN_HEADER_SIZE}")
    magic = bytes(raw[:8])
    if magic not in BLOB_KINDS:
        raise BadMagic(f"bad blob magic {magic.hex()} (not one of "
                       f"{', '.join(m.hex() for m in BLOB_KINDS)})")
    kind, encrypted, compressed = BLOB_KINDS[magic]
    header_size = ENCRYPTED_HEADER_SIZE if encrypted else PLAIN_HEADER_SIZE
    if len(raw) < header_size:
        raise TruncatedData(f"truncated {kind} blob header: {len(raw)} bytes, need "
                            f"{header_size}")
    if len(raw) > MAX_BLOB_SIZE + header_size:
        raise BlobTooLarge(f"blob too large: {len(raw)} bytes > 128 MiB + header")
    (stored_crc,) = struct.unpack_from("<I", raw, 8)
    computed_crc = zlib.crc32(memoryview(raw)[header_size:])
    return BlobInfo(kind, encrypted, compressed, stored_crc, computed_crc, len(raw),
                    header_size)


def encode_blob(data: bytes, *, compress: bool, crypt: CryptConfig | None = None) -> bytes:
    """Build a raw blob: zstd (when asked and smaller), then AES-GCM when ``crypt``."""
    if len(data) > MAX_BLOB_SIZE:
        raise BlobTooLarge(f"blob too large: {len(data)} bytes > {MAX_BLOB_SIZE} (128 MiB)")
    payload, compressed = bytes(data), False
    if compress:
        packed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
        if len(packed) < len(data):
            payload, compressed = packed, True
    if crypt is None:
        magic = COMPRESSED_BLOB_MAGIC if compressed else UNCOMPRESSED_BLOB_MAGIC
        return _assemble(magic, b"", payload)
    iv, tag, ciphertext = crypt.encrypt(payload)
    magic = ENCR_COMPR_BLOB_MAGIC if compressed else ENCRYPTED_BLOB_MAGIC
    return _assemble(magic, iv + tag, ciphertext)


def _assemble(magic: bytes, extra_header: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload)
    return b"".join((magic, struct.pack("<I", crc), extra_header, payload))


def decode_blob(raw: bytes, crypt: CryptConfig | None = None) -> bytes:
    """Return the plaintext of a raw blob after checking magic, CRC and GCM tag.

    ``crypt`` is needed for encrypted blobs only and ignored for plain ones.
    """
    info = check_blob(raw)
    if not info.crc_ok:
        raise CrcMismatch(f"CRC mismatch in {info.kind} blob: stored {info.stored_crc:08x}, "
                          f"computed {info.computed_crc:08x}")
    payload = bytes(memoryview(raw)[info.header_size:])
    if info.encrypted:
        if crypt is None:
            raise MissingKey(f"{info.kind} blob needs the encryption key to decode")
        iv, tag = bytes(raw[12:28]), bytes(raw[28:44])
        payload = crypt.decrypt(iv, tag, payload)
    if info.compressed:
        payload = decompress_zstd(payload)
    return payload


def decompress_zstd(payload: bytes) -> bytes:
    """Decompress one complete zstd frame of at most 128 MiB; anything else raises.

    A frame declaring a larger content size is refused before any allocation; a
    truncated frame or trailing data is an error, never a silently short result.
    """
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise DecompressionFailed(f"zstd payload has no valid frame header: {exc}") from None
    if declared > MAX_BLOB_SIZE:
        raise BlobTooLarge(f"zstd frame declares {declared} decompressed bytes > 128 MiB")
    try:
        return zstandard.ZstdDecompressor().decompress(
            payload, max_output_size=MAX_BLOB_SIZE, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise DecompressionFailed(f"zstd payload does not decompress (truncated, corrupt or "
                                  f"over 128 MiB): {exc}") from None


def decode_chunk(raw: bytes, digest: bytes, crypt: CryptConfig | None = None,
                 expected_size: int | None = None) -> bytes:
    """Plaintext of a chunk blob, checked against the digest it is stored under.

    Encrypted chunks are named SHA-256(plain || id_key), plain ones SHA-256(plain).
    """
    plain = decode_blob(raw, crypt)
    if BLOB_KINDS[bytes(raw[:8])][1]:
        computed = crypt.chunk_digest(plain)  # type: ignore[union-attr]
    else:
        computed = hashlib.sha256(plain).digest()
    if computed != digest:
        raise DigestMismatch(f"chunk content hashes to {computed.hex()}, but it is stored "
                             f"as {digest.hex()}")
    if expected_size is not None and len(plain) != expected_size:
        raise LengthMismatch(f"chunk {digest.hex()} holds {len(plain)} bytes, the index "
                             f"expects {expected_size}")
    return plain


def verify_chunk(raw: bytes, digest: bytes, *, crypt: CryptConfig | None = None,
                 expect_encrypted: bool | None = None, expected_size: int | None = None
                 ) -> bool:
    """Check a chunk as far as possible: True when its content was verified, False when
    only magic and CRC could be (encrypted, no key). Raises FormatError on any fault."""
    info = check_blob(raw)
    if not info.crc_ok:
        raise CrcMismatch(f"CRC mismatch in {info.kind} chunk: stored {info.stored_crc:08x}, "
                          f"computed {info.computed_crc:08x}")
    if expect_encrypted is not None and info.encrypted != expect_encrypted:
        wanted = "encrypted" if expect_encrypted else "unencrypted"
        raise FormatError(f"chunk is a {info.kind} blob, but the archive expects {wanted} "
                          "chunks")
    if info.encrypted and crypt is None:
        return False
    decode_chunk(raw, digest, crypt, expected_size)
    return True
