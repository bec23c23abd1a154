"""The runner's path to a scratch guest, judged from ``ip -j`` output (pure functions).

A restored guest keeps the address its OS configures, and its copy of the production
host key: from the runner's normal network that address is production, and strict
host-key checking passes there too. So every contact by address (``access: ssh``,
``from_runner`` HTTP checks) goes through ``scratch.runner_netns``, and before it the
harness proves from that namespace's own tables that

- the only interface holding the guest's subnet is the runner's leg, and the leg's
  peer is a port of the drill bridge (or, for a macvlan/ipvlan leg, the bridge itself);
- no route leaves the drill subnet: no default route, no gateway, no other subnet,
  in any table (``ip route show table all`` lists IPv4 and IPv6 of every table);
- the address answers from the scratch guest's MAC (its PVE config's netN), and from
  no other MAC (every ARP reply is collected, see ``clients.arp_probe``).

Everything here is pure: the caller (``clients.runner_check``) runs ``ip`` and hands
over the parsed JSON.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from restoredrill.clients.guest_shell import GuestUnreachable

NET_MAC_KEYS = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "macaddr", "hwaddr")
# Route types that never send a packet to another host on a link (iproute2 rtnl_rtntype_n2a).
INERT_TYPES = {"local", "broadcast", "unreachable", "blackhole", "prohibit", "throw", "nat"}
FIX = ("give scratch.runner_netns a network namespace whose only link is a leg on the drill bridge (a veth "
       "pair: one end in the namespace with an address in the guests' subnet, the other a port of the drill "
       "bridge) and no other route: no default route, no gateway, no other interface")


class RunnerPathError(GuestUnreachable):
    """The runner's path to the guest is not proven to end on the drill bridge: never retried."""


class MacMismatch(RunnerPathError):
    """Another machine answers for the guest's address on the drill bridge."""


class NoAnswer(GuestUnreachable):
    """Nothing answers ARP for the guest's address yet (it may still be booting): retried."""


@dataclass(frozen=True)
class Leg:
    """The runner's interface on the drill bridge, inside ``scratch.runner_netns``."""
    device: str
    ifindex: int
    address: str
    mac: str
    subnets: tuple[ipaddress.IPv4Network, ...]

    def describe(self) -> str:
        return f"{self.device} {self.address} ({', '.join(str(s) for s in self.subnets)})"


def normal_mac(mac: str) -> str:
    return mac.strip().lower()


def guest_ip(address: str) -> str:
    """``10.199.0.110/24`` -> ``10.199.0.110`` (the inventory may give a prefix)."""
    return str(ipaddress.ip_interface(address.strip()).ip)


def guest_macs(config: Mapping[str, object], bridge: str) -> list[str]:
    """MACs of the scratch guest's NICs on the drill bridge, from its PVE config:
    ``virtio=AA:..,bridge=B`` (qemu-server's ``print_net``) or ``name=eth0,bridge=B,hwaddr=AA:..``
    (pve-container's ``parse_lxc_network``)."""
    macs = []
    for key, value in sorted(config.items()):
        if not re.fullmatch(r"net\d+", key):
            continue
        parts = dict(item.split("=", 1) for item in str(value).split(",") if "=" in item)
        mac = next((parts[k] for k in NET_MAC_KEYS if k in parts), None)
        if mac and parts.get("bridge") == bridge:
            macs.append(normal_mac(mac))
    return macs


# --- the leg ---------------------------------------------------------------------------------
def find_leg(interfaces: list[dict], address: str, netns: str) -> Leg:
    """The one interface whose IPv4 subnet holds the guest's address (``ip -j addr``)."""
    target = ipaddress.IPv4Address(address)
    found = []
    for link in interfaces:
        if "LOOPBACK" in link.get("flags", []):
            continue
        for info in link.get("addr_info", []):
            if info.get("family") != "inet":
                continue
            net = ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False)
            if target in net:
                found.append((link, info))
    if not found:
        held = ", ".join(f"{link['ifname']} {info['local']}/{info['prefixlen']}" for link in interfaces
                         for info in link.get("addr_info", []) if info.get("family") == "inet") or "none"
        raise RunnerPathError(f"the guest's address {address} is not inside any subnet of the runner namespace "
                              f"{netns} (its addresses: {held}); put the runner's leg on the drill bridge in the "
                              f"guest's subnet, or correct the guest's address in the inventory")
    if len({link["ifname"] for link, _ in found}) > 1:
        names = ", ".join(sorted({link["ifname"] for link, _ in found}))
        raise RunnerPathError(f"more than one interface of the runner namespace {netns} holds the guest's subnet "
                              f"({names}): the path to {address} is ambiguous; {FIX}")
    link, info = found[0]
    if info["local"] == address:
        raise RunnerPathError(f"the runner namespace {netns} itself holds the guest's address {address} on "
                              f"{link['ifname']}; give the runner's leg another address")
    subnets = tuple(ipaddress.ip_network(f"{i['local']}/{i['prefixlen']}", strict=False)
                    for i in link.get("addr_info", []) if i.get("family") == "inet")
    return Leg(link["ifname"], int(link["ifindex"]), f"{info['local']}/{info['prefixlen']}",
               normal_mac(link.get("address", "")), subnets)


