"""The Proxmox double driven like the harness drives PVE and PBS: proxmoxer 2.3 over HTTPS.

One double per module (requests validated against the schema files when they exist;
the strict response checks are in ``test_proxmox_double_schema``). The drill:
list backups, restore a VM and a CT into scratch IDs with the documented override
semantics, read task status and logs, check the restored disks, verify on PBS (a
damaged chunk is caught), prune with dry-run, destroy the guests.
"""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
from datetime import datetime, timezone

import pytest
from proxmoxer import ResourceException
from proxmoxer.tools import Tasks

from restoredrill import retention
from restoredrill.lab.proxmox import ProxmoxDouble, homelab
from restoredrill.lab.proxmox.testing import pbs_api, pve_api, task_log, wait_task

pytestmark = pytest.mark.integration
NODE = "pve1"
VOLID_RE = re.compile(r"(pbs):backup/(vm|ct)/(\d+)/(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")
BACKUP_VM_MAC = "BC:24:11:5E:A0:10"
BACKUP_CT_MAC = "BC:24:11:5E:A0:20"


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("double")) as running:
        yield running


@pytest.fixture(scope="module")
def pve(double):
    return pve_api(double)


@pytest.fixture(scope="module")
def pve_admin(double):
    return pve_api(double, double.admin_token)


@pytest.fixture(scope="module")
def pbs(double):
    return pbs_api(double)


@pytest.fixture(scope="module")
def pbs_admin(double):
    return pbs_api(double, double.pbs_admin_token)


def newest_backup(pve, vmid: int) -> dict:
    """The newest finished backup of the homelab guest ``vmid`` (the seed also holds ct/110 and
    an unfinished ct/120, size 1: what a type- or manifest-blind pick would take)."""
    items = pve.nodes(NODE).storage("pbs").content.get(content="backup", vmid=vmid)
    kind = {110: "qemu", 120: "lxc", 100: "qemu"}[vmid]
    return max((i for i in items if i["subtype"] == kind and i["size"] != 1), key=lambda item: item["ctime"])


def wait_pve(pve, upid: str) -> dict:
    status = Tasks.blocking_status(pve, upid, timeout=60, polling_interval=0.05)
    assert status is not None, f"{upid} did not finish"
    return status


def test_lists_backups_like_the_pbs_storage_plugin(pve, double):
    items = pve.nodes(NODE).storage("pbs").content.get(content="backup")
    assert {(i["vmid"], i["format"], i["subtype"]) for i in items} == {
        (110, "pbs-vm", "qemu"), (110, "pbs-ct", "lxc"), (120, "pbs-ct", "lxc")}   # ct/110: the seed's lookalike
    for item in items:
        assert VOLID_RE.fullmatch(item["volid"]), item["volid"]
        assert item["content"] == "backup" and item["size"] > 0 and item["ctime"] > 0
        if item["size"] == 1:           # the seed's unfinished ct/120: no manifest, never verified
            assert "verification" not in item
            continue
        assert item["verification"]["state"] == "ok"
        assert item["verification"]["upid"].startswith("UPID:pbs1:")
    vm = newest_backup(pve, 110)
    assert vm["encrypted"] == double.key_fingerprint       # the key's fingerprint, not "1"
    assert newest_backup(pve, 120)["encrypted"] == double.key_fingerprint     # every lab backup (issue 23)
    assert vm["notes"].startswith("app-vm: canary ")
    assert len(pve.nodes(NODE).storage("pbs").content.get(content="backup", vmid=120)) == 3   # + the unfinished one


def test_pbs_snapshot_list_has_file_objects_and_fingerprints(pbs, double):
    snapshots = pbs.admin.datastore("local").snapshots.get(**{"backup-type": "vm"})
    assert len(snapshots) == 2
    newest = max(snapshots, key=lambda s: s["backup-time"])
    names = {f["filename"]: f for f in newest["files"]}
    assert names["drive-scsi0.img.fidx"]["crypt-mode"] == "encrypt"
    assert names["drive-scsi0.img.fidx"]["size"] == 16 * 1024 * 1024
    assert names["index.json.blob"]["crypt-mode"] == "sign-only"
    assert newest["fingerprint"] == double.key_fingerprint
    assert newest["owner"] == "root@pam" and newest["protected"] is False
    offsite = pbs.admin.datastore("offsite").snapshots.get(**{"backup-id": "110", "ns": homelab.OFFSITE_NAMESPACE})
    assert 20 <= len(offsite) <= 40, "about two years of 7/4/12/2 history"


