"""Faults, safety and the datastore format of a running double.

Faults are switched on the server side through ``double.faults`` and cleared after
each test; request values that could reach the disk are refused with 400; the seeded
datastores are read back independently of the double (pbsformat's reader plus raw
struct checks of magic, CRC and index checksums).
"""
from __future__ import annotations

import hashlib
import http.client
import socket
import ssl
import struct
import threading
import zlib

import pytest
import requests
from proxmoxer import ResourceException
from proxmoxer.tools import Tasks

from restoredrill.lab.proxmox import ProxmoxDouble
from restoredrill.lab.proxmox.testing import pbs_api, pve_api, task_log, wait_task
from restoredrill.pbsformat import (BLOB_KINDS, DYNAMIC_INDEX_MAGIC, FIXED_INDEX_MAGIC,
                                    DatastoreReader, read_key_file)

pytestmark = pytest.mark.integration
NODE = "pve1"


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("faults")) as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults_left(double):
    yield
    double.faults.clear()


@pytest.fixture(scope="module")
def pve(double):
    return pve_api(double)


@pytest.fixture(scope="module")
def pbs(double):
    return pbs_api(double)


def newest(pve, vmid: int) -> dict:
    """The newest finished backup of the homelab guest ``vmid`` (the seed also holds ct/110 and
    an unfinished ct/120, size 1: what a type- or manifest-blind pick would take)."""
    items = pve.nodes(NODE).storage("pbs").content.get(content="backup", vmid=vmid)
    kind = {110: "qemu", 120: "lxc", 100: "qemu"}[vmid]
    return max((i for i in items if i["subtype"] == kind and i["size"] != 1), key=lambda item: item["ctime"])


def wait(pve, upid: str) -> dict:
    return Tasks.blocking_status(pve, upid, timeout=60, polling_interval=0.05)


def restore_vm(pve, vmid: int, volid: str, **extra) -> str:
    return pve.nodes(NODE).qemu.post(vmid=vmid, archive=volid, storage="local-zfs",
                                     pool="restoredrill", net0="virtio,bridge=vmbr-drill",
                                     **extra)


def destroy(pve, kind: str, vmid: int) -> None:
    assert wait(pve, getattr(pve.nodes(NODE), kind)(vmid).delete(purge=1))["exitstatus"] == "OK"


