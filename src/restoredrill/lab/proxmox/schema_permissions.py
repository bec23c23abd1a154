"""The ``permissions`` of each API method, enforced before the handler as the servers do.

Where the rule comes from: the official schema (``../shared/api-schemas``) when its files are
there and name the method; else ``IN_CODE`` below, the same rules written down for every
route the double serves (``tests/unit/test_schema_permissions.py`` holds them equal to the
schema, so they cannot drift); a rule that changed between releases (``OLDER_RELEASES``)
wins for a server started as that older release.

PVE (pve-access-control ``src/PVE/RPCEnvironment.pm`` ``check_api2_permissions`` and
``exec_api2_perm_check``; called by pve-manager ``PVE/HTTPServer.pm`` ``rest_handler``
with the path parameters merged with the query/body ones, BEFORE parameter verification):
root@pam passes; no ``permissions`` means root only (``user != root@pam``); ``user => 'all'``
passes (the handler filters or checks itself: ``description``-only entries); ``check`` is
a tree of ``['perm', PATH, PRIVS, any => 1, require_param => P]``, ``['and', ...]`` (every
part, the first failure's message), ``['or', ...]`` (one part, else a bare
"Permission check failed"), ``['userid-param', 'self' | 'Realm.AllocateUser']``,
``['userid-group', PRIVS, ...]`` and ``['perm-modify', PATH]``. ``{name}`` in PATH is
replaced by the parameter (``PVE::Tools::template_replace``: ``-`` when missing or
empty). A failed ``perm`` says ``Permission check failed (PATH, PRIV)`` naming the first
missing privilege (``check``), or ``(PATH, A|B)`` for ``any`` (``check_any``); 403.

PBS (proxmox-router ``src/permission.rs`` ``check_api_permission``, as proxmox-backup
``src/bin/docgen.rs`` ``dump_api_permission`` writes it into the schema): ``{"user":
"all"}`` is Anybody, ``"world"`` World, ``{"user": "root@pam"}`` (and no permissions at all)
Superuser, ``{"userParam": P}``, ``{"group": G}``, ``{"withParam": {...}}``, ``{"check":
{"path": [...], "privs": [...], "partial": bool}}`` (``{store}`` components come from the
URL's path parameters only; no privilege at all on the path fails; ``partial``: one of the
privileges is enough), ``{"and": [...]}``, ``{"or": [...]}``. A failure is 403 with the
body ``permission check failed`` (proxmox-rest-server ``src/rest.rs``, ``handle_request``).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from restoredrill.lab.proxmox.permissions import ApiToken, PermissionDenied, has_privs
from restoredrill.lab.proxmox.schema import ApiSchemas

ROOT = "root@pam"
PBS_DENIED = "permission check failed"


@dataclass
class AclContext:
    """What a privilege lookup needs beyond the token: the pools of a guest (pool ACLs
    reach ``/vms/<vmid>``, RPCEnvironment.pm ``compile_acl_path`` poolroles) and the
    server's release (``OLDER_RELEASES``)."""

    pools_of: Callable[[int], Iterable[str]] = field(default=lambda vmid: ())
    release: Callable[[], tuple[int, int]] = field(default=lambda: (99, 0))


def _perm(path: str, *privs: str, any_of: bool = False) -> dict[str, Any]:
    return {"check": ["perm", path, list(privs), *(("any", 1) if any_of else ())]}


def _pbs(path: str, *privs: str, partial: bool = False) -> dict[str, Any]:
    return {"check": {"partial": partial, "path": path.strip("/").split("/"),
                      "privs": list(privs)}}


ANYBODY = {"user": "all"}
_GUEST_CONFIG = {"qemu": ("VM.Config.Disk", "VM.Config.CDROM", "VM.Config.CPU",
                          "VM.Config.Memory", "VM.Config.Network", "VM.Config.HWType",
                          "VM.Config.Options", "VM.Config.Cloudinit"),
                 "lxc": ("VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory",
                         "VM.Config.Network", "VM.Config.Options")}
_AGENT_READ = ("ping", "network-get-interfaces")

