"""The site-loss drill against the offsite lab (real SeaweedFS over HTTPS holding the double's
encrypted offsite datastore in the PBS 4 S3 layout, the escrowed key file): PVE and PBS are
not asked anything; the newest offsite snapshot of each guest is rebuilt from the bucket and the
escrowed key, every chunk fetched, decrypted and digest-checked, and the VM's ext4 image read
with debugfs in the sandbox. Faults: a deleted chunk object, a damaged one, a wrong escrowed key,
an egress budget too small."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from restoredrill.lab.offsite import LAB_BUCKET, LAB_STORE
from restoredrill.lab.proxmox import homelab
from restoredrill.pbsformat import CryptConfig, Layout, decode_chunk, encode_blob, write_key_file
from restoredrill.runner import RunRequest, run_drills
from tests.conftest import parse_junit
from tests.integration.test_offsite_drills import write_inventory

pytestmark = pytest.mark.integration

VM, CT = "test_site_loss[app-vm]", "test_site_loss[app-ct]"


def run(tmp_path, name: str, site_loss: bool = True):
    started = time.monotonic()
    extra = (["--site-loss"] if site_loss else []) + ["-k", "site_loss or s3_reachable"]
    code = run_drills(RunRequest(inventory=tmp_path / "inventory.yaml", kinds=["offsite"],
                                 junit=tmp_path / f"{name}.xml",
                                 state_dir=tmp_path / "state", preflight=False, extra_args=extra))
    return code, parse_junit(tmp_path / f"{name}.xml"), time.monotonic() - started


def newest_vm_chunk(offsite) -> tuple[str, bytes]:
    """(bucket key, digest) of a non-zero chunk of the newest offsite vm/110 snapshot's disk."""
    store = offsite.double.stores["offsite"]
    newest = max(store.snapshot_infos("vm", "110", homelab.OFFSITE_NAMESPACE), key=lambda i: i.epoch)
    digests = [d for name, d in store.archive_digests(newest.ref) if name.endswith(".img.fidx")]
    return Layout.s3(LAB_STORE).chunk_key(digests[0]), digests[0]


