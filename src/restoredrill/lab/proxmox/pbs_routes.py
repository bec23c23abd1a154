"""The PBS API of the double (the paths the harness uses), over real-format datastores.

Manual equivalents: ``proxmox-backup-manager datastore list``, ``proxmox-backup-client
snapshot list``, ``proxmox-backup-client prune --dry-run``, ``proxmox-backup-manager verify``,
``proxmox-backup-manager task list|log``, ``proxmox-backup-manager notification target list``.
Privileges (PBS paths ``/datastore/{store}``, ``/system/tasks``, ``/system/notifications``)
are checked through ``permissions``; a failed check answers 403 ``permission check failed``
as proxmox-rest-server does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from restoredrill.lab.proxmox import homelab, store_ops
from restoredrill.lab.proxmox.http import RawDownload
from restoredrill.lab.proxmox.names import check_backup_id, check_datastore
from restoredrill.lab.proxmox.pbs_node_routes import add_pbs_node_routes
from restoredrill.lab.proxmox.pbs_task_list import in_store, may_see, status_matches
from restoredrill.lab.proxmox.pbs_task_list import page as task_page
from restoredrill.lab.proxmox.pbs_jobs import PbsJobs, gc_counters
from restoredrill.lab.proxmox.permissions import has_privs, require
from restoredrill.lab.proxmox.routing import (BOOLEAN, INTEGER, PBS_BACKUP_ID, PBS_BACKUP_TYPE,
                                              PBS_NAME_PATTERN, PBS_NODE, PBS_NS, PBS_STORE,
                                              PBS_UPID, STRING,
                                              ApiError, Call, Router, declare, optional,
                                              param_error)
from restoredrill.lab.proxmox.store import PbsStore
from restoredrill.lab.proxmox.tasks import Task, TaskRegistry, parse_upid
from restoredrill.lab.proxmox.validate import UNKNOWN_PARAM, ParamErrors
from restoredrill.pbsformat import FormatError, MissingObject, SnapshotRef

# api2/version.rs: version = Cargo major.minor, release = patch, repoid = the build's full git
# commit (pbs-buildcfg build.rs: `git rev-parse HEAD`, or debian/rules' .repoid)
PBS_VERSION = {"version": "4.0", "release": "14", "repoid": "6f2a2b5d0c1e4b7a9d3f8e2c5b1a7d4e9f0c3b6a"}
AUDIT_PRIVS = ("Datastore.Audit", "Datastore.Backup", "Datastore.Read", "Datastore.Verify",
               "Datastore.Modify", "Datastore.Prune")
KEEP = {name: optional(INTEGER, minimum=1) for name in (
    "keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly")}
JOB_ID = {"type": "string", "minLength": 3, "maxLength": 32,
          "pattern": r"/^(?:[A-Za-z0-9_][A-Za-z0-9._\-]*)$/"}


@dataclass
class PbsService:
    node: str
    stores: dict[str, PbsStore]
    tasks: TaskRegistry
    jobs: PbsJobs
    zone: str
    notification_targets: list[dict[str, Any]] = field(
        default_factory=homelab.notification_targets)
    version: dict[str, str] = field(default_factory=lambda: dict(PBS_VERSION))
    fingerprint: str = ""       # the server certificate's (node status ``info``)

    def release(self) -> tuple[int, int]:
        major, minor = self.version["version"].split(".")[:2]
        return int(major), int(minor)

    def served_since(self, call: Call, since: tuple[int, int]) -> None:
        """A path the release does not have: proxmox-rest-server answers 404 ``Path '...' not
        found.`` (gc job list and notification targets came with PBS 3.2)."""
        if self.release() < since:
            raise ApiError(404, f"Path '/api2/json{call.path}' not found.")

    def store(self, call: Call, privs: tuple[str, ...] = AUDIT_PRIVS) -> PbsStore:
        name = check_datastore(call.get("store"))
        require(call.token, f"/datastore/{name}", privs, any_of=True, api="pbs")
        found = self.stores.get(name)
        if found is None:
            raise ApiError(400, f"no such datastore '{name}'")
        return found

    def task(self, call: Call) -> Task:
        try:
            parse_upid(call.get("upid"))
        except ValueError as exc:
            raise param_error("upid", str(exc)) from None
        task = self.tasks.get(call.get("upid"))
        if task is None:
            raise ApiError(400, f"task '{call.get('upid')}' does not exist")
        if task.upid.authid != call.authid:
            require(call.token, "/system/tasks", ["Sys.Audit"], api="pbs")
        return task


def build_pbs_router(service: PbsService) -> Router:
    router = Router("pbs")
    _datastore_routes(router, service)
    _job_routes(router, service)
    _task_routes(router, service)
    add_pbs_node_routes(router, service)

    @router.route("GET", "/version")
    def version(call: Call) -> dict[str, Any]:
        return dict(service.version)

    @router.route("GET", "/config/notifications/targets")
    def notification_targets(call: Call) -> list[dict[str, Any]]:
        service.served_since(call, (3, 2))
        require(call.token, "/system/notifications", ["Sys.Audit"], api="pbs")
        return sorted((dict(target) for target in service.notification_targets),
                      key=lambda t: t["name"])

    return router


def _datastore_routes(router: Router, service: PbsService) -> None:
    @router.route("GET", "/admin/datastore")
    def datastores(call: Call) -> list[dict[str, Any]]:
        return [{"store": name, "comment": store.comment, "backend-type": store.backend_type,
                 "mount-status": "nonremovable"}
                for name, store in sorted(service.stores.items())
                if has_privs(call.token, f"/datastore/{name}", AUDIT_PRIVS, any_of=True)]

    @router.route("GET", "/admin/datastore/{store}/status",
                  declare(store=PBS_STORE, verbose=optional(BOOLEAN)))
    def status(call: Call) -> dict[str, Any]:
        store = service.store(call, ("Datastore.Audit", "Datastore.Backup"))
        total, used, avail = store.backend.usage()
        result = {"total": total, "used": used, "avail": avail,
                  "backend-type": store.backend_type}
        if call.get("verbose"):
            result["counts"] = store.counts()
            result["gc-status"] = gc_counters(store.gc_status)
        return result

    @router.route("GET", "/admin/datastore/{store}/groups", declare(store=PBS_STORE,
                                                                    ns=optional(PBS_NS)))
    def groups(call: Call) -> list[dict[str, Any]]:
        store = service.store(call)
        check_namespace_listing(store, call.get("ns"), None)    # list_groups: iter_backup_groups
        return store.group_entries(call.get("ns"))

    @router.route("GET", "/admin/datastore/{store}/snapshots", declare(
        store=PBS_STORE, ns=optional(PBS_NS), backup_type=optional(PBS_BACKUP_TYPE),
        backup_id=optional(PBS_BACKUP_ID)))
    def snapshots(call: Call) -> list[dict[str, Any]]:
        store = service.store(call)
        backup_id = call.get("backup-id")
        if backup_id is not None:
            check_backup_id(backup_id)
        check_namespace_listing(store, call.get("ns"), backup_id)
        infos = store.snapshot_infos(call.get("backup-type"), backup_id, call.get("ns"))
        return [store.snapshot_entry(info) for info in infos]

    @router.route("POST", "/admin/datastore/{store}/prune", declare({
        **KEEP, "store": PBS_STORE, "backup-type": PBS_BACKUP_TYPE, "backup-id": PBS_BACKUP_ID,
        "ns": optional(PBS_NS), "dry-run": optional(BOOLEAN), "use-task": optional(BOOLEAN)}))
    def prune(call: Call) -> Any:
        store = service.store(call, ("Datastore.Modify", "Datastore.Prune"))
        backup_type, backup_id = call.get("backup-type"), check_backup_id(call.get("backup-id"))
        if not has_privs(call.token, f"/datastore/{store.name}", ["Datastore.Modify"]) and \
                store.owner(backup_type, backup_id, call.get("ns")) != call.authid:
            raise ApiError(403, "permission check failed")
        keep = {k: v for k, v in call.params.items() if k.startswith("keep-")}

        def work(task: Task | None = None) -> list[dict[str, Any]]:
            return store_ops.prune_group(store, backup_type, backup_id, keep, ns=call.get("ns"),
                                         dry_run=bool(call.get("dry-run")), zone=service.zone,
                                         task=task)
        if call.get("use-task"):
            return service.tasks.start("prune", f"{store.name}:{backup_type}/{backup_id}",
                                       call.authid, work).text
        return work()

    @router.route("POST", "/admin/datastore/{store}/verify", declare(
        store=PBS_STORE, ns=optional(PBS_NS), backup_type=optional(PBS_BACKUP_TYPE),
        backup_id=optional(PBS_BACKUP_ID), backup_time=optional(INTEGER, minimum=1),
        ignore_verified=optional(BOOLEAN), outdated_after=optional(INTEGER, minimum=0),
        max_depth=optional(INTEGER, minimum=0, maximum=7),
        read_threads=optional(INTEGER, minimum=1, maximum=32),
        verify_threads=optional(INTEGER, minimum=1, maximum=32)))
    def verify(call: Call) -> str:
        store = service.store(call, ("Datastore.Verify",))
        kind, ident, moment = (call.get("backup-type"), call.get("backup-id"),
                               call.get("backup-time"))
        infos = store.snapshot_infos(kind, check_backup_id(ident) if ident else None,
                                     call.get("ns"))
        if moment is not None:
            infos = [i for i in infos if i.epoch == moment]
            worker_type, worker_id = "verify_snapshot", f"{store.name}:{kind}/{ident}/{moment:08X}"
        elif ident is not None:
            worker_type, worker_id = "verify_group", f"{store.name}:{kind}/{ident}"
        else:
            worker_type, worker_id = "verify", store.name
        if (kind or ident or moment) and not infos:
            raise ApiError(400, "no such snapshot or group")
        ignore = call.get("ignore-verified", 1)
        task = service.tasks.start(worker_type, worker_id, call.authid, lambda t: (
            store_ops.verify_snapshots(store, infos, t, ignore_verified=bool(ignore),
                                       outdated_after=call.get("outdated-after"))))
        return task.text

    @router.route("GET", "/admin/datastore/{store}/download", declare(
        store=PBS_STORE, ns=optional(PBS_NS), backup_type=PBS_BACKUP_TYPE,
        backup_id=PBS_BACKUP_ID, backup_time=dict(INTEGER, minimum=1),
        file_name={"type": "string", "pattern": PBS_NAME_PATTERN}))
    def download(call: Call) -> RawDownload:
        """``proxmox-backup-client restore SNAPSHOT FILE -`` of one raw file (a DOWNLOAD
        method: the answer is the file, not JSON). Upstream (``api2/admin/datastore.rs``
        ``download_file``): Datastore.Read on /datastore/{store}[/{ns}], or Datastore.Backup
        and owning the group (``check_priv_or_backup_owner``); the file name is a plain name
        inside the snapshot directory; an unopenable file is 400 ``File open failed``."""
        ns = call.get("ns") or None
        acl_path = f"/datastore/{check_datastore(call.get('store'))}" + (f"/{ns}" if ns else "")
        require(call.token, acl_path, ("Datastore.Read", "Datastore.Backup"), any_of=True,
                api="pbs")
        store = service.stores.get(call.get("store"))
        if store is None:
            raise ApiError(400, f"no such datastore '{call.get('store')}'")
        kind, ident = call.get("backup-type"), check_backup_id(call.get("backup-id"))
        if not has_privs(call.token, acl_path, ["Datastore.Read"]) and \
                not _owns(call.authid, store.owner(kind, ident, ns)):
            raise ApiError(403, "permission check failed")
        name = call.get("file-name")
        try:
            ref = SnapshotRef(ns, kind, ident, call.get("backup-time"))
            return RawDownload(store.read_snapshot_file(ref, name))
        except MissingObject:
            raise ApiError(400, f"File open failed: {name}: No such file or directory "
                                "(os error 2)") from None
        except FormatError as exc:
            raise param_error("file-name", str(exc)) from None

    @router.route("POST", "/admin/datastore/{store}/gc", declare(store=PBS_STORE))
    def start_gc(call: Call) -> str:
        store = service.store(call, ("Datastore.Modify",))
        return service.tasks.start("garbage_collection", store.name, call.authid,
                                   lambda t: store_ops.garbage_collect(store, t)).text


def _owns(authid: str, owner: str | None) -> bool:
    """``check_backup_owner``: the owner itself, or a user owning through one of its tokens."""
    if owner is None:
        return False
    return owner == authid or ("!" in owner and "!" not in authid
                               and owner.split("!", 1)[0] == authid)


def _job_routes(router: Router, service: PbsService) -> None:
    def visible(call: Call, kind: str, store: str | None) -> list[dict[str, Any]]:
        return [entry for entry in service.jobs.listing(kind, store)
                if has_privs(call.token, f"/datastore/{entry['store']}", AUDIT_PRIVS,
                             any_of=True)]

    def sync_job_readable(call: Call, entry: dict[str, Any]) -> bool:
        """proxmox-backup src/api2/config/sync.rs ``check_sync_job_read_access``: Datastore.Audit
        on the job's store (and namespace), then Remote.Audit on ``/remote/<remote>`` for a job
        from a remote, else Datastore.Audit on the source store."""
        anchor = f"/datastore/{entry['store']}" + (f"/{entry['ns']}" if entry.get("ns") else "")
        if not has_privs(call.token, anchor, ["Datastore.Audit"]):
            return False
        if entry.get("remote"):
            return has_privs(call.token, f"/remote/{entry['remote']}", ["Remote.Audit"])
        return has_privs(call.token, f"/datastore/{entry['remote-store']}", ["Datastore.Audit"])

    @router.route("GET", "/admin/verify", declare(store=optional(PBS_STORE)))
    def verify_jobs(call: Call) -> list[dict[str, Any]]:
        return visible(call, "verify", call.get("store"))

    @router.route("GET", "/admin/prune", declare(store=optional(PBS_STORE)))
    def prune_jobs(call: Call) -> list[dict[str, Any]]:
        return visible(call, "prune", call.get("store"))

    @router.route("GET", "/admin/sync", declare(store=optional(PBS_STORE), sync_direction=optional(
        STRING, enum=["all", "push", "pull"])))
    def sync_jobs(call: Call) -> list[dict[str, Any]]:
        if service.release() < (3, 3) and "sync-direction" in call.params:
            # before 3.3 the method has no such property: proxmox-router refuses it (400)
            raise ParamErrors({"sync-direction": UNKNOWN_PARAM})
        direction = call.get("sync-direction", "pull")
        return [e for e in service.jobs.listing("sync", call.get("store"))
                if sync_job_readable(call, e)
                and (direction == "all" or e.get("sync-direction", "pull") == direction)]

    @router.route("GET", "/admin/gc", declare(store=optional(PBS_STORE)))
    def gc_jobs(call: Call) -> list[dict[str, Any]]:
        service.served_since(call, (3, 2))
        names = [n for n in sorted(service.stores) if call.get("store") in (None, n)
                 and has_privs(call.token, f"/datastore/{n}", AUDIT_PRIVS, any_of=True)]
        return service.jobs.gc_listing(names)

    for kind, privilege in (("verify", "Datastore.Verify"), ("sync", "Datastore.Backup"),
                            ("prune", "Datastore.Modify")):
        _run_job_route(router, service, kind, privilege)


def check_namespace_listing(store: PbsStore, ns: str | None, backup_id: str | None) -> None:
    """proxmox-backup src/api2/admin/datastore.rs ``list_snapshots_blocking``: without
    ``backup-id`` the groups are listed by reading the namespace's directory (pbs-datastore
    src/hierarchy.rs ``ListGroups::new`` / ``ListGroupsType::new`` -> proxmox-sys
    ``read_subdir``), which fails for a namespace that does not exist (400, the errno text);
    with ``backup-id`` a missing group is skipped (its owner cannot be read) and the answer
    is empty. A namespace exists here when a snapshot lives in it or below it (the double
    creates no empty namespaces)."""
    if not ns or backup_id is not None:
        return
    if not any(info.ns == ns or (info.ns or "").startswith(ns + "/")
               for info in store.all_snapshot_infos()):
        raise ApiError(400, "ENOENT: No such file or directory")


def _run_job_route(router: Router, service: PbsService, kind: str, privilege: str) -> None:
    @router.route("POST", f"/admin/{kind}/{{id}}/run", declare(id=JOB_ID))
    def run_job(call: Call) -> str:
        job = service.jobs.jobs.get((kind, call.get("id")))
        if job is None:
            raise ApiError(400, f"job '{call.get('id')}' does not exist.")
        require(call.token, f"/datastore/{job.store}", [privilege], api="pbs")
        return service.jobs.run(kind, job.id, call.authid).text


def _task_routes(router: Router, service: PbsService) -> None:
    @router.route("GET", "/nodes/{node}/tasks", declare(
        node=PBS_NODE, errors=optional(BOOLEAN), limit=optional(INTEGER),
        running=optional(BOOLEAN), since=optional(INTEGER), start=optional(INTEGER),
        statusfilter=optional({"type": "array", "items": {
            "type": "string", "enum": ["ok", "warning", "error", "unknown"]}}),
        store=optional(PBS_STORE), typefilter=optional(STRING), until=optional(INTEGER),
        userfilter=optional(STRING)))
    def tasks(call: Call) -> list[dict[str, Any]]:
        """proxmox-backup src/api2/node/tasks.rs ``list_tasks`` (see pbs_task_list)."""
        audit = has_privs(call.token, "/system/tasks", ["Sys.Audit"])
        chosen = [t for t in service.tasks.listing() if _task_matches(call, t, audit)]
        items, call.attributes["total"] = task_page(chosen, call.get("start", 0),
                                                    call.get("limit", 50))
        return [_task_item(t) for t in items]

    @router.route("GET", "/nodes/{node}/tasks/{upid}/status",
                  declare(node=PBS_NODE, upid=PBS_UPID))
    def task_status(call: Call) -> dict[str, Any]:
        task = service.task(call)
        upid = task.upid
        result = {"upid": task.text, "node": upid.node, "pid": upid.pid, "pstart": upid.pstart,
                  "starttime": upid.starttime, "type": upid.worker_type, "id": upid.worker_id,
                  "user": upid.authid.split("!")[0], "status": task.status}
        if "!" in upid.authid:
            result["tokenid"] = upid.authid.split("!", 1)[1]
        if task.exitstatus is not None:
            result["exitstatus"] = task.exitstatus
            result["endtime"] = task.endtime
        return result

    @router.route("GET", "/nodes/{node}/tasks/{upid}/log", declare(
        node=PBS_NODE, upid=PBS_UPID, download=optional(BOOLEAN),
        limit=optional(INTEGER, minimum=0), start=optional(INTEGER, minimum=0),
        test_status=optional(BOOLEAN)))
    def task_log(call: Call) -> list[dict[str, Any]]:
        """proxmox-backup src/api2/node/tasks.rs ``read_task_log``: ``count += 1; if count <
        start { continue }``, so ``start=S`` begins AT line S (PVE: after it), ``n`` from 1,
        ``limit`` 0 reads to the end; ``{"data", "total": count, "success"}`` (+ ``active``)."""
        task = service.task(call)
        lines = list(task.lines)
        start, limit = call.get("start", 0), call.get("limit", 50)
        first = max(start - 1, 0)
        chosen = lines[first:first + limit if limit else None]
        call.attributes["total"] = len(lines)
        call.attributes["success"] = 1
        if call.get("test-status"):
            call.attributes["active"] = task.status == "running"
        return [{"n": first + i + 1, "t": text} for i, text in enumerate(chosen)]


def _task_matches(call: Call, task: Task, audit: bool) -> bool:
    upid = task.upid
    if not audit and not may_see(call.token, upid):
        return False
    if not status_matches(task, call.get("statusfilter")):
        return False
    if call.get("running") and task.status != "running":
        return False
    if call.get("errors") and not task.failed:
        return False
    if call.get("typefilter") and call.get("typefilter") not in upid.worker_type:
        return False
    if call.get("userfilter") and call.get("userfilter") not in upid.authid:
        return False
    if call.get("since") is not None and upid.starttime < call.get("since"):
        return False
    if call.get("until") is not None and upid.starttime > call.get("until"):
        return False
    if call.get("store") and not in_store(upid, call.get("store")):
        return False
    return True


def _task_item(task: Task) -> dict[str, Any]:
    upid = task.upid
    item = {"upid": task.text, "node": upid.node, "pid": upid.pid, "pstart": upid.pstart,
            "starttime": upid.starttime, "worker_type": upid.worker_type,
            "worker_id": upid.worker_id, "user": upid.authid}
    if task.exitstatus is not None:
        item["endtime"] = task.endtime
        item["status"] = task.exitstatus
    return item