# Every route the double serves: the rule as the schema (PVE 9.1, PBS 4.x) declares it,
# ``description`` left out. "all" entries are the ones whose handler filters or checks.
IN_CODE: dict[tuple[str, str, str], dict[str, Any] | None] = {
    ("pve", "GET", "/cluster/backup-info/not-backed-up"): _perm("/", "Sys.Audit"),
    ("pve", "GET", "/cluster/backup"): _perm("/", "Sys.Audit"),
    ("pve", "GET", "/cluster/notifications/targets"): {"check": ["or", *(
        ["perm", "/mapping/notifications", [priv]]
        for priv in ("Mapping.Modify", "Mapping.Audit", "Mapping.Use"))]},
    ("pve", "GET", "/nodes/{node}/network/{iface}"): _perm("/nodes/{node}", "Sys.Audit"),
    ("pve", "GET", "/nodes/{node}/storage/{storage}/content"): _perm(
        "/storage/{storage}", "Datastore.Audit", "Datastore.AllocateSpace", any_of=True),
    ("pve", "GET", "/pools/{poolid}"): _perm("/pool/{poolid}", "Pool.Audit"),
    ("pve", "POST", "/pools"): _perm("/pool/{poolid}", "Pool.Allocate"),
    ("pve", "PUT", "/pools"): _perm("/pool/{poolid}", "Pool.Allocate"),
    ("pve", "POST", "/access/users"): {"check": ["and", ["userid-param", "Realm.AllocateUser"], [
        "userid-group", ["User.Modify"], "groups_param", "create"]]},
    ("pve", "POST", "/access/roles"): _perm("/access", "Sys.Modify"),
    ("pve", "PUT", "/access/roles/{roleid}"): _perm("/access", "Sys.Modify"),
    ("pve", "PUT", "/access/acl"): {"check": ["perm-modify", "{path}"]},
    ("pve", "POST", "/access/users/{userid}/token/{tokenid}"): {"check": [
        "or", ["userid-param", "self"], ["userid-group", ["User.Modify"]]]},
    ("pbs", "POST", "/access/users"): _pbs("/access/users", "Permissions.Modify"),
    ("pbs", "POST", "/access/users/{userid}/token/{token-name}"): {"or": [
        _pbs("/access/users", "Permissions.Modify"), {"userParam": "userid"}]},
    ("pbs", "POST", "/admin/datastore/{store}/gc"): _pbs("/datastore/{store}", "Datastore.Modify"),
    ("pbs", "GET", "/config/notifications/targets"): _pbs("/system/notifications", "Sys.Audit"),
}
for _kind in ("qemu", "lxc"):
    _guest = f"/nodes/{{node}}/{_kind}/{{vmid}}"
    IN_CODE.update({
        ("pve", "GET", f"{_guest}/status/current"): _perm("/vms/{vmid}", "VM.Audit"),
        ("pve", "GET", f"{_guest}/config"): _perm("/vms/{vmid}", "VM.Audit"),
        ("pve", "PUT", f"{_guest}/config"): _perm("/vms/{vmid}", *_GUEST_CONFIG[_kind],
                                                  any_of=True),
        ("pve", "DELETE", _guest): _perm("/vms/{vmid}", "VM.Allocate"),
        **{("pve", "POST", f"{_guest}/status/{action}"): _perm("/vms/{vmid}", "VM.PowerMgmt")
           for action in ("start", "stop", "shutdown")}})
for _name in _AGENT_READ:
    IN_CODE[("pve", "POST" if _name == "ping" else "GET",
             f"/nodes/{{node}}/qemu/{{vmid}}/agent/{_name}")] = _perm(
        "/vms/{vmid}", "VM.GuestAgent.Audit", "VM.GuestAgent.Unrestricted", any_of=True)
IN_CODE[("pve", "POST", "/nodes/{node}/qemu/{vmid}/agent/exec")] = _perm(
    "/vms/{vmid}", "VM.GuestAgent.Unrestricted")
IN_CODE[("pve", "GET", "/nodes/{node}/qemu/{vmid}/agent/exec-status")] = _perm(
    "/vms/{vmid}", "VM.GuestAgent.Unrestricted")
for _template in ("/version", "/cluster/resources", "/cluster/nextid", "/nodes",
                  "/nodes/{node}/storage", "/nodes/{node}/vzdump/extractconfig", "/pools",
                  "/nodes/{node}/tasks", "/nodes/{node}/tasks/{upid}/status",
                  "/nodes/{node}/tasks/{upid}/log", "/nodes/{node}/qemu", "/nodes/{node}/lxc",
                  "/access/permissions", "/storage", "/nodes/{node}/network"):
    IN_CODE[("pve", "GET", _template)] = ANYBODY
IN_CODE[("pve", "POST", "/nodes/{node}/qemu")] = IN_CODE[("pve", "POST", "/nodes/{node}/lxc")] \
    = ANYBODY
# what monitoring clients read (issue 25)
for _template in ("/cluster/status", "/cluster/config/qdevice", "/cluster/ha/resources",
                  "/cluster/ha/groups", "/cluster/ha/rules", "/cluster/ha/status/manager_status"):
    IN_CODE[("pve", "GET", _template)] = _perm("/", "Sys.Audit")
