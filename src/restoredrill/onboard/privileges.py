"""What each token of an inventory needs: the README's "Token privileges" table, with the
inventory's own names (pool, scratch storage, PBS storages, drill bridge, PCI/USB/dir
mappings) in place of the lab's. Pure.

PVE has custom roles (pve-access-control src/PVE/API2/Role.pm): one role per group of
privileges that share a path, so the token holds exactly the table's privileges. PBS has
only fixed roles (pbs-api-types src/acl.rs ``Role``): the narrowest that hold the table's
privileges, and what they give beyond it is named (``PBS_EXTRA``).
"""
from __future__ import annotations

from dataclasses import dataclass

from restoredrill.inventory.model import Inventory

AUDIT = ("Sys.Audit", "VM.Audit")
GUEST_PRIVS = ("VM.Allocate", "VM.PowerMgmt", "VM.Config.Disk", "VM.Config.Network", "VM.Config.Options",
               "VM.Config.HWType", "VM.GuestAgent.Unrestricted", "Pool.Audit")


def guest_privs(pve_major: int) -> tuple[str, ...]:
    """qemu-server before 9.0.3 (PVE 8) checks every agent command with VM.Monitor."""
    if pve_major >= 9:
        return GUEST_PRIVS
    return tuple(p for p in GUEST_PRIVS if not p.startswith("VM.GuestAgent.")) + ("VM.Monitor",)


@dataclass(frozen=True)
class Role:
    name: str
    privs: tuple[str, ...]
    paths: tuple[str, ...]
    why: str


def pve_roles(inv: Inventory, pve_major: int = 9, mappings: tuple[str, ...] = ()) -> list[Role]:
    """``mappings``: ACL paths such as ``/mapping/pci/nic-offload`` the backed-up guests use."""
    scratch = inv.scratch
    storages = [scratch.storage]
    if inv.proxmox.pbs:
        storages += [d.pve_storage for d in inv.proxmox.pbs.datastores if d.pve_storage]
    roles = [
        Role("RestoreDrill.Audit", AUDIT, ("/",), "audit the guests and nodes, read the drill bridge"),
        Role("RestoreDrill.Backup", ("VM.Backup",), ("/vms",), "list backups of every guest, extractconfig"),
        Role("RestoreDrill.Scratch", guest_privs(pve_major), (f"/pool/{scratch.pool}",),
             "restore, configure, start, run checks in and destroy scratch guests of the drill pool only"),
        Role("RestoreDrill.Storage", ("Datastore.AllocateSpace",),
             tuple(f"/storage/{s}" for s in dict.fromkeys(storages)),
             "the scratch storage and the PBS storages (the offsite one too: offsite restores read from it): "
             "restore onto, list and read backups"),
        Role("RestoreDrill.Bridge", ("SDN.Use",), (f"/sdn/zones/localnetwork/{scratch.bridge}",),
             "NICs of scratch guests on the drill bridge only"),
        Role("RestoreDrill.Notify", ("Mapping.Audit",), ("/mapping/notifications",),
             "audit: the notification targets"),
    ]
    if mappings:
        roles.append(Role("RestoreDrill.Mapping", ("Mapping.Use",), tuple(sorted(set(mappings))),
                          "the PCI/USB/directory mappings the backed-up guests use"))
    return roles


# pbs-api-types src/acl.rs: the fixed roles and what they hold
PBS_ROLE_PRIVS = {
    "DatastoreReader": ("Datastore.Audit", "Datastore.Read", "Datastore.Verify"),
    "DatastoreAdmin": ("Datastore.Audit", "Datastore.Modify", "Datastore.Read", "Datastore.Verify",
                       "Datastore.Backup", "Datastore.Prune"),
    "RemoteAudit": ("Remote.Audit",),
    "Audit": ("Sys.Audit", "Datastore.Audit"),
}
PBS_EXTRA = {"DatastoreReader": ("Datastore.Verify",),
             "DatastoreAdmin": ("Datastore.Verify", "Datastore.Backup", "Datastore.Prune"),
             "Audit": ("Datastore.Audit",)}


def pbs_roles(prune_dry_run: bool = True) -> list[Role]:
    """The PBS token the inventory names runs the audits, whose retention cross-check sends a
    prune dry-run: PBS demands Datastore.Modify for it, held only by DatastoreAdmin."""
    store = "DatastoreAdmin" if prune_dry_run else "DatastoreReader"
    return [Role(store, PBS_ROLE_PRIVS[store], ("/datastore",),
                 "snapshot lists, status, downloads" + ("; the prune dry-run (Datastore.Modify)"
                                                         if prune_dry_run else "")),
            Role("RemoteAudit", PBS_ROLE_PRIVS["RemoteAudit"], ("/remote",), "sync jobs through a remote"),
            Role("Audit", PBS_ROLE_PRIVS["Audit"], ("/system/notifications",), "notification targets")]


def mapping_paths(config: dict) -> list[str]:
    """ACL paths of the mappings a guest config uses (qemu-server ``check_hostpci_perm``,
    ``check_usb_perm``, ``check_dir_perm``): ``hostpciN: mapping=X``, ``usbN: mapping=X``,
    ``virtiofsN: X`` (dirid)."""
    found = []
    for key, value in config.items():
        if not isinstance(value, str):
            continue
        parts = dict(p.split("=", 1) if "=" in p else ("", p) for p in value.split(","))
        for prefix, kind in (("hostpci", "pci"), ("usb", "usb")):
            if key.startswith(prefix) and key[len(prefix):].isdigit() and parts.get("mapping"):
                found.append(f"/mapping/{kind}/{parts['mapping']}")
        if key.startswith("virtiofs") and key[8:].isdigit():
            dirid = parts.get("dirid") or parts.get("")
            if dirid:
                found.append(f"/mapping/dir/{dirid}")
    return found