def test_ct_backups_are_pxar_the_newest_split_as_pbs_3_3_writes_it(pbs):
    snapshots = pbs.admin.datastore("local").snapshots.get(**{"backup-type": "ct", "backup-id": "120"})
    finished = sorted((s for s in snapshots if any(f["filename"] == "index.json.blob" for f in s["files"])),
                      key=lambda s: s["backup-time"])
    files = [{f["filename"]: f["crypt-mode"] for f in s["files"]} for s in finished]
    assert files[-1]["root.mpxar.didx"] == files[-1]["root.ppxar.didx"] == "encrypt"
    assert all(set(f) & {"root.mpxar.didx", "root.ppxar.didx"} == set() and "root.pxar.didx" in f
               for f in files[:-1])


def test_nextid_is_a_string_and_guests_outside_the_pool(pve):
    assert pve.cluster.nextid.get() == "101"
    ids = {r["vmid"] for r in pve.cluster.resources.get(type="vm")}
    assert {100, 110, 120} <= ids
    members = pve.pools.get(poolid="restoredrill")[0]["members"]
    assert all(m["vmid"] not in (100, 110, 120) for m in members)
    not_backed_up = pve.cluster("backup-info")("not-backed-up").get()
    assert [(g["vmid"], g["name"]) for g in not_backed_up] == [(100, "opnsense")]
    bridge = pve.nodes(NODE).network("vmbr-drill").get()
    assert "bridge_ports" not in bridge and "address" not in bridge and "cidr" not in bridge


def test_restores_vm_into_scratch_id_with_overrides(pve, double):
    backup = newest_backup(pve, 110)
    config_text = pve.nodes(NODE).vzdump.extractconfig.get(volume=backup["volid"])
    assert "hostpci0: mapping=nic-offload" in config_text and "#qmdump#map:scsi0" in config_text

    with pytest.raises(ResourceException) as refused:
        pve.nodes(NODE).qemu.post(vmid=9901, archive=backup["volid"], scsi1="local-zfs:1",
                                  pool="restoredrill")
    assert refused.value.status_code == 400
    assert refused.value.errors == {"scsi1": "option conflicts with option 'archive'"}
    with pytest.raises(ResourceException) as no_pool:     # VM.Allocate only via the pool
        pve.nodes(NODE).qemu.post(vmid=9901, archive=backup["volid"])
    assert no_pool.value.status_code == 403

    upid = pve.nodes(NODE).qemu.post(
        vmid=9901, archive=backup["volid"], storage="local-zfs", pool="restoredrill", unique=1,
        name="drill-app-vm", net0="virtio,bridge=vmbr-drill,link_down=1", onboot=0,
        tags="restoredrill")
    assert Tasks.decode_upid(upid)["type"] == "qmrestore"
    status = wait_pve(pve, upid)
    log = task_log(pve, NODE, upid)
    assert status["exitstatus"] == "OK", log
    assert log[-1] == "TASK OK"
    assert any(line.startswith("restore proxmox backup image: /usr/bin/pbs-restore")
               for line in log)
    assert any(line.startswith("restore image complete (bytes=16777216") for line in log)

    config = pve.nodes(NODE).qemu(9901).config.get()
    assert config["name"] == "drill-app-vm" and config["onboot"] == 0
    assert "bridge=vmbr-drill" in config["net0"] and "link_down=1" in config["net0"]
    assert BACKUP_VM_MAC not in config["net0"]                 # a new MAC for the override
    assert config["scsi0"].startswith("local-zfs:vm-9901-disk-0")
    assert "hookscript" not in config
    assert "lock" not in config
    assert any(m["vmid"] == 9901 for m in pve.pools.get(poolid="restoredrill")[0]["members"])

    pve.nodes(NODE).qemu(9901).config.put(delete="hostpci0")
    assert "hostpci0" not in pve.nodes(NODE).qemu(9901).config.get()
    with pytest.raises(ResourceException) as startup:       # upstream: startup needs Sys.Modify
        pve.nodes(NODE).qemu(9901).config.put(delete="startup")
    assert "Permission check failed (/, Sys.Modify)" in str(startup.value)
    with pytest.raises(ResourceException) as root_only:     # upstream: hookscript is root-only
        pve.nodes(NODE).qemu(9901).config.put(hookscript="local:snippets/evil.sh")
    assert "only root can set 'hookscript' config" in str(root_only.value)


