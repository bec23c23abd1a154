"""What ``restoredrill init`` reads and ``restoredrill setup --apply`` sends, in the double.

Manual equivalents: ``pvesh get /storage``, ``pvesh get /nodes/pve1/network --type
any_bridge``, ``pveum user add``, ``pveum user token add``, ``pveum role add``/``modify``,
``pveum acl modify``; ``proxmox-backup-manager datastore list``, ``remote list``, ``user
create``, ``user generate-token``, ``acl update``.

Sources: pve-storage src/PVE/API2/Storage/Config.pm ``index`` (storage.cfg entries the
caller may audit or allocate on; an encryption key is never in storage.cfg), pve-manager
PVE/API2/Network.pm ``index`` (``iface`` per entry, ``any_bridge``: Linux and OVS bridges),
pve-access-control src/PVE/API2/User.pm (``create_user``: "user '...' already exists";
``generate_token``: ``{full-tokenid, info, value}``, privsep default 1), API2/Role.pm,
API2/ACL.pm (``update_acl``: roles, users, tokens, propagate default 1), AccessControl.pm
(a privilege-separated token holds what both it and its user hold); proxmox-backup
src/api2/access/user.rs, src/api2/access/acl.rs, src/api2/config/datastore.rs, remote.rs,
pbs-api-types src/acl.rs (PBS roles are fixed: ``Role``; a token's privileges are the
intersection of its own ACL and its user's).

Limit: the intersection is taken per ACL entry of the token (the user's privileges on that
entry's path), which is exact when user and token get the same entries, as ``setup`` does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restoredrill.lab.proxmox.access_routes import PVE_PRIVILEGES
from restoredrill.lab.proxmox.permissions import ALL, AclEntry, TokenRegistry, has_privs, require
from restoredrill.lab.proxmox.pve_guest_routes import pve_release
from restoredrill.lab.proxmox.routing import (BOOLEAN, INTEGER, PVE_NODE, STRING, ApiError, Call, Router,
                                              declare, optional, param_error)

PBS_ROLES = {   # pbs-api-types src/acl.rs (PBS 4)
    "Admin": frozenset({ALL}), "NoAccess": frozenset(),
    "Audit": frozenset({"Sys.Audit", "Datastore.Audit"}),
    "DatastoreAdmin": frozenset({"Datastore.Audit", "Datastore.Modify", "Datastore.Read", "Datastore.Verify",
                                 "Datastore.Backup", "Datastore.Prune"}),
    "DatastoreReader": frozenset({"Datastore.Audit", "Datastore.Verify", "Datastore.Read"}),
    "DatastoreBackup": frozenset({"Datastore.Backup"}),
    "DatastorePowerUser": frozenset({"Datastore.Prune", "Datastore.Backup"}),
    "DatastoreAudit": frozenset({"Datastore.Audit"}),
    "RemoteAudit": frozenset({"Remote.Audit"}),
}
USERID = re.compile(r"[^\s:/@!]+@[A-Za-z0-9_][A-Za-z0-9._\-]*")
TOKEN_NAME = {"pve": re.compile(r"[A-Za-z][A-Za-z0-9.\-_]+"),        # pve-access-control pve-tokenid
              "pbs": re.compile(r"[A-Za-z0-9_][A-Za-z0-9._\-]*")}     # pbs-api-types Tokenname
ROLEID = re.compile(r"[A-Za-z0-9.\-_]+")


@dataclass
class Grant:
    path: str
    ugid: str          # user or token id
    role: str
    propagate: bool


@dataclass
class AccessAdmin:
    """The user database of one server: users, tokens made here, roles (PVE), ACL."""

    api: str
    tokens: TokenRegistry
    secret_dir: Path
    users: dict[str, str] = field(default_factory=dict)          # userid -> comment
    roles: dict[str, frozenset[str]] = field(default_factory=dict)
    grants: list[Grant] = field(default_factory=list)
    privsep: dict[str, bool] = field(default_factory=dict)        # tokens made here

    def role_privs(self, role: str) -> frozenset[str]:
        return PBS_ROLES[role] if self.api == "pbs" else self.roles[role]

    def entries(self, ugid: str) -> list[AclEntry]:
        return [AclEntry(g.path, self.role_privs(g.role), g.propagate) for g in self.grants if g.ugid == ugid]

    def refresh(self) -> None:
        """Each token made here holds its own entries cut down to its user's (privsep), or its user's."""
        for authid, separated in self.privsep.items():
            user_entries = self.entries(authid.split("!", 1)[0])
            if not separated:
                self.tokens.tokens[authid].acl = user_entries
                continue
            cut = []
            for entry in self.entries(authid):
                held: set[str] = set()
                for own in user_entries:
                    if own.covers(entry.path):
                        held |= own.privs
                cut.append(AclEntry(entry.path, entry.privs if ALL in held else entry.privs & held,
                                    entry.propagate))
            self.tokens.tokens[authid].acl = cut

    def add_user(self, userid: str, comment: str) -> None:
        if not USERID.fullmatch(userid or ""):
            raise param_error("userid", "value does not match the regex pattern")
        if userid in self.users:
            raise ApiError(500, f"create user failed: user '{userid}' already exists" if self.api == "pve"
                           else f"user '{userid}' already exists.")
        self.users[userid] = comment

    def add_token(self, userid: str, name: str, privsep: bool) -> str:
        if userid not in self.users:
            raise ApiError(500, f"no such user ('{userid}')" if self.api == "pve" else f"user '{userid}' not found")
        if not TOKEN_NAME[self.api].fullmatch(name or ""):
            raise param_error("tokenid" if self.api == "pve" else "token-name", "invalid format")
        authid = f"{userid}!{name}"
        if authid in self.tokens.tokens:
            raise ApiError(500, "Token already exists." if self.api == "pve" else f"token '{name}' already exists.")
        token = self.tokens.create(authid, [], self.secret_dir)
        self.privsep[authid] = privsep
        self.refresh()
        return token.secret

    def known(self, ugid: str) -> bool:
        return ugid in self.users or ugid in self.tokens.tokens

    def grant(self, path: str, ugid: str, role: str, propagate: bool, delete: bool) -> None:
        if not self.known(ugid):
            raise ApiError(500, f"user '{ugid}' does not exist" if "!" not in ugid else
                           f"no such token '{ugid.split('!')[1]}' for user '{ugid.split('!')[0]}'")
        self.grants = [g for g in self.grants if (g.path, g.ugid, g.role) != (path, ugid, role)]
        if not delete:
            self.grants.append(Grant(path, ugid, role, propagate))
        self.refresh()


def _privs(text: str | None, release: tuple[int, int]) -> frozenset[str]:
    known = set(PVE_PRIVILEGES) | ({"VM.Monitor"} if release < (9, 0) else set())
    privs = frozenset(p for p in re.split(r"[,;\s]+", text or "") if p)
    unknown = sorted(privs - known)
    if unknown:
        raise param_error("privs", f"invalid privilege '{unknown[0]}'")
    return privs


def _list(text: str | None) -> list[str]:
    return [item for item in re.split(r"[,;\s]+", text or "") if item]


def _user_route(router: Router, admin: AccessAdmin) -> None:
    """``POST /access/users``: the same parameters the drill setup sends to PVE and PBS."""
    @router.route("POST", "/access/users", declare(userid=STRING, comment=optional(STRING),
                                                   enable=optional(BOOLEAN), expire=optional(INTEGER)))
    def create_user(call: Call) -> None:
        admin.add_user(call.get("userid"), call.get("comment", ""))


def add_pve_admin_routes(router: Router, service, admin: AccessAdmin) -> None:
    @router.route("GET", "/storage", declare(type=optional(STRING)))
    def storages(call: Call) -> list[dict[str, Any]]:
        found = []
        for storage in sorted(service.state.storages.values(), key=lambda s: s.storage):
            if call.get("type") not in (None, storage.type):
                continue
            if not has_privs(call.token, f"/storage/{storage.storage}",
                             ["Datastore.Audit", "Datastore.AllocateSpace"], any_of=True):
                continue
            entry = {"storage": storage.storage, "type": storage.type, "content": storage.content,
                     "digest": "0" * 40}
            if storage.nodes:
                entry["nodes"] = ",".join(storage.nodes)
            if storage.type == "pbs":
                entry.update(datastore=storage.datastore, server="127.0.0.1", username="root@pam",
                             fingerprint=storage.fingerprint)
                if storage.namespace:
                    entry["namespace"] = storage.namespace
            found.append(entry)
        return found

    @router.route("GET", "/nodes/{node}/network", declare(node=PVE_NODE, type=optional(STRING)))
    def networks(call: Call) -> list[dict[str, Any]]:
        node = service.check_node(call)
        wanted = call.get("type")
        out = []
        for name, iface in sorted(service.state.networks_of(node).items()):
            kind = iface.get("type")
            if wanted == "any_bridge" and kind not in ("bridge", "OVSBridge"):
                continue
            if wanted not in (None, "any_bridge") and kind != wanted:
                continue
            out.append({**iface, "iface": name})
        return out

    _user_route(router, admin)

    @router.route("POST", "/access/users/{userid}/token/{tokenid}", declare(
        userid=STRING, tokenid=STRING, privsep=optional(BOOLEAN), comment=optional(STRING),
        expire=optional(INTEGER)))
    def create_token(call: Call) -> dict[str, Any]:
        privsep = str(call.get("privsep", 1)) not in ("0", "False", "false")
        secret = admin.add_token(call.get("userid"), call.get("tokenid"), privsep)
        info = {"privsep": int(privsep), "expire": int(call.get("expire", 0) or 0)}
        if call.get("comment"):
            info["comment"] = call.get("comment")
        return {"full-tokenid": f"{call.get('userid')}!{call.get('tokenid')}", "info": info, "value": secret}

    @router.route("POST", "/access/roles", declare(roleid=STRING, privs=optional(STRING)))
    def create_role(call: Call) -> None:
        roleid = call.get("roleid")
        if not ROLEID.fullmatch(roleid or "") or roleid.startswith("PVE"):
            raise param_error("roleid", "invalid role ID (PVE* is reserved for built-in roles)")
        if roleid in admin.roles:
            raise ApiError(500, f"create role failed: role '{roleid}' already exists")
        admin.roles[roleid] = _privs(call.get("privs"), pve_release(service))

    @router.route("PUT", "/access/roles/{roleid}", declare(roleid=STRING, privs=optional(STRING),
                                                           append=optional(BOOLEAN)))
    def update_role(call: Call) -> None:
        roleid = call.get("roleid")
        if roleid not in admin.roles:
            raise ApiError(500, f"role '{roleid}' does not exist")
        privs = _privs(call.get("privs"), pve_release(service))
        admin.roles[roleid] = admin.roles[roleid] | privs if call.get("append") else privs
        admin.refresh()

    @router.route("PUT", "/access/acl", declare(path=STRING, roles=STRING, users=optional(STRING),
                                                tokens=optional(STRING), groups=optional(STRING),
                                                propagate=optional(BOOLEAN), delete=optional(BOOLEAN)))
    def update_acl(call: Call) -> None:
        roles = _list(call.get("roles"))
        for role in roles:
            if role not in admin.roles:
                raise ApiError(500, f"role '{role}' does not exist")
        if call.get("groups"):
            raise param_error("groups", "the test double keeps no groups")
        propagate = str(call.get("propagate", 1)) not in ("0", "False", "false")
        delete = str(call.get("delete", 0)) in ("1", "True", "true")
        for ugid in _list(call.get("users")) + _list(call.get("tokens")):
            for role in roles:
                admin.grant(call.get("path"), ugid, role, propagate, delete)


def add_pbs_admin_routes(router: Router, service, admin: AccessAdmin) -> None:
    @router.route("GET", "/config/datastore")
    def datastores(call: Call) -> list[dict[str, Any]]:
        return [{"name": name, "path": str(store.root), "comment": getattr(store, "comment", "") or ""}
                for name, store in sorted(service.stores.items())
                if has_privs(call.token, f"/datastore/{name}", ["Datastore.Audit"])]

    @router.route("GET", "/config/remote")
    def remotes(call: Call) -> list[dict[str, Any]]:
        names = sorted({str(job.options.get("remote")) for job in service.jobs.of_kind("sync")
                        if job.options.get("remote")})
        return [{"name": name, "host": "127.0.0.1", "auth-id": "sync@pbs",
                 "comment": "the lab's sync remote: this PBS itself"}
                for name in names if has_privs(call.token, f"/remote/{name}", ["Remote.Audit"])]

    _user_route(router, admin)

    @router.route("POST", "/access/users/{userid}/token/{token-name}", declare(
        userid=STRING, token_name=STRING, comment=optional(STRING), enable=optional(BOOLEAN),
        expire=optional(INTEGER)))
    def create_token(call: Call) -> dict[str, Any]:
        secret = admin.add_token(call.get("userid"), call.get("token-name"), True)
        return {"tokenid": f"{call.get('userid')}!{call.get('token-name')}", "value": secret}

    @router.route("PUT", "/access/acl", declare(path=STRING, role=STRING, auth_id=optional(STRING),
                                                group=optional(STRING), propagate=optional(BOOLEAN),
                                                delete=optional(BOOLEAN)))
    def update_acl(call: Call) -> None:
        require(call.token, "/access/acl", ["Permissions.Modify"], api="pbs")
        if call.get("role") not in PBS_ROLES:
            raise param_error("role", "value is not a defined role")
        if not call.get("auth-id"):
            raise ApiError(400, "either 'group' or 'auth-id' must be set")
        propagate = str(call.get("propagate", 1)) not in ("0", "False", "false")
        delete = str(call.get("delete", 0)) in ("1", "True", "true")
        admin.grant(call.get("path"), call.get("auth-id"), call.get("role"), propagate, delete)