def raw_get(double, server: str, path: str) -> int:
    """A GET whose path no client library gets to normalize (``..`` stays ``..``)."""
    api = double.servers[server]
    token = double.drill_token if server == "pve" else double.pbs_drill_token
    header = (f"PVEAPIToken={token.token_id}={token.secret()}" if server == "pve"
              else f"PBSAPIToken={token.token_id}:{token.secret()}")
    context = ssl.create_default_context(cafile=str(api.identity.cert_file))
    connection = http.client.HTTPSConnection("127.0.0.1", api.port, context=context, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": header})
        return connection.getresponse().status
    finally:
        connection.close()


def test_failing_restore_leaves_the_guest_for_cleanup(pve, double):
    double.faults.fail_restore(9921, "reading file \"/dev/sda\" failed: Input/output error")
    upid = restore_vm(pve, 9921, newest(pve, 110)["volid"])
    status = wait(pve, upid)
    log = task_log(pve, NODE, upid)
    assert status["exitstatus"].startswith("command '/usr/bin/pbs-restore ")
    assert status["exitstatus"].endswith("failed: exit code 255")
    assert 'restore failed: reading file "/dev/sda" failed: Input/output error' in log
    assert "temporary volume 'local-zfs:vm-9921-disk-0' successfully removed" in log
    assert any("VM 9921 state is NOT cleaned up" in line for line in log)
    admin = pve_api(double, double.admin_token)
    leftover = admin.nodes(NODE).qemu(9921).config.get()
    assert leftover["memory"] == "128" and "lock" not in leftover
    with pytest.raises(ResourceException) as outside:    # joins the pool only on success
        pve.nodes(NODE).qemu(9921).delete(purge=1)
    assert outside.value.status_code == 403
    destroy(admin, "qemu", 9921)


def test_damaged_chunk_fails_the_restore_with_the_error_in_the_log(pve, double):
    backup = newest(pve, 110)
    double.faults.damage_chunk("local", backup["volid"])
    upid = restore_vm(pve, 9922, backup["volid"])
    status = wait(pve, upid)
    log = task_log(pve, NODE, upid)
    assert status["exitstatus"].endswith("failed: exit code 255")
    failure = [line for line in log if line.startswith("restore failed: ")]
    assert failure and ".chunks/" in failure[0], log
    destroy(pve_api(double, double.admin_token), "qemu", 9922)


def test_missing_chunk_fails_verify_and_restore(pve, pbs, double):
    backup = newest(pve, 120)
    double.faults.remove_chunk("local", backup["volid"])
    upid = pbs_api(double, double.pbs_admin_token).admin.datastore("local").verify.post(**{
        "backup-type": "ct", "backup-id": "120", "backup-time": backup["ctime"],
        "ignore-verified": 0})
    assert wait_task(pbs_api(double, double.pbs_admin_token), "localhost", upid)["exitstatus"].startswith("verification failed")
    assert any("missing" in line for line in task_log(pbs_api(double, double.pbs_admin_token), "localhost", upid))
    upid = pve.nodes(NODE).lxc.post(vmid=9923, ostemplate=backup["volid"], restore=1,
                                    storage="local-zfs", pool="restoredrill",
                                    rootfs="local-zfs:1", net0="name=eth0,bridge=vmbr-drill")
    status = wait(pve, upid)
    assert status["exitstatus"].startswith("unable to restore CT 9923 - command ")
    assert 9923 not in {r["vmid"] for r in pve.cluster.resources.get(type="vm")}


def test_verify_skips_verified_snapshots_unless_asked(pbs, double):
    before = {s["backup-time"]: s["verification"]      # finished ones (the seed has an unfinished one)
              for s in pbs.admin.datastore("local").snapshots.get(**{"backup-id": "120"}) if "size" in s}
    upid = pbs_api(double, double.pbs_admin_token).admin.datastore("local").verify.post(
        **{"backup-type": "ct", "backup-id": "120"})
    assert wait_task(pbs_api(double, double.pbs_admin_token), "localhost", upid)["exitstatus"] == "OK"
    skipped = [line for line in task_log(pbs_api(double, double.pbs_admin_token), "localhost", upid) if line.startswith("SKIPPED")]
    assert len(skipped) == len(before), "ignore-verified is the default: nothing re-read"
    after = {s["backup-time"]: s["verification"]
             for s in pbs.admin.datastore("local").snapshots.get(**{"backup-id": "120"}) if "size" in s}
    assert after == before


def test_slow_tasks_are_visible_while_running(pve, double):
    double.faults.slow_tasks(0.6, "qmstart")
    backup = newest(pve, 110)
    assert wait(pve, restore_vm(pve, 9924, backup["volid"]))["exitstatus"] == "OK"
    upid = pve.nodes(NODE).qemu(9924).status.start.post()
    assert pve.nodes(NODE).tasks(upid).status.get()["status"] == "running"
    running = pve.nodes(NODE).tasks.get(source="active")
    assert upid in {t["upid"] for t in running}
    assert wait(pve, upid)["exitstatus"] == "OK"
    assert wait(pve, pve.nodes(NODE).qemu(9924).status.stop.post())["exitstatus"] == "OK"
    destroy(pve, "qemu", 9924)


def test_http_500_and_reset_through_proxmoxer(pve, double):
    double.faults.http_error(r"^/cluster/resources$", nth=1)
    with pytest.raises(ResourceException) as failed:
        pve.cluster.resources.get()
    assert failed.value.status_code == 500
    assert pve.cluster.resources.get()                    # only the first call failed
    double.faults.http_error(r"^/version$", kind="reset", times=2)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            pve.version.get()
    assert pve.version.get()["release"] == "9.1"


@pytest.mark.parametrize("call, param", [
    (lambda pve: pve.nodes(NODE).vzdump.extractconfig.get(
        volume="pbs:backup/vm/../../../etc/passwd"), "volume"),
    (lambda pve: pve.nodes(NODE).qemu.post(vmid=9925, archive="pbs:../../etc/shadow",
                                           pool="restoredrill"), "archive"),
    (lambda pve: pve.nodes(NODE).lxc.post(vmid=9925, ostemplate="local:backup/../../x.tar",
                                          restore=1, pool="restoredrill",
                                          storage="local-zfs"), "ostemplate"),
    (lambda pve: pve.nodes(NODE).qemu("110..").config.get(), "vmid"),
    (lambda pve: pve.nodes(NODE).tasks("UPID:pve1:..:x").status.get(), "upid"),
])
def test_pve_refuses_traversal_in_values_with_400(pve, call, param):
    with pytest.raises(ResourceException) as refused:
        call(pve)
    assert refused.value.status_code == 400
    assert param in (refused.value.errors or {})


@pytest.mark.parametrize("server, path", [
    ("pve", "/api2/json/nodes/pve1/storage/%2E%2E/content"),
    ("pve", "/api2/json/nodes/%2E%2E/qemu"),
    ("pve", "/api2/json/nodes/pve1/qemu/..%2F110/config"),
    ("pve", "/api2/json/nodes/pve1/tasks/UPID%3A..%2F..%2Fetc%3Apasswd/log"),
    ("pbs", "/api2/json/admin/datastore/%2E%2E/snapshots"),
    ("pbs", "/api2/json/admin/datastore/local%2F..%2F..%2Fetc/status"),
    ("pbs", "/api2/json/nodes/localhost/tasks/..%2F..%2Fx/log"),
])
def test_refuses_traversal_in_paths_with_400(double, server, path):
    assert raw_get(double, server, path) == 400


@pytest.mark.parametrize("call", [
    lambda pbs: pbs.admin.datastore("local").snapshots.get(**{"backup-id": "../../x"}),
    lambda pbs: pbs.admin.datastore("local").verify.post(**{"backup-type": "vm",
                                                            "backup-id": ".hidden"}),
    lambda pbs: pbs.admin.datastore("local").prune.post(**{"backup-type": "vm",
                                                           "backup-id": "..", "keep-last": 1}),
    lambda pbs: pbs.nodes("localhost").tasks("UPID:..:x").status.get(),
])
def test_pbs_refuses_traversal_in_values_with_400(pbs, call):
    with pytest.raises(ResourceException) as refused:
        call(pbs)
    assert refused.value.status_code == 400


def test_a_real_prune_removes_snapshot_directories(double):
    admin = pbs_api(double, double.pbs_admin_token)
    store = admin.admin.datastore("local")
    vm = {"backup-type": "vm", "backup-id": "110"}          # not the seed's ct/110
    before = sorted(s["backup-time"] for s in store.snapshots.get(**vm))
    result = store.prune.post(**vm, **{"keep-last": 1})
    assert [r["keep"] for r in result] == [True, False]
    assert [s["backup-time"] for s in store.snapshots.get(**vm)] == before[1:]
    group = double.datastores["local"] / "vm" / "110"
    assert len([p for p in group.iterdir() if p.is_dir()]) == 1


def test_datastores_pass_an_independent_reading(double):
    crypt = read_key_file(double.key_file)
    assert crypt.fingerprint() == double.key_fingerprint
    for root in double.datastores.values():
        reader = DatastoreReader(root)
        reports = reader.verify_all(crypt)
        problems = [str(p) for r in reports for p in r.problems]
        unfinished = [p for p in problems if "the snapshot is unfinished" in p]   # the seed's running ct/120
        assert reports and problems == unfinished and len(unfinished) <= 1, problems
        assert sum(r.chunks_verified for r in reports) > 0
        for path in sorted(root.rglob("*.fidx")) + sorted(root.rglob("*.didx")):
            raw = path.read_bytes()
            magic, = struct.unpack_from("<8s", raw, 0)
            csum = raw[32:64]
            if magic == FIXED_INDEX_MAGIC:
                size, chunk_size = struct.unpack_from("<QQ", raw, 64)
                count = -(-size // chunk_size)
                assert len(raw) == 4096 + 32 * count
                assert hashlib.sha256(raw[4096:]).digest() == csum
            else:
                assert magic == DYNAMIC_INDEX_MAGIC and (len(raw) - 4096) % 40 == 0
                assert hashlib.sha256(raw[4096:]).digest() == csum
        for chunk in list((root / ".chunks").rglob("*"))[:200]:
            if chunk.is_file():
                raw = chunk.read_bytes()
                assert raw[:8] in BLOB_KINDS
                header = 44 if BLOB_KINDS[raw[:8]][1] else 12
                assert struct.unpack_from("<I", raw, 8)[0] == zlib.crc32(raw[header:])


def test_stopping_leaves_no_thread_socket_or_file(tmp_path):
    before = set(threading.enumerate())
    base = tmp_path / "short-lived"
    with ProxmoxDouble(base) as short:
        ports = (short.pve_port, short.pbs_port)
        api = pve_api(short)
        assert api.version.get()
    assert set(threading.enumerate()) - before == set()
    assert list(base.iterdir()) == []
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert short.timings["startup"] < 30