def test_restored_vm_disk_holds_the_backed_up_files(double, tmp_path, pve):
    image = double.base_dir / "pve" / "images" / "9901" / "vm-9901-disk-0.raw"
    out = tmp_path / "rootfs"
    out.mkdir()
    subprocess.run(["debugfs", "-R", f"rdump / {out}", str(image)], check=True,
                   capture_output=True, timeout=60)
    canary = (out / "srv/app/.restoredrill-canary").read_text().strip()
    assert newest_backup(pve, 110)["notes"] == f"app-vm: {canary}"
    connection = sqlite3.connect(out / "srv/app/app.sqlite")
    rows = connection.execute("SELECT taken FROM backups ORDER BY id").fetchall()
    connection.close()
    assert rows[-1][0] == canary
    assert (out / "init").is_file() and (out / "etc/init.d/webapp").is_file()
    assert double.restore_stats()[0].bytes == 16 * 1024 * 1024


def test_scratch_vm_power_and_agent(pve):
    vm = pve.nodes(NODE).qemu(9901)
    assert wait_pve(pve, vm.status.start.post())["exitstatus"] == "OK"
    assert vm.status.current.get()["status"] == "running"
    with pytest.raises(ResourceException) as agent:
        vm.agent.ping.post()
    assert agent.value.status_code == 500
    assert "QEMU guest agent is not running" in str(agent.value)
    with pytest.raises(ResourceException):
        vm.agent.exec.post(command=["cat", "/srv/app/.restoredrill-canary"])
    with pytest.raises(ResourceException) as running:
        pve.nodes(NODE).qemu(9901).delete(purge=1)
    assert "VM 9901 is running - destroy failed" in str(running.value)
    assert wait_pve(pve, vm.status.stop.post())["exitstatus"] == "OK"
    assert vm.status.current.get()["status"] == "stopped"


def test_restores_ct_with_passed_options_winning(pve, double):
    backup = newest_backup(pve, 120)
    upid = pve.nodes(NODE).lxc.post(
        vmid=9902, ostemplate=backup["volid"], restore=1, storage="local-zfs",
        pool="restoredrill", rootfs="local-zfs:1", hostname="drill-app-ct", onboot=0,
        net0="name=eth0,bridge=vmbr-drill")
    status = wait_pve(pve, upid)
    log = task_log(pve, NODE, upid)
    assert status["exitstatus"] == "WARNINGS: 1", log      # raw lxc.* keys skipped (not root)
    assert any("skipping custom lxc options" in line for line in log)
    config = pve.nodes(NODE).lxc(9902).config.get()
    assert config["hostname"] == "drill-app-ct" and config["onboot"] == 0
    assert "bridge=vmbr-drill" in config["net0"] and BACKUP_CT_MAC not in config["net0"]
    assert config["rootfs"] == "local-zfs:subvol-9902-disk-0,size=1G"
    assert "mp0" not in config                               # rootfs given: no mount points
    assert config["features"] == "nesting=1" and config["memory"] == 512   # from the backup
    rootfs = double.base_dir / "pve" / "images" / "9902" / "subvol-9902-disk-0"
    canary = (rootfs / "srv/app/.restoredrill-canary").read_text().strip()
    assert backup["notes"] == f"app-ct: {canary}"
    assert os.access(rootfs / "init", os.X_OK) and os.readlink(rootfs / "sbin/init") == "../init"


