"""The PVE API of the double, cluster and node part (guests are in ``pve_guest_routes``).

Manual equivalents: ``pvesh get /version``, ``pvesh get /cluster/resources --type vm``,
``pvesh get /cluster/nextid``, ``pvesh get /nodes/{node}/storage/{storage}/content
--content backup``, ``pvesh get /nodes/{node}/vzdump/extractconfig --volume VOLID``,
``pvesh get /pools``, ``pvesh get /nodes/{node}/tasks/{upid}/status``,
``pvesh get /cluster/notifications/targets``.
"""
from __future__ import annotations

from typing import Any

from restoredrill.lab.proxmox import permissions as perms
from restoredrill.lab.proxmox.names import check_pool_id, check_storage_id, check_vmid
from restoredrill.lab.proxmox.access_read_routes import add_access_read_routes
from restoredrill.lab.proxmox.access_routes import add_access_routes
from restoredrill.lab.proxmox.pve_cluster_routes import add_cluster_routes, task_item
from restoredrill.lab.proxmox.pve_node_routes import add_node_routes
from restoredrill.lab.proxmox.pve_guest_routes import add_guest_routes, guest_resource, pve_release
from restoredrill.lab.proxmox.schema_permissions import AclContext
from restoredrill.lab.proxmox.pve_service import (PveService, guest_volumes,
                                                  storage_status)
from restoredrill.lab.proxmox.routing import (BOOLEAN, INTEGER, PVE_NODE, PVE_POOL, PVE_STORAGE,
                                              PVE_VMID, STRING, ApiError, Call, Router, declare,
                                              optional, param_error)
from restoredrill.lab.proxmox.cluster import Pool
from restoredrill.lab.proxmox.tasks import Task

IFACE = {"type": "string", "format": "pve-iface", "minLength": 2, "maxLength": 20}
UPID = {"type": "string"}


def build_pve_router(service: PveService) -> Router:
    router = Router("pve")
    _cluster_routes(router, service)
    add_cluster_routes(router, service)
    add_node_routes(router, service)
    _node_routes(router, service)
    _pool_routes(router, service)
    _task_routes(router, service)
    add_guest_routes(router, service)
    add_access_routes(router, service)
    add_access_read_routes(router, service)
    # the central privilege check (http -> schema_permissions) needs the guests' pools and the release
    router.acl = AclContext(service.state.pools_of, lambda: pve_release(service))
    return router


def _cluster_routes(router: Router, service: PveService) -> None:
    @router.route("GET", "/version")
    def version(call: Call) -> dict[str, Any]:
        return dict(service.version)

    @router.route("GET", "/cluster/nextid", declare(vmid=optional(PVE_VMID)))
    def next_id(call: Call) -> str:
        vmid = call.get("vmid")
        if vmid is not None:
            if vmid in service.state.guests:
                raise param_error("vmid", f"VM {vmid} already exists")
            return str(vmid)
        return str(service.state.next_id())   # a JSON string on the wire

    @router.route("GET", "/cluster/backup-info/not-backed-up")
    def not_backed_up(call: Call) -> list[dict[str, Any]]:
        perms.require(call.token, "/", ["Sys.Audit"])
        covered = service.state.backed_up_vmids()
        return [{"vmid": g.vmid, "type": g.kind, "name": g.name}
                for g in sorted(service.state.guests.values(), key=lambda g: g.vmid)
                if g.vmid not in covered]

    @router.route("GET", "/cluster/backup")
    def backup_jobs(call: Call) -> list[dict[str, Any]]:
        perms.require(call.token, "/", ["Sys.Audit"])
        return [dict(job) for job in service.state.backup_jobs]

    @router.route("GET", "/cluster/notifications/targets")
    def notification_targets(call: Call) -> list[dict[str, Any]]:
        perms.require(call.token, "/mapping/notifications",
                      ["Mapping.Modify", "Mapping.Audit", "Mapping.Use"], any_of=True)
        targets = getattr(service.state, "notification_targets", [])
        return sorted((dict(target) for target in targets), key=lambda t: t["name"])


