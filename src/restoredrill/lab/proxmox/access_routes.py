"""``GET /access/permissions``: the effective privileges of the calling token.

Manual equivalent: ``pveum user token permissions USER TOKEN --path /mapping/pci/gpu``.
pve-access-control src/PVE/API2/AccessControl.pm ``permissions``: with ``path`` the answer
is ``{path: {privilege: propagate}}`` (``RPCEnvironment::permissions``; an empty map when
nothing is granted, the path is still there), without it every path that holds something
(``get_effective_permissions``: the top-level paths, every ACL path, the pools' guests).
A VM path also carries the privileges of the guest's pools (``compile_acl_path``); a
token is never ``root@pam`` (its ACL decides; ``*`` here stands for every privilege).
Documented limit: the double answers only for the
calling token itself (``userid`` omitted or its own id); another user's answer needs a
user database it does not keep.

PBS has the same call (``proxmox-backup-manager user permissions AUTHID [--path PATH]``;
pbs-api.json ``GET /access/permissions``: ``auth-id``, ``path``, answering "Map of ACL path
to Map of privilege to propagate bit", a JSON boolean from the Rust server).
"""
from __future__ import annotations

from typing import Any

from restoredrill.lab.proxmox.permissions import ALL, ApiToken
from restoredrill.lab.proxmox.pve_service import PveService
from restoredrill.lab.proxmox.routing import STRING, Call, Router, declare, optional, param_error

# pve-access-control src/PVE/AccessControl.pm $privgroups (PVE 9), what ALL stands for
PVE_PRIVILEGES = (
    "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
    "Group.Allocate", "Mapping.Audit", "Mapping.Modify", "Mapping.Use", "Permissions.Modify",
    "Pool.Allocate", "Pool.Audit", "Realm.Allocate", "Realm.AllocateUser", "SDN.Allocate", "SDN.Audit",
    "SDN.Use", "Sys.AccessNetwork", "Sys.Audit", "Sys.Console", "Sys.Incoming", "Sys.Modify",
    "Sys.PowerMgmt", "Sys.Syslog", "User.Modify", "VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone",
    "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit", "VM.Config.Disk", "VM.Config.HWType",
    "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options", "VM.Console", "VM.GuestAgent.Audit",
    "VM.GuestAgent.FileRead", "VM.GuestAgent.FileSystemMgmt", "VM.GuestAgent.FileWrite",
    "VM.GuestAgent.Unrestricted", "VM.Migrate", "VM.PowerMgmt", "VM.Replicate", "VM.Snapshot",
    "VM.Snapshot.Rollback")
TOP_PATHS = ("/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms")


def add_access_routes(router: Router, service: PveService) -> None:
    @router.route("GET", "/access/permissions", declare(
        userid=optional(STRING), path=optional(STRING)))
    def permissions(call: Call) -> dict[str, Any]:
        userid = call.get("userid")
        if userid is not None and userid != call.authid:
            raise param_error("userid", "the test double answers only for the calling token itself")
        path = call.get("path")
        if path:
            return {path: privileges_on(service, call.token, path)}
        return effective_permissions(service, call.token)


def add_pbs_access_routes(router: Router) -> None:
    @router.route("GET", "/access/permissions", declare(**{"auth-id": optional(STRING), "path": optional(STRING)}))
    def permissions(call: Call) -> dict[str, Any]:
        authid = call.get("auth-id")
        if authid is not None and authid != call.authid:
            raise param_error("auth-id", "the test double answers only for the calling token itself")
        paths = [call.get("path")] if call.get("path") else sorted({"/", *(e.path for e in call.token.acl)})
        answer = {path: {priv: propagate == 1 for priv, propagate in acl_privileges(call.token, path).items()}
                  for path in paths}
        return {path: privs for path, privs in answer.items() if privs or call.get("path")}


def acl_privileges(token: ApiToken, path: str, extra: list | None = None) -> dict[str, int]:
    """privilege -> propagate (1/0) on ``path`` from the token's ACL (and ``extra`` entries)."""
    found: dict[str, int] = {}
    entries = [e for e in token.acl if e.covers(path)] + list(extra or [])
    for entry in sorted(entries, key=lambda e: len(e.path)):
        for priv in (PVE_PRIVILEGES if ALL in entry.privs else sorted(entry.privs)):
            found[priv] = int(entry.propagate)
    return found


def privileges_on(service: PveService, token: ApiToken, path: str) -> dict[str, int]:
    """privilege -> propagate (1/0) on ``path``; the deeper ACL entry decides propagate."""
    pooled = []
    if path.startswith("/vms/") and path[5:].isdigit():
        for pool in service.state.pools_of(int(path[5:])):
            pooled += [e for e in token.acl if e.covers(f"/pool/{pool}")]
    return acl_privileges(token, path, pooled)


def effective_permissions(service: PveService, token: ApiToken) -> dict[str, dict[str, int]]:
    paths = set(TOP_PATHS) | {entry.path for entry in token.acl}
    for pool in service.state.pools.values():
        paths |= {f"/vms/{vmid}" for vmid in pool.vmids}
    answer = {path: privileges_on(service, token, path) for path in sorted(paths)}
    return {path: privs for path, privs in answer.items() if privs}
