"""The offsite PBS audit's pure logic over a datastore written in the S3 key layout on disk:
catalog, metadata, presence, the chunk sample and its rotation, retention/freshness,
bucket hardening, and the cross-copy comparison."""
from __future__ import annotations

import os
import random
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restoredrill import retention
from restoredrill.checks.pbs_offsite import (Catalog, ChunkScanner, ChunkUse, CopyListing, LocalObjects, RotationPlan,
                                             advance_rotation, audit_metadata, audit_retention,
                                             audit_sample, build_catalog, check_chunk, check_freshness,
                                             compare_copies, evaluate_hardening, find_missing_chunks,
                                             parse_chunk_key, plan_rotation, rule_covers_store,
                                             select_slice, slice_of)
from restoredrill.lab.offsite import LAB_POLICY, LAB_STORE, plan_pbs_history, write_pbs_datastore
from restoredrill.pbsformat import CryptConfig, DatastoreWriter, Layout, chunk_digest, encode_blob

NOW = datetime(2026, 6, 1, 4, 0, tzinfo=timezone.utc)
NEWEST = NOW - timedelta(hours=2)
ZONE = "Europe/Berlin"
LAYOUT = Layout.s3(LAB_STORE)
LATER = datetime.now(timezone.utc) + timedelta(hours=3)   # files were just written: judge them 3 h later


@pytest.fixture(scope="module")
def history():
    return plan_pbs_history(NEWEST, ZONE), plan_pbs_history(NEWEST + timedelta(minutes=7), ZONE)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, history):
    root = tmp_path_factory.mktemp("pristine")
    write_pbs_datastore(root, CryptConfig.generate(), *history)
    return root


@pytest.fixture
def store(tmp_path, pristine):
    """A copy of the encrypted lab datastore in the S3 layout (per test: tests damage it)."""
    shutil.copytree(pristine, tmp_path / "store")
    return LocalObjects(tmp_path / "store")


def catalog_of(store: LocalObjects) -> Catalog:
    return build_catalog(store.list_objects(LAYOUT.content_prefix), store.list_objects(LAYOUT.chunk_prefix),
                         LAYOUT)


def test_the_catalog_groups_snapshots_and_indexes_chunks(store, history):
    catalog = catalog_of(store)
    assert set(catalog.groups()) == {"vm/100", "ct/101"}
    assert len(catalog.groups()["vm/100"]) == len(history[0])
    assert all(s.finished and not s.protected for s in catalog.snapshots)
    assert catalog.chunks and not catalog.stray_chunk_keys


def test_parse_chunk_key_accepts_only_real_chunk_keys():
    digest = bytes(range(32))
    key = LAYOUT.chunk_key(digest)
    assert parse_chunk_key(key, LAYOUT) == digest
    for bad in (key + ".0.bad", key.replace("/0001/", "/0002/"), LAYOUT.chunk_prefix + "0001/xyz",
                "other/.chunks/0001/" + digest.hex(), key[:-2]):
        assert parse_chunk_key(bad, LAYOUT) is None


def test_a_healthy_datastore_has_no_problems(store):
    catalog = catalog_of(store)
    meta = audit_metadata(catalog, store.read_many, LATER)
    assert meta.problems == [] and meta.plain_archives == []
    assert meta.manifests_read == len(catalog.snapshots) == meta.indexes_read == meta.blobs_read
    assert len(meta.fingerprints) == 1
    assert find_missing_chunks(meta, catalog) == []
    sample = audit_sample(sorted(meta.uses), meta, catalog, store.scan_many, encryption_required=True)
    assert sample.problems == [] and sample.chunks_read == len(meta.uses) == sample.crc_only


def newest_index_key(catalog: Catalog, group: str = "vm/100", name: str = "drive-scsi0.img.fidx") -> str:
    snap = catalog.groups()[group][-1]
    return LAYOUT.content_key(snap.ref.file_path(name))


