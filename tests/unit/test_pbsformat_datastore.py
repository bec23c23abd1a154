"""Datastore write -> independent read -> verify/restore, damage detection, layouts."""
import hashlib
import io
import os
from datetime import datetime, timezone

import pytest

from restoredrill.pbsformat import datastore
from restoredrill.pbsformat.blob import (CrcMismatch, FormatError, check_blob, decode_blob,
                                         encode_blob)
from restoredrill.pbsformat.crypt import CryptConfig
from restoredrill.pbsformat.datastore import (DatastoreReader, DatastoreWriter, LocalSource,
                                              MissingChunk, MissingObject)
from restoredrill.pbsformat.index import parse_dynamic_index, parse_fixed_index
from restoredrill.pbsformat.manifest import UnsafeName, decode_manifest_blob

TIME = datetime(2024, 5, 1, 2, 0, 3, tzinfo=timezone.utc)
CHUNK = 64 * 1024
CONF = b"boot: order=scsi0\nmemory: 2048\nscsi0: local-lvm:vm-100-disk-0,size=1G\n"


@pytest.fixture(scope="module")
def image():
    return os.urandom(3 * CHUNK) + bytes(2 * CHUNK) + os.urandom(CHUNK // 3)


@pytest.fixture(scope="module")
def stream():
    return os.urandom(200_000) + b"pxar entry\n" * 20_000


def write_vm(root, image, stream, **kwargs):
    writer = DatastoreWriter(root, precreate_chunk_dirs=False, **kwargs.pop("writer", {}))
    archives = {"drive-scsi0.img.fidx": image, "qemu-server.conf.blob": CONF,
                "root.pxar.didx": io.BytesIO(stream)}
    return writer, writer.write_snapshot("prod", "vm", "100", TIME, archives, chunk_size=CHUNK,
                                         dynamic_avg_size=16384, **kwargs)


def chunk_path(root, digest):
    return root / ".chunks" / digest.hex()[:4] / digest.hex()


def test_written_files_parse_independently(tmp_path, image, stream):
    _, ref = write_vm(tmp_path, image, stream, notes="nightly")
    snap = tmp_path / "ns/prod/vm/100/2024-05-01T02:00:03Z"
    assert ref.path == "ns/prod/vm/100/2024-05-01T02:00:03Z"
    assert sorted(p.name for p in snap.iterdir()) == [
        "drive-scsi0.img.fidx", "index.json.blob", "qemu-server.conf.blob", "root.pxar.didx"]
    assert (tmp_path / "ns/prod/vm/100/owner").read_text() == "root@pam\n"
    fidx = parse_fixed_index((snap / "drive-scsi0.img.fidx").read_bytes())
    assert (fidx.size, fidx.chunk_size, len(fidx.digests)) == (len(image), CHUNK, 6)
    assert fidx.digests[3] == fidx.digests[4]  # zero chunks dedup
    rebuilt = b"".join(decode_blob(chunk_path(tmp_path, d).read_bytes()) for d in fidx.digests)
    assert rebuilt == image
    for digest in fidx.digests:
        plain = decode_blob(chunk_path(tmp_path, digest).read_bytes())
        assert hashlib.sha256(plain).digest() == digest
    didx = parse_dynamic_index((snap / "root.pxar.didx").read_bytes())
    assert didx.size == len(stream) and len(didx.entries) > 3
    manifest = decode_manifest_blob((snap / "index.json.blob").read_bytes())
    assert [f.filename for f in manifest.files] == [
        "drive-scsi0.img.fidx", "qemu-server.conf.blob", "root.pxar.didx"]
    assert manifest.file("drive-scsi0.img.fidx").csum == fidx.csum
    assert manifest.file("qemu-server.conf.blob").csum == hashlib.sha256(
        (snap / "qemu-server.conf.blob").read_bytes()).digest()
    assert manifest.unprotected == {"notes": "nightly"}
    assert not list(tmp_path.rglob("*.tmp_*"))


def test_reader_lists_verifies_and_restores(tmp_path, image, stream):
    _, ref = write_vm(tmp_path, image, stream, protected=True)
    reader = DatastoreReader(tmp_path)
    (group,) = reader.list_groups()
    assert (group.ns, group.backup_type, group.backup_id, group.owner, group.snapshot_count) == (
        "prod", "vm", "100", "root@pam", 1)
    (info,) = reader.list_snapshots()
    assert info.ref == ref and info.finished and info.protected
    report = reader.verify_snapshot(info)
    assert report.ok, report.problems
    assert report.files_checked == 3 and report.chunks_crc_only == 0
    assert report.chunks_verified == report.chunks_checked > 8
    out = io.BytesIO()
    assert reader.restore_fixed(ref, "drive-scsi0.img.fidx", out) == len(image)
    assert out.getvalue() == image
    out = io.BytesIO()
    assert reader.restore_dynamic(ref, "root.pxar.didx", out) == len(stream)
    assert out.getvalue() == stream
    assert reader.read_blob_archive(ref, "qemu-server.conf.blob") == CONF
    with pytest.raises(FormatError, match="not a DynamicIndex"):
        reader.restore_dynamic(ref, "drive-scsi0.img.fidx", io.BytesIO())


def test_encrypted_snapshot_verifies_without_and_with_key(tmp_path, image, stream):
    crypt = CryptConfig.generate()
    _, ref = write_vm(tmp_path, image, stream, crypt=crypt)
    reader = DatastoreReader(tmp_path)
    manifest = reader.read_manifest(ref)
    assert {f.crypt_mode for f in manifest.files} == {"encrypt"}
    assert manifest.key_fingerprint == crypt.fingerprint() and manifest.signature
    keyless = reader.verify_snapshot(ref)
    assert keyless.ok and keyless.chunks_verified == 0 and keyless.chunks_crc_only > 0
    assert "not checked without the key" in keyless.notes[0]
    keyed = reader.verify_snapshot(ref, crypt)
    assert keyed.ok and keyed.chunks_crc_only == 0
    out = io.BytesIO()
    reader.restore_fixed(ref, "drive-scsi0.img.fidx", out, crypt)
    assert out.getvalue() == image
    assert reader.read_blob_archive(ref, "qemu-server.conf.blob", crypt) == CONF
    wrong = reader.verify_snapshot(ref, CryptConfig.generate())
    assert [p.path for p in wrong.problems] == [f"{ref.path}/index.json.blob"]
    assert "wrong key" in wrong.problems[0].message
    with pytest.raises(FormatError, match="written with key"):
        reader.restore_fixed(ref, "drive-scsi0.img.fidx", io.BytesIO())


def damaged_store(tmp_path, image, stream):
    _, ref = write_vm(tmp_path, image, stream)
    reader = DatastoreReader(tmp_path)
    fidx = reader.read_archive_index(ref, "drive-scsi0.img.fidx")
    return reader, ref, fidx


def test_flipped_chunk_byte_is_named(tmp_path, image, stream):
    reader, ref, fidx = damaged_store(tmp_path, image, stream)
    path = chunk_path(tmp_path, fidx.digests[1])
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    report = reader.verify_snapshot(ref)
    (problem,) = report.problems
    assert problem.path == f".chunks/{fidx.digests[1].hex()[:4]}/{fidx.digests[1].hex()}"
    assert "CRC mismatch" in problem.message
    assert "chunk 1 of drive-scsi0.img.fidx" in problem.message
    with pytest.raises(CrcMismatch, match=fidx.digests[1].hex()):
        reader.restore_fixed(ref, "drive-scsi0.img.fidx", io.BytesIO())


def test_replaced_chunk_content_is_a_digest_mismatch(tmp_path, image, stream):
    reader, ref, fidx = damaged_store(tmp_path, image, stream)
    chunk_path(tmp_path, fidx.digests[0]).write_bytes(encode_blob(os.urandom(CHUNK),
                                                                  compress=False))
    (problem,) = reader.verify_snapshot(ref).problems
    assert fidx.digests[0].hex() in problem.path and "hashes to" in problem.message


def test_deleted_chunk_is_named(tmp_path, image, stream):
    reader, ref, fidx = damaged_store(tmp_path, image, stream)
    chunk_path(tmp_path, fidx.digests[3]).unlink()  # the zero chunk, referenced twice
    report = reader.verify_snapshot(ref)
    (problem,) = report.problems
    assert problem.path.endswith(fidx.digests[3].hex()) and problem.message.startswith("missing")
    with pytest.raises(MissingChunk, match=fidx.digests[3].hex()):
        reader.restore_fixed(ref, "drive-scsi0.img.fidx", io.BytesIO())


@pytest.mark.parametrize("name", ["drive-scsi0.img.fidx", "root.pxar.didx"])
def test_truncated_index_is_named(tmp_path, image, stream, name):
    reader, ref, _ = damaged_store(tmp_path, image, stream)
    path = tmp_path / ref.path / name
    path.write_bytes(path.read_bytes()[:-7])
    (problem,) = reader.verify_snapshot(ref).problems
    assert problem.path == f"{ref.path}/{name}"
    assert "length" in problem.message


def test_altered_blob_and_missing_archive_are_named(tmp_path, image, stream):
    reader, ref, _ = damaged_store(tmp_path, image, stream)
    (tmp_path / ref.path / "qemu-server.conf.blob").write_bytes(encode_blob(b"x", compress=False))
    (tmp_path / ref.path / "root.pxar.didx").unlink()
    problems = {p.path: p.message for p in reader.verify_snapshot(ref).problems}
    assert "csum" in problems[f"{ref.path}/qemu-server.conf.blob"]
    assert "missing" in problems[f"{ref.path}/root.pxar.didx"]


def test_missing_manifest_means_unfinished(tmp_path, image, stream):
    reader, ref, _ = damaged_store(tmp_path, image, stream)
    (tmp_path / ref.path / "index.json.blob").unlink()
    (problem,) = reader.verify_snapshot(ref).problems
    assert problem.path == f"{ref.path}/index.json.blob" and "unfinished" in problem.message
    assert not reader.list_snapshots()[0].finished


def test_unfinished_snapshot_writer(tmp_path, image, stream):
    writer = DatastoreWriter(tmp_path, precreate_chunk_dirs=False)
    ref = writer.write_unfinished_snapshot(None, "ct", "200", TIME, {"root.pxar.didx": stream},
                                           dynamic_avg_size=16384)
    (info,) = DatastoreReader(tmp_path).list_snapshots()
    assert info.ref == ref and not info.finished and info.files == ("root.pxar.didx",)


def test_dedup_across_snapshots_and_write_chunk(tmp_path, image, stream):
    writer, _ = write_vm(tmp_path, image, stream)
    count = len(list((tmp_path / ".chunks").rglob("*")))
    writer.write_snapshot("prod", "vm", "100", 1714528900, {"drive-scsi0.img.fidx": image},
                          chunk_size=CHUNK)
    assert len(list((tmp_path / ".chunks").rglob("*"))) == count
    fresh = DatastoreWriter(tmp_path, precreate_chunk_dirs=False)
    digest = hashlib.sha256(b"new").digest()
    raw = encode_blob(b"new", compress=False)
    assert fresh.write_chunk(raw, digest) is True
    assert fresh.write_chunk(raw, digest) is False
    with pytest.raises(FormatError, match="CRC"):
        fresh.write_chunk(raw[:-1] + b"X", hashlib.sha256(b"other").digest())
    reader = DatastoreReader(tmp_path)
    assert [len(r.problems) for r in reader.verify_all()] == [0, 0]


def test_existing_snapshot_is_not_overwritten(tmp_path, image, stream):
    writer, _ = write_vm(tmp_path, image, stream)
    with pytest.raises(FileExistsError):
        writer.write_snapshot("prod", "vm", "100", TIME, {"x.blob": b""})


@pytest.mark.parametrize("ns, backup_id, archive", [
    ("../..", "100", "a.blob"), (None, "..", "a.blob"), (None, "1/../../x", "a.blob"),
    (None, "100", "../../escape.blob"), (None, "100", "index.json.blob"),
    (None, "100", "a.tar"), (None, "100", "a\0.blob")])
def test_writer_rejects_path_traversal(tmp_path, ns, backup_id, archive):
    writer = DatastoreWriter(tmp_path / "store", precreate_chunk_dirs=False)
    with pytest.raises(UnsafeName):
        writer.write_snapshot(ns, "vm", backup_id, TIME, {archive: b"x"})
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_local_source_rejects_unsafe_keys(tmp_path):
    source = LocalSource(tmp_path)
    for key in ("../etc/passwd", "/etc/passwd", "a//b", "a/./b", ""):
        with pytest.raises(UnsafeName):
            source.read(key)
    with pytest.raises(MissingObject):
        source.read("vm/100/owner")


def test_manifest_in_the_wrong_directory_is_refused(tmp_path, image, stream):
    _, ref = write_vm(tmp_path, image, stream)
    moved = tmp_path / "ns/prod/vm/100/2024-05-01T02:00:04Z"
    (tmp_path / ref.path).rename(moved)
    reader = DatastoreReader(tmp_path)
    (report,) = reader.verify_all()
    assert "lies in" in report.problems[0].message


class DictSource:
    """An in-memory ObjectSource, standing in for an S3 bucket."""

    def __init__(self, objects):
        self.objects = objects

    def list(self, prefix):
        return iter(sorted(k for k in self.objects if k.startswith(prefix)))

    def read(self, key):
        try:
            return self.objects[key]
        except KeyError:
            raise MissingObject(key) from None

    def exists(self, key):
        return key in self.objects


def test_s3_layout_round_trip_through_an_object_source(tmp_path, image, stream):
    crypt = CryptConfig.generate()
    write_vm(tmp_path, image, stream, crypt=crypt, writer={"layout": "s3", "store": "offsite"})
    keys = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert "offsite/.in-use" in keys
    assert "offsite/.cnt/ns/prod/.namespace" in keys
    assert "offsite/.cnt/ns/prod/vm/100/owner" in keys
    assert "offsite/.cnt/ns/prod/vm/100/2024-05-01T02:00:03Z/index.json.blob" in keys
    assert all(k.startswith(("offsite/.cnt/", "offsite/.chunks/", "offsite/.in-use"))
               for k in keys)
    chunk_keys = [k for k in keys if k.startswith("offsite/.chunks/")]
    assert all(k.split("/")[3].startswith(k.split("/")[2]) for k in chunk_keys)
    bucket = DictSource({k: (tmp_path / k).read_bytes() for k in keys})
    reader = DatastoreReader(bucket, layout="s3", store="offsite")
    (info,) = reader.list_snapshots()
    assert info.ns == "prod" and info.finished
    assert reader.verify_snapshot(info).ok
    del bucket.objects[chunk_keys[0]]
    (problem,) = reader.verify_snapshot(info).problems
    assert problem.path == chunk_keys[0]
    on_disk = DatastoreReader(tmp_path, layout="s3", store="offsite")
    assert on_disk.list_groups()[0].owner == "root@pam"
    assert DatastoreReader(tmp_path).list_snapshots() == []


def test_chunk_dirs_are_precreated_once(tmp_path, monkeypatch):
    monkeypatch.setattr(datastore, "CHUNK_DIR_COUNT", 32)
    DatastoreWriter(tmp_path)
    names = sorted(p.name for p in (tmp_path / ".chunks").iterdir())
    assert names == [f"{i:04x}" for i in range(32)]
    DatastoreWriter(tmp_path)  # idempotent
    assert check_blob(encode_blob(b"", compress=False)).crc_ok