# --- routes ----------------------------------------------------------------------------------
def describe_route(route: Mapping) -> str:
    words = [route["type"]] if route.get("type") not in (None, "unicast") else []
    words.append(str(route.get("dst", "?")))
    if route.get("gateway"):
        words += ["via", str(route["gateway"])]
    if route.get("nexthops"):
        words.append("nexthops " + " ".join(f"via {h.get('gateway', '?')} dev {h.get('dev', '?')}"
                                            for h in route["nexthops"]))
    if route.get("dev"):
        words += ["dev", str(route["dev"])]
    words += ["table", str(route.get("table", "main"))]
    return " ".join(words)


def _allowed(route: Mapping, leg: Leg) -> bool:
    kind = route.get("type", "unicast")
    if kind in INERT_TYPES:
        return True
    if route.get("gateway") or route.get("nexthops") or route.get("nhid") or route.get("dev") != leg.device:
        return False
    if kind in ("multicast", "anycast"):
        return True                  # sent on the leg only, as the subnet's broadcasts are
    if kind != "unicast":
        return False
    try:
        dst = ipaddress.ip_network(str(route.get("dst")), strict=False)
    except ValueError:               # "default" and anything unknown
        return False
    if dst.version == 6:
        return dst == ipaddress.ip_network("fe80::/64")      # link-local: stays on the leg's link
    return dst in leg.subnets


def route_problems(routes: Iterable[Mapping], leg: Leg) -> list[str]:
    """Every route that could carry a packet anywhere but the leg's own subnet(s)."""
    return [describe_route(route) for route in routes if not _allowed(route, leg)]


# --- the leg's attachment --------------------------------------------------------------------
@dataclass(frozen=True)
class PeerRef:
    """Where the leg's other end is: ``link_netnsid`` (None: this namespace) and ``link_index``."""
    nsid: int | None
    ifindex: int | None
    kind: str | None


def peer_ref(link: Mapping) -> PeerRef:
    """From ``ip -j -d link show dev LEG``: a veth's peer, a macvlan's/ipvlan's parent."""
    kind = (link.get("linkinfo") or {}).get("info_kind")
    nsid = link.get("link_netnsid")
    index = link.get("link_index")
    return PeerRef(None if nsid is None else int(nsid), None if index is None else int(index), kind)


def nsid_name(list_id: Iterable[Mapping], nsid: int) -> str | None:
    """The named namespace behind an nsid (``ip -j -n NS netns list-id``); None: unnamed
    (the initial namespace, where a PVE node's vmbr-drill lives)."""
    return next((entry.get("name") for entry in list_id if int(entry.get("nsid", -1)) == nsid), None)


def attachment_problem(peer_links: Iterable[Mapping], ref: PeerRef, leg: Leg, bridge: str,
                       where: str) -> str | None:
    """None when the leg's peer is a port of ``bridge`` (veth) or the bridge itself (macvlan)."""
    if ref.kind not in ("veth", "macvlan", "ipvlan", "macvtap") or ref.ifindex is None:
        return (f"the runner's leg {leg.device} is a {ref.kind or 'physical'} link, not a veth or macvlan whose "
                f"other end can be checked to be on the drill bridge {bridge}")
    peer = next((link for link in peer_links if int(link.get("ifindex", -1)) == ref.ifindex), None)
    if peer is None:
        return f"the other end of the runner's leg {leg.device} (ifindex {ref.ifindex}) was not found in {where}"
    if ref.kind == "veth" and peer.get("link_index") is not None and int(peer["link_index"]) != leg.ifindex:
        return (f"interface {peer.get('ifname')} in {where} is not the other end of the runner's leg "
                f"{leg.device} (it pairs with ifindex {peer['link_index']})")
    if peer.get("ifname") == bridge or peer.get("master") == bridge:
        return None
    return (f"the other end of the runner's leg {leg.device} is {peer.get('ifname')} in {where}, attached to "
            f"{peer.get('master') or 'no bridge'}, not to the drill bridge {bridge}")


# --- the answering MAC -----------------------------------------------------------------------
def neighbour_mac(entries: Iterable[Mapping], address: str) -> str | None:
    """The MAC the runner's kernel sends to for ``address`` (``ip -j neigh show ADDR``);
    None while unresolved (INCOMPLETE/FAILED have no lladdr)."""
    for entry in entries:
        if entry.get("dst") == address and entry.get("lladdr"):
            return normal_mac(entry["lladdr"])
    return None


def mac_problem(address: str, kernel_mac: str | None, arp_macs: Iterable[str], expected: Iterable[str],
                bridge: str) -> str | None:
    """A paragraph when anything but the scratch guest's NIC answers for its address."""
    wanted = sorted({normal_mac(m) for m in expected})
    seen = {normal_mac(m) for m in arp_macs} | ({kernel_mac} if kernel_mac else set())
    strangers = sorted(seen - set(wanted))
    if not strangers:
        return None
    answered = ", ".join(strangers)
    where = (f" (the runner's neighbour table sends to {kernel_mac})" if kernel_mac in strangers
             and len(seen) > 1 else "")
    return (f"the address {address} answers from MAC {answered}, the scratch guest's NIC is "
            f"{', '.join(wanted) or 'unknown'}: another machine holds this address on the drill bridge "
            f"{bridge}{where}; no check ran against it. Find and remove that machine (`bridge fdb show br "
            f"{bridge}`), or a static neighbour entry in the runner namespace (`ip neigh`)")
