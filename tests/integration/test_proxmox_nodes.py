"""A three-node cluster (issue 13 points 4 and 12), through the real PveClient and the double.

Each test fails if the client ignored the node: a guest's config, status, destroy and tasks
exist only on its own node (the double answers elsewhere as PVE's load_config does), reap
must use each guest's node, a storage limited to some nodes is not used on the others, and
the drill bridge of the restore node is checked for uplinks, addresses of both families and
production NICs.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from restoredrill.checks.isolation import plan_isolation
from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint
from restoredrill.clients.pve import PveClient, ScratchGuard
from restoredrill.fixtures.pbs_restore import ScratchGuest, check_drill_bridge, choose_restore_node
from restoredrill.inventory.model import Guest
from restoredrill.lab.proxmox import ProxmoxDouble, homelab
from restoredrill.lab.proxmox.cluster import interface_entry
from restoredrill.lab.proxmox.double import _info
from restoredrill.lab.proxmox.guests import Guest as PveGuest
from restoredrill.lab.proxmox.permissions import acl
from restoredrill.lab.proxmox.testing import pve_api, restore_drill_inventory
from restoredrill.plan import PlanError
from restoredrill.reap import reap_scratch_guests

pytestmark = pytest.mark.integration
BRIDGE = homelab.ISOLATED_BRIDGE


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("nodes")) as running:
        yield running


@pytest.fixture(scope="module")
def inventory(double, tmp_path_factory):
    return restore_drill_inventory(double, tmp_path_factory.mktemp("inventory"), "nodes")


def client_for(double, *extra) -> PveClient:
    token = _info(double.pve_tokens.create(f"restoredrill@pve!nodes{len(extra)}", [
        *homelab.pve_drill_acl(), acl(f"/pool/{homelab.DRILL_POOL}", "VM.Config.Disk"), *extra],
        double.base_dir / "secrets"))
    endpoint = Endpoint(double.pve_url, token.token_id, token.secret(), double.fingerprint, True, "PVE")
    return PveClient(ApiChokePoint(endpoint), ScratchGuard(9900, 9999, "restoredrill", homelab.DRILL_POOL))


@pytest.fixture(scope="module")
def pve(double) -> PveClient:
    return client_for(double)


def app_guest(inventory, name: str) -> Guest:
    return next(g for g in inventory.guests if g.name == name)


# --- the cluster ------------------------------------------------------------------------
def test_three_nodes_with_guests_on_each(double, pve):
    assert pve.nodes() == ["pve1", "pve2", "pve3"]
    placed = {r["vmid"]: r["node"] for r in pve.resources("vm")}
    assert placed == {100: "pve1", 110: "pve2", 120: "pve3"}
    assert [pve.node_of(v) for v in (100, 110, 120)] == ["pve1", "pve2", "pve3"]
    admin = pve_api(double, double.admin_token)     # storages need Datastore.Audit (Cluster.pm)
    storages = {(r["node"], r["storage"]) for r in admin.cluster.resources.get(type="storage")}
    assert {("pve1", "local-zfs"), ("pve2", "local-zfs"), ("pve3", "local-zfs")} <= storages
    assert [g["vmid"] for g in admin.nodes("pve2").qemu.get()] == [110]
    assert admin.nodes("pve1").lxc.get() == []
    with pytest.raises(Exception, match="hostname lookup 'pve9' failed"):
        admin.nodes("pve9").qemu.get()
    for node in ("pve1", "pve2", "pve3"):      # each node sees its own containers as /etc/pve/lxc
        lxc = double.pve_state.node_view(node) / "lxc"
        assert sorted(p.name for p in lxc.iterdir()) == (["120.conf"] if node == "pve3" else [])


def test_a_guest_is_read_only_on_its_own_node(pve):
    assert pve.config("pve2", "qemu", 110)["name"]
    assert pve.status("pve3", "lxc", 120)["status"] == "running"
    with pytest.raises(ApiError, match=r"Configuration file 'nodes/pve1/qemu-server/110.conf' does not exist"):
        pve.config("pve1", "qemu", 110)
    with pytest.raises(ApiError, match=r"Configuration file 'nodes/pve2/lxc/120.conf' does not exist"):
        pve.status("pve2", "lxc", 120)


# --- a scratch guest on another node ------------------------------------------------------
def test_the_scratch_copy_is_restored_and_destroyed_on_the_guests_node(double, inventory, pve):
    scratch = ScratchGuest(app_guest(inventory, "app-vm"), inventory, pve, "N1", lambda _t: None)
    facts = scratch.preflight()
    assert scratch.node == "pve2" and scratch.evidence["restore_node"] == "pve2"
    scratch.restore(facts["snapshot"], facts["config"])
    try:
        assert pve.node_of(scratch.vmid) == "pve2"
        assert double.pve_state.config_path(scratch.vmid, "qemu").parent.parent.name == "pve2"
        assert scratch.upids[0].startswith("UPID:pve2:")          # the task runs on that node
        with pytest.raises(ApiError, match="does not exist"):       # a client that ignored the node
            pve.config("pve1", "qemu", scratch.vmid)
        with pytest.raises(ApiError, match="does not exist"):
            pve.destroy("pve1", "qemu", scratch.vmid)
        with pytest.raises(ApiError):
            pve.task_status("pve1", scratch.upids[0])
        assert pve.task_status("pve2", scratch.upids[0])["status"] == "stopped"
    finally:
        scratch.node = "pve1"           # destroy() asks /cluster/resources, not its own memory
        scratch.destroy()
    assert scratch.vmid not in double.pve_state.guests


def test_reap_uses_each_guests_node(double, inventory, pve):
    ct = app_guest(inventory, "app-ct")
    scratch = ScratchGuest(ct, inventory, pve, "N2", lambda _t: None)
    facts = scratch.preflight()
    assert scratch.node == "pve3"
    plan = plan_isolation("lxc", facts["config"], bridge=BRIDGE, storage="local-zfs", pool=homelab.DRILL_POOL,
                          tag="restoredrill", run_id="N2", name="expired",
                          expires=datetime.now(timezone.utc) - timedelta(minutes=5),
                          snapshot_size=int(facts["snapshot"].get("size", 0)))
    upid = pve.restore("pve3", "lxc", scratch.vmid, facts["snapshot"]["volid"], "local-zfs", plan.create)
    pve.wait_task("pve3", upid, deadline=60, what="restore")
    with pytest.raises(ApiError, match="does not exist"):     # what a reap on one fixed node would do
        pve.config("pve1", "lxc", scratch.vmid)
    assert reap_scratch_guests(pve, "pve1") == [scratch.vmid]
    assert not pve.exists(scratch.vmid)


# --- storages limited to some nodes -------------------------------------------------------
def test_a_storage_limited_to_some_nodes_is_used_only_there(double, inventory, pve):
    storage = double.pve_state.storages["local-zfs"]
    try:
        storage.nodes = ("pve1", "pve2")
        assert "local-zfs" not in {s["storage"] for s in pve.storages("pve3", "rootdir")}
        [listed] = [s for s in pve.storages("pve3") if s["storage"] == "local-zfs"]
        assert (listed["enabled"], listed["active"]) == (0, 0)
        with pytest.raises(ApiError, match="storage 'local-zfs' is not available on node 'pve3'"):
            pve._get("/nodes/pve3/storage/local-zfs/content", lambda a, c: a)
        assert choose_restore_node(pve, app_guest(inventory, "app-ct"), inventory) == "pve1"
        storage.nodes = ("elsewhere",)
        with pytest.raises(PlanError) as nowhere:
            choose_restore_node(pve, app_guest(inventory, "app-ct"), inventory)
        assert "pve1: storage local-zfs is not available" in str(nowhere.value)
        assert "pve3: storage local-zfs is not available" in str(nowhere.value)
    finally:
        storage.nodes = tuple(double.nodes)


# --- bridge isolation on the restore node -------------------------------------------------
@pytest.mark.parametrize("fault,needle", [
    (interface_entry("OVSBridge", ovs_ports="eno2", priority=5), "Open vSwitch port(s) eno2 (ovs_ports)"),
    (interface_entry("bridge", families=("inet", "inet6"), address6="fd00:199::1", netmask6="64",
                     priority=5), "IPv6 address fd00:199::1/64 (address6)"),
])
def test_a_drill_bridge_with_an_uplink_or_address_is_refused(double, inventory, pve, fault, needle):
    networks = double.pve_state.networks_of("pve2")
    before = networks[BRIDGE]
    check_drill_bridge(pve, "pve2", inventory.scratch)
    try:
        networks[BRIDGE] = fault
        with pytest.raises(PlanError) as refused:
            check_drill_bridge(pve, "pve2", inventory.scratch)
        assert needle in str(refused.value)
        assert f"the drill bridge {BRIDGE} on node pve2" in str(refused.value) and "ifreload" in str(refused.value)
        check_drill_bridge(pve, "pve1", inventory.scratch)           # another node's bridge is its own
    finally:
        networks[BRIDGE] = before


def test_a_production_nic_on_the_drill_bridge_is_refused(double, inventory, pve):
    guest = double.pve_state.guests[110]
    try:
        guest.config["net1"] = f"virtio=BC:24:11:AA:BB:CC,bridge={BRIDGE}"
        with pytest.raises(PlanError) as refused:
            check_drill_bridge(pve, "pve2", inventory.scratch)
        assert "guest 110 (app-vm)" in str(refused.value) and "net1" in str(refused.value)
        assert "on node pve2" in str(refused.value) and "move that NIC" in str(refused.value)
        check_drill_bridge(pve, "pve3", inventory.scratch)   # guest 110 is not on pve3's bridge
    finally:
        guest.config.pop("net1")


@pytest.mark.parametrize("vmid", [9899, 10000])
def test_a_production_guest_just_outside_the_scratch_range_on_the_bridge_is_found(double, inventory, pve, vmid):
    """Issue 20 §5: VMID first-1 and last+1 are production guests; their NIC on the drill bridge
    is found (an off-by-one in the preflight's or the check's range would pass them over)."""
    first, last = inventory.scratch.vmid_range
    assert vmid in (first - 1, last + 1)
    nic = f"virtio=BC:24:11:AA:BB:{vmid % 100:02d},bridge={BRIDGE}"
    double.pve_state.add_guest(PveGuest(vmid, "qemu", {"name": f"edge-{vmid}", "memory": "512", "net0": nic}),
                               node="pve2")
    try:
        with pytest.raises(PlanError) as refused:
            check_drill_bridge(pve, "pve2", inventory.scratch)
        assert f"guest {vmid} (edge-{vmid}), outside the scratch range {first}-{last}, has net0 on it" in \
            str(refused.value)
    finally:
        double.pve_state.remove_guest(vmid, purge=False)
    check_drill_bridge(pve, "pve2", inventory.scratch)


def test_a_token_that_cannot_see_every_guest_cannot_prove_isolation(double, inventory):
    blind_acl = [entry for entry in homelab.pve_drill_acl() if entry.path != "/"] + [
        acl("/", "Sys.Audit"), acl(f"/pool/{homelab.DRILL_POOL}", "VM.Audit")]
    token = _info(double.pve_tokens.create("restoredrill@pve!blind", blind_acl, double.base_dir / "secrets"))
    blind = PveClient(ApiChokePoint(Endpoint(double.pve_url, token.token_id, token.secret(), double.fingerprint,
                                             True, "PVE")), ScratchGuard(9900, 9999, "restoredrill", "restoredrill"))
    with pytest.raises(PlanError, match="cannot be proven isolated.*VM.Audit on /vms"):
        check_drill_bridge(blind, "pve2", inventory.scratch)


# --- the copy restored from (issue 23) ------------------------------------------------------
def test_an_offsite_restore_over_the_egress_budget_is_never_started(double, inventory, pve, tmp_path):
    """restore_from offsite: NotRun before any VMID is claimed; rotate: the local copy instead,
    saying why. The ledger is the real state.db table."""
    from restoredrill.checks.restore_copy import copies_of
    from restoredrill.fixtures.pbs_copy import EgressLedger, NotRun
    copies = copies_of(inventory, lambda _target: 1024)
    offsite = copies["offsite"].__class__(**{**copies["offsite"].__dict__, "s3_target": "lab-s3",
                                             "egress_budget": 1024})
    copies["offsite"] = offsite
    ledger = EgressLedger(tmp_path / "state.db")
    vm = app_guest(inventory, "app-vm")
    explicit = ScratchGuest(vm.model_copy(update={"restore_from": "offsite"}), inventory, pve, "E1",
                            lambda _t: None, copy=offsite, ledger=ledger, copies=copies)
    with pytest.raises(NotRun, match=r"would pass the egress budget of S3 target lab-s3 \(1,024 bytes"):
        explicit.preflight()
    assert explicit.vmid is None and explicit.evidence["copy"] == "offsite"
    said = []
    rotating = ScratchGuest(vm, inventory, pve, "E2", said.append, copy=offsite, ledger=ledger, copies=copies)
    facts = rotating.preflight()
    assert rotating.copy.copy == "local" and rotating.evidence["copy"] == "local"
    assert facts["snapshot"]["volid"].startswith(f"{copies['local'].pve_storage}:backup/vm/110/")
    assert "egress budget" in rotating.evidence["offsite_not_restored"] and "local copy instead" in said[0]
    assert "offsite" not in rotating.evidence["pve_storage"]
    generous = offsite.__class__(**{**offsite.__dict__, "egress_budget": 1 << 30})
    taken = ScratchGuest(vm, inventory, pve, "E3", said.append, copy=generous, ledger=ledger,
                         copies={**copies, "offsite": generous})
    facts = taken.preflight()
    assert taken.evidence["pve_storage"] == "pbs-offsite" and taken.evidence["namespace"] == "homelab"
    assert taken.evidence["egress_taken_bytes"] == int(facts["snapshot"]["size"]) > 0