@pytest.mark.parametrize("net0, error", [
    (None, "Permission check failed (/sdn/zones/localnetwork/vmbr0, SDN.Use)"),
    ("name=eth0,bridge=vmbr-drill", "restoring 'mp0' to bind mount is only possible for root"),
])
def test_ct_restore_failures_clean_up_the_new_container(pve, net0, error):
    backup = newest_backup(pve, 120)
    extra = {"net0": net0} if net0 else {}
    upid = pve.nodes(NODE).lxc.post(vmid=9903, ostemplate=backup["volid"], restore=1,
                                    storage="local-zfs", pool="restoredrill", **extra)
    assert wait_pve(pve, upid)["exitstatus"] == f"unable to restore CT 9903 - {error}"
    assert 9903 not in {r["vmid"] for r in pve.cluster.resources.get(type="vm")}


def test_ct_unique_lets_the_backup_overwrite_your_net0(pve):
    backup = newest_backup(pve, 120)
    upid = pve.nodes(NODE).lxc.post(
        vmid=9904, ostemplate=backup["volid"], restore=1, storage="local-zfs",
        pool="restoredrill", rootfs="local-zfs:1", unique=1,
        net0="name=eth0,bridge=vmbr-drill")
    assert wait_pve(pve, upid)["exitstatus"] == "WARNINGS: 1"
    net0 = pve.nodes(NODE).lxc(9904).config.get()["net0"]
    assert "bridge=vmbr0" in net0 and BACKUP_CT_MAC not in net0     # the gotcha, reproduced
    assert wait_pve(pve, pve.nodes(NODE).lxc(9904).delete(purge=1))["exitstatus"] == "OK"


def test_qemu_restore_with_failed_autostart_still_ends_ok(pve, double):
    fault = double.faults.fail_start(9905)
    try:
        upid = pve.nodes(NODE).qemu.post(
            vmid=9905, archive=newest_backup(pve, 110)["volid"], storage="local-zfs",
            pool="restoredrill", start=1, net0="virtio,bridge=vmbr-drill")
        status = wait_pve(pve, upid)
        log = task_log(pve, NODE, upid)
    finally:
        fault.clear()
    assert status["exitstatus"] == "OK"
    assert "Execute autostart" in log and "start failed: QEMU exited with code 1" in log
    assert pve.nodes(NODE).qemu(9905).status.current.get()["status"] == "stopped"
    assert wait_pve(pve, pve.nodes(NODE).qemu(9905).delete(purge=1))["exitstatus"] == "OK"


def test_task_status_list_and_upids(pve):
    tasks = pve.nodes(NODE).tasks.get(typefilter="qmrestore", limit=0)
    assert tasks and all(t["type"] == "qmrestore" and t["status"] for t in tasks)
    upid = tasks[0]["upid"]
    decoded = Tasks.decode_upid(upid)
    assert decoded["node"] == NODE and len(upid.split(":")) == 9
    status = pve.nodes(NODE).tasks(upid).status.get()
    assert {status[k] for k in ("upid", "node", "type")} == {upid, NODE, "qmrestore"}
    assert status["user"] == "restoredrill@pve!drill" and status["status"] == "stopped"
    assert all(isinstance(status[k], int) for k in ("pid", "pstart", "starttime"))


