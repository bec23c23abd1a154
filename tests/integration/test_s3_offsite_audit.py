"""The offsite PBS audit (``fixtures.offsite.S3Drill``) against a real SeaweedFS bucket
holding the lab's encrypted datastore. One server for the module; every fault is made
with the ADMIN identity and undone afterwards (or lives in a second bucket), so each
test starts from the healthy lab. Each fault must be named by its object key."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from restoredrill.checks.pbs_offsite import check_freshness, find_missing_chunks, slice_of
from restoredrill.clients.s3 import EgressBudgetExceeded, S3Error
from restoredrill.fixtures.offsite import S3Drill, resolve_offsite_policy
from restoredrill.inventory import load_inventory
from restoredrill.lab.offsite import (LAB_BUCKET, LAB_POLICY, LAB_STORE, create_locked_bucket,
                                      plan_pbs_history, upload_tree, write_pbs_datastore)
from restoredrill.lab.seaweed import SeaweedServer
from restoredrill.pbsformat import CryptConfig, DatastoreWriter, Layout, encode_blob
from restoredrill.state import StateStore

pytestmark = pytest.mark.integration

LAYOUT = Layout.s3(LAB_STORE)
ZONE = "Europe/Berlin"
UNLOCKED = "offsite-unlocked"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("offsite-audit")
    server = SeaweedServer(root / "seaweed").start()
    try:
        newest = (datetime.now(timezone.utc) - timedelta(hours=2)).replace(second=0, microsecond=0)
        crypt = CryptConfig.generate()
        write_pbs_datastore(root / "tree", crypt, plan_pbs_history(newest, ZONE),
                            plan_pbs_history(newest + timedelta(minutes=7), ZONE))
        admin = server.client("admin")
        create_locked_bucket(admin, LAB_BUCKET)
        upload_tree(admin, LAB_BUCKET, root / "tree")
        admin.create_bucket(Bucket=UNLOCKED)
        upload_tree(admin, UNLOCKED, root / "tree")
        yield {"server": server, "root": root, "admin": admin, "crypt": crypt}
    finally:
        server.stop()


def inventory_for(lab, tmp_path: Path, **target_changes):
    server = lab["server"]
    target = {"name": "lab-s3", "endpoint": server.endpoint, "bucket": LAB_BUCKET, "store_prefix": LAB_STORE,
              "access_key": f"file:{server.key_file('drill', 'access')}",
              "secret_key": f"file:{server.key_file('drill', 'secret')}", "egress_budget": "64MiB"}
    target.update(target_changes)
    data = {"version": 1, "site": {"name": "t", "timezone": ZONE},
            "policies": {"retention": {"lab-s3": dict(LAB_POLICY)},
                         "rpo": {"lab-s3": {"max_age": "25h", "grace": "3h"}}},
            "offsite": {"s3": [target]}}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_inventory(path)


def drill(lab, tmp_path, *, now=None, **changes) -> S3Drill:
    loaded = inventory_for(lab, tmp_path, **changes)
    state = StateStore(tmp_path / "state")
    return S3Drill(loaded.model.offsite.s3[0], loaded, state, now or datetime.now(timezone.utc))


class Mutation:
    """Change objects with the admin key; undo by writing the original bytes back as the
    newest version (works under object lock, where old versions cannot be removed)."""

    def __init__(self, lab):
        self.admin = lab["admin"]
        self.saved: dict[str, bytes | None] = {}

    def original(self, key: str) -> bytes:
        return self.admin.get_object(Bucket=LAB_BUCKET, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        if key not in self.saved:
            try:
                self.saved[key] = self.original(key)
            except self.admin.exceptions.NoSuchKey:
                self.saved[key] = None
        self.admin.put_object(Bucket=LAB_BUCKET, Key=key, Body=data)

    def delete(self, key: str) -> None:
        self.saved.setdefault(key, self.original(key))
        self.admin.delete_object(Bucket=LAB_BUCKET, Key=key)

    def undo(self) -> None:
        for key, data in self.saved.items():
            if data is None:
                self.admin.delete_object(Bucket=LAB_BUCKET, Key=key)
            else:
                self.admin.put_object(Bucket=LAB_BUCKET, Key=key, Body=data)


@pytest.fixture
def mutate(lab):
    mutation = Mutation(lab)
    yield mutation
    mutation.undo()


def newest_of(drill_: S3Drill, group: str):
    return drill_.catalog.groups()[group][-1]


def test_the_healthy_lab_passes_every_phase(lab, tmp_path):
    d = drill(lab, tmp_path)
    assert d.reachable == {"marker": True}
    assert d.hardening.problems == [] and d.hardening.facts["object_lock_mode"] == "GOVERNANCE"
    assert d.metadata.problems == [] and len(d.metadata.fingerprints) == 1
    assert find_missing_chunks(d.metadata, d.catalog) == []
    outcome = d.sample
    assert outcome.result.problems == [] and outcome.result.chunks_read == outcome.chunks_in_slice > 0
    assert outcome.plan.describe() == "slice 1/7"
    assert d.policy.source.startswith("policies.retention.lab-s3")
    assert check_freshness(d.catalog, datetime.now(timezone.utc), d.policy.rpo_limit)[0] == []


def test_a_deleted_chunk_fails_presence_naming_chunk_and_index(lab, tmp_path, mutate):
    healthy = drill(lab, tmp_path / "before")
    snap = newest_of(healthy, "vm/100")
    index_key = LAYOUT.content_key(snap.ref.file_path("drive-scsi0.img.fidx"))
    digest, use = next((d, u) for d, u in healthy.metadata.uses.items() if u.index_key == index_key)
    chunk_key = LAYOUT.chunk_key(digest)
    mutate.delete(chunk_key)
    d = drill(lab, tmp_path / "after")
    problems = find_missing_chunks(d.metadata, d.catalog)
    assert [p.path for p in problems] == [chunk_key]
    assert index_key in problems[0].message


def test_a_flipped_byte_fails_the_sample_naming_the_chunk(lab, tmp_path, mutate):
    healthy = drill(lab, tmp_path / "before")
    digest = sorted(healthy.metadata.uses)[5]
    key = LAYOUT.chunk_key(digest)
    data = bytearray(mutate.original(key))
    data[100] ^= 0x40
    mutate.put(key, bytes(data))
    d = drill(lab, tmp_path / "after")
    d.state.put_json(d.scope, "chunk_rotation", {"runs": 7, "next": slice_of(digest, 7),
                                                 "cycle_started": "2026-01-01T00:00:00+00:00"})
    problems = d.sample.result.problems
    assert [p.path for p in problems] == [key] and "CRC mismatch" in problems[0].message


def test_a_missing_manifest_is_named(lab, tmp_path, mutate):
    healthy = drill(lab, tmp_path / "before")
    snap = healthy.catalog.groups()["ct/101"][3]
    key = LAYOUT.content_key(snap.ref.file_path("index.json.blob"))
    mutate.delete(key)
    late = drill(lab, tmp_path / "late", now=datetime.now(timezone.utc) + timedelta(hours=3))
    assert [p.path for p in late.metadata.problems] == [key]
    assert "no manifest" in late.metadata.problems[0].message
    just_synced = drill(lab, tmp_path / "now")
    assert just_synced.metadata.problems == [] and just_synced.metadata.in_progress == [snap.path]


def test_an_index_pointing_at_a_gone_chunk_is_named(lab, tmp_path, mutate):
    """A new snapshot whose index references a chunk that never reached the bucket."""
    tree = tmp_path / "extra"
    writer = DatastoreWriter(tree, layout="s3", store=LAB_STORE, precreate_chunk_dirs=False)
    when = datetime.now(timezone.utc) - timedelta(minutes=30)
    ref = writer.write_snapshot(None, "vm", "100", when, {"drive-scsi0.img.fidx": random.randbytes(3 * 65536)},
                                crypt=lab["crypt"], chunk_size=65536)
    chunk_keys = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if "/.chunks/" in str(p))
    gone = chunk_keys[1]
    for path in tree.rglob("*"):
        key = path.relative_to(tree).as_posix()
        if path.is_file() and key != gone and not key.endswith(".in-use") and not key.endswith("/owner"):
            mutate.put(key, path.read_bytes())
    d = drill(lab, tmp_path / "after")
    problems = find_missing_chunks(d.metadata, d.catalog)
    index_key = LAYOUT.content_key(ref.file_path("drive-scsi0.img.fidx"))
    assert [p.path for p in problems] == [gone] and index_key in problems[0].message


def test_an_unencrypted_chunk_fails_where_encryption_is_required(lab, tmp_path, mutate):
    healthy = drill(lab, tmp_path / "before")
    digest, use = sorted(healthy.metadata.uses.items())[7]
    key = LAYOUT.chunk_key(digest)
    mutate.put(key, encode_blob(b"plain text the provider can read " * 100, compress=True))
    d = drill(lab, tmp_path / "after")
    d.state.put_json(d.scope, "chunk_rotation", {"runs": 7, "next": slice_of(digest, 7),
                                                 "cycle_started": "2026-01-01T00:00:00+00:00"})
    result = d.sample.result
    assert result.unencrypted == [key]
    assert all(p.path == key for p in result.problems)
    assert any("unencrypted chunk" in p.message and use.index_key in p.message for p in result.problems)


def test_object_lock_off_fails_hardening(lab, tmp_path):
    d = drill(lab, tmp_path, bucket=UNLOCKED)
    problems = d.hardening.problems
    assert any("object lock is off" in p for p in problems) and any("versioning is Off" in p for p in problems)
    relaxed = drill(lab, tmp_path / "relaxed", bucket=UNLOCKED, require_object_lock=False)
    assert relaxed.hardening.problems == [] and relaxed.metadata.problems == []


def test_a_lifecycle_rule_expiring_the_store_fails_hardening(lab, tmp_path):
    admin = lab["admin"]
    admin.put_bucket_lifecycle_configuration(Bucket=LAB_BUCKET, LifecycleConfiguration={"Rules": [
        {"ID": "cleanup", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 90}}]})
    try:
        problems = drill(lab, tmp_path).hardening.problems
    finally:
        admin.delete_bucket_lifecycle(Bucket=LAB_BUCKET)
    assert len(problems) == 1 and "'cleanup'" in problems[0] and "after 90 days" in problems[0]


def test_a_stale_copy_fails_freshness(lab, tmp_path):
    d = drill(lab, tmp_path)
    problems, _ = check_freshness(d.catalog, datetime.now(timezone.utc) + timedelta(days=2), d.policy.rpo_limit)
    assert len(problems) == 2 and all("older than 28 h" in p for p in problems)


def test_wrong_credentials_fail_every_phase_with_the_cause(lab, tmp_path):
    (tmp_path / "wrong.secret").write_text("definitely-wrong\n")
    (tmp_path / "wrong.secret").chmod(0o600)      # check-inventory refuses a secret others can read
    d = drill(lab, tmp_path, secret_key=f"file:{tmp_path / 'wrong.secret'}")
    for phase in ("reachable", "catalog", "metadata", "sample", "hardening"):
        with pytest.raises(S3Error, match="wrong secret key"):
            getattr(d, phase)


def test_a_missing_bucket_fails_naming_it(lab, tmp_path):
    d = drill(lab, tmp_path, bucket="gone-bucket")
    with pytest.raises(S3Error, match="bucket does not exist") as caught:
        _ = d.catalog
    assert "s3://gone-bucket" in str(caught.value)


def test_every_chunk_is_read_within_the_rotation(lab, tmp_path):
    loaded = inventory_for(lab, tmp_path)
    state = StateStore(tmp_path / "state")
    read, slices = [], []
    for run in range(7):
        d = S3Drill(loaded.model.offsite.s3[0], loaded, state, datetime.now(timezone.utc) + timedelta(days=run))
        real_scan_many = d.bucket.scan_many

        def spy(keys, *args, real=real_scan_many, **kw):
            keys = list(keys)
            read.extend(keys)
            return real(keys, *args, **kw)

        d.bucket.scan_many = spy
        outcome = d.sample
        assert outcome.result.problems == [] and outcome.result.chunks_read == outcome.chunks_in_slice
        slices.append(outcome.plan.describe())
    assert slices == [f"slice {i}/7" for i in range(1, 8)]
    assert len(read) == len(set(read))                              # no chunk read twice in a cycle
    assert set(read) == {LAYOUT.chunk_key(digest) for digest in d.metadata.uses}
    assert state.get_json("offsite:lab-s3", "chunk_rotation")["last_complete"] is not None


def test_a_budget_too_small_for_the_slice_fails_before_reading(lab, tmp_path):
    d = drill(lab, tmp_path, egress_budget="400KiB")
    assert d.metadata.problems == []
    with pytest.raises(EgressBudgetExceeded, match="slice 1/7 holds"):
        _ = d.sample
    assert d.state.get_json(d.scope, "chunk_rotation") is None     # the slice was not read: not advanced


def test_the_default_egress_budget_applies(lab, tmp_path):
    inventory = inventory_for(lab, tmp_path)
    data = yaml.safe_load(inventory.path.read_text())
    del data["offsite"]["s3"][0]["egress_budget"]
    inventory.path.write_text(yaml.safe_dump(data))
    loaded = load_inventory(inventory.path)
    d = S3Drill(loaded.model.offsite.s3[0], loaded, StateStore(tmp_path / "state"), datetime.now(timezone.utc))
    assert d.bucket.budget.limit == 1024 ** 3 and d.catalog.snapshots


def test_the_policy_comes_from_the_target_or_a_pbs_datastore(lab, tmp_path):
    loaded = inventory_for(lab, tmp_path)
    policy = resolve_offsite_policy(loaded.model, loaded.model.offsite.s3[0])
    assert policy.retention_name == "lab-s3" and policy.rpo_limit == timedelta(hours=28)
    assert policy.encryption_required and policy.read_data_runs == 7


def test_the_bucket_is_an_object_source_for_the_datastore_reader(lab, tmp_path):
    """``pbsformat.DatastoreReader`` over the read-only bucket: list, verify, restore with the key."""
    import io

    from restoredrill.pbsformat import DatastoreReader
    d = drill(lab, tmp_path)
    reader = DatastoreReader(d.bucket, layout="s3", store=LAB_STORE)
    snapshots = reader.list_snapshots()
    assert [s.path for s in snapshots] == [s.path for s in d.catalog.snapshots]
    newest = [s for s in snapshots if s.backup_type == "vm"][-1]
    assert reader.verify_snapshot(newest.ref, lab["crypt"]).ok
    image = io.BytesIO()
    written = reader.restore_fixed(newest.ref, "drive-scsi0.img.fidx", image, lab["crypt"])
    assert written == len(image.getvalue()) == 256 * 1024
