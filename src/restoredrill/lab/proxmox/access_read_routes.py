"""The PVE double's access reads: ``/access/acl``, ``/access/users``, ``/access/groups``,
``/access/roles`` (``pveum acl list``, ``pveum user list --full``, ``pveum group list``,
``pveum role list``).

The double's user.cfg is derived from what it really enforces: each API token's ACL
entries (privilege-separated tokens, so ACL entries of type ``token``), the users owning
the tokens plus ``root@pam``, and the groups of ``PveState.user_groups``. An ACL entry's
role is ``Administrator`` for every privilege, else a role named after its privilege set
(``RestoreDrill-<8 hex of their SHA-1>``) that ``/access/roles`` lists with those
privileges, so the three answers agree with each other and with the privilege checks.
"""
from __future__ import annotations

import hashlib
from typing import Any

from restoredrill.lab.proxmox import permissions as perms
from restoredrill.lab.proxmox.access_routes import PVE_PRIVILEGES
from restoredrill.lab.proxmox.permissions import ALL, AclEntry, ApiToken
from restoredrill.lab.proxmox.pve_service import PveService
from restoredrill.lab.proxmox.routing import BOOLEAN, Call, Router, declare, optional

# pve-access-control src/PVE/AccessControl.pm: the built-in roles (only those the lab uses)
BUILTIN_ROLES = {"Administrator": PVE_PRIVILEGES, "NoAccess": ()}


def add_access_read_routes(router: Router, service: PveService) -> None:
    def groups() -> dict[str, tuple[str, ...]]:
        return service.state.user_groups     # group -> its members (user.cfg ``group:`` lines)

    def tokens() -> list[ApiToken]:
        registry = service.tokens
        return sorted(registry.tokens.values(), key=lambda t: t.authid) if registry else []

    @router.route("GET", "/access/acl")
    def acl_list(call: Call) -> list[dict[str, Any]]:
        """pve-access-control src/PVE/API2/ACL.pm ``read_acl``: everything with Sys.Audit on
        /access, else the entries on paths where the caller may modify permissions."""
        audit = perms.has_privs(call.token, "/access", ["Sys.Audit"])
        answer = []
        for token in tokens():
            for entry in token.acl:
                if audit or perms.has_privs(call.token, entry.path, ["Permissions.Modify"]):
                    answer.append({"path": entry.path, "type": "token", "ugid": token.authid,
                                   "roleid": role_of(entry), "propagate": int(entry.propagate)})
        return sorted(answer, key=lambda e: (e["path"], e["ugid"]))

    @router.route("GET", "/access/roles")
    def roles(call: Call) -> list[dict[str, Any]]:
        """pve-access-control src/PVE/API2/Role.pm ``index``: every role, privileges sorted
        and comma-joined, ``special`` for the built-in ones."""
        found = {name: (privs, 1) for name, privs in BUILTIN_ROLES.items()}
        for token in tokens():
            for entry in token.acl:
                if ALL not in entry.privs:
                    found[role_of(entry)] = (tuple(entry.privs), 0)
        return [{"roleid": name, "privs": ",".join(sorted(privs)), "special": special}
                for name, (privs, special) in sorted(found.items())]

    @router.route("GET", "/access/users", declare(enabled=optional(BOOLEAN),
                                                  full=optional(BOOLEAN)))
    def users(call: Call) -> list[dict[str, Any]]:
        """pve-access-control src/PVE/API2/User.pm ``index``: all users with User.Modify or
        Sys.Audit on /access/groups, else the members of groups the caller holds them on;
        ``full`` adds ``groups`` (comma-joined) and ``tokens``."""
        privs = ["User.Modify", "Sys.Audit"]
        everyone = perms.has_privs(call.token, "/access/groups", privs, any_of=True)
        allowed = {user for group, members in groups().items() for user in members
                   if perms.has_privs(call.token, f"/access/groups/{group}", privs, any_of=True)}
        owners = {"root@pam"} | {token.user for token in tokens()}
        answer = []
        for user in sorted(owners):
            if not (everyone or user == call.authid or user in allowed):
                continue
            if call.get("enabled") is not None and not call.get("enabled"):
                continue    # every lab user is enabled
            entry: dict[str, Any] = {"userid": user, "enable": 1, "expire": 0,
                                     "realm-type": user.rsplit("@", 1)[1]}
            if call.get("full"):
                member_of = sorted(g for g, members in groups().items() if user in members)
                if member_of:
                    entry["groups"] = ",".join(member_of)
                entry["tokens"] = [{"tokenid": t.token_name, "expire": 0, "privsep": 1}
                                   for t in tokens() if t.user == user]
            answer.append(entry)
        return answer

    @router.route("GET", "/access/groups")
    def group_list(call: Call) -> list[dict[str, Any]]:
        """pve-access-control src/PVE/API2/Group.pm ``index``: groups the caller holds
        User.Modify, Sys.Audit or Group.Allocate on (/access/groups/<group>)."""
        return [{"groupid": group, "users": ",".join(sorted(members))}
                for group, members in sorted(groups().items())
                if perms.has_privs(call.token, f"/access/groups/{group}",
                                   ["User.Modify", "Sys.Audit", "Group.Allocate"], any_of=True)]


def role_of(entry: AclEntry) -> str:
    if ALL in entry.privs:
        return "Administrator"
    digest = hashlib.sha1(",".join(sorted(entry.privs)).encode()).hexdigest()[:8]
    return f"RestoreDrill-{digest}"