def _node_routes(router: Router, service: PveService) -> None:
    @router.route("GET", "/nodes/{node}/network/{iface}", declare(node=PVE_NODE, iface=IFACE))
    def network(call: Call) -> dict[str, Any]:
        node = service.check_node(call)
        perms.require(call.token, f"/nodes/{node}", ["Sys.Audit"])
        # pve-manager PVE/API2/Network.pm ``network_config``: the node's own interfaces file
        # as pve-common src/PVE/Network/Interfaces.pm ``__read_etc_network_interfaces``
        # reads it (see cluster.interface_entry for the keys)
        found = service.state.networks_of(node).get(call.get("iface"))
        if found is None:
            raise param_error("iface", "interface does not exist")
        return dict(found)

    @router.route("GET", "/nodes/{node}/storage", declare(
        node=PVE_NODE, content=optional(STRING, format="pve-storage-content-list"),
        enabled=optional(BOOLEAN), format=optional(BOOLEAN), storage=optional(PVE_STORAGE),
        target=optional(PVE_NODE)))
    def storages(call: Call) -> list[dict[str, Any]]:
        """pve-storage src/PVE/API2/Storage/Status.pm ``index`` over ``storage_info``: a
        storage not available on this node (``nodes``) is listed with ``enabled`` 0,
        ``active`` 0 and no usage, and left out when ``content`` is asked for."""
        node = service.check_node(call)
        wanted = set(filter(None, (call.get("content") or "").split(",")))
        result = []
        for storage in sorted(service.state.storages.values(), key=lambda s: s.storage):
            here = storage.available_on(node)
            if call.get("storage") not in (None, storage.storage) or (
                    wanted and (not wanted & storage.contents or not here)):
                continue
            if not perms.has_privs(call.token, f"/storage/{storage.storage}",
                                   ["Datastore.Audit", "Datastore.AllocateSpace"], any_of=True):
                continue
            entry = {"storage": storage.storage, "type": storage.type,
                     "content": storage.content, "active": int(here), "enabled": int(here),
                     "shared": int(storage.shared), "total": 0, "used": 0, "avail": 0}
            if here:
                usage = storage_status(service, storage)
                entry.update(usage, used_fraction=usage["used"] / usage["total"]
                             if usage["total"] else 0.0)
            result.append(entry)
        return result

    @router.route("GET", "/nodes/{node}/storage/{storage}/content", declare(
        node=PVE_NODE, storage=PVE_STORAGE, vmid=optional(PVE_VMID),
        content=optional(STRING, format="pve-storage-content")))
    def content(call: Call) -> list[dict[str, Any]]:
        service.check_node(call)
        storage_id = check_storage_id(call.get("storage"))
        # the method's own check (Datastore.Audit or .AllocateSpace on /storage/{storage}) is
        # the central one (schema_permissions); each volume then passes check_volume_access
        # pve-storage Content.pm index -> volume_list -> activate_storage: dies on a node
        # the storage is not available on (storage_check_node)
        storage = service.state.storage_on_node(storage_id, service.node)
        wanted = call.get("content")
        pools = service.state.pools_of
        if storage.type != "pbs":
            return [] if wanted == "backup" else [
                v for v in guest_volumes(service, storage_id, call.get("vmid"), wanted)
                if _may_see_volume(call, storage_id, v["vmid"], pools(v["vmid"]), "images")]
        if wanted not in (None, "backup"):
            return []
        return [entry for entry in service.backup_entries(storage, call.get("vmid"))
                if _may_see_backup(call, storage_id, entry["vmid"], pools(entry["vmid"]))]

    @router.route("GET", "/nodes/{node}/vzdump/extractconfig",
                  declare(node=PVE_NODE, volume=STRING))
    def extract_config(call: Call) -> str:
        service.check_node(call)
        volume = service.backup_volume(call)
        service.check_volume_access(call, volume)
        config, store = service.pbs_storage(volume)
        ref = service.snapshot_ref(volume)
        blob = "qemu-server.conf.blob" if volume.backup_type == "vm" else "pct.conf.blob"
        try:
            return store.reader.read_blob_archive(ref, blob, config.crypt).decode()
        except Exception as exc:
            raise ApiError(500, f"unable to extract config from '{volume.volid}': {exc}") \
                from None