def test_a_deleted_chunk_is_named_with_the_index_that_needs_it(store):
    catalog = catalog_of(store)
    meta = audit_metadata(catalog, store.read_many, LATER)
    index_key = newest_index_key(catalog)
    digest, use = next((d, u) for d, u in meta.uses.items() if u.index_key == index_key)
    os.unlink(store.path(LAYOUT.chunk_key(digest)))
    problems = find_missing_chunks(meta, catalog_of(store))
    assert [p.path for p in problems] == [LAYOUT.chunk_key(digest)]
    assert index_key in problems[0].message and f"chunk {use.position}" in problems[0].message


def test_a_flipped_byte_fails_the_crc_of_that_chunk(store):
    catalog = catalog_of(store)
    meta = audit_metadata(catalog, store.read_many, LATER)
    digest = sorted(meta.uses)[3]
    path = store.path(LAYOUT.chunk_key(digest))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    sample = audit_sample(sorted(meta.uses), meta, catalog, store.scan_many, encryption_required=True)
    assert [p.path for p in sample.problems] == [LAYOUT.chunk_key(digest)]
    assert "CRC mismatch" in sample.problems[0].message


def test_a_missing_manifest_fails_unless_a_sync_is_still_writing(store):
    catalog = catalog_of(store)
    snap = catalog.groups()["ct/101"][0]
    manifest_key = LAYOUT.content_key(snap.ref.file_path("index.json.blob"))
    os.unlink(store.path(manifest_key))
    damaged = catalog_of(store)
    late = audit_metadata(damaged, store.read_many, LATER)
    assert [p.path for p in late.problems] == [manifest_key]
    assert "no manifest" in late.problems[0].message
    fresh = audit_metadata(damaged, store.read_many, datetime.now(timezone.utc))
    assert fresh.problems == [] and fresh.in_progress == [snap.path]


def test_a_tampered_index_or_blob_is_named(store):
    catalog = catalog_of(store)
    index_key = newest_index_key(catalog)
    blob_key = newest_index_key(catalog, name="qemu-server.conf.blob")
    index = bytearray(store.path(index_key).read_bytes())
    index[4096 + 5] ^= 0xFF                                  # a digest: the index csum no longer holds
    store.path(index_key).write_bytes(bytes(index))
    store.path(blob_key).write_bytes(store.path(blob_key).read_bytes() + b"x")
    meta = audit_metadata(catalog_of(store), store.read_many, LATER)
    by_key = {p.path: p.message for p in meta.problems}
    assert set(by_key) == {index_key, blob_key}
    assert "csum mismatch" in by_key[index_key] and "size/csum" in by_key[blob_key]


def test_an_archive_listed_in_the_manifest_but_absent_is_named(store):
    catalog = catalog_of(store)
    blob_key = newest_index_key(catalog, "ct/101", "pct.conf.blob")
    os.unlink(store.path(blob_key))
    meta = audit_metadata(catalog_of(store), store.read_many, LATER)
    assert [p.path for p in meta.problems] == [blob_key] and "listed in the manifest" in meta.problems[0].message


def test_unencrypted_data_is_found_in_manifests_and_chunks(tmp_path):
    writer = DatastoreWriter(tmp_path, layout="s3", store=LAB_STORE, precreate_chunk_dirs=False)
    writer.write_snapshot(None, "vm", "200", NEWEST, {"drive-scsi0.img.fidx": random.randbytes(150_000)},
                          chunk_size=65536)
    store = LocalObjects(tmp_path)
    catalog = catalog_of(store)
    meta = audit_metadata(catalog, store.read_many, LATER)
    assert meta.problems == [] and len(meta.plain_archives) == 1
    sample = audit_sample(sorted(meta.uses), meta, catalog, store.scan_many, encryption_required=True)
    assert len(sample.unencrypted) == len(meta.uses) == sample.digest_verified
    assert all("unencrypted chunk" in p.message for p in sample.problems)
    relaxed = audit_sample(sorted(meta.uses), meta, catalog, store.scan_many, encryption_required=False)
    assert relaxed.problems == []


