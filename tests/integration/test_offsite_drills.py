"""The offsite drills end to end against the offsite lab (real SeaweedFS over HTTPS holding
the Proxmox double's offsite datastore, real sshd): a healthy run passes every case and
makes only List/Get/Head calls; a run with faults fails exactly the right cases, each
naming the object, file or host; an archive that differs between the local PBS datastore
and its copy in the bucket fails the cross-copy case naming the snapshot and archive."""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import boto3
import pytest
import yaml

from restoredrill.lab.offsite import LAB_BUCKET, LAB_STORE, LAB_TARGET, merge_fragment
from restoredrill.lab.proxmox import homelab
from restoredrill.lab.proxmox_inventory import proxmox_inventory
from restoredrill.lab.seaweed import write_tls_files
from restoredrill.pbsformat import Layout, SnapshotRef
from restoredrill.runner import RunRequest, run_drills
from tests.conftest import parse_junit, without_dangling_references

pytestmark = pytest.mark.integration

S3_CASES = ("test_s3_reachable", "test_s3_hardening", "test_s3_manifests", "test_s3_chunks_present",
            "test_s3_chunk_sample", "test_s3_encrypted", "test_s3_retention", "test_s3_fresh")
EXPORT_CASES = ("test_export_fresh", "test_export_parses")
CROSS = "test_cross_copy"
BASE = {"version": 1, "site": {"name": "offsite-lab", "timezone": "Europe/Berlin"},
        "policies": {"rpo": {"daily": {"max_age": "25h", "grace": "2h"}}}}


@pytest.fixture
def offsite(offsite_lab):
    return offsite_lab       # tests/integration/conftest.py: one per session


def write_inventory(path, offsite, sync_max_age: str | None = "1m", **targets) -> dict:
    """The lab's offsite and Proxmox parts; ``sync_max_age`` of the offsite datastore (short by
    default, so the cross-copy case compares the newest snapshots whatever the time of day)."""
    inventory = merge_fragment(merge_fragment(BASE, proxmox_inventory(offsite.double, LAB_TARGET)),
                               offsite.inventory_fragment())
    for store in inventory["proxmox"]["pbs"]["datastores"]:
        if store.get("s3_target") == LAB_TARGET and sync_max_age:
            store["sync_max_age"] = sync_max_age
    good = inventory["offsite"]["s3"][0]
    for name, changes in targets.items():
        inventory["offsite"]["s3"].append({**good, "name": name, **changes})
        for table in ("retention", "rpo"):
            inventory["policies"][table][name] = inventory["policies"][table][good["name"]]
    path.write_text(yaml.safe_dump(without_dangling_references(inventory), sort_keys=False))
    return inventory


def run(tmp_path, name: str = "run", preflight: bool = True):
    started = time.monotonic()
    code = run_drills(RunRequest(inventory=tmp_path / "inventory.yaml", kinds=["offsite"],
                                 junit=tmp_path / f"{name}.xml", state_dir=tmp_path / "state", preflight=preflight))
    return code, parse_junit(tmp_path / f"{name}.xml"), time.monotonic() - started


