"""The double's offsite datastore is S3-backed (issue 23 section 2): against the offsite lab's
real SeaweedFS, its restores read the bucket (not its own disk copy) through a bounded chunk
cache that starts empty; a missing or damaged chunk object fails naming the object, a damaged
one is never cached; an unreachable S3 fails after the client's retries naming the object."""
from __future__ import annotations

import os

import pytest

from restoredrill.lab.offsite import LAB_BUCKET, LAB_STORE
from restoredrill.lab.proxmox import homelab
from restoredrill.lab.proxmox.store_s3 import S3CachedSource, S3ReadError
from restoredrill.pbsformat import FormatError, Layout, MissingChunk

pytestmark = pytest.mark.integration


@pytest.fixture
def offsite(offsite_lab):
    return offsite_lab


def newest_vm(store):
    return max(store.snapshot_infos("vm", "110", homelab.OFFSITE_NAMESPACE), key=lambda i: i.epoch)


def test_the_offsite_store_restores_from_the_bucket_through_a_bounded_cache(offsite, tmp_path):
    store = offsite.double.stores["offsite"]
    assert store.backend_type == "s3" and store.s3_source is not None
    info = newest_vm(store)
    # the double's disk copy of a chunk goes away: a restore that still works read it from S3
    _archive, digest = store.archive_digests(info.ref)[0]
    local = store.backend.path(store.chunk_key(digest))
    aside = local.with_name(local.name + ".aside")
    os.replace(local, aside)
    source = S3CachedSource(offsite.seaweed.client("admin"), LAB_BUCKET, Layout.s3(LAB_STORE).chunk_prefix,
                            tmp_path / "cache", max_bytes=256 * 1024)
    assert source.cached_bytes == 0 and not any((tmp_path / "cache").iterdir())     # empty at start
    try:
        from restoredrill.pbsformat import DatastoreReader
        reader = DatastoreReader(source, layout=Layout.s3(LAB_STORE))
        with (tmp_path / "disk.raw").open("wb") as out:
            written = reader.restore_fixed(info.ref, "drive-scsi0.img.fidx", out, offsite.double.crypt)
    finally:
        os.replace(aside, local)
    assert written == 16 * 1024 * 1024 and source.gets > 2 and source.bytes_downloaded > 0
    assert 0 < source.cached_bytes <= 256 * 1024        # bounded: most chunks were dropped again
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) == source.cached_bytes
    hits, gets = source.hits, source.gets
    cached_key = next(iter(source._cached))
    assert source.read(cached_key) and source.hits == hits + 1 and source.gets == gets   # served locally


def test_a_missing_or_damaged_chunk_object_is_named_and_never_cached(offsite, tmp_path):
    store = offsite.double.stores["offsite"]
    info = newest_vm(store)
    _archive, digest = store.archive_digests(info.ref)[-1]
    key = Layout.s3(LAB_STORE).chunk_key(digest)
    admin = offsite.seaweed.client("admin")
    original = admin.get_object(Bucket=LAB_BUCKET, Key=key)["Body"].read()
    source = S3CachedSource(admin, LAB_BUCKET, Layout.s3(LAB_STORE).chunk_prefix, tmp_path / "cache")
    from restoredrill.pbsformat import DatastoreReader
    reader = DatastoreReader(source, layout=Layout.s3(LAB_STORE))
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0x01
    admin.put_object(Bucket=LAB_BUCKET, Key=key, Body=bytes(damaged))
    try:
        with pytest.raises(FormatError, match=key):
            reader.read_chunk(digest, offsite.double.crypt)
        assert key not in source._cached          # the damaged copy is not kept
        admin.delete_object(Bucket=LAB_BUCKET, Key=key)
        with pytest.raises(MissingChunk, match=f"chunk {key} is missing"):
            reader.read_chunk(digest, offsite.double.crypt)
    finally:
        admin.put_object(Bucket=LAB_BUCKET, Key=key, Body=original)
    assert reader.read_chunk(digest, offsite.double.crypt)        # repaired: read again, now cached
    assert key in source._cached


def test_an_unreachable_s3_fails_after_the_retries_naming_the_object(offsite, tmp_path):
    import socket
    with socket.socket() as probe:                 # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = offsite.seaweed.client("admin", endpoint=f"https://127.0.0.1:{port}", retries=2, timeout=2)
    source = S3CachedSource(client, LAB_BUCKET, Layout.s3(LAB_STORE).chunk_prefix, tmp_path / "cache")
    key = f"{LAB_STORE}/.cnt/ns/homelab/vm/110/x/index.json.blob"
    with pytest.raises(S3ReadError, match=f"S3 GET {LAB_BUCKET}/{key}: EndpointConnectionError"):
        source.read(key)
