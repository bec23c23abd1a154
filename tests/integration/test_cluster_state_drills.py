"""What a real cluster's state means for a restore drill (issue 25), through the real
ScratchGuest preflight and PveClient against the double's three-node cluster.

A node that goes offline (the double's ``node_offline`` fault: /cluster/status ``online`` 0,
calls to it 595) is passed over for another node with the scratch storage and drill
bridge; a cluster without quorum (``quorum_lost``: creating a guest fails as pve-cluster
``check_cfs_quorum`` does) fails the preflight naming the offline members; an HA resource
left in the scratch range keeps that VMID from being used; a restore of an HA-managed
guest's backup carries no HA state and the drill never writes HA configuration.
"""
from __future__ import annotations

import pytest

from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint
from restoredrill.clients.pve import PveClient, ScratchGuard
from restoredrill.fixtures.pbs_restore import ScratchGuest, choose_restore_node
from restoredrill.lab.proxmox import ProxmoxDouble, homelab
from restoredrill.lab.proxmox.testing import pve_api, restore_drill_inventory
from restoredrill.plan import PlanError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("cluster-state")) as running:
        yield running


@pytest.fixture(scope="module")
def inventory(double, tmp_path_factory):
    return restore_drill_inventory(double, tmp_path_factory.mktemp("inventory"), "cluster")


@pytest.fixture(scope="module")
def pve(double) -> PveClient:
    token = double.drill_token
    endpoint = Endpoint(double.pve_url, token.token_id, token.secret(), double.fingerprint, True, "PVE")
    return PveClient(ApiChokePoint(endpoint), ScratchGuard(9900, 9999, "restoredrill", homelab.DRILL_POOL))


def guest_named(inventory, name: str):
    return next(g for g in inventory.guests if g.name == name)


def test_the_double_reports_an_offline_node_and_refuses_calls_to_it(double, pve):
    fault = double.faults.node_offline("pve2")
    try:
        nodes = {item["name"]: item for item in pve.cluster_status() if item["type"] == "node"}
        assert (nodes["pve1"]["online"], nodes["pve2"]["online"], nodes["pve1"]["local"]) == (1, 0, 1)
        with pytest.raises(ApiError) as refused:
            pve.storages("pve2")
        assert "595" in str(refused.value) and "No route to host" in str(refused.value)
        [entry] = [r for r in pve.resources(None) if r.get("id") == "node/pve2"]
        assert entry["status"] == "offline" and "uptime" not in entry
    finally:
        fault.clear()
    assert all(item["online"] == 1 for item in pve.cluster_status() if item["type"] == "node")


def test_an_offline_restore_node_moves_the_restore_to_another_node(double, inventory, pve):
    app_vm = guest_named(inventory, "app-vm")
    assert choose_restore_node(pve, app_vm, inventory) == "pve2"       # its own node
    fault = double.faults.node_offline("pve2")
    try:
        assert choose_restore_node(pve, app_vm, inventory) == "pve1"
        everywhere = [fault, double.faults.node_offline("pve1"), double.faults.node_offline("pve3")]
        with pytest.raises(PlanError) as nowhere:
            choose_restore_node(pve, app_vm, inventory)
        for node in ("pve1", "pve2", "pve3"):
            assert f"{node}: offline (/cluster/status online 0)" in str(nowhere.value)
    finally:
        double.faults.clear()


def test_no_quorum_fails_the_preflight_naming_the_offline_node(double, inventory, pve):
    faults = [double.faults.node_offline("pve3"), double.faults.quorum_lost()]
    try:
        scratch = ScratchGuest(guest_named(inventory, "app-ct"), inventory, pve, "Q1", lambda _t: None)
        with pytest.raises(PlanError) as refused:
            scratch.preflight()
        assert "no quorum" in str(refused.value) and "offline: pve3" in str(refused.value)
        assert scratch.vmid is None                       # nothing claimed, nothing created
        admin = pve_api(double, double.admin_token)      # and the double refuses as PVE does
        backup = admin.nodes("pve1").storage("pbs").content.get(content="backup", vmid=110)[0]
        with pytest.raises(Exception, match="cluster not ready - no quorum"):
            admin.nodes("pve1").qemu.post(vmid=9990, archive=backup["volid"], storage="local-zfs")
    finally:
        for fault in faults:
            fault.clear()


def test_ha_state_never_reaches_a_scratch_guest(double, inventory, pve):
    """ct:120 is HA-managed in the lab; an HA entry left for VMID 9900 (the first scratch
    VMID) would make HA take over a scratch guest created there."""
    state = double.pve_state
    state.ha_resources["vm:9900"] = {"state": "started"}
    watch = double.faults.watch_requests(r"^/cluster/ha", method="POST")
    watch_put = double.faults.watch_requests(r"^/cluster/ha", method="PUT")
    scratch = ScratchGuest(guest_named(inventory, "app-ct"), inventory, pve, "H1", lambda _t: None)
    try:
        facts = scratch.preflight()
        assert scratch.vmid != 9900
        scratch.restore(facts["snapshot"], facts["config"])
        assert {item["sid"] for item in pve.ha_resources()} == {"ct:120", "vm:9900"}
        [entry] = [r for r in pve.resources("vm") if r["vmid"] == scratch.vmid]
        assert "hastate" not in entry
        [production] = [r for r in pve.resources("vm") if r["vmid"] == 120]
        assert production["hastate"] == "started"    # the double does report HA guests
    finally:
        scratch.destroy()
        del state.ha_resources["vm:9900"]
        watch.clear(), watch_put.clear()
    assert (watch.hits, watch_put.hits) == (0, 0)
