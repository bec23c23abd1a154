"""Hostile PBS datastore objects through the offsite audit (checks/pbs_offsite.py, as the S3 audit
drill runs it over a bucket copy) and the datastore reader's verify/restore (pbsformat/datastore.py).

One valid snapshot is written with the real format writer; each input replaces its manifest or
an index with crafted bytes. Every input must come back as a named problem (or the library's
FormatError), never an uncaught IndexError/OverflowError/MemoryError, and no read may leave the
datastore folder.
"""
from __future__ import annotations

import hashlib
import shutil
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from restoredrill.checks.pbs_offsite import (
    LocalObjects,
    audit_metadata,
    audit_sample,
    build_catalog,
    find_missing_chunks,
)
from restoredrill.pbsformat import DatastoreReader, DatastoreWriter, FormatError, Layout, encode_blob
from restoredrill.pbsformat.index import (
    DYNAMIC_INDEX_MAGIC,
    FIXED_INDEX_MAGIC,
    HEADER_SIZE,
    dynamic_index_csum,
    fixed_index_csum,
)
from restoredrill.pbsformat.manifest import encode_manifest_blob
from tests.hostile.conftest import with_known_defects

STORE = "hostile"
LAYOUT = Layout.s3(STORE)
WHEN = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
SNAP = "vm/100/2026-05-01T02:00:00Z"
MANIFEST = f"{STORE}/.cnt/{SNAP}/index.json.blob"
FIDX = f"{STORE}/.cnt/{SNAP}/drive-scsi0.img.fidx"
DIDX = f"{STORE}/.cnt/{SNAP}/root.pxar.didx"
BIG = 2 ** 64 - 1


def fixed(size: int, chunk_size: int, digests: list[bytes]) -> bytes:
    header = struct.pack("<8s16sq32sQQ", FIXED_INDEX_MAGIC, b"\1" * 16, 0, fixed_index_csum(digests),
                         size, chunk_size)
    return header.ljust(HEADER_SIZE, b"\0") + b"".join(digests)


def dynamic(entries: list[tuple[int, bytes]]) -> bytes:
    header = struct.pack("<8s16sq32s", DYNAMIC_INDEX_MAGIC, b"\1" * 16, 0, dynamic_index_csum(entries))
    return header.ljust(HEADER_SIZE, b"\0") + b"".join(struct.pack("<Q32s", e, d) for e, d in entries)


D1, D2 = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()


def manifest(files: list[dict] | object, **extra) -> bytes:
    doc = {"backup-type": "vm", "backup-id": "100", "backup-time": int(WHEN.timestamp()), "files": files,
           "unprotected": {}, "signature": None, **extra}
    return encode_manifest_blob(doc)


def entry(name: str, size: int, csum: bytes = b"\0" * 32, mode: str = "none") -> dict:
    return {"filename": name, "crypt-mode": mode, "size": size, "csum": csum.hex()}


def _index_input(raw: bytes, size: int | None = None, csum: bytes | None = None) -> dict[str, bytes]:
    """Replace the fixed index, and list it in the manifest with the size/csum the index claims."""
    return {FIDX: raw, MANIFEST: manifest([entry("drive-scsi0.img.fidx", size if size is not None else 0,
                                                  csum or hashlib.sha256(b"").digest())])}