def test_check_chunk_finds_a_plain_chunk_where_the_archive_is_encrypted(store):
    catalog = catalog_of(store)
    meta = audit_metadata(catalog, store.read_many, LATER)
    digest, use = next(iter(meta.uses.items()))
    problems, depth = check_chunk(encode_blob(b"x" * use.size, compress=True), digest, use, True)
    assert depth == "bad"
    assert any("unencrypted chunk" in p for p in problems)
    assert any("encrypted archive" in p for p in problems)
    assert check_chunk(b"garbage!" * 3, digest, use, True)[1] == "bad"


def test_the_rotation_reads_every_chunk_within_its_runs():
    digests = [random.Random(i).randbytes(32) for i in range(500)]
    saved, seen, plans = None, set(), []
    for run in range(7):
        plan = plan_rotation(saved, 7, NOW + timedelta(days=run))
        plans.append(plan)
        chosen = select_slice(digests, plan)
        assert not seen & set(chosen)
        seen |= set(chosen)
        saved = advance_rotation(plan, NOW + timedelta(days=run))
    assert seen == set(digests)
    assert [p.index for p in plans] == list(range(7))
    assert plans[3].cycle_started == plans[0].cycle_started and plans[6].runs_left_after_this == 0
    assert saved["next"] == 0 and saved["last_complete"] == (NOW + timedelta(days=6)).isoformat()
    again = plan_rotation(saved, 7, NOW + timedelta(days=7))
    assert again.index == 0 and again.last_complete == saved["last_complete"]


def test_changing_the_number_of_runs_starts_a_new_cycle():
    saved = {"runs": 7, "next": 4, "cycle_started": "2026-01-01T00:00:00+00:00", "last_complete": None}
    assert plan_rotation(saved, 7, NOW) == RotationPlan(4, 7, "2026-01-01T00:00:00+00:00", None)
    restarted = plan_rotation(saved, 3, NOW)
    assert restarted.index == 0 and restarted.runs == 3 and restarted.cycle_started == NOW.isoformat()
    with pytest.raises(ValueError):
        plan_rotation(None, 0, NOW)
    assert all(slice_of(d, 1) == 0 for d in (b"\x00" * 32, b"\xff" * 32))


def test_retention_and_freshness_of_the_lab_history(store):
    catalog = catalog_of(store)
    policy = retention.Policy.from_mapping(LAB_POLICY)
    audits = audit_retention(catalog, policy, ZONE, NOW, timedelta(hours=28))
    assert set(audits) == {"vm/100", "ct/101"} and all(a.ok for a in audits.values())
    problems, facts = check_freshness(catalog, NOW, timedelta(hours=28))
    assert problems == [] and {f.group for f in facts} == {"vm/100", "ct/101"}
    stale, _ = check_freshness(catalog, NOW + timedelta(days=2), timedelta(hours=28))
    assert len(stale) == 2 and "older than 28 h" in stale[0]
    assert "nothing to restore" in check_freshness(build_catalog([], [], LAYOUT), NOW, timedelta(hours=1))[0][0]


def test_a_stopped_prune_shows_in_the_retention_audit(tmp_path):
    times = [NEWEST - timedelta(days=i) for i in range(40)]          # daily, never pruned
    writer = DatastoreWriter(tmp_path, layout="s3", store=LAB_STORE, precreate_chunk_dirs=False)
    for when in times:
        writer.write_snapshot(None, "ct", "300", when, {"pct.conf.blob": b"hostname: x\n"})
    catalog = catalog_of(LocalObjects(tmp_path))
    result = audit_retention(catalog, retention.Policy.from_mapping(LAB_POLICY), ZONE, NOW, timedelta(hours=28))
    assert "prune is not running" in result["ct/300"].problems[0]


LOCK = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}}}


