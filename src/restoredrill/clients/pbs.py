"""Proxmox Backup Server client: the only code that talks to the PBS API. Read side
only, plus prune in dry-run mode (it can never remove a snapshot). Answers are read
through the typed accessors of ``proxmox_api``: a malformed one is an ApiError naming the call."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from restoredrill.clients.pbs_versions import NotAvailable, PbsVersion, parse_version
from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, answer_list, answer_object, epoch_field
from restoredrill.clients.pve import LOG_TAIL_LINES, read_log_tail, task_status_answer, wait_for_task
from restoredrill.clients.upid import parse_upid

# The keep options of PBS's prune (pbs-api-types src/datastore.rs, ``KeepOptions``); the
# prune call's other parameters (dry-run, use-task, ns, backup-type, backup-id) are set
# by this client only.
PRUNE_KEEP_OPTIONS = ("keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly")


def prune_dry_run_params(backup_type: str, backup_id: str, keep: Mapping[str, int],
                         ns: str | None = None) -> dict[str, object]:
    """The parameters of a prune that cannot remove anything. The drill's PBS token holds
    Datastore.Modify (PBS demands it even for a dry run), so a ``dry-run: 0`` slipped in
    through ``keep`` would really prune: any key that is not a keep option is refused, and
    ``dry-run`` is set last."""
    params: dict[str, object] = {"backup-type": backup_type, "backup-id": backup_id}
    for key, value in keep.items():
        option = key.replace("_", "-")
        if option not in PRUNE_KEEP_OPTIONS:
            raise ApiError(f"PBS prune dry-run of {backup_type}/{backup_id}: {key!r} is not a PBS keep option "
                           f"({', '.join(PRUNE_KEEP_OPTIONS)}); refusing to send it (only keep options reach the "
                           f"prune call, so nothing can turn the dry run into a real prune). Fix the retention "
                           f"policy's options.", call="POST prune")
        if value:
            params[option] = value
    if ns:
        params["ns"] = ns
    params["dry-run"] = 1          # last: nothing above can undo it
    return params


class PbsClient:
    """``namespaces``: the inventory's namespace per datastore (PbsDatastore.namespace); it is
    sent as ``ns`` on every call that takes one unless the call names another (the root
    namespace otherwise: PBS lists only the namespace asked for, api2/admin/datastore.rs)."""

    def __init__(self, api: ApiChokePoint, node: str = "localhost",
                 namespaces: Mapping[str, str | None] | None = None):
        self.api = api
        self.node = node
        self.namespaces = dict(namespaces or {})
        self._version: PbsVersion | None = None

    def _get(self, path: str, shape: Callable, **params):
        """GET ``path``; the answer checked by ``shape`` (answer_list, answer_object...)."""
        return shape(self.api.call("get", path, **params), f"PBS GET {path}")

    def ns(self, store: str, ns: str | None = None) -> dict[str, str]:
        """``{"ns": ...}`` for ``store`` (the given one, else the inventory's), or nothing (root)."""
        chosen = ns if ns is not None else self.namespaces.get(store)
        return {"ns": chosen} if chosen else {}

    def version(self) -> PbsVersion:
        """``proxmox-backup-manager versions`` / GET /version, read once per client."""
        if self._version is None:
            self._version = parse_version(self.api.call("get", "/version"))
        return self._version

    def require(self, feature: str) -> None:
        """NotAvailable (a case that could not run) when the server's release lacks ``feature``."""
        version = self.version()
        if not version.has(feature):
            raise NotAvailable(version, feature)

    def permissions(self, path: str) -> dict[str, dict[str, bool]]:
        """``proxmox-backup-manager user permissions AUTHID --path PATH`` (GET /access/permissions):
        path -> privilege -> propagate of the calling token (pbs-api.json: "Map of ACL path to
        Map of privilege to propagate bit")."""
        return answer_object(self.api.call("get", "/access/permissions", path=path), "PBS GET /access/permissions")

    def datastores(self) -> list[dict]:
        """``proxmox-backup-manager datastore list`` / GET /admin/datastore"""
        return self._get("/admin/datastore", answer_list)

    def datastore_status(self, store: str) -> dict:
        """GET /admin/datastore/{store}/status?verbose=1 (total, used, avail, gc-status, counts)"""
        return self._get(f"/admin/datastore/{store}/status", answer_object, verbose=1)

    def groups(self, store: str, ns: str | None = None) -> list[dict]:
        """GET /admin/datastore/{store}/groups"""
        return self._listing(store, f"/admin/datastore/{store}/groups", self.ns(store, ns))

    def _listing(self, store: str, path: str, params: dict) -> list[dict]:
        """A group or snapshot listing; a namespace that does not exist is named as such. PBS
        lists a namespace by reading its directory (pbs-datastore src/hierarchy.rs
        ``ListGroups`` -> ``read_subdir``) and answers the bare errno text, 400 "ENOENT: No
        such file or directory", which alone reads like a missing file on the server."""
        try:
            return self._get(path, answer_list, **params)
        except ApiError as exc:
            ns = params.get("ns")
            if ns and exc.status == 400 and "No such file or directory" in str(exc):
                raise ApiError(f"PBS datastore {store!r} has no namespace {ns!r} (PBS answered 400 ENOENT when "
                               f"listing it). Check the namespace spelled in the inventory for this datastore "
                               f"against the namespaces PBS lists (`proxmox-backup-client namespace list` on the "
                               f"datastore, or GET /admin/datastore/{store}/namespace).",
                               status=400, call=exc.call) from None
            raise

    def snapshots(self, store: str, *, backup_type: str | None = None, backup_id: str | None = None,
                  ns: str | None = None) -> list[dict]:
        """``proxmox-backup-client snapshot list`` / GET /admin/datastore/{store}/snapshots; every
        item has a ``backup-time`` that is a time (required in PBS's ``SnapshotListItem``)."""
        params = {k: v for k, v in (("backup-type", backup_type), ("backup-id", backup_id)) if v}
        params.update(self.ns(store, ns))
        path = f"/admin/datastore/{store}/snapshots"
        items = self._listing(store, path, params)
        if not items and backup_id and params.get("ns"):
            # with backup-id PBS skips a group it cannot open and answers [] even for a namespace
            # that does not exist (api2/admin/datastore.rs list_snapshots): ask the namespace
            # itself, so a typo fails instead of reading as "no snapshots"
            self.groups(store, params["ns"])
        for item in items:
            snapshot_time(item, call=f"PBS GET {path}")
        return items

    def download(self, store: str, backup_type: str, backup_id: str, backup_time: int, file_name: str,
                 ns: str | None = None) -> bytes:
        """``proxmox-backup-client restore SNAPSHOT FILE -`` of one raw file (read-only):
        GET /admin/datastore/{store}/download. A DOWNLOAD method answers the file itself,
        not JSON; proxmoxer hands a body that is not JSON back as ``{"errors": <bytes>}``
        (a PBS blob or index starts with binary magic, so it never parses as UTF-8 JSON)."""
        params = {"backup-type": backup_type, "backup-id": backup_id, "backup-time": int(backup_time),
                  "file-name": file_name, **self.ns(store, ns)}
        path = f"/admin/datastore/{store}/download"
        answer = self.api.call("get", path, binary=True, **params)
        if isinstance(answer, dict) and isinstance(answer.get("errors"), (bytes, bytearray)):
            return bytes(answer["errors"])
        raise ApiError(f"PBS GET {path} {backup_type}/{backup_id}/{backup_time} {file_name}: expected the raw "
                       f"file, found a JSON answer ({str(answer)[:80]!r})", call=f"GET {path}")

    def prune_dry_run(self, store: str, backup_type: str, backup_id: str, keep: dict[str, int],
                      ns: str | None = None) -> list[dict]:
        """POST /admin/datastore/{store}/prune with dry-run=1: what PBS itself would keep."""
        params = prune_dry_run_params(backup_type, backup_id, keep, self.ns(store, ns).get("ns"))
        path = f"/admin/datastore/{store}/prune"
        return answer_list(self.api.call("post", path, **params), f"PBS POST {path}")

    def jobs(self, kind: str) -> list[dict]:
        """GET /admin/{verify|sync|prune|gc}: jobs with last-run-state, last-run-endtime, next-run"""
        if kind not in ("verify", "sync", "prune", "gc"):
            raise ValueError(f"unknown job kind {kind!r}")
        if kind == "gc":
            self.require("gc-jobs")
        # before 3.3 there is no push job and no sync-direction parameter (400 if sent)
        params = {"sync-direction": "all"} if kind == "sync" and self.version().has("sync-direction") else {}
        return self._get(f"/admin/{kind}", answer_list, **params)

    def notification_targets(self) -> list[dict]:
        """``proxmox-backup-manager notification target list`` / GET /config/notifications/targets"""
        self.require("notification-targets")
        return self._get("/config/notifications/targets", answer_list)

    def task_status(self, upid: str) -> dict:
        parse_upid(upid)          # before it becomes a path segment
        return self._get(f"/nodes/{self.node}/tasks/{upid}/status", task_status_answer)

    def task_log(self, upid: str, lines: int | None = None) -> list[str]:
        """The last ``lines`` lines of a task's log (``proxmox-backup-manager task log UPID``):
        GET /nodes/{node}/tasks/{upid}/log by ``start``/``limit`` from the answer's ``total``
        (PBS's ``start`` is one line off from PVE's: see ``pve.read_log_tail``)."""
        parse_upid(upid)
        path = f"/nodes/{self.node}/tasks/{upid}/log"
        return read_log_tail(lambda start, limit: self.api.call("get", path, envelope=True, start=start, limit=limit),
                             f"PBS GET {path}", lines or LOG_TAIL_LINES)

    def wait_task(self, upid: str, *, deadline: float, what: str) -> dict:
        return wait_for_task(lambda: self.task_status(upid), lambda: self.task_log(upid), upid,
                             deadline=deadline, what=what)


def snapshot_time(item: object, *, call: str = "PBS snapshot list") -> datetime:
    """A snapshot's ``backup-time`` (epoch seconds) as a UTC time; a missing, non-integer or
    out-of-range one is an ApiError naming ``call``."""
    return epoch_field(answer_object(item, call), "backup-time", call=call)


def snapshot_finished(item: Mapping) -> bool:
    """A listed snapshot whose backup has finished. PBS also lists a snapshot whose backup is
    still running (or was aborted): it has no ``index.json.blob`` yet, so its manifest cannot
    be loaded and the item carries only the file names, ``size`` none (api2/admin/datastore.rs
    ``list_snapshots_blocking``, the ``get_all_snapshot_files`` error branch). Never restore
    or download one."""
    names = {f.get("filename") if isinstance(f, Mapping) else str(f) for f in item.get("files") or []}
    return "index.json.blob" in names
