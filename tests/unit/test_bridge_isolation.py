"""checks.bridge: the drill bridge's isolation, from what PVE's network route and the node's
guest configs say (issue 13 point 12)."""
from __future__ import annotations

from restoredrill.checks.bridge import bridge_problems, guest_nics_on, isolation_refusals
from restoredrill.lab.proxmox.cluster import interface_entry

SCRATCH = (9900, 9999)


def test_an_empty_bridge_is_isolated():
    assert isolation_refusals("vmbr-drill", "pve2", interface_entry("bridge"), [], SCRATCH) == []


def test_each_uplink_address_and_gateway_is_named():
    cases = {
        "bridge_ports": interface_entry("bridge", bridge_ports="eno1"),
        "ovs_ports": interface_entry("OVSBridge", ovs_ports="eno2"),
        "address6": interface_entry("bridge", families=("inet", "inet6"), address6="fd00::1", netmask6="64"),
        "address": interface_entry("bridge", address="10.0.0.1/24"),
        "gateway6": {"type": "bridge", "gateway6": "fd00::fe"},
        "method6": {"type": "bridge", "method6": "auto"},
    }
    for key, config in cases.items():
        [refusal] = isolation_refusals("vmbr-drill", "pve2", config, [], SCRATCH)
        assert f"({key})" in refusal, (key, refusal)
        assert "vmbr-drill on node pve2" in refusal and "ifreload" in refusal


def test_the_network_entry_has_the_keys_pve_reads():
    six = interface_entry("bridge", address6="fd00::1", netmask6="64", gateway6="fd00::fe")
    assert (six["cidr6"], six["method6"]) == ("fd00::1/64", "static")
    assert interface_entry("bridge", address="10.0.0.1")["cidr"] == "10.0.0.1/32"
    assert interface_entry("OVSBridge", ovs_ports="eno2")["ovs_type"] == "OVSBridge"
    assert bridge_problems("b", "n", interface_entry("bridge")) == []


def test_a_guest_outside_the_scratch_range_on_the_bridge_is_refused():
    guests = [(110, "app-vm", {"net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0",
                               "net1": "virtio=BC:24:11:00:00:02,bridge=vmbr-drill,firewall=1"}),
              (9901, "scratch", {"net0": "virtio=BC:24:11:00:00:03,bridge=vmbr-drill"})]
    [refusal] = isolation_refusals("vmbr-drill", "pve2", interface_entry("bridge"), guests, SCRATCH)
    assert "guest 110 (app-vm)" in refusal and "net1" in refusal and "node pve2" in refusal
    assert "move that NIC" in refusal
    assert guest_nics_on("vmbr-drill", {"net0": "name=eth0,bridge=vmbr-drill2"}) == []


def test_a_token_that_cannot_see_every_guest_is_refused_not_passed():
    [refusal] = isolation_refusals("vmbr-drill", "pve1", interface_entry("bridge"), [], SCRATCH,
                                   visible_to_token=False)
    assert "cannot be proven isolated" in refusal and "VM.Audit on /vms" in refusal


def test_guests_just_outside_the_scratch_range_are_production():
    """Issue 20 §5: first-1 and last+1 are checked, first and last are the harness's own."""
    nic = {"net0": "virtio=BC:24:11:00:00:04,bridge=vmbr-drill"}
    guests = [(vmid, f"g{vmid}", nic) for vmid in (9899, 9900, 9999, 10000)]
    refusals = isolation_refusals("vmbr-drill", "pve2", interface_entry("bridge"), guests, SCRATCH)
    assert [r.split("guest ", 1)[1].split(" ", 1)[0] for r in refusals] == ["9899", "10000"]
