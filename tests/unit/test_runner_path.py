"""The runner's path to a scratch guest, judged from real ``ip -j`` output (iproute2 6.1):
routes, the leg, its attachment, the answering MAC; the ARP frames; the ssh config."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from restoredrill.clients import arp_probe
from restoredrill.clients.guest_shell import GuestUnreachable, ssh_backend, write_ssh_config
from restoredrill.clients.runner_path import (Leg, PeerRef, RunnerPathError, attachment_problem, find_leg,
                                              guest_ip, guest_macs, mac_problem, neighbour_mac, nsid_name,
                                              peer_ref, route_problems)

# `ip -j -n RUN addr` of the lab's runner namespace (lo and the leg eth0)
ADDRS = [
    {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"], "address": "00:00:00:00:00:00",
     "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}]},
    {"ifindex": 2, "link_index": 3, "ifname": "eth0", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
     "address": "16:d3:cb:ef:1e:4a", "link_netnsid": 0,
     "addr_info": [{"family": "inet", "local": "10.199.0.2", "prefixlen": 24, "scope": "global"},
                   {"family": "inet6", "local": "fe80::14d3:cbff:feef:1e4a", "prefixlen": 64, "scope": "link"}]},
]
# `ip -j -n RUN route show table all`: IPv4 and IPv6, main and local tables
ROUTES = [
    {"dst": "10.199.0.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link", "prefsrc": "10.199.0.2"},
    {"type": "local", "dst": "10.199.0.2", "dev": "eth0", "table": "local", "protocol": "kernel"},
    {"type": "broadcast", "dst": "10.199.0.255", "dev": "eth0", "table": "local", "protocol": "kernel"},
    {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local", "protocol": "kernel"},
    {"type": "local", "dst": "127.0.0.1", "dev": "lo", "table": "local", "protocol": "kernel"},
    {"type": "broadcast", "dst": "127.255.255.255", "dev": "lo", "table": "local", "protocol": "kernel"},
    {"dst": "fe80::/64", "dev": "eth0", "protocol": "kernel", "metric": 256},
    {"type": "local", "dst": "::1", "dev": "lo", "table": "local", "protocol": "kernel", "metric": 0},
    {"type": "multicast", "dst": "ff00::/8", "dev": "eth0", "table": "local", "protocol": "kernel"},
]
LEG_LINK = {"ifindex": 2, "link_index": 3, "ifname": "eth0", "address": "16:d3:cb:ef:1e:4a", "link_netnsid": 0,
            "linkinfo": {"info_kind": "veth"}}
PEER_LINKS = [
    {"ifindex": 1, "ifname": "lo"},
    {"ifindex": 2, "ifname": "vmbr-drill", "linkinfo": {"info_kind": "bridge"}},
    {"ifindex": 3, "link_index": 2, "ifname": "v1-ab12", "master": "vmbr-drill", "link_netnsid": 0,
     "linkinfo": {"info_kind": "veth", "info_slave_kind": "bridge"}},
]


def leg() -> Leg:
    return find_leg(ADDRS, "10.199.0.110", "run")


def test_the_leg_is_the_interface_holding_the_guests_subnet():
    found = leg()
    assert (found.device, found.ifindex, found.address, found.mac) == ("eth0", 2, "10.199.0.2/24",
                                                                       "16:d3:cb:ef:1e:4a")
    assert [str(s) for s in found.subnets] == ["10.199.0.0/24"]


@pytest.mark.parametrize("address,words", [
    ("192.168.1.10", ["not inside any subnet", "eth0 10.199.0.2/24"]),
    ("10.199.0.2", ["itself holds the guest's address"]),
])
def test_no_leg_for_an_address_outside_or_of_the_runner(address, words):
    with pytest.raises(RunnerPathError) as info:
        find_leg(ADDRS, address, "run")
    assert all(word in str(info.value) for word in words)


def test_two_interfaces_in_the_guests_subnet_are_refused():
    second = {"ifindex": 4, "ifname": "eth1", "flags": ["UP"], "address": "02:00:00:00:00:09",
              "addr_info": [{"family": "inet", "local": "10.199.0.3", "prefixlen": 16}]}
    with pytest.raises(RunnerPathError, match="eth0, eth1"):
        find_leg([*ADDRS, second], "10.199.0.110", "run")


def test_the_labs_routes_are_all_allowed():
    assert route_problems(ROUTES, leg()) == []


@pytest.mark.parametrize("extra,shown", [
    ({"dst": "default", "gateway": "10.199.0.1", "dev": "eth0", "flags": ["onlink"]},
     "default via 10.199.0.1 dev eth0 table main"),
    ({"dst": "192.0.2.0/24", "dev": "dummy0", "protocol": "kernel", "scope": "link"},
     "192.0.2.0/24 dev dummy0 table main"),
    ({"dst": "198.51.100.0/24", "gateway": "10.199.0.1", "dev": "eth0", "table": "100"},
     "198.51.100.0/24 via 10.199.0.1 dev eth0 table 100"),
    ({"dst": "10.0.0.0/8", "dev": "eth0", "scope": "link"}, "10.0.0.0/8 dev eth0 table main"),
    ({"dst": "2001:db8::/64", "dev": "eth0", "protocol": "kernel"}, "2001:db8::/64 dev eth0 table main"),
    ({"dst": "default", "nexthops": [{"gateway": "10.199.0.1", "dev": "eth0"}]},
     "default nexthops via 10.199.0.1 dev eth0 table main"),
    ({"type": "multicast", "dst": "ff00::/8", "dev": "dummy0", "table": "local"},
     "multicast ff00::/8 dev dummy0 table local"),
])
def test_every_route_off_the_drill_subnet_is_named(extra, shown):
    assert route_problems([*ROUTES, extra], leg()) == [shown]


@pytest.mark.parametrize("extra,shown", [
    ({"dst": "10.199.0.0/24", "gateway": "10.199.0.1", "dev": "eth0", "metric": 50},
     "10.199.0.0/24 via 10.199.0.1 dev eth0 table main"),
    ({"dst": "10.199.0.0/24", "gateway": "10.199.0.1", "dev": "eth0", "table": "100"},
     "10.199.0.0/24 via 10.199.0.1 dev eth0 table 100"),
    ({"dst": "10.199.0.0/24", "nexthops": [{"gateway": "10.199.0.1", "dev": "eth0"}]},
     "10.199.0.0/24 nexthops via 10.199.0.1 dev eth0 table main"),
    ({"dst": "10.199.0.0/24", "nhid": 7, "dev": "eth0"}, "10.199.0.0/24 dev eth0 table main"),
    ({"dst": "10.199.0.110", "gateway": "10.199.0.1", "dev": "eth0"},
     "10.199.0.110 via 10.199.0.1 dev eth0 table main"),
])
def test_a_route_inside_the_drill_subnet_via_a_gateway_is_named(extra, shown):
    """Issue 20 §5: the leg's own subnet as destination is not enough: via a gateway (or a
    nexthop object) the packets for the scratch guest go to another machine. (A destination
    inside the subnet other than the subnet itself is refused anyway: only the subnet is allowed.)"""
    assert route_problems([*ROUTES, extra], leg()) == [shown]


@pytest.mark.parametrize("kind", ["unreachable", "blackhole", "prohibit", "local", "broadcast", "throw"])
def test_routes_that_send_nothing_to_another_host_are_allowed(kind):
    assert route_problems([*ROUTES, {"type": kind, "dst": "default", "table": "200"}], leg()) == []


def test_a_veth_leg_whose_peer_is_a_port_of_the_drill_bridge_is_attached():
    ref = peer_ref(LEG_LINK)
    assert ref == PeerRef(0, 3, "veth")
    assert nsid_name([{"nsid": 0, "name": "rdl1-ab12-lab"}], 0) == "rdl1-ab12-lab"
    assert nsid_name([{"nsid": 0}], 0) is None            # the initial namespace has no name
    assert attachment_problem(PEER_LINKS, ref, leg(), "vmbr-drill", "namespace lab") is None


def test_a_leg_on_another_bridge_or_none_is_refused():
    ref = peer_ref(LEG_LINK)
    other = [{**link, "master": "vmbr0"} if link["ifindex"] == 3 else link for link in PEER_LINKS]
    assert "attached to vmbr0, not to the drill bridge vmbr-drill" in \
        attachment_problem(other, ref, leg(), "vmbr-drill", "the initial namespace")
    loose = [{k: v for k, v in link.items() if k != "master"} for link in PEER_LINKS]
    assert "attached to no bridge" in attachment_problem(loose, ref, leg(), "vmbr-drill", "ns")
    assert "was not found" in attachment_problem(PEER_LINKS[:2], ref, leg(), "vmbr-drill", "ns")


def test_a_peer_that_pairs_with_another_interface_or_a_physical_leg_is_refused():
    ref = peer_ref(LEG_LINK)
    wrong = [{**link, "link_index": 7} if link["ifindex"] == 3 else link for link in PEER_LINKS]
    assert "pairs with ifindex 7" in attachment_problem(wrong, ref, leg(), "vmbr-drill", "ns")
    physical = peer_ref({"ifindex": 2, "ifname": "eth0"})
    assert "physical link" in attachment_problem(PEER_LINKS, physical, leg(), "vmbr-drill", "ns")


def test_a_macvlan_leg_on_the_bridge_itself_is_attached():
    ref = peer_ref({"ifindex": 2, "link_index": 2, "link_netnsid": 0, "linkinfo": {"info_kind": "macvlan"}})
    assert attachment_problem(PEER_LINKS, ref, leg(), "vmbr-drill", "ns") is None


def test_guest_macs_come_from_the_netn_lines_on_the_drill_bridge():
    config = {"net0": "virtio=BC:24:11:5E:A0:10,bridge=vmbr-drill", "net1": "e1000=BC:24:11:00:00:02,bridge=vmbr0",
              "net2": "name=eth1,bridge=vmbr-drill,hwaddr=BC:24:11:AA:BB:CC,ip=dhcp,type=veth", "name": "x"}
    assert guest_macs(config, "vmbr-drill") == ["bc:24:11:5e:a0:10", "bc:24:11:aa:bb:cc"]
    assert guest_macs({"net0": "virtio,bridge=vmbr-drill"}, "vmbr-drill") == []
    assert guest_ip("10.199.0.110/24") == "10.199.0.110"


def test_the_neighbour_entry_gives_the_mac_once_resolved():
    assert neighbour_mac([{"dst": "10.199.0.110", "dev": "eth0", "state": ["INCOMPLETE"]}], "10.199.0.110") is None
    assert neighbour_mac([{"dst": "10.199.0.110", "dev": "eth0", "lladdr": "BC:24:11:5E:A0:10",
                           "state": ["REACHABLE"]}], "10.199.0.110") == "bc:24:11:5e:a0:10"


def test_only_the_scratch_guests_mac_may_answer():
    mine = ["bc:24:11:5e:a0:10"]
    assert mac_problem("10.199.0.110", "bc:24:11:5e:a0:10", ["BC:24:11:5E:A0:10"], mine, "vmbr-drill") is None
    other = mac_problem("10.199.0.110", "02:00:00:00:00:01", [], mine, "vmbr-drill")
    assert other.startswith("the address 10.199.0.110 answers from MAC 02:00:00:00:00:01, the scratch guest's "
                            "NIC is bc:24:11:5e:a0:10: another machine holds this address on the drill bridge")
    both = mac_problem("10.199.0.110", "bc:24:11:5e:a0:10", ["bc:24:11:5e:a0:10", "02:00:00:00:00:01"], mine,
                       "vmbr-drill")
    assert "answers from MAC 02:00:00:00:00:01" in both


def test_arp_request_and_reply_frames():
    frame = arp_probe.request("16:d3:cb:ef:1e:4a", "10.199.0.2", "10.199.0.110")
    assert len(frame) == 42 and frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x06"
    assert frame[38:42] == socket.inet_aton("10.199.0.110")
    assert arp_probe.replier(frame, "10.199.0.110") is None          # a request, not a reply
    reply = (b"\x16\xd3\xcb\xef\x1e\x4a" + bytes.fromhex("bc24115ea010") + b"\x08\x06" +
             arp_probe.ARP.pack(1, 0x0800, 6, 4, 2, bytes.fromhex("bc24115ea010"),
                                socket.inet_aton("10.199.0.110"), bytes.fromhex("16d3cbef1e4a"),
                                socket.inet_aton("10.199.0.2")))
    assert arp_probe.replier(reply, "10.199.0.110") == "bc:24:11:5e:a0:10"
    assert arp_probe.replier(reply, "10.199.0.111") is None


def test_ssh_never_goes_direct(tmp_path: Path):
    kwargs = {"address": "10.199.0.110", "user": "root", "key_file": "/k", "known_hosts_file": "/kh"}
    with pytest.raises(GuestUnreachable, match="scratch.runner_netns"):
        write_ssh_config(tmp_path / "a", runner_netns=None, **kwargs)
    config = write_ssh_config(tmp_path / "b", runner_netns="rdl1-ab12-run", **kwargs).read_text()
    assert "  ProxyCommand ip netns exec rdl1-ab12-run " in config and "ControlPath none" in config
    direct = tmp_path / "direct"
    direct.write_text("\n".join(line for line in config.splitlines() if "ProxyCommand" not in line))
    with pytest.raises(GuestUnreachable, match="scratch.runner_netns"):
        ssh_backend(direct)
    assert ssh_backend(tmp_path / "b").host.name == "drill-guest"