def test_the_lab_fragments_have_the_agreed_shape(offsite):
    inventory, endpoints = offsite.fragments()
    assert set(endpoints["s3"]) == {"endpoint", "region", "bucket", "store_prefix", "access_key_file",
                                    "secret_key_file", "ca_file"}
    assert endpoints["s3"]["endpoint"].startswith("https://127.0.0.1:")
    for key in ("access_key_file", "secret_key_file"):
        secret = open(endpoints["s3"][key]).read().strip()
        assert secret not in yaml.safe_dump(inventory)
        assert stat.S_IMODE(os.stat(endpoints["s3"][key]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(offsite.passphrase_file).st_mode) == 0o600
    assert {e["name"] for e in inventory["offsite"]["config_exports"]} == {"fw-plain", "fw-encrypted"}


def test_a_healthy_run_passes_and_makes_no_write_call(offsite, tmp_path, monkeypatch):
    calls: list[str] = []
    real_client = boto3.session.Session.client

    def recording_client(self, *args, **kwargs):
        client = real_client(self, *args, **kwargs)
        client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
        return client

    monkeypatch.setattr(boto3.session.Session, "client", recording_client)
    write_inventory(tmp_path / "inventory.yaml", offsite)
    code, cases, seconds = run(tmp_path)
    failed = {name: c["message"] for name, c in cases.items() if c["outcome"] != "passed"}
    assert code == 0 and not failed, failed
    assert len(cases) == len(S3_CASES) + 1 + 2 * len(EXPORT_CASES)
    cross = cases[f"{CROSS}[{LAB_TARGET}]"]["properties"]
    assert (cross["local_datastore"], cross["offsite_datastore"]) == ("local", "offsite")
    assert int(cross["compared"]) == 3 and int(cross["pending"]) == 0     # the newest of each group (vm/110, ct/110, ct/120)
    assert calls and set(calls) <= {"ListObjectsV2", "GetObject", "HeadObject", "HeadBucket",
                                    "GetBucketVersioning", "GetObjectLockConfiguration",
                                    "GetBucketLifecycleConfiguration", "GetObjectRetention"}
    assert all(name.startswith(("List", "Get", "Head")) for name in calls)
    runs = offsite.s3_target().get("read_data_runs", 7)       # the proposed schema key, when present
    assert cases["test_s3_hardening[lab-s3]"]["properties"]["newest_manifest_locked_until"].endswith("(GOVERNANCE)")
    sample = cases["test_s3_chunk_sample[lab-s3]"]["properties"]
    assert sample["slice"] == f"slice 1/{runs}" and f"in {runs - 1} more run(s)" in sample["full_coverage"]
    print(f"drill run: {seconds:.2f} s, {len(calls)} S3 calls")


def referenced_chunk_key(double, layout) -> str:
    """The bucket key of the first chunk of the newest VM snapshot's disk index."""
    from restoredrill.pbsformat import DatastoreReader
    reader = DatastoreReader(Path(double.datastores["offsite"]))
    newest = max((s for s in reader.list_snapshots() if s.ref.backup_type == "vm" and s.finished),
                 key=lambda s: s.ref.epoch)
    digest = reader.read_archive_index(newest, "drive-scsi0.img.fidx").digests[0].hex()
    return f"{layout.chunk_prefix}{digest[:4]}/{digest}"


def test_faults_fail_the_right_cases_naming_what_is_wrong(offsite, tmp_path):
    admin = offsite.seaweed.client("admin")
    admin.create_bucket(Bucket="offsite-unlocked")
    offsite.upload(admin, "offsite-unlocked")
    (tmp_path / "wrong.secret").write_text("wrong-secret\n")
    (tmp_path / "wrong.secret").chmod(0o600)      # check-inventory refuses a secret others can read
    write_tls_files(tmp_path / "other-ca", name="another CA")
    write_inventory(tmp_path / "inventory.yaml", offsite,
                    **{"bad-secret": {"secret_key": f"file:{tmp_path / 'wrong.secret'}"},
                       "bad-ca": {"ca_file": str(tmp_path / "other-ca" / "ca.pem")},
                       "no-bucket": {"bucket": "no-such-bucket"},
                       "unlocked": {"bucket": "offsite-unlocked"}})
    layout = Layout.s3(LAB_STORE)
    victim = referenced_chunk_key(offsite.double, layout)   # a chunk an index really uses (GC keeps others)
    original = admin.get_object(Bucket=LAB_BUCKET, Key=victim)["Body"].read()
    admin.delete_object(Bucket=LAB_BUCKET, Key=victim)
    offsite.box.rotate_host_key()
    try:
        code, cases, _seconds = run(tmp_path, "faults", preflight=False)     # every case meets its fault
        blocked_code, blocked, _seconds = run(tmp_path, "faults-preflight")
    finally:
        offsite.box.restore_host_key()
        admin.put_object(Bucket=LAB_BUCKET, Key=victim, Body=original)
    assert code == 1

    def outcome(case, target):
        return cases[f"{case}[{target}]"]

    for case in S3_CASES:
        assert "wrong secret key" in outcome(case, "bad-secret")["message"]
        assert "TLS verification failed" in outcome(case, "bad-ca")["message"]
        assert "bucket does not exist" in outcome(case, "no-bucket")["message"]
    good_failures = {case for case in S3_CASES if outcome(case, "lab-s3")["outcome"] != "passed"}
    assert good_failures == {"test_s3_chunks_present"}
    assert victim in outcome("test_s3_chunks_present", "lab-s3")["message"]
    unlocked_failures = {case for case in S3_CASES if outcome(case, "unlocked")["outcome"] != "passed"}
    assert unlocked_failures == {"test_s3_hardening"}
    assert "object lock is off" in outcome("test_s3_hardening", "unlocked")["message"]
    assert outcome(CROSS, "lab-s3")["outcome"] == "passed"          # the missing chunk is not an archive
    assert f"{CROSS}[bad-secret]" not in cases          # no datastore syncs to that target: not collected
    for export in ("fw-plain", "fw-encrypted"):
        for case in EXPORT_CASES:
            message = outcome(case, export)["message"]
            assert f"host key of [127.0.0.1]:{offsite.box.port} has CHANGED" in message, message
    # with the preflight: one failing case per dead endpoint, naming the cause; its cases blocked
    assert blocked_code == 1
    for key, cause in (("s3:bad-secret", "wrong secret key"), ("s3:bad-ca", "certificate is not trusted"),
                       ("s3:no-bucket", "bucket does not exist"), ("box:lab-box-exports", "host key CHANGED")):
        assert blocked[f"preflight[{key}]"]["outcome"] == "failure" and cause in blocked[f"preflight[{key}]"][
            "message"], (key, blocked.get(f"preflight[{key}]"))
    for target in ("bad-secret", "bad-ca", "no-bucket"):
        for case in S3_CASES:
            assert blocked[f"{case}[{target}]"]["outcome"] == "skipped"
            assert f"blocked by preflight: S3 target {target}" in blocked[f"{case}[{target}]"]["message"]
    assert {n for n, c in blocked.items() if c["outcome"] == "failure" and not n.startswith("preflight[")} == {
        "test_s3_hardening[unlocked]", "test_s3_chunks_present[lab-s3]"}


def test_an_archive_that_differs_offsite_fails_the_cross_copy_case(offsite, tmp_path):
    """Flip one byte of an index object in the bucket (admin identity), run, restore it."""
    admin = offsite.seaweed.client("admin")
    local = offsite.double.stores["local"]
    newest = max(local.snapshot_infos("vm", "110"), key=lambda i: i.epoch)
    copy = SnapshotRef(homelab.OFFSITE_NAMESPACE, "vm", "110", newest.epoch)     # the sync job's ns
    victim = Layout.s3(LAB_STORE).content_key(copy.file_path("drive-scsi0.img.fidx"))
    original = admin.get_object(Bucket=LAB_BUCKET, Key=victim)["Body"].read()
    damaged = bytearray(original)
    damaged[4096] ^= 0xFF                            # the first chunk digest
    write_inventory(tmp_path / "inventory.yaml", offsite)
    admin.put_object(Bucket=LAB_BUCKET, Key=victim, Body=bytes(damaged))
    try:
        code, cases, _seconds = run(tmp_path, "cross")
    finally:
        admin.put_object(Bucket=LAB_BUCKET, Key=victim, Body=original)
    assert code == 1
    case = cases[f"{CROSS}[{LAB_TARGET}]"]
    assert case["outcome"] == "failure"
    assert f"{newest.ref.path}/drive-scsi0.img.fidx: csum differs" in case["message"], case["message"]
    assert "1 problem(s)" in case["message"]
    code, cases, _seconds = run(tmp_path, "restored")
    assert cases[f"{CROSS}[{LAB_TARGET}]"]["outcome"] == "passed"


def test_the_bucket_holds_the_doubles_offsite_store(offsite):
    """Every file of the double's offsite datastore is an object in the S3 layout, same bytes."""
    from restoredrill.lab.offsite import store_objects
    admin = offsite.seaweed.client("admin")
    listed = {}
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket=LAB_BUCKET, Prefix=f"{LAB_STORE}/"):
        listed.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    expected = {key: path.stat().st_size for key, path in store_objects(offsite.store_root, LAB_STORE)}
    assert set(listed) == set(expected) | {f"{LAB_STORE}/.in-use"}
    assert all(listed[key] == size for key, size in expected.items())
    assert any(key.startswith(f"{LAB_STORE}/.cnt/ns/{homelab.OFFSITE_NAMESPACE}/vm/110/") for key in listed)
    assert any(key.startswith(f"{LAB_STORE}/.chunks/") for key in listed)
    assert f"{LAB_STORE}/.cnt/ns/{homelab.OFFSITE_NAMESPACE}/ct/120/owner" in listed
    assert offsite.facts["objects_uploaded"] == len(listed)
    print(f"upload: {offsite.facts['objects_uploaded']} objects, {offsite.facts['bytes_uploaded']:,} bytes "
          f"in {offsite.timings['upload']:.2f} s")


