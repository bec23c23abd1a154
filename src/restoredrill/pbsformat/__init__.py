"""Read and write the Proxmox Backup Server on-disk format without PBS.

Blobs (``blob``), encryption (``crypt``), chunk indexes (``index``), snapshot names and
manifests (``manifest``) are pure byte/JSON logic; ``datastore`` puts them on disk (or
in the S3 object layout) and reads, verifies and restores them back.
"""
from restoredrill.pbsformat.blob import (
    BLOB_KINDS, COMPRESSED_BLOB_MAGIC, ENCR_COMPR_BLOB_MAGIC, ENCRYPTED_BLOB_MAGIC,
    MAX_BLOB_SIZE, UNCOMPRESSED_BLOB_MAGIC, BadMagic, BlobInfo, BlobTooLarge,
    ChecksumMismatch, CrcMismatch, DecompressionFailed, DecryptionFailed, DigestMismatch,
    FormatError, LengthMismatch, MissingKey, TruncatedData, check_blob, compute_magic,
    decode_blob, decode_chunk, encode_blob, verify_chunk)
from restoredrill.pbsformat.crypt import (
    CryptConfig, KeyFileError, canonical_json, chunk_digest, format_fingerprint,
    parse_key_file, read_key_file, render_key_file, signed_manifest_bytes,
    verify_manifest_signature, write_key_file)
from restoredrill.pbsformat.datastore import (
    DatastoreReader, DatastoreWriter, GroupInfo, Layout, LocalSource, MissingChunk,
    MissingObject, ObjectSource, Problem, SnapshotInfo, VerifyReport, make_layout)
from restoredrill.pbsformat.index import (
    DYNAMIC_INDEX_MAGIC, FIXED_INDEX_MAGIC, DynamicIndex, FixedIndex, dynamic_index_csum,
    encode_dynamic_index, encode_fixed_index, fixed_index_csum, index_csum,
    parse_dynamic_index, parse_fixed_index, parse_index, split_dynamic)
from restoredrill.pbsformat.manifest import (
    MANIFEST_BLOB_NAME, FileEntry, Manifest, SnapshotRef, UnsafeName, blob_file_entry,
    build_manifest, classify_content_key, check_archive_name, check_manifest_key, check_name,
    decode_manifest_blob, encode_manifest_blob, format_backup_time, index_file_entry,
    parse_backup_time, parse_manifest, parse_snapshot_path)

__all__ = [
    "BLOB_KINDS", "BadMagic", "BlobInfo", "BlobTooLarge", "COMPRESSED_BLOB_MAGIC",
    "ChecksumMismatch", "CrcMismatch", "CryptConfig", "DYNAMIC_INDEX_MAGIC",
    "DatastoreReader", "DatastoreWriter", "DecompressionFailed", "DecryptionFailed",
    "DigestMismatch", "DynamicIndex", "ENCRYPTED_BLOB_MAGIC", "ENCR_COMPR_BLOB_MAGIC",
    "FIXED_INDEX_MAGIC", "FileEntry", "FixedIndex", "FormatError", "GroupInfo",
    "KeyFileError", "Layout", "LengthMismatch", "LocalSource", "MANIFEST_BLOB_NAME",
    "MAX_BLOB_SIZE", "Manifest", "MissingChunk", "MissingKey", "MissingObject",
    "ObjectSource", "Problem", "SnapshotInfo", "SnapshotRef", "TruncatedData",
    "UNCOMPRESSED_BLOB_MAGIC", "UnsafeName", "VerifyReport", "blob_file_entry",
    "build_manifest", "canonical_json", "check_archive_name", "check_blob",
    "check_manifest_key", "check_name", "chunk_digest", "classify_content_key",
    "compute_magic", "decode_blob", "decode_chunk", "decode_manifest_blob",
    "dynamic_index_csum", "encode_blob", "encode_dynamic_index", "encode_fixed_index",
    "encode_manifest_blob", "fixed_index_csum", "format_backup_time", "format_fingerprint",
    "index_csum", "index_file_entry", "make_layout", "parse_backup_time",
    "parse_dynamic_index", "parse_fixed_index", "parse_index", "parse_key_file",
    "parse_manifest", "parse_snapshot_path", "read_key_file", "render_key_file",
    "signed_manifest_bytes", "split_dynamic", "verify_chunk", "verify_manifest_signature",
    "write_key_file",
]
