"""Snapshot names and paths, manifest build/parse, csums, signature and key checks."""
import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest

from restoredrill.pbsformat.blob import (ChecksumMismatch, DecryptionFailed, FormatError,
                                         MissingKey, check_blob, decode_blob, encode_blob)
from restoredrill.pbsformat.crypt import CryptConfig
from restoredrill.pbsformat.index import encode_dynamic_index, encode_fixed_index
from restoredrill.pbsformat.manifest import (SnapshotRef, UnsafeName, blob_file_entry,
                                             build_manifest, check_archive_name,
                                             check_manifest_key, decode_manifest_blob,
                                             encode_manifest_blob, format_backup_time,
                                             index_file_entry, parse_manifest,
                                             parse_snapshot_path)

TIME = datetime(2024, 5, 1, 2, 0, 3, tzinfo=timezone.utc)
DIGEST = hashlib.sha256(b"chunk").digest()


def sample_entries():
    conf = encode_blob(b"memory: 2048\n", compress=True)
    fidx = encode_fixed_index([DIGEST, DIGEST], size=6000, chunk_size=4096)
    didx = encode_dynamic_index([(123, DIGEST)])
    return conf, fidx, didx, [blob_file_entry("qemu-server.conf.blob", conf),
                              index_file_entry("drive-scsi0.img.fidx", fidx),
                              index_file_entry("root.pxar.didx", didx)]


def test_file_entry_csums_follow_the_spec():
    conf, fidx, _didx, (blob_entry, fidx_entry, didx_entry) = sample_entries()
    assert blob_entry.csum == hashlib.sha256(conf).digest() and blob_entry.size == len(conf)
    assert fidx_entry.csum == hashlib.sha256(DIGEST + DIGEST).digest() == fidx[32:64]
    assert fidx_entry.size == 6000
    assert didx_entry.size == 123


def test_build_encode_decode_round_trip():
    *_, entries = sample_entries()
    document = build_manifest("vm", "100", TIME, entries, unprotected={"notes": "n"})
    raw = encode_manifest_blob(document)
    assert check_blob(raw).kind == "zstd"
    text = json.loads(decode_blob(raw))
    assert text["backup-time"] == 1714528803 and text["signature"] is None
    assert text["files"][1] == {"filename": "drive-scsi0.img.fidx", "crypt-mode": "none",
                                "size": 6000, "csum": entries[1].csum.hex()}
    manifest = decode_manifest_blob(raw)
    assert manifest.files == tuple(entries)
    assert manifest.unprotected == {"notes": "n"} and manifest.key_fingerprint is None
    assert manifest.file("root.pxar.didx").size == 123
    with pytest.raises(FormatError, match="does not list"):
        manifest.file("nope.blob")
    check_manifest_key(manifest, None)


def test_signed_manifest_and_key_checks():
    *_, entries = sample_entries()
    crypt = CryptConfig(bytes(range(32)))
    document = build_manifest("ct", "101", TIME, entries, crypt=crypt)
    assert document["unprotected"]["key-fingerprint"] == crypt.fingerprint()
    manifest = parse_manifest(json.dumps(document))
    check_manifest_key(manifest, crypt)
    with pytest.raises(MissingKey, match="written with key"):
        check_manifest_key(manifest, None)
    with pytest.raises(DecryptionFailed, match="wrong key"):
        check_manifest_key(manifest, CryptConfig(bytes(32)))
    document["unprotected"]["notes"] = "unsigned notes may change"
    check_manifest_key(parse_manifest(json.dumps(document)), crypt)
    document["files"][0]["size"] += 1
    with pytest.raises(ChecksumMismatch, match="signature"):
        check_manifest_key(parse_manifest(json.dumps(document)), crypt)


@pytest.mark.parametrize("patch, message", [
    ({"backup-type": "lxc"}, "backup type"),
    ({"backup-id": "../etc"}, "unsafe backup id"),
    ({"backup-time": "2024"}, "not an integer"),
    ({"files": [{"filename": "../x.blob", "size": 1, "csum": "00" * 32}]}, "unsafe archive"),
    ({"files": [{"filename": "x.blob", "crypt-mode": "rot13", "size": 1, "csum": "00" * 32}]},
     "crypt-mode"),
    ({"files": [{"filename": "x.blob", "size": -1, "csum": "00" * 32}]}, "size"),
    ({"files": [{"filename": "x.blob", "size": 1, "csum": "zz"}]}, "csum"),
])
def test_parse_manifest_rejects_bad_documents(patch, message):
    document = {"backup-type": "vm", "backup-id": "100", "backup-time": 1714528803,
                "files": [], **patch}
    with pytest.raises(FormatError, match=message):
        parse_manifest(json.dumps(document))


def test_old_manifest_without_crypt_mode_defaults_to_none():
    document = {"backup-type": "host", "backup-id": "h", "backup-time": 0,
                "files": [{"filename": "a.blob", "size": 1, "csum": "ab" * 32}]}
    assert parse_manifest(json.dumps(document)).files[0].crypt_mode == "none"


def test_snapshot_paths():
    ref = SnapshotRef("prod/db", "vm", "100", TIME + timedelta(microseconds=5))
    assert ref.path == "ns/prod/ns/db/vm/100/2024-05-01T02:00:03Z"
    assert ref.epoch == 1714528803
    assert parse_snapshot_path(ref.path) == ref
    assert parse_snapshot_path("host/web-1/2024-05-01T02:00:03Z").ns is None
    assert format_backup_time(1714528803) == "2024-05-01T02:00:03Z"
    assert SnapshotRef("", "ct", "1", 0).ns is None


@pytest.mark.parametrize("ns, backup_type, backup_id", [
    (None, "vm", ".."), (None, "vm", "a/b"), (None, "vm", ""), (None, "vm", "a\0b"),
    (None, "vm", ".hidden"), (None, "vm", "with space"), ("..", "vm", "1"), ("a//b", "vm", "1"),
    ("/abs", "vm", "1"), (None, "../vm", "1"), ("a/b/c/d/e/f/g/h", "vm", "1"),
])
def test_path_traversal_is_rejected(ns, backup_type, backup_id):
    with pytest.raises(UnsafeName):
        SnapshotRef(ns, backup_type, backup_id, TIME)


@pytest.mark.parametrize("name", ["../index.json.blob", "a/b.blob", "x.txt", "", ".protected",
                                  "x\0.blob", "x.fidx/.."])
def test_archive_names_are_checked(name):
    with pytest.raises(UnsafeName):
        check_archive_name(name)


def test_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="aware"):
        SnapshotRef(None, "vm", "1", datetime(2024, 5, 1))
    with pytest.raises(FormatError):
        parse_snapshot_path("vm/100/2024-05-01 02:00:03")