def test_pbs_verify_catches_a_damaged_chunk(pbs, pve, double):
    snapshot = min(pbs.admin.datastore("local").snapshots.get(**{"backup-type": "vm"}),
                   key=lambda s: s["backup-time"])
    fault = double.faults.damage_chunk("local", f"vm/110/{_time(snapshot)}")
    try:
        upid = pbs_api(double, double.pbs_admin_token).admin.datastore("local").verify.post(**{
            "backup-type": "vm", "backup-id": "110", "backup-time": snapshot["backup-time"],
            "ignore-verified": 0})
        assert len(upid.split(":")) == 10
        with pytest.raises(AssertionError):
            Tasks.decode_upid(upid)                          # proxmoxer: 9-field UPIDs only
        status = wait_task(pbs_api(double, double.pbs_admin_token), "localhost", upid)
        log = task_log(pbs_api(double, double.pbs_admin_token), "localhost", upid)
        assert status["exitstatus"] == "verification failed - please check the log for details"
        assert any("crc" in line.lower() or "corrupt" in line.lower() for line in log), log
        listed = [s for s in pbs.admin.datastore("local").snapshots.get(**{"backup-id": "110"})
                  if s["backup-time"] == snapshot["backup-time"]][0]
        assert listed["verification"] == {"state": "failed", "upid": upid}
        pve_view = [i for i in pve.nodes(NODE).storage("pbs").content.get(vmid=110)
                    if i["ctime"] == snapshot["backup-time"]][0]
        assert pve_view["verification"]["state"] == "failed"
        assert list(double.datastores["local"].rglob("*.bad")), "PBS renames bad chunks"
    finally:
        fault.clear()
    upid = pbs_api(double, double.pbs_admin_token).admin.datastore("local").verify.post(**{
        "backup-type": "vm", "backup-id": "110", "backup-time": snapshot["backup-time"],
        "ignore-verified": 0})
    assert wait_task(pbs_api(double, double.pbs_admin_token), double.pbs_node, upid)["exitstatus"] == "OK"


def test_pbs_prune_dry_run_matches_the_engine(pbs, pbs_admin, double):
    with pytest.raises(ResourceException) as denied:
        pbs.admin.datastore("offsite").prune.post(**{
            "backup-type": "vm", "backup-id": "110", "keep-daily": 3, "dry-run": 1})
    assert denied.value.status_code == 403
    before = pbs_admin.admin.datastore("offsite").snapshots.get(**{"backup-type": "vm", "backup-id": "110"})
    result = pbs_admin.admin.datastore("offsite").prune.post(**{
        "backup-type": "vm", "backup-id": "110", "keep-daily": 3, "keep-monthly": 2,
        "dry-run": 1})
    assert [r["backup-time"] for r in result] == sorted(
        (s["backup-time"] for s in before), reverse=True)
    assert all(set(r) == {"backup-type", "backup-id", "backup-time", "keep", "protected"}
               for r in result)
    points = [retention.Point(time=_datetime(s["backup-time"])) for s in before]
    decisions = retention.simulate_pbs(points, retention.Policy.from_mapping(
        {"keep-daily": 3, "keep-monthly": 2}), double.zone)
    expected = {int(d.point.time.timestamp()): d.keep for d in decisions}
    assert {r["backup-time"]: r["keep"] for r in result} == expected
    assert len(pbs_admin.admin.datastore("offsite").snapshots.get(**{"backup-type": "vm", "backup-id": "110"})) \
        == len(before), "dry-run removes nothing"


def test_pbs_jobs_report_their_last_runs(pbs):
    verify = pbs.admin.verify.get()
    sync = pbs.admin.sync.get(**{"sync-direction": "all"})
    prune = pbs.admin.prune.get()
    gc = pbs.admin.gc.get()
    assert {j["id"] for j in verify} == {"local-verify", "offsite-verify"}
    ran = [j for j in verify + sync + prune if "last-run-upid" in j]
    assert {j["id"] for j in ran} == {"local-verify", "offsite-verify", "offsite-pull", "local-keep-last",
                                      "offsite-retention"}
    assert all(j["last-run-state"] == "OK" and j["next-run"] > j["last-run-endtime"]
               for j in ran)
    assert {g["store"] for g in gc} == {"local", "offsite"} and all(
        g["disk-chunks"] > 0 for g in gc)
    status = pbs.admin.datastore("local").status.get(verbose=1)
    assert status["backend-type"] == "filesystem" and status["counts"]["vm"] == {
        "groups": 1, "snapshots": 2}