def _may_see_backup(call: Call, storage: str, owner: int, pools: list[str]) -> bool:
    """A listed backup volume (pve-storage ``src/PVE/API2/Storage/Content.pm`` index: an item
    whose ``check_volume_access`` dies is skipped, no error)."""
    return _may_see_volume(call, storage, owner, pools, "backup")


def _may_see_volume(call: Call, storage: str, owner: int, pools: list[str], vtype: str) -> bool:
    """pve-storage ``src/PVE/Storage.pm`` ``check_volume_access`` without a vmid: Datastore.Allocate
    on the storage sees everything; a backup needs Datastore.AllocateSpace on the storage and
    VM.Backup on /vms/<owner>; a disk image Datastore.Audit and VM.Config.Disk (pool ACLs
    count for /vms/<owner>, as ``$rpcenv->check`` does)."""
    token, on_storage = call.token, f"/storage/{storage}"
    if perms.has_privs(token, on_storage, ["Datastore.Allocate"]):
        return True
    storage_priv, guest_priv = (("Datastore.AllocateSpace", "VM.Backup") if vtype == "backup"
                                else ("Datastore.Audit", "VM.Config.Disk"))
    return perms.has_privs(token, on_storage, [storage_priv]) and \
        perms.has_privs(token, f"/vms/{owner}", [guest_priv], pools=pools)


