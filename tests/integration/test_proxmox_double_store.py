"""The double's datastore layer without servers: sync into an S3-layout store (the later
offsite-in-S3 issue only swaps the backend), listing as PBS does, verify state."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from restoredrill.lab.proxmox import store_ops
from restoredrill.lab.proxmox.store import PbsStore
from restoredrill.lab.proxmox.tasks import TaskRegistry
from restoredrill.pbsformat import CryptConfig, DatastoreReader, SnapshotRef

pytestmark = pytest.mark.integration
WHEN = datetime(2026, 1, 2, 1, 0, 3, tzinfo=timezone.utc)


def run(registry: TaskRegistry, work):
    task = registry.start("syncjob", "local:offsite:test", "root@pam", work)
    assert task.done.wait(30)
    return task


def test_sync_into_an_s3_layout_store_and_verify(tmp_path):
    crypt = CryptConfig.generate()
    local = PbsStore.create("local", tmp_path / "local")
    bucket = PbsStore.create("offsite", tmp_path / "bucket", layout="s3")
    image = bytes(range(256)) * (3 * 4096 + 17)
    local.writer("root@pam").write_snapshot(None, "vm", "110", WHEN, {
        "drive-scsi0.img.fidx": image, "qemu-server.conf.blob": b"name: app-vm\n"},
        crypt=crypt, notes="first line\nsecond line", chunk_size=64 * 1024)
    registry = TaskRegistry("pbs", "pbs1")
    task = run(registry, lambda t: store_ops.sync_stores(local, bucket, t, "root@pam"))
    assert task.exitstatus == "OK" and "sync snapshot vm/110/2026-01-02T01:00:03Z" in task.lines
    assert (tmp_path / "bucket" / "offsite" / ".cnt" / "vm" / "110" / "owner").is_file()
    assert (tmp_path / "bucket" / "offsite" / ".in-use").is_file()
    reports = DatastoreReader(tmp_path / "bucket", layout="s3", store="offsite").verify_all(crypt)
    assert reports and all(r.ok for r in reports)
    entry = bucket.snapshot_entry(bucket.snapshot_infos()[0])
    assert entry["comment"] == "first line" and entry["fingerprint"] == crypt.fingerprint()
    task = run(registry, lambda t: store_ops.verify_snapshots(bucket, bucket.snapshot_infos(), t))
    assert task.exitstatus == "OK"
    verified = bucket.snapshot_entry(bucket.snapshot_infos()[0])["verification"]
    assert verified == {"state": "ok", "upid": task.text}
    out = tmp_path / "restored.raw"
    with out.open("wb") as handle:
        bucket.reader.restore_fixed(SnapshotRef(None, "vm", "110", WHEN),
                                    "drive-scsi0.img.fidx", handle, crypt)
    assert out.read_bytes() == image
    registry.stop()