def test_restores_an_old_offsite_snapshot(pve, double):
    oldest = min(pve.nodes(NODE).storage("pbs-offsite").content.get(vmid=110),
                 key=lambda item: item["ctime"])
    assert oldest["volid"].startswith("pbs-offsite:backup/vm/110/")
    assert oldest["ctime"] < newest_backup(pve, 110)["ctime"] - 300 * 86400
    upid = pve.nodes(NODE).qemu.post(vmid=9906, archive=oldest["volid"], storage="local-zfs",
                                     pool="restoredrill", net0="virtio,bridge=vmbr-drill")
    assert wait_pve(pve, upid)["exitstatus"] == "OK"
    image = double.base_dir / "pve" / "images" / "9906" / "vm-9906-disk-0.raw"
    dumped = subprocess.run(["debugfs", "-R", "cat /srv/app/.restoredrill-canary", str(image)],
                            check=True, capture_output=True, text=True, timeout=60).stdout
    assert oldest["notes"] == f"app-vm: {dumped.strip()}"
    assert wait_pve(pve, pve.nodes(NODE).qemu(9906).delete(purge=1))["exitstatus"] == "OK"


def test_force_overwrites_only_when_asked_and_protection_blocks_destroy(pve):
    backup = newest_backup(pve, 110)
    args = dict(vmid=9901, archive=backup["volid"], storage="local-zfs", pool="restoredrill",
                net0="virtio,bridge=vmbr-drill")
    with pytest.raises(ResourceException) as exists:
        pve.nodes(NODE).qemu.post(**args)
    assert "unable to restore VM 9901 - VM 9901 already exists on node 'pve1'" in \
        str(exists.value)
    assert wait_pve(pve, pve.nodes(NODE).qemu.post(force=1, **args))["exitstatus"] == "OK"
    assert "hostpci0" in pve.nodes(NODE).qemu(9901).config.get()   # the backup's config again
    pve.nodes(NODE).qemu(9901).config.put(protection=1)
    with pytest.raises(ResourceException) as protected:
        pve.nodes(NODE).qemu(9901).delete(purge=1)
    assert "can't remove VM 9901 - protection mode enabled" in str(protected.value)
    pve.nodes(NODE).qemu(9901).config.put(delete="protection")


def test_destroys_the_scratch_guests(pve):
    for kind, vmid in (("qemu", 9901), ("lxc", 9902)):
        upid = getattr(pve.nodes(NODE), kind)(vmid).delete(purge=1,
                                                           **{"destroy-unreferenced-disks": 1})
        assert wait_pve(pve, upid)["exitstatus"] == "OK"
    remaining = {r["vmid"] for r in pve.cluster.resources.get(type="vm")}
    assert remaining == {100, 110, 120}
    assert pve.pools.get(poolid="restoredrill")[0]["members"] == []


def test_endpoints_describe_the_served_lab(double):
    endpoints = double.endpoints()
    assert set(endpoints["pve"]) == {"url", "node", "nodes", "token_id", "token_secret_file",
                                     "fingerprint", "isolated_bridge", "guest_ssh"}
    assert endpoints["pve"]["nodes"] == ["pve1", "pve2", "pve3"]
    assert set(endpoints["pbs"]) == {"url", "token_id", "token_secret_file", "fingerprint",
                                     "datastores"}
    assert endpoints["pve"]["url"] == double.pve_url and endpoints["pbs"]["datastores"] == [
        "local", "offsite"]
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", endpoints["pve"]["fingerprint"])
    for side in ("pve", "pbs"):
        secret_file = endpoints[side]["token_secret_file"]
        assert secret_file.startswith("/") and (oct(os.stat(secret_file).st_mode)[-3:] == "600")
    assert double.key_file.is_file() and double.key_fingerprint.count(":") == 31


def test_drill_token_is_refused_outside_its_pool(pve):
    with pytest.raises(ResourceException) as denied:
        pve.nodes(NODE).qemu(110).status.stop.post()
    assert denied.value.status_code == 403
    assert "Permission check failed (/vms/110, VM.PowerMgmt)" in str(denied.value)


def _time(snapshot: dict) -> str:
    return _datetime(snapshot["backup-time"]).strftime("%Y-%m-%dT%H:%M:%SZ")


def _datetime(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)