def newest_ct_chunk(offsite):
    """(bucket key, digest) of a chunk of the newest offsite ct/120 snapshot."""
    store = offsite.double.stores["offsite"]
    newest = max(store.snapshot_infos("ct", "120", homelab.OFFSITE_NAMESPACE), key=lambda i: i.epoch)
    _archive, digest = store.archive_digests(newest.ref)[-1]
    return Layout.s3(LAB_STORE).chunk_key(digest), digest


def test_the_lab_is_encrypted_end_to_end_and_a_plain_chunk_or_a_foreign_key_fails(offsite, tmp_path):
    """Issue 23 section 3: every lab backup is encrypted with the key the PVE storages hold, the
    target and datastores require it, the escrowed copy (a separate file) decrypts a sampled
    chunk; a chunk stored unencrypted fails the encryption cases naming it, and a newer snapshot
    signed by another key fails the encryption case and the key proof naming both fingerprints."""
    from datetime import datetime, timezone

    from restoredrill.lab.offsite import tree_objects
    from restoredrill.pbsformat import CryptConfig, DatastoreWriter, decode_chunk, encode_blob
    inventory = write_inventory(tmp_path / "inventory.yaml", offsite)
    assert inventory["offsite"]["s3"][0]["encryption_required"] is True
    inventory["offsite"]["s3"][0]["read_data_runs"] = 1        # the sample reads every chunk this run
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    assert all(s["encryption_required"] for s in inventory["proxmox"]["pbs"]["datastores"])
    escrow = inventory["proxmox"]["pbs"]["datastores"][1]["key_escrow"]["key_file"]
    assert escrow != str(offsite.double.key_file) and open(escrow).read() == offsite.double.key_file.read_text()
    code, cases, _ = run_kinds(tmp_path, "clean")
    proof = cases["test_escrowed_key_decrypts_offsite_chunk[pbs:offsite]"]
    assert proof["outcome"] == "passed", proof["message"]
    assert proof["properties"]["proof"] == "decrypted with the escrowed key; digest matches"
    assert proof["properties"]["snapshot"].startswith("ns/homelab/")
    encrypted = cases["test_s3_encrypted[lab-s3]"]
    assert encrypted["outcome"] == "passed" and encrypted["properties"]["encryption_required"] == "True"
    assert encrypted["properties"]["key_fingerprints"] == offsite.double.key_fingerprint

    admin = offsite.seaweed.client("admin")
    victim, digest = newest_ct_chunk(offsite)
    original = admin.get_object(Bucket=LAB_BUCKET, Key=victim)["Body"].read()
    plain = decode_chunk(original, digest, offsite.double.crypt)
    admin.put_object(Bucket=LAB_BUCKET, Key=victim, Body=encode_blob(plain, compress=True))
    other = CryptConfig.generate()
    when = datetime.now(timezone.utc).replace(microsecond=0)
    foreign = tmp_path / "foreign"
    ref = DatastoreWriter(foreign, layout="s3", store=LAB_STORE, precreate_chunk_dirs=False).write_snapshot(
        homelab.OFFSITE_NAMESPACE, "ct", "120", when, {"pct.conf.blob": b"hostname: app-ct\n",
                                                       "root.pxar.didx": os.urandom(4096)}, crypt=other)
    objects = [(key, path) for key, path in tree_objects(foreign)     # not the group's owner file
               if ref.time_string in key or "/.chunks/" in key]
    keys = [key for key, _path in objects]
    for key, path in objects:
        admin.put_object(Bucket=LAB_BUCKET, Key=key, Body=path.read_bytes())
    try:
        code, cases, _ = run_kinds(tmp_path, "faults")
    finally:
        admin.put_object(Bucket=LAB_BUCKET, Key=victim, Body=original)
        for key in keys:
            admin.delete_object(Bucket=LAB_BUCKET, Key=key)
    assert code == 1
    message = cases["test_s3_encrypted[lab-s3]"]["message"]
    assert f"{victim}: unencrypted chunk" in message, message
    assert other.fingerprint() in message and offsite.double.key_fingerprint in message
    assert f"ct/120/{ref.time_string}" in message      # the snapshot carrying the other key is named
    proof = cases["test_escrowed_key_decrypts_offsite_chunk[pbs:offsite]"]
    assert proof["outcome"] == "failure"
    assert other.fingerprint() in proof["message"] and offsite.double.key_fingerprint in proof["message"]


def run_kinds(tmp_path, name: str):
    code = run_drills(RunRequest(inventory=tmp_path / "inventory.yaml", kinds=["offsite", "lint"],
                                 junit=tmp_path / f"{name}.xml", state_dir=tmp_path / f"state-{name}"))
    return code, parse_junit(tmp_path / f"{name}.xml"), 0.0
