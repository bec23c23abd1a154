"""The privileges the drills need for one inventory: the README's "Token privileges" table
(``lab/proxmox/homelab.py`` holds the lab's copy; tests/integration/test_privileges_table.py
keeps table and lab equal), with the inventory's own pool, storages and bridge. Pure.

Rows that depend on what a backup holds (``Mapping.Use`` on ``/mapping/pci/<id>`` for a VM
with a mapped device) cannot be known before the restore; the restore drill names them.
"""
from __future__ import annotations

from dataclasses import dataclass

from restoredrill.inventory.model import Inventory

GUEST_PRIVS = ("VM.Allocate", "VM.PowerMgmt", "VM.Config.Disk", "VM.Config.Network", "VM.Config.Options",
               "VM.Config.HWType", "Pool.Audit")


@dataclass(frozen=True)
class Needed:
    service: str      # "PVE" or "PBS"
    path: str
    privilege: str
    why: str          # the drill and call that need it


def pve_privileges(inv: Inventory, release: tuple[int, int] = (9, 0)) -> list[Needed]:
    """PVE drill token; ``release``: PVE 8 has no VM.GuestAgent.*, every agent call needs VM.Monitor."""
    scratch = inv.scratch
    rows = [Needed("PVE", "/", "Sys.Audit", "restore: the drill bridge; audit: not-backed-up"),
            Needed("PVE", "/", "VM.Audit", "audit: /cluster/resources"),
            Needed("PVE", "/vms", "VM.Backup", "restore, audit: list backups, extractconfig")]
    rows += scratch_pool_privileges(release, scratch.pool)
    rows.append(Needed("PVE", f"/storage/{scratch.storage}", "Datastore.AllocateSpace", "restore: scratch disks"))
    stores = inv.proxmox.pbs.datastores if inv.proxmox.pbs else []
    rows += [Needed("PVE", f"/storage/{store.pve_storage}", "Datastore.AllocateSpace",
                    f"restore (from the {store.role} copy), audit: backups of datastore {store.name}")
             for store in stores if store.pve_storage]
    rows.append(Needed("PVE", f"/sdn/zones/localnetwork/{scratch.bridge}", "SDN.Use", "restore: NICs on the "
                       "drill bridge"))
    if inv.notifications.pve_targets:
        rows.append(Needed("PVE", "/mapping/notifications", "Mapping.Audit", "audit: notification targets"))
    return rows


def scratch_pool_privileges(release: tuple[int, int] = (9, 0), pool: str = "POOL") -> list[Needed]:
    """The scratch guests' privileges on the drill pool; qemu-server before 9.0.3 (PVE 8) has no
    VM.GuestAgent.* and checks every agent command with VM.Monitor."""
    agent = "VM.GuestAgent.Unrestricted" if release >= (9, 0) else "VM.Monitor"
    return [Needed("PVE", f"/pool/{pool}", priv, "restore: the scratch guest") for priv in (*GUEST_PRIVS, agent)]


def pbs_privileges(inv: Inventory) -> list[Needed]:
    """The PBS token: read-only audit plus Datastore.Modify for the prune dry-run cross-check."""
    rows = [Needed("PBS", "/datastore", "Datastore.Audit", "audit: status, snapshots, jobs"),
            Needed("PBS", "/datastore", "Datastore.Read", "offsite: manifest downloads"),
            Needed("PBS", "/remote", "Remote.Audit", "audit: sync jobs"),
            Needed("PBS", "/system/notifications", "Sys.Audit", "audit: notification targets")]
    if inv.proxmox.pbs and any(store.retention for store in inv.proxmox.pbs.datastores):
        rows.append(Needed("PBS", "/datastore", "Datastore.Modify", "audit: the retention cross-check "
                           "(prune dry-run)"))
    return rows


def missing(needed: list[Needed], granted: dict[str, dict[str, object]]) -> list[Needed]:
    """The rows whose privilege the token does not hold on its path (``granted``: path ->
    privilege -> propagate, as /access/permissions answers per path)."""
    return [row for row in needed if row.privilege not in (granted.get(row.path) or {})]