INPUTS: dict[str, dict[str, bytes]] = {
    "fidx-size-overflows-u64-count": _index_input(fixed(BIG, 1, [D1])),
    "fidx-chunk-size-zero": _index_input(fixed(10, 0, [D1])),
    "fidx-huge-chunks-few-digests": _index_input(fixed(2 ** 63, 2 ** 62, [D1, D2]), 2 ** 63,
                                                  fixed_index_csum([D1, D2])),
    "fidx-truncated-header": _index_input(FIXED_INDEX_MAGIC + b"\0" * 40),
    "fidx-digest-count-short": _index_input(fixed(4 << 20, 1 << 20, [D1])),
    "didx-offsets-out-of-order": {DIDX: dynamic([(100, D1), (50, D2)]),
                                  MANIFEST: manifest([entry("root.pxar.didx", 50)])},
    "didx-offset-past-u63": {DIDX: dynamic([(BIG, D1)]),
                             MANIFEST: manifest([entry("root.pxar.didx", BIG,
                                                       dynamic_index_csum([(BIG, D1)]))])},
    "didx-stray-bytes": {DIDX: dynamic([(10, D1)]) + b"\x01\x02\x03",
                         MANIFEST: manifest([entry("root.pxar.didx", 10)])},
    "manifest-dotdot-filename": {MANIFEST: manifest([entry("../../../../../etc/shadow.blob", 10)])},
    "manifest-absolute-filename": {MANIFEST: manifest([entry("/etc/shadow.blob", 10)])},
    "manifest-slash-in-filename": {MANIFEST: manifest([entry("sub/dir.img.fidx", 10)])},
    "manifest-nul-in-filename": {MANIFEST: manifest([entry("a\0b.blob", 10)])},
    "manifest-huge-file-count": {MANIFEST: manifest([entry(f"f{i}.blob", 1) for i in range(50_000)])},
    "manifest-size-negative": {MANIFEST: manifest([entry("drive-scsi0.img.fidx", -1)])},
    "manifest-size-huge": {MANIFEST: manifest([entry("drive-scsi0.img.fidx", 10 ** 30)])},
    "manifest-size-float": {MANIFEST: manifest([entry("drive-scsi0.img.fidx", 1.5)])},
    "manifest-files-not-a-list": {MANIFEST: manifest({"filename": "x.blob"})},
    "manifest-backup-time-huge": {MANIFEST: manifest([], **{"backup-time": 10 ** 30})},
    "manifest-backup-id-traversal": {MANIFEST: manifest([], **{"backup-id": "../../etc"})},
    "manifest-not-json": {MANIFEST: encode_blob(b"{not json", compress=True)},
    "manifest-json-deeply-nested": {MANIFEST: encode_blob(b"[" * 100_000 + b"]" * 100_000, compress=True)},
    "manifest-zstd-bomb": {MANIFEST: encode_blob(b" " * (64 << 20), compress=True)},
    "manifest-truncated-blob": {MANIFEST: manifest([])[:10]},
}


PBS_DEFECTS: dict[str, str] = {}     # none known (backup-time range, JSON depth fixed in pbsformat/manifest.py)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile-pbs")
    writer = DatastoreWriter(root, layout=LAYOUT)
    writer.write_snapshot(None, "vm", "100", WHEN, {"drive-scsi0.img.fidx": b"x" * 5000,
                                                     "root.pxar.didx": b"y" * 5000},
                          chunk_size=4096, dynamic_avg_size=4096)
    return root


class Guarded(LocalObjects):
    """The local bucket copy, recording every key read (to prove none leaves the store)."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.read_keys: list[str] = []

    def read_many(self, keys, process=None):
        keys = list(keys)
        self.read_keys += keys
        return super().read_many(keys, process)


def _apply(pristine: Path, target: Path, changes: dict[str, bytes]) -> None:
    shutil.copytree(pristine, target)
    for key, raw in changes.items():
        path = target / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)


@pytest.mark.parametrize("name", with_known_defects(INPUTS, PBS_DEFECTS))
def test_hostile_pbs_object_is_a_named_problem(name: str, pristine: Path, tmp_path: Path):
    root = tmp_path / "bucket"
    _apply(pristine, root, INPUTS[name])
    objects = Guarded(root)
    catalog = build_catalog(objects.list_objects(LAYOUT.content_prefix), objects.list_objects(LAYOUT.chunk_prefix),
                            LAYOUT)
    now = datetime.now(UTC) + timedelta(days=1)
    metadata = audit_metadata(catalog, objects.read_many, now)
    missing = find_missing_chunks(metadata, catalog)
    sample = audit_sample(sorted(catalog.chunks), metadata, catalog, objects.scan_many, False)
    problems = [*metadata.problems, *missing, *sample.problems]
    assert problems, f"{name}: the audit found nothing wrong"
    assert all(p.path.startswith(f"{STORE}/") for p in problems), problems
    assert all(len(str(p)) < 2000 for p in problems), "a problem message is not short"
    for key in objects.read_keys:
        resolved = (root / key).resolve()
        assert resolved.is_relative_to(root.resolve()) and ".." not in key.split("/"), key


@pytest.mark.parametrize("name", with_known_defects(INPUTS, PBS_DEFECTS))
def test_hostile_pbs_object_fails_the_datastore_verify(name: str, pristine: Path, tmp_path: Path):
    """The reader the restore drills use: verify reports a problem; a restore raises FormatError only."""
    root = tmp_path / "store"
    _apply(pristine, root, INPUTS[name])
    reader = DatastoreReader(root, layout=LAYOUT)
    reports = reader.verify_all()
    assert any(not r.ok for r in reports), f"{name}: verify found nothing wrong ({len(reports)} reports)"
    for snapshot in reader.list_snapshots():
        try:
            with open(tmp_path / "out.img", "wb") as out:
                reader.restore_fixed(snapshot, "drive-scsi0.img.fidx", out)
        except FormatError as exc:
            assert len(str(exc)) < 2000
        except LookupError:            # MissingObject: the archive is not there
            pass
    assert not (tmp_path / "out.img").exists() or (tmp_path / "out.img").stat().st_size < 1 << 20
