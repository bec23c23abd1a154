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
from restoredrill.preflight.privileges import pbs_privileges, pve_privileges, scratch_pool_privileges


def guest_privs(pve_major: int) -> tuple[str, ...]:
    """The scratch pool's privileges (qemu-server before 9.0.3, PVE 8, checks every agent
    command with VM.Monitor): the preflight's table, the one source."""
    return tuple(row.privilege for row in scratch_pool_privileges((pve_major, 0)))


@dataclass(frozen=True)
class Role:
    name: str
    privs: tuple[str, ...]
    paths: tuple[str, ...]
    why: str


# One PVE role per group of privileges that share a path, in the order setup creates them;
# which privileges and paths come from the table (preflight/privileges.py), never restated here.
PVE_ROLES = (
    ("RestoreDrill.Audit", lambda path: path == "/", "audit the guests and nodes, read the drill bridge"),
    ("RestoreDrill.Backup", lambda path: path == "/vms", "list backups of every guest, extractconfig"),
    ("RestoreDrill.Scratch", lambda path: path.startswith("/pool/"),
     "restore, configure, start, run checks in and destroy scratch guests of the drill pool only"),
    ("RestoreDrill.Storage", lambda path: path.startswith("/storage/"),
     "the scratch storage and the PBS storages (the offsite one too: offsite restores read from it): "
     "restore onto, list and read backups"),
    ("RestoreDrill.Bridge", lambda path: path.startswith("/sdn/"), "NICs of scratch guests on the drill bridge only"),
    ("RestoreDrill.Notify", lambda path: path == "/mapping/notifications", "audit: the notification targets"),
)


def pve_roles(inv: Inventory, pve_major: int = 9, mappings: tuple[str, ...] = ()) -> list[Role]:
    """``mappings``: ACL paths such as ``/mapping/pci/nic-offload`` the backed-up guests use."""
    rows = pve_privileges(inv, (pve_major, 0))
    roles = []
    for name, on_path, why in PVE_ROLES:
        chosen = [row for row in rows if on_path(row.path)]
        if chosen:
            roles.append(Role(name, tuple(dict.fromkeys(row.privilege for row in chosen)),
                              tuple(dict.fromkeys(row.path for row in chosen)), why))
    unplaced = [row for row in rows if not any(on_path(row.path) for _, on_path, _ in PVE_ROLES)]
    if unplaced:        # a defect: a new row of the table needs a role here
        raise RuntimeError(f"privilege rows without a PVE role: {unplaced}")
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


PBS_WHY = {"/datastore": "snapshot lists, status, downloads", "/remote": "sync jobs through a remote",
           "/system/notifications": "notification targets"}


def pbs_roles(inv: Inventory) -> list[Role]:
    """Per ACL path of the table (preflight/privileges.py), the narrowest fixed PBS role that
    holds its privileges: the retention cross-check's prune dry-run needs Datastore.Modify,
    held only by DatastoreAdmin (pbs-api-types src/acl.rs)."""
    needed: dict[str, list[str]] = {}
    for row in pbs_privileges(inv):
        needed.setdefault(row.path, []).append(row.privilege)
    roles = []
    for path, privs in needed.items():
        fitting = [name for name, held in PBS_ROLE_PRIVS.items() if set(privs) <= set(held)]
        if not fitting:         # a defect: no fixed role holds a new row of the table
            raise RuntimeError(f"no fixed PBS role holds {privs} on {path}")
        name = min(fitting, key=lambda n: len(PBS_ROLE_PRIVS[n]))
        why = PBS_WHY.get(path, "") + ("; the prune dry-run (Datastore.Modify)" if "Datastore.Modify" in privs else "")
        roles.append(Role(name, PBS_ROLE_PRIVS[name], (path,), why))
    return roles


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
