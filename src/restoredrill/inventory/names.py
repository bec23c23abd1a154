"""Name references the lint or a drill used to find only at run time, checked at load.

Every name that points into another section (a guest a storage box requires, the guest
Kuma runs in, a dataset copy's ``borg:REPO`` / ``pbs:DATASTORE``, a guest's node) must name
something declared, with a did-you-mean; and ``access: pct`` needs the node's SSH.
"""
from __future__ import annotations

from collections.abc import Iterator

from restoredrill.inventory.model import Inventory
from restoredrill.inventory.suggest import unknown_name

Problem = tuple[tuple[str | int, ...], str]


def name_reference_errors(inv: Inventory) -> Iterator[Problem]:
    yield from _requires(inv)
    yield from _nodes_and_pct(inv)
    yield from _monitoring(inv)
    yield from _datasets(inv)


def _requires(inv: Inventory) -> Iterator[Problem]:
    guests = {guest.name for guest in inv.guests}
    for section, items in (("s3", inv.offsite.s3), ("storage_boxes", inv.offsite.storage_boxes)):
        for i, item in enumerate(items):
            for j, name in enumerate(item.requires):
                if name not in guests:
                    yield ("offsite", section, i, "requires", j), unknown_name("guest", name, guests, "guests")


def _nodes_and_pct(inv: Inventory) -> Iterator[Problem]:
    pve = inv.proxmox.pve
    nodes = set(pve.nodes) if pve else set()
    for i, guest in enumerate(inv.guests):
        loc = ("guests", i)
        if guest.node and nodes and guest.node not in nodes:
            yield (*loc, "node"), unknown_name("node", guest.node, nodes, "proxmox.pve.nodes")
        yield from _access_reaches(guest, loc)
        if guest.access != "pct":
            continue
        if guest.type != "lxc":
            yield (*loc, "access"), (f"guest {guest.name}: access pct runs `pct exec`, which reaches containers "
                                     f"only, and this guest is a {guest.type} VM: use access agent (or ssh)")
        if pve is None or not pve.node_ssh:
            yield (*loc, "access"), (f"guest {guest.name}: access pct runs `pct exec` over SSH on the node that "
                                     f"holds the scratch container, but proxmox.pve.node_ssh is not set: add it "
                                     f"(one endpoint, or one per node), or use access agent")


def _access_reaches(guest, loc) -> Iterator[Problem]:
    """A restore drill whose checks could never reach the scratch guest is refused here, before a
    restore is spent on it: a container has no QEMU guest agent (PVE's agent calls answer for VMs
    only, qemu-server ``PVE/API2/Qemu/Agent.pm``), and ``access: none`` runs nothing inside."""
    if guest.strategy != "pbs":
        return
    if guest.access == "agent" and guest.type == "lxc":
        yield (*loc, "access"), (f"guest {guest.name}: a container has no QEMU guest agent, so access agent (the "
                                 f"default) cannot reach its scratch copy: set access: pct (checks run with `pct "
                                 f"exec` over proxmox.pve.node_ssh), ssh (scratch.guest_ssh and the guest's "
                                 f"address), or none (no check inside: the drill proves the restore and the boot)")
    if guest.access == "none":
        inside = [check.name for check in guest.health if not (check.kind == "http" and check.from_runner)]
        if inside:
            yield (*loc, "health"), (f"guest {guest.name}: access none runs nothing inside the guest, but "
                                     f"{len(inside)} health check(s) must: {', '.join(inside[:5])}; set access "
                                     f"pct, agent or ssh, or keep only http checks with from_runner: true")


def _monitoring(inv: Inventory) -> Iterator[Problem]:
    kuma = inv.monitoring.uptime_kuma
    if kuma is None:
        return
    loc = ("monitoring", "uptime_kuma")
    guests = {guest.name for guest in inv.guests}
    if kuma.runs_in is not None and kuma.runs_in not in guests:
        yield (*loc, "runs_in"), unknown_name("guest", kuma.runs_in, guests, "guests")
    repos = {repo.name for repo in inv.borg.repositories}
    if kuma.data is not None and kuma.data.borg not in repos:
        yield (*loc, "data", "borg"), unknown_name("Borg repository", kuma.data.borg, repos, "borg.repositories")


def _datasets(inv: Inventory) -> Iterator[Problem]:
    known = {"borg": ({r.name for r in inv.borg.repositories}, "Borg repository", "borg.repositories"),
             "pbs": ({s.name for s in inv.proxmox.pbs.datastores} if inv.proxmox.pbs else set(), "PBS datastore",
                     "proxmox.pbs.datastores")}
    for i, dataset in enumerate(inv.datasets):
        for j, copy in enumerate(dataset.copies):
            kind, sep, name = copy.where.partition(":")
            if sep and kind in known and name not in known[kind][0]:
                names, what, where = known[kind]
                yield ("datasets", i, "copies", j, "where"), unknown_name(what, name, names, where) + \
                    f" (a copy written {kind}:NAME refers to {where})"
