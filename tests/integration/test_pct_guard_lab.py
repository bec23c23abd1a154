"""The node's pct guard (contrib/restoredrill-pct-guard) over the lab node's real SSH: a
container inside the scratch range gets through only when it carries the drill tag AND
sits in the drill pool, as the guard reads them from the double's ``etc-pve`` (the
pmxcfs layout: ``lxc/VMID.conf`` and ``user.cfg``).

The containers are restored (not started): ``pct status`` answers for a stopped one, so
what is refused is refused by the guard, not by pct.
"""
from __future__ import annotations

import subprocess

import pytest
from proxmoxer.tools import Tasks

from restoredrill.lab.proxmox import ProxmoxDouble
from restoredrill.lab.proxmox.testing import pve_api

pytestmark = pytest.mark.integration
NODE, DRILL = "pve1", "restoredrill"
REFUSED = 126


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("guard"), real_guests=True) as running:
        yield running


@pytest.fixture(scope="module")
def admin(double):
    return pve_api(double, double.admin_token)


def restore_ct(pve, vmid: int, **options) -> None:
    items = pve.nodes(NODE).storage("pbs").content.get(content="backup", vmid=120)
    finished = [item for item in items if item.get("size") != 1]     # PVE: an unfinished snapshot has size 1
    volid = max(finished, key=lambda item: item["ctime"])["volid"]
    upid = pve.nodes(NODE).lxc.post(vmid=vmid, ostemplate=volid, restore=1, storage="local-zfs",
                                    rootfs="local-zfs:1", hostname=f"guard-{vmid}", onboot=0,
                                    net0="name=eth0,bridge=vmbr-drill,ip=10.199.0.130/24", **options)
    status = Tasks.blocking_status(pve, upid, timeout=90, polling_interval=0.05)
    assert status and status["exitstatus"].startswith(("OK", "WARNINGS")), status


def pct(double, command: str) -> subprocess.CompletedProcess:
    node = double.endpoints()["pve"]["node_ssh"]
    return subprocess.run(["ssh", "-F", "none", "-i", node["key_file"], "-o",
                           f"UserKnownHostsFile={node['known_hosts_file']}", "-o", "StrictHostKeyChecking=yes",
                           "-o", "BatchMode=yes", "-p", str(node["port"]), f"{node['user']}@{node['host']}", command],
                          check=False, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def guests(admin):
    restore_ct(admin, 9921, pool=DRILL, tags=f"{DRILL};run-guard")     # what restoredrill makes
    restore_ct(admin, 9922, pool=DRILL)                                  # in the pool, no drill tag
    restore_ct(admin, 9923, tags=DRILL)                                  # tagged, in no pool
    restore_ct(admin, 9924, pool="prod", tags=DRILL)                     # tagged, another pool
    yield
    for vmid in (9921, 9922, 9923, 9924):
        Tasks.blocking_status(admin, admin.nodes(NODE).lxc(vmid).delete(purge=1), timeout=60,
                              polling_interval=0.05)


def test_a_drill_container_gets_through(double, guests):
    result = pct(double, "pct status 9921")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "status: stopped"


@pytest.mark.parametrize("vmid,reason", [
    (9922, "does not carry the drill tag 'restoredrill' (tags: app;prod)"),   # the backup's own tags
    (9923, "is not in the drill pool 'restoredrill'"),
    (9924, "is not in the drill pool 'restoredrill'"),
    (9925, "has no config"),
])
def test_a_container_in_range_that_restoredrill_did_not_make_is_refused(double, guests, vmid, reason):
    for command in (f"pct exec {vmid} -- id", f"pct stop {vmid}", f"pct status {vmid}"):
        result = pct(double, command)
        assert result.returncode == REFUSED, (command, result.stdout, result.stderr)
        assert "restoredrill-pct-guard: refused" in result.stderr and reason in result.stderr
        assert result.stdout == ""


def test_losing_the_tag_or_the_pool_later_is_seen(double, admin, guests):
    admin.nodes(NODE).lxc(9921).config.put(tags="other")
    try:
        refused = pct(double, "pct status 9921")
        assert refused.returncode == REFUSED and "does not carry the drill tag" in refused.stderr
    finally:
        admin.nodes(NODE).lxc(9921).config.put(tags=DRILL)
    assert pct(double, "pct status 9921").returncode == 0
    admin.pools.put(poolid=DRILL, vms="9921", delete=1)
    try:
        refused = pct(double, "pct status 9921")
        assert refused.returncode == REFUSED and "not in the drill pool" in refused.stderr
    finally:
        admin.pools.put(poolid=DRILL, vms="9921")
    assert pct(double, "pct status 9921").returncode == 0


def load_guard():
    import importlib.machinery
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "contrib" / "restoredrill-pct-guard"
    loader = importlib.machinery.SourceFileLoader("pct_guard_lab", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("pct_guard_lab", loader))
    loader.exec_module(module)
    return module


def test_tags_and_pools_are_read_as_pve_writes_them():
    guard = load_guard()
    config = ("#notes: tags: restoredrill\narch: amd64\ntags: app, restoredrill;run-1\n"
              "[snap1]\ntags: restoredrill\n")
    assert guard.container_tags(config) == ["app", "restoredrill", "run-1"]
    assert guard.container_tags("#tags: restoredrill\narch: amd64\n[snap]\ntags: restoredrill\n") == []
    user_cfg = ("user:root@pam:1:0:::root@example::\npool:prod:production:110,120::\n"
                "pool:restoredrill:restore%20drills:9901,9905:local-zfs:\npool:restoredrill/sub:::\n")
    assert guard.pool_members(user_cfg, "restoredrill") == {9901, 9905}
    assert guard.pool_members(user_cfg, "restoredrill/sub") == set() and guard.pool_members(user_cfg, "x") == set()