def _pool_routes(router: Router, service: PveService) -> None:
    def describe(pool: Pool, members: bool, kind: str | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {"poolid": pool.poolid, "comment": pool.comment}
        if members:
            entry["members"] = [guest_resource(service, service.state.guests[v])
                                for v in sorted(pool.vmids) if v in service.state.guests and
                                kind in (None, service.state.guests[v].kind)]
        return entry

    @router.route("GET", "/pools", declare(poolid=optional(PVE_POOL), type=optional(
        STRING, enum=["qemu", "lxc", "storage"], requires="poolid")))
    def pools(call: Call) -> list[dict[str, Any]]:
        wanted = call.get("poolid")
        return [describe(pool, wanted is not None, call.get("type"))
                for pool in sorted(service.state.pools.values(), key=lambda p: p.poolid)
                if wanted in (None, pool.poolid) and
                perms.has_privs(call.token, f"/pool/{pool.poolid}", ["Pool.Audit"])]

    @router.route("GET", "/pools/{poolid}", declare(poolid=PVE_POOL, type=optional(
        STRING, enum=["qemu", "lxc", "storage"])))
    def pool(call: Call) -> dict[str, Any]:
        poolid = check_pool_id(call.get("poolid"))
        perms.require(call.token, f"/pool/{poolid}", ["Pool.Audit"])
        service.state.check_pool_exists(poolid)
        entry = describe(service.state.pools[poolid], True, call.get("type"))
        entry.pop("poolid")
        return entry

    @router.route("POST", "/pools", declare(poolid=PVE_POOL, comment=optional(STRING)))
    def create_pool(call: Call) -> None:
        poolid = check_pool_id(call.get("poolid"))
        perms.require(call.token, f"/pool/{poolid}", ["Pool.Allocate"])
        if poolid in service.state.pools:
            raise ApiError(500, f"create pool failed: pool '{poolid}' already exists")
        service.state.pools[poolid] = Pool(poolid, call.get("comment", ""))

    @router.route("PUT", "/pools", declare(
        poolid=PVE_POOL, comment=optional(STRING), delete=optional(BOOLEAN),
        vms=optional(STRING, format="pve-vmid-list"), storage=optional(
            STRING, format="pve-storage-id-list"), allow_move=optional(BOOLEAN)))
    def update_pool(call: Call) -> None:
        poolid = check_pool_id(call.get("poolid"))
        perms.require(call.token, f"/pool/{poolid}", ["Pool.Allocate"])
        service.state.check_pool_exists(poolid)
        pool = service.state.pools[poolid]
        if call.get("comment") is not None:
            pool.comment = call.get("comment")
        for text in filter(None, (call.get("vms") or "").replace(";", ",").split(",")):
            vmid = check_vmid(text, "vms")
            if call.get("delete"):
                pool.vmids.discard(vmid)
            elif other := [p for p in service.state.pools_of(vmid) if p != poolid]:
                if not call.get("allow-move"):
                    raise ApiError(500, f"VM {vmid} is already a pool member")
                service.state.pools[other[0]].vmids.discard(vmid)
                pool.vmids.add(vmid)
            else:
                pool.vmids.add(vmid)
        service.state.write_pools()


def _task_routes(router: Router, service: PveService) -> None:
    @router.route("GET", "/nodes/{node}/tasks", declare(
        node=PVE_NODE, errors=optional(BOOLEAN), limit=optional(INTEGER, minimum=0),
        since=optional(INTEGER), source=optional(STRING, enum=["archive", "active", "all"]),
        start=optional(INTEGER, minimum=0), statusfilter=optional(
            STRING, format="pve-task-status-type-list"), typefilter=optional(STRING),
        until=optional(INTEGER), userfilter=optional(STRING), vmid=optional(PVE_VMID)))
    def tasks(call: Call) -> list[dict[str, Any]]:
        node = service.check_node(call)
        audit = perms.has_privs(call.token, f"/nodes/{node}", ["Sys.Audit"])
        chosen = [t for t in service.tasks.listing() if _pve_task_matches(call, t, audit)]
        start, limit = call.get("start", 0), call.get("limit", 50)
        call.attributes["total"] = len(chosen)
        return [task_item(t) for t in chosen[start:start + limit if limit else None]]

    @router.route("GET", "/nodes/{node}/tasks/{upid}/status", declare(node=PVE_NODE, upid=UPID))
    def task_status(call: Call) -> dict[str, Any]:
        task = service.task(call)
        upid = task.upid
        result = {"upid": task.text, "node": upid.node, "pid": upid.pid, "pstart": upid.pstart,
                  "starttime": upid.starttime, "type": upid.worker_type, "id": upid.worker_id,
                  "user": upid.authid, "status": task.status}
        if task.exitstatus is not None:
            result["exitstatus"] = task.exitstatus
        return result

    @router.route("GET", "/nodes/{node}/tasks/{upid}/log", declare(
        node=PVE_NODE, upid=UPID, download=optional(BOOLEAN),
        limit=optional(INTEGER, minimum=0), start=optional(INTEGER, minimum=0)))
    def task_log(call: Call) -> list[dict[str, Any]]:
        """pve-manager PVE/API2/Tasks.pm ``read_task_log`` -> pve-common Tools.pm
        ``dump_logfile``: lines from the START, ``start`` skipped (``next if $count++ <
        $start``), ``n`` counted from 1, ``limit`` 0 reads to the end, an empty log is one
        line "no content"; ``set_result_attrib('total', $count)`` puts the count beside data."""
        task = service.task(call)
        lines = list(task.lines) or ["no content"]
        start, limit = call.get("start", 0), call.get("limit", 50)
        call.attributes["total"] = len(lines)
        chosen = lines[start:start + limit if limit else None]
        return [{"n": start + i + 1, "t": text} for i, text in enumerate(chosen)]


def _pve_task_matches(call: Call, task: Task, audit: bool) -> bool:
    upid, source = task.upid, call.get("source", "archive")
    if not audit and upid.authid != call.authid:
        return False
    if (source == "archive" and task.status == "running") or \
            (source == "active" and task.status != "running"):
        return False
    if call.get("errors") and not task.failed:
        return False
    if call.get("vmid") is not None and upid.worker_id != str(call.get("vmid")):
        return False
    checks = ((call.get("typefilter"), upid.worker_type), (call.get("userfilter"), upid.authid))
    if any(wanted and wanted not in value for wanted, value in checks):
        return False
    if call.get("since") is not None and upid.starttime < call.get("since"):
        return False
    return call.get("until") is None or upid.starttime <= call.get("until")