def test_a_hardened_bucket_passes_and_reports_its_settings():
    report = evaluate_hardening({"Status": "Enabled"}, LOCK, [], "pbs-offsite", True)
    assert report.problems == []
    assert report.facts == {"versioning": "Enabled", "object_lock": "Enabled", "object_lock_mode": "COMPLIANCE",
                            "object_lock_retention": "30 days", "lifecycle_rules": 0}


def test_object_lock_off_fails_only_when_required():
    report = evaluate_hardening({}, None, [], "pbs-offsite", True)
    assert any("object lock is off" in p for p in report.problems)
    assert any("versioning is Off" in p for p in report.problems)
    relaxed = evaluate_hardening({}, None, [], "pbs-offsite", False)
    assert relaxed.problems == [] and len(relaxed.notes) == 2
    no_default = evaluate_hardening({"Status": "Enabled"}, {"ObjectLockEnabled": "Enabled"}, [], "s", True)
    assert "no default retention" in no_default.problems[0]
    governance = evaluate_hardening({"Status": "Enabled"}, {"ObjectLockEnabled": "Enabled", "Rule": {
        "DefaultRetention": {"Mode": "GOVERNANCE", "Years": 1}}}, [], "s", True)
    assert governance.problems == [] and "GOVERNANCE" in governance.notes[0]


@pytest.mark.parametrize("rule, verdict", [
    ({"ID": "all", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 90}}, "problem"),
    ({"ID": "parent", "Status": "Enabled", "Filter": {"Prefix": "pbs"}, "Expiration": {"Days": 90}}, "problem"),
    ({"ID": "inside", "Status": "Enabled", "Filter": {"Prefix": "pbs-offsite/.chunks/"},
      "Expiration": {"Days": 1}}, "problem"),
    ({"ID": "legacy", "Status": "Enabled", "Prefix": "", "Expiration": {"Date": datetime(2027, 1, 1)}}, "problem"),
    ({"ID": "tagged", "Status": "Enabled", "Filter": {"And": {"Prefix": "pbs-offsite/", "Tags": [
        {"Key": "tmp", "Value": "1"}]}}, "Expiration": {"Days": 3}}, "problem"),
    ({"ID": "other", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 3}}, None),
    ({"ID": "sibling", "Status": "Enabled", "Filter": {"Prefix": "pbs-offsite-old/"}, "Expiration": {"Days": 3}},
     None),
    ({"ID": "off", "Status": "Disabled", "Filter": {}, "Expiration": {"Days": 3}}, "note"),
    ({"ID": "markers", "Status": "Enabled", "Filter": {}, "Expiration": {"ExpiredObjectDeleteMarker": True}},
     "note"),
    ({"ID": "old-versions", "Status": "Enabled", "Filter": {}, "NoncurrentVersionExpiration": {
        "NoncurrentDays": 60}}, "note"),
    ({"ID": "cold", "Status": "Enabled", "Filter": {}, "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]},
     "note"),
])
def test_lifecycle_rules_that_would_delete_backups_fail(rule, verdict):
    report = evaluate_hardening({"Status": "Enabled"}, LOCK, [rule], "pbs-offsite", True)
    assert bool(report.problems) == (verdict == "problem")
    if verdict:
        assert rule["ID"] in (report.problems + report.notes)[0]
    else:
        assert report.notes == []


def test_rule_prefix_matching():
    assert rule_covers_store("", "store") and rule_covers_store("st", "store")
    assert rule_covers_store("store/", "store") and rule_covers_store("store/.cnt/vm/", "store")
    assert not rule_covers_store("store2/", "store") and not rule_covers_store("other", "store")


def listing(when: datetime, **files: str) -> CopyListing:
    return CopyListing(when, {name.replace("_", "."): csum for name, csum in files.items()})