for _template in ("/cluster/tasks", "/nodes/{node}/version", "/nodes/{node}/subscription",
                  "/nodes/{node}/replication", "/nodes/{node}/network", "/storage",
                  "/access/acl", "/access/users", "/access/groups", "/access/roles"):
    IN_CODE[("pve", "GET", _template)] = ANYBODY
IN_CODE[("pve", "GET", "/nodes/{node}/status")] = _perm("/nodes/{node}", "Sys.Audit")
IN_CODE[("pve", "GET", "/storage/{storage}")] = _perm("/storage/{storage}", "Datastore.Allocate")
IN_CODE[("pbs", "GET", "/nodes/{node}/status")] = _pbs("/system/status", "Sys.Audit")
for _method, _template in (
        ("GET", "/version"), ("GET", "/admin/datastore"), ("GET", "/nodes/{node}/tasks"),
        ("GET", "/config/datastore"), ("GET", "/config/remote"), ("PUT", "/access/acl"),
        ("GET", "/nodes/{node}/tasks/{upid}/status"), ("GET", "/nodes/{node}/tasks/{upid}/log"),
        *(("GET", f"/admin/datastore/{{store}}/{name}") for name in (
            "status", "groups", "snapshots", "download")),
        ("POST", "/admin/datastore/{store}/prune"), ("POST", "/admin/datastore/{store}/verify"),
        *(("GET", f"/admin/{kind}") for kind in ("verify", "prune", "sync", "gc")),
        *(("POST", f"/admin/{kind}/{{id}}/run") for kind in ("verify", "sync", "prune"))):
    IN_CODE[("pbs", _method, _template)] = ANYBODY

# Rules that were different before a release: (first release with the schema's rule, the
# older rule). qemu-server before 9.0.3 (PVE 8.x; commit b92a40ce "api: agent: use more
# specific guest agent privileges") checked every agent command with VM.Monitor
# (src/PVE/API2/Qemu/Agent.pm: ``$perm //= 'VM.Monitor'``, exec/exec-status likewise).
OLDER_RELEASES: dict[tuple[str, str, str], tuple[tuple[int, int], dict[str, Any]]] = {
    ("pve", method, f"/nodes/{{node}}/qemu/{{vmid}}/agent/{name}"):
        ((9, 0), _perm("/vms/{vmid}", "VM.Monitor"))
    for method, name in (("POST", "ping"), ("GET", "network-get-interfaces"),
                         ("POST", "exec"), ("GET", "exec-status"))}

UNDECLARED = object()    # neither the schema nor IN_CODE knows the method


def permissions_for(schemas: ApiSchemas, api: str, method: str, template: str,
                    release: tuple[int, int] = (99, 0)) -> Any:
    """The rule for one method: older release, then schema, then ``IN_CODE``; ``None`` is
    upstream's "no permissions" (root only), ``UNDECLARED`` that nobody declares one."""
    older = OLDER_RELEASES.get((api, method, template))
    if older is not None and release < older[0]:
        return older[1]
    described = schemas.method(api, template, method) if schemas.available else None
    if described is not None:
        return described.get("permissions")
    return IN_CODE.get((api, method, template), UNDECLARED)


def check_permissions(api: str, permissions: Any, token: ApiToken, params: Mapping[str, str],
                      path_params: Mapping[str, str], context: AclContext) -> None:
    """Raise ``PermissionDenied`` (403, upstream's words) unless ``token`` may call."""
    if permissions is UNDECLARED:
        return
    if api == "pve":
        _check_pve(permissions, token, {**params, **path_params}, context)
    elif token.authid != ROOT and not _pbs_allows(permissions, token.authid, token,
                                                  path_params):
        raise PermissionDenied(PBS_DENIED)


# --- PVE -------------------------------------------------------------------------------
def _check_pve(permissions: Any, token: ApiToken, params: Mapping[str, str],
               context: AclContext) -> None:
    if token.authid == ROOT:
        return
    if permissions is None:
        raise _denied("user != root@pam")
    if permissions.get("user") in ("all", "world"):
        return
    if permissions.get("check"):
        _pve_test(permissions["check"], token, params, context, noerr=False)
        return
    raise _denied()


def _denied(what: str = "") -> PermissionDenied:
    """pve-common ``src/PVE/Exception.pm`` ``raise_perm_exc``."""
    return PermissionDenied("Permission check failed" + (f" ({what})" if what else ""))