def test_the_site_loss_drill_rebuilds_each_guest_from_the_bucket_and_the_escrowed_key(offsite_lab, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yaml", offsite_lab)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Path(tempfile.gettempdir()) / f"restoredrill-site-loss-{dead.pid}-stale"     # a killed run's
    stale.mkdir()
    (stale / "archive-0.img").write_bytes(b"x")
    code, cases, seconds = run(tmp_path, "healthy")
    assert not stale.exists()                            # swept before this run's images
    assert not list(Path(tempfile.gettempdir()).glob(f"restoredrill-site-loss-{os.getpid()}-*"))   # and its own gone
    vm = cases[VM]
    assert vm["outcome"] == "passed", vm["message"]
    p = vm["properties"]
    assert p["copy"] == "offsite" and p["drill"] == "guest:app-vm" and p["check"] == "site-loss"
    assert p["snapshot"].startswith(f"ns/{homelab.OFFSITE_NAMESPACE}/vm/110/")
    assert p["key_fingerprint"] == offsite_lab.double.key_fingerprint
    assert int(p["unique_chunks"]) == int(p["encrypted_chunks"]) > 0
    assert int(p["bytes_read"]) > 0 and int(p["chunks"]) >= int(p["unique_chunks"])
    assert p["drive-scsi0.img.fidx:partition_table"] == "none (a bare filesystem)"
    assert p["drive-scsi0.img.fidx:filesystems"].startswith("ext4 on whole disk")
    assert p["files_found"] == "/srv/app/canary.txt,/srv/app/app.sqlite" and p["files_missing"] == ""
    ct = cases[CT]                      # the lab's container backups are real pxar (lab/pxarwrite.py)
    assert ct["outcome"] == "passed", ct["message"]
    kinds = {k: v for k, v in ct["properties"].items() if k.endswith(":kinds")}
    assert len(kinds) == 1 and "dir" in next(iter(kinds.values())) and "file" in next(iter(kinds.values()))
    assert code == 0
    # the evidence reaches the drill report and the HTML report too
    drill_report = (tmp_path / "drill-report.xml").read_text()
    html = (tmp_path / "report.html").read_text()
    for text in (p["snapshot"], "site-loss", "/srv/app/canary.txt"):
        assert text in drill_report and text in html, text
    print(f"site loss run: {seconds:.2f} s; vm: {p['bytes_read']} bytes read, {p['unique_chunks']} chunks, "
          f"{p['seconds']} s")
    # a path a file check names that the image lacks fails the drill, naming it
    vm_guest = next(g for g in inventory["guests"] if g["name"] == "app-vm")
    vm_guest["health"].append({"name": "gone", "kind": "file", "target": "/srv/app/not-there"})
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    code, cases, _ = run(tmp_path, "missing-path")
    assert code == 1 and cases[VM]["outcome"] == "failure"
    assert "missing: /srv/app/not-there (found: /srv/app/canary.txt, /srv/app/app.sqlite)" in cases[VM]["message"]
    assert cases[VM]["properties"]["files_missing"] == "/srv/app/not-there"
    # without --site-loss (every other run) the cases are deselected, not skipped
    code, cases, _ = run(tmp_path, "default", site_loss=False)
    assert VM not in cases and CT not in cases and code == 0
    assert inventory["proxmox"]["pbs"]["datastores"][1]["backend"] == "s3"


def test_a_missing_or_damaged_chunk_fails_naming_it(offsite_lab, tmp_path):
    write_inventory(tmp_path / "inventory.yaml", offsite_lab)
    admin = offsite_lab.seaweed.client("admin")
    victim, digest = newest_vm_chunk(offsite_lab)
    original = admin.get_object(Bucket=LAB_BUCKET, Key=victim)["Body"].read()
    admin.delete_object(Bucket=LAB_BUCKET, Key=victim)
    try:
        code, missing, _ = run(tmp_path, "missing")
        damaged = bytearray(original)
        damaged[-1] ^= 0xFF
        admin.put_object(Bucket=LAB_BUCKET, Key=victim, Body=bytes(damaged))
        code2, broken, _ = run(tmp_path, "damaged")
        plain = decode_chunk(original, digest, offsite_lab.double.crypt)
        admin.put_object(Bucket=LAB_BUCKET, Key=victim, Body=encode_blob(plain, compress=True))
        code3, readable, _ = run(tmp_path, "unencrypted")     # the provider could read this one
    finally:
        admin.put_object(Bucket=LAB_BUCKET, Key=victim, Body=original)
    assert code == code2 == 1
    assert missing[VM]["outcome"] == "failure" and f"chunk {victim}" in missing[VM]["message"], missing[VM]["message"]
    assert "missing" in missing[VM]["message"]
    assert broken[VM]["outcome"] == "failure" and f"chunk {victim}" in broken[VM]["message"], broken[VM]["message"]
    assert code3 == 1 and f"chunk {victim}: stored unencrypted, but its index is encrypted" in readable[VM]["message"]


def test_a_damaged_index_or_config_fails_naming_it(offsite_lab, tmp_path):
    write_inventory(tmp_path / "inventory.yaml", offsite_lab)
    admin = offsite_lab.seaweed.client("admin")
    store = offsite_lab.double.stores["offsite"]
    newest = max(store.snapshot_infos("vm", "110", homelab.OFFSITE_NAMESPACE), key=lambda i: i.epoch)
    layout = Layout.s3(LAB_STORE)
    messages = {}
    for name, at in (("drive-scsi0.img.fidx", 4096), ("qemu-server.conf.blob", -1)):
        key = layout.content_key(newest.ref.file_path(name))
        original = admin.get_object(Bucket=LAB_BUCKET, Key=key)["Body"].read()
        damaged = bytearray(original)
        damaged[at] ^= 0xFF
        admin.put_object(Bucket=LAB_BUCKET, Key=key, Body=bytes(damaged))
        try:
            code, cases, _ = run(tmp_path, name)
        finally:
            admin.put_object(Bucket=LAB_BUCKET, Key=key, Body=original)
        assert code == 1 and cases[VM]["outcome"] == "failure"
        messages[name] = cases[VM]["message"]
        assert f"{newest.ref.path}/{name}" in messages[name], messages[name]
        assert int(cases[VM]["properties"]["unique_chunks"]) == 0         # found before any chunk was fetched


def test_a_wrong_escrowed_key_fails_naming_both_fingerprints(offsite_lab, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yaml", offsite_lab)
    other = CryptConfig.generate()
    write_key_file(tmp_path / "other.key", other)
    (tmp_path / "other.key").chmod(0o600)
    store = inventory["proxmox"]["pbs"]["datastores"][1]
    store["key_escrow"] = {**store["key_escrow"], "key_file": str(tmp_path / "other.key")}
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    code, cases, _ = run(tmp_path, "wrong-key")
    assert code == 1
    message = cases[VM]["message"]
    assert other.fingerprint() in message and offsite_lab.double.key_fingerprint in message, message


def test_an_egress_budget_too_small_fails_before_reading_a_chunk(offsite_lab, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yaml", offsite_lab)
    inventory["offsite"]["s3"][0]["egress_budget"] = "200KiB"
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    code, cases, _ = run(tmp_path, "budget")
    assert code == 1
    case = cases[VM]
    assert case["outcome"] == "failure" and "egress budget" in case["message"], case["message"]
    assert "nothing was fetched" in case["message"]
    assert int(case["properties"]["unique_chunks"]) == 0


def upload_ct_snapshot(offsite, tmp_path, split: bool, files: dict[str, bytes]):
    """A newer ct/120 snapshot in the bucket whose archive is real pxar (the lab's pxar writer,
    lab/pxarwrite.py): single root.pxar.didx, or the split pair PBS 3.3+ writes. Returns the keys."""
    from datetime import datetime, timezone

    from restoredrill.lab.offsite import tree_objects
    from restoredrill.lab.pxarwrite import encode, tree_of_files
    from restoredrill.pbsformat import DatastoreWriter
    when = datetime.now(timezone.utc).replace(microsecond=0)
    meta, payload = encode(tree_of_files(files, int(when.timestamp()) * 10**9), split=split)
    archives = {"pct.conf.blob": b"hostname: app-ct\n"}
    archives.update({"root.mpxar.didx": meta, "root.ppxar.didx": payload} if split else {"root.pxar.didx": meta})
    tree = tmp_path / ("split" if split else "single")
    ref = DatastoreWriter(tree, layout="s3", store=LAB_STORE, precreate_chunk_dirs=False).write_snapshot(
        homelab.OFFSITE_NAMESPACE, "ct", "120", when, archives, crypt=offsite.double.crypt,
        dynamic_avg_size=64 * 1024)
    admin = offsite.seaweed.client("admin")
    objects = [(key, path) for key, path in tree_objects(tree) if ref.time_string in key or "/.chunks/" in key]
    new = [(key, path) for key, path in objects if not exists(admin, key)]   # the lab's own chunks stay
    for key, path in new:
        admin.put_object(Bucket=LAB_BUCKET, Key=key, Body=path.read_bytes())
    return ref, [key for key, _ in new]


def exists(admin, key: str) -> bool:
    from botocore.exceptions import ClientError
    try:
        admin.head_object(Bucket=LAB_BUCKET, Key=key)
        return True
    except ClientError:
        return False


@pytest.mark.parametrize("split", [False, True], ids=["single", "split"])
def test_a_container_archive_is_listed_through_the_pxar_reader(offsite_lab, tmp_path, split):
    write_inventory(tmp_path / "inventory.yaml", offsite_lab)
    files = {"etc/os-release": b"ID=debian\n", "srv/app/canary.txt": b"x" * 100_000,
             "srv/app/big.bin": bytes(300_000)}
    ref, keys = upload_ct_snapshot(offsite_lab, tmp_path, split, files)
    admin = offsite_lab.seaweed.client("admin")
    try:
        code, cases, _ = run(tmp_path, "ct")
    finally:
        for key in keys:
            admin.delete_object(Bucket=LAB_BUCKET, Key=key)
    case = cases[CT]
    assert case["outcome"] == "passed", case["message"]
    p = case["properties"]
    assert p["snapshot"] == ref.path
    label = "root.mpxar.didx+root.ppxar.didx" if split else "root.pxar.didx"
    assert p[f"{label}:entries"] == "7"                  # root, etc, srv, srv/app and three files
    assert p[f"{label}:kinds"] == "4 dir, 3 file" and p[f"{label}:file_bytes"] == str(400_010)
    assert int(p["unique_chunks"]) == int(p["encrypted_chunks"]) > 0
    assert code == 0