def test_cross_copy_comparison():
    old, new = NOW - timedelta(days=3), NOW - timedelta(hours=5)
    local = {
        "vm/100/a": listing(old, drive_fidx="aa", conf_blob="bb"),
        "vm/100/b": listing(old + timedelta(hours=1), drive_fidx="cc"),
        "vm/100/c": listing(old + timedelta(hours=2), drive_fidx="dd"),
        "vm/100/d": listing(new, drive_fidx="ee"),
    }
    offsite = {
        "vm/100/a": listing(old, drive_fidx="AA", conf_blob="bb", extra_blob="ff"),
        "vm/100/b": listing(old + timedelta(hours=1), drive_fidx="99"),
        "vm/100/0": listing(old - timedelta(days=30), drive_fidx="00"),
    }
    result = compare_copies(local, offsite, NOW, timedelta(hours=25))
    assert result.compared == 2 and result.pending == 1
    assert result.problems == [
        "vm/100/b/drive.fidx: csum differs: local cc, offsite 99",
        "vm/100/c: in the local datastore since " + f"{old + timedelta(hours=2):%Y-%m-%d %H:%M}"
        + " UTC, but not offsite although the sync window (1 day, 1:00:00) has passed"]
    assert result.notes == ["vm/100/a: offsite manifest lists more files: extra.blob"]


def test_cross_copy_expects_nothing_the_offsite_prune_removes():
    first = NOW - timedelta(days=2, hours=3)
    local = {"ct/1/x": listing(first, root_didx="11"), "ct/1/y": listing(first + timedelta(hours=1), root_didx="22")}
    offsite = {"ct/1/y": listing(first + timedelta(hours=1), root_didx="22")}
    plain = compare_copies(local, offsite, NOW, timedelta(hours=25))
    assert len(plain.problems) == 1
    pruned = compare_copies(local, offsite, NOW, timedelta(hours=25), policy=retention.Policy(keep_daily=7),
                            tz="UTC")
    assert pruned.problems == [] and pruned.pruned_offsite == 1


SCAN_CRYPT = CryptConfig(bytes(range(32)))


def blob_variants(plain: bytes) -> dict[str, tuple[bytes, bytes]]:
    """(raw chunk, digest it is stored under) for the cases the sample must tell apart."""
    digest = chunk_digest(plain, SCAN_CRYPT)
    good = encode_blob(plain, compress=True, crypt=SCAN_CRYPT)
    flipped = bytearray(good)
    flipped[-1] ^= 0x10
    bad_header_crc = bytearray(good)
    bad_header_crc[9] ^= 0x01
    return {"good": (good, digest), "flipped": (bytes(flipped), digest),
            "bad header crc": (bytes(bad_header_crc), digest),
            "plain": (encode_blob(plain, compress=True), chunk_digest(plain)),
            "plain under a keyed digest": (encode_blob(plain, compress=False), digest),
            "garbage": (b"not a blob at all" * 3, digest), "short": (good[:5], digest),
            "header cut": (good[:30], digest), "empty": (b"", digest)}


@settings(max_examples=60, deadline=None)
@given(plain=st.binary(min_size=1, max_size=3000), pieces=st.lists(st.integers(1, 700), min_size=1, max_size=8),
       archive_encrypted=st.booleans(), required=st.booleans())
def test_the_streaming_scanner_agrees_with_check_chunk(plain, pieces, archive_encrypted, required):
    for name, (raw, digest) in blob_variants(plain).items():
        use = ChunkUse("store/.cnt/vm/1/t/x.fidx", 0, archive_encrypted, len(plain))
        scanner = ChunkScanner(digest, use, required)
        position, sizes = 0, iter(pieces * 100)
        while position < len(raw):
            step = next(sizes)
            scanner.feed(raw[position:position + step])
            position += step
        verdict = scanner.finish()
        assert (verdict.problems, verdict.depth) == check_chunk(raw, digest, use, required), name
        assert verdict.size == len(raw)


def test_the_crc_used_by_the_scanner_is_zlibs_crc32():
    import zlib

    from restoredrill.checks import pbs_offsite
    for data, start in ((b"", 0), (b"abc", 0), (b"abc", 12345), (random.Random(3).randbytes(100_000), 7)):
        assert pbs_offsite.crc32(data, start) == zlib.crc32(data, start)