def _pve_test(check: list, token: ApiToken, params: Mapping[str, str], context: AclContext,
              *, noerr: bool) -> bool:
    test, *rest = check
    if test == "and":      # upstream passes no noerr down: a failing part raises even in an 'or'
        return all(_pve_test(sub, token, params, context, noerr=False) for sub in rest)
    if test == "or":
        if any(_pve_test(sub, token, params, context, noerr=True) for sub in rest):
            return True
        return _fail(noerr, "")
    if test == "perm":
        template, privs, *pairs = rest
        options = dict(zip(pairs[::2], pairs[1::2]))
        required = options.get("require_param")
        if required and params.get(required) in (None, ""):
            return _fail(noerr, "")
        return _pve_perm(token, normalize_path(template_replace(template, params)), list(privs),
                         bool(options.get("any")), context, noerr)
    if test == "userid-param":
        userid = params.get("userid") or ""
        if rest[0] == "self":
            return userid == token.authid or _fail(noerr, "")
        realm = userid.rpartition("@")[2]
        return _pve_perm(token, f"/access/realm/{realm}", ["Realm.AllocateUser"], False,
                         context, noerr)
    if test == "userid-group":    # group membership is not modelled: the /access/groups ACL
        return _pve_perm(token, "/access/groups", list(rest[0]), True, context, noerr)
    if test == "perm-modify":
        path = normalize_path(template_replace(rest[0], params))
        extra = {"storage": "Datastore.Allocate", "vms": "VM.Allocate", "pool": "Pool.Allocate"}
        kind = path.split("/")[1] if path.count("/") >= 2 else ""
        privs = ["Permissions.Modify"] + ([extra[kind]] if kind in extra else [])
        return _pve_perm(token, path, privs, True, context, noerr)
    raise PermissionDenied(f"unknown permission test '{test}'", status=500)


def _fail(noerr: bool, what: str) -> bool:
    if noerr:
        return False
    raise _denied(what)


def _pve_perm(token: ApiToken, path: str, privs: list[str], any_of: bool, context: AclContext,
              noerr: bool) -> bool:
    """RPCEnvironment.pm ``check`` (names the first missing privilege) / ``check_any``."""
    match = re.fullmatch(r"/vms/(\d+)", path)
    pools = list(context.pools_of(int(match.group(1)))) if match else []
    if any_of:
        if has_privs(token, path, privs, any_of=True, pools=pools):
            return True
        return _fail(noerr, f"{path}, {'|'.join(privs)}")
    for priv in privs:
        if not has_privs(token, path, [priv], pools=pools):
            return _fail(noerr, f"{path}, {priv}")
    return True


def template_replace(template: str, params: Mapping[str, str]) -> str:
    """pve-common ``PVE::Tools::template_replace``: ``{name}`` -> the value, or ``-``."""
    return re.sub(r"\{([^}]+)\}", lambda m: str(params.get(m.group(1)) or "-"), template)


def normalize_path(path: str) -> str:
    """pve-access-control ``PVE::AccessControl::normalize_path``."""
    path = re.sub(r"/+", "/", path).rstrip("/") or "/"
    return path if path.startswith("/") else "/" + path


# --- PBS -------------------------------------------------------------------------------
def _pbs_allows(permission: Any, userid: str | None, token: ApiToken,
                path_params: Mapping[str, str]) -> bool:
    """proxmox-router ``check_api_permission_tail`` over docgen's JSON form."""
    if permission is None:                      # Superuser (docgen leaves the default out)
        return userid == ROOT
    if "and" in permission:
        return all(_pbs_allows(p, userid, token, path_params) for p in permission["and"])
    if "or" in permission:
        return any(_pbs_allows(p, userid, token, path_params) for p in permission["or"])
    if "check" in permission:
        return userid is not None and _pbs_privilege(permission["check"], token, path_params)
    if "userParam" in permission:
        return userid is not None and path_params.get(permission["userParam"]) == userid
    if "withParam" in permission:
        sub = permission["withParam"]
        return _pbs_allows(sub["permissions"], path_params.get(sub["name"]), token, path_params)
    if "group" in permission:                   # groups are not modelled
        return False
    user = permission.get("user")
    if user == "world":
        return True
    if user == "all":
        return userid is not None
    return userid is not None and userid == user


def _pbs_privilege(check: Mapping[str, Any], token: ApiToken,
                   path_params: Mapping[str, str]) -> bool:
    parts = []
    for part in check["path"]:
        if part.startswith("{") and part.endswith("}"):
            if part[1:-1] not in path_params:
                return False
            part = path_params[part[1:-1]]
        parts.append(part)
    path = "/" + "/".join(parts)
    if not token.privileges(path):
        return False
    return has_privs(token, path, check["privs"], any_of=bool(check.get("partial")))
