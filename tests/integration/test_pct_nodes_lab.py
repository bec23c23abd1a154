"""``pct`` reaches only the containers of the node it runs on (issue 13 point 4): the lab
starts one sshd per node, each with the shipped guard reading that node's ``/etc/pve``
(``lxc`` -> ``nodes/<node>/lxc``), so a drill container on pve2 is reachable over pve2's
SSH and refused over pve1's, as real pct (load_config on the local node) refuses it."""
from __future__ import annotations

import subprocess

import pytest
from proxmoxer.tools import Tasks

from restoredrill.lab.proxmox import ProxmoxDouble
from restoredrill.lab.proxmox.testing import pve_api

pytestmark = pytest.mark.integration
DRILL, REFUSED, VMID = "restoredrill", 126, 9931


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("pct-nodes"), real_guests=True) as running:
        yield running


def pct(endpoint: dict, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", "none", "-i", endpoint["key_file"], "-o",
                           f"UserKnownHostsFile={endpoint['known_hosts_file']}", "-o", "StrictHostKeyChecking=yes",
                           "-o", "BatchMode=yes", "-p", str(endpoint["port"]), f"{endpoint['user']}@{endpoint['host']}",
                           command], check=False, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_pct_works_only_on_the_containers_node(double):
    admin = pve_api(double, double.admin_token)
    items = admin.nodes("pve2").storage("pbs").content.get(content="backup", vmid=120)
    volid = max((i for i in items if i.get("size") != 1), key=lambda item: item["ctime"])["volid"]
    upid = admin.nodes("pve2").lxc.post(vmid=VMID, ostemplate=volid, restore=1, storage="local-zfs",
                                        rootfs="local-zfs:1", hostname="nodes-ct", onboot=0, pool=DRILL, tags=DRILL,
                                        net0="name=eth0,bridge=vmbr-drill,ip=10.199.0.131/24")
    status = Tasks.blocking_status(admin, upid, timeout=90, polling_interval=0.05)
    assert status and status["exitstatus"].startswith(("OK", "WARNINGS")), status
    by_node = double.endpoints()["pve"]["node_ssh_by_node"]
    assert sorted(by_node) == ["pve1", "pve2", "pve3"]
    assert len({(e["host"], e["port"]) for e in by_node.values()}) == 3      # one sshd each
    try:
        here = pct(by_node["pve2"], f"pct status {VMID}")
        assert here.returncode == 0 and here.stdout.strip() == "status: stopped", here.stderr
        for node in ("pve1", "pve3"):
            elsewhere = pct(by_node[node], f"pct status {VMID}")
            assert elsewhere.returncode == REFUSED, (node, elsewhere.stdout, elsewhere.stderr)
            assert "has no config" in elsewhere.stderr and "only this node's containers" in elsewhere.stderr
    finally:
        Tasks.blocking_status(admin, admin.nodes("pve2").lxc(VMID).delete(purge=1), timeout=60,
                              polling_interval=0.05)
