"""Checks by address need the runner's namespace: an inventory problem, not a run-time surprise.

A restored guest keeps the address its OS configures, production's, and its copy of
production's SSH host key. ``access: ssh`` and ``from_runner`` HTTP checks contact that
address, so they are valid only with ``scratch.runner_netns`` (whose path the drill proves
to end on the drill bridge) and only against the guest's own address (the one whose
answering MAC the drill checks).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from urllib.parse import urlsplit

from restoredrill.inventory.model import Guest, Inventory

Problem = tuple[tuple[str | int, ...], str]

WHY = ("reaches the scratch guest by its address, which is production's too (the restored copy also carries "
       "production's SSH host key, so strict host-key checking would pass against production)")
FIX = ("set scratch.runner_netns to a network namespace whose only link is a leg on the drill bridge and which "
       "has no other route")


def runner_reach_errors(inv: Inventory) -> Iterator[Problem]:
    for i, guest in enumerate(inv.guests):
        yield from _guest(inv, guest, ("guests", i))


def _guest(inv: Inventory, guest: Guest, loc) -> Iterator[Problem]:
    netns = inv.scratch.runner_netns
    if guest.access == "ssh":
        if not netns:
            yield (*loc, "access"), (f"guest {guest.name}: access ssh {WHY}; {FIX}, or use access agent (VMs) "
                                     f"or pct (containers)")
        if inv.scratch.guest_ssh is None:
            yield (*loc, "access"), f"guest {guest.name}: access ssh needs scratch.guest_ssh (the drill's login)"
    address = _address(guest.address)
    by_address = guest.access == "ssh" or any(check.from_runner for check in guest.health)
    if by_address and guest.address and address is None:
        yield (*loc, "address"), (f"guest {guest.name}: address {guest.address!r} is not an IPv4 address "
                                  f"(a.b.c.d or a.b.c.d/nn; the drill checks who answers it by ARP)")
    if guest.access == "ssh" and not guest.address:
        yield (*loc, "address"), f"guest {guest.name}: access ssh needs the guest's address on the drill bridge"
    for j, check in enumerate(guest.health):
        if not check.from_runner:
            continue
        where = (*loc, "health", j, "from_runner")
        if check.kind != "http":
            yield where, f"check {check.name}: from_runner applies to http checks only (this one is {check.kind})"
            continue
        if not netns:
            yield where, (f"guest {guest.name}, check {check.name}: from_runner {WHY}; {FIX}, or check from "
                          f"inside the guest (from_runner: false)")
        host = urlsplit(check.target).hostname
        if address is None:
            yield where, f"guest {guest.name}, check {check.name}: from_runner needs the guest's address"
        elif host != address:
            yield (*loc, "health", j, "target"), (
                f"guest {guest.name}, check {check.name}: a from_runner URL must name the guest's own address "
                f"{address} (the one whose answering MAC the drill checks), not {host!r}")


def _address(value: str | None) -> str | None:
    if not value:
        return None
    try:
        interface = ipaddress.ip_interface(value.strip())
    except ValueError:
        return None
    return str(interface.ip) if interface.version == 4 else None
