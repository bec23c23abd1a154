"""Is the drill bridge isolated on the restore node? Pure logic over what PVE answers.

Inputs: ``GET /nodes/{node}/network/{bridge}`` (pve-manager PVE/API2/Network.pm
``network_config``: the node's /etc/network/interfaces entry as pve-common
src/PVE/Network/Interfaces.pm ``__read_etc_network_interfaces`` reads it), and the configs
of the guests on that node. A bridge is isolated when it has no uplink (``bridge_ports``
of a Linux bridge, ``ovs_ports`` of an OVS bridge), no address of either family
(``address``/``cidr``, ``address6``/``cidr6``, or an address the node obtains by
``method``/``method6`` dhcp or auto), no gateway (``gateway``/``gateway6``), and no guest
outside the scratch range has a NIC on it (``netN: ...,bridge=<bridge>``): a production
guest there would meet the scratch copy, which keeps production's addresses.

Guests the drill token cannot see are not in /cluster/resources (it lists only guests with
VM.Audit): then nothing can be proven and the check refuses (``visible_to_token`` False)
rather than pass.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

FIX = ("remove it in the node's /etc/network/interfaces (Datacenter -> node -> System -> Network), "
       "apply the configuration (ifreload -a), or set scratch.bridge to a bridge without uplink and address")


def bridge_problems(bridge: str, node: str, config: dict) -> list[str]:
    """What makes the drill bridge not isolated, one text each (empty: isolated)."""
    found = []
    for key, what in (("bridge_ports", "uplink port(s)"), ("ovs_ports", "Open vSwitch port(s)"),
                      ("gateway", "IPv4 gateway"), ("gateway6", "IPv6 gateway")):
        if config.get(key):
            found.append(f"{what} {config[key]} ({key})")
    for suffix, family in (("", "IPv4"), ("6", "IPv6")):
        address = config.get(f"cidr{suffix}") or config.get(f"address{suffix}")
        if address:
            found.append(f"{family} address {address} (address{suffix})")
        elif config.get(f"method{suffix}") in ("dhcp", "auto"):
            found.append(f"{family} address by {config[f'method{suffix}']} (method{suffix})")
    return found


def guest_nics_on(bridge: str, config: dict) -> list[str]:
    """The guest's ``netN`` keys whose ``bridge=`` is ``bridge``."""
    found = []
    for key, value in sorted(config.items()):
        if re.fullmatch(r"net\d+", key) and str(value):
            parts = dict(part.split("=", 1) for part in str(value).split(",") if "=" in part)
            if parts.get("bridge") == bridge:
                found.append(key)
    return found


def isolation_refusals(bridge: str, node: str, config: dict, guests: Iterable[tuple[int, str, dict]],
                       scratch: tuple[int, int], *, visible_to_token: bool = True) -> list[str]:
    """Refusals for restoring onto ``bridge`` on ``node``; ``guests`` are (vmid, name, config) of
    the node's guests. Each refusal names the bridge, the node and the fix."""
    where = f"the drill bridge {bridge} on node {node}"
    refusals = []
    problems = bridge_problems(bridge, node, config)
    if problems:
        refusals.append(f"{where} is not isolated: it has {', '.join(problems)}; {FIX}")
    first, last = scratch
    for vmid, name, guest_config in guests:
        if first <= int(vmid) <= last:
            continue
        nics = guest_nics_on(bridge, guest_config)
        if nics:
            refusals.append(f"{where} is not isolated: guest {vmid} ({name}), outside the scratch range "
                            f"{first}-{last}, has {', '.join(nics)} on it and would meet the scratch copy; "
                            f"move that NIC to another bridge, or set scratch.bridge to a bridge no other "
                            f"guest uses")
    if not visible_to_token:
        refusals.append(f"{where} cannot be proven isolated: the drill token may not see every guest (it "
                        f"needs VM.Audit on /vms, propagated) and a guest it cannot see may have a NIC on "
                        f"the bridge; grant VM.Audit on /vms to the drill token")
    return refusals
