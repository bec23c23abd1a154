"""Proxmox Backup Server client: the only code that talks to the PBS API. Read side
only, plus prune in dry-run mode (it can never remove a snapshot)."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError
from restoredrill.clients.pve import wait_for_task

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
    def __init__(self, api: ApiChokePoint, node: str = "localhost"):
        self.api = api
        self.node = node

    def datastores(self) -> list[dict]:
        """``proxmox-backup-manager datastore list`` / GET /admin/datastore"""
        return self.api.call("get", "/admin/datastore")

    def datastore_status(self, store: str) -> dict:
        """GET /admin/datastore/{store}/status?verbose=1 (total, used, avail, gc-status, counts)"""
        return self.api.call("get", f"/admin/datastore/{store}/status", verbose=1)

    def groups(self, store: str, ns: str | None = None) -> list[dict]:
        """GET /admin/datastore/{store}/groups"""
        return self.api.call("get", f"/admin/datastore/{store}/groups", **({"ns": ns} if ns else {}))

    def snapshots(self, store: str, *, backup_type: str | None = None, backup_id: str | None = None,
                  ns: str | None = None) -> list[dict]:
        """``proxmox-backup-client snapshot list`` / GET /admin/datastore/{store}/snapshots"""
        params = {k: v for k, v in (("backup-type", backup_type), ("backup-id", backup_id), ("ns", ns)) if v}
        return self.api.call("get", f"/admin/datastore/{store}/snapshots", **params)

    def download(self, store: str, backup_type: str, backup_id: str, backup_time: int, file_name: str,
                 ns: str | None = None) -> bytes:
        """``proxmox-backup-client restore SNAPSHOT FILE -`` of one raw file (read-only):
        GET /admin/datastore/{store}/download. A DOWNLOAD method answers the file itself,
        not JSON; proxmoxer hands a body that is not JSON back as ``{"errors": <bytes>}``
        (a PBS blob or index starts with binary magic, so it never parses as UTF-8 JSON)."""
        params = {"backup-type": backup_type, "backup-id": backup_id, "backup-time": int(backup_time),
                  "file-name": file_name}
        if ns:
            params["ns"] = ns
        path = f"/admin/datastore/{store}/download"
        answer = self.api.call("get", path, **params)
        if isinstance(answer, dict) and isinstance(answer.get("errors"), (bytes, bytearray)):
            return bytes(answer["errors"])
        raise ApiError(f"PBS GET {path} {backup_type}/{backup_id}/{backup_time} {file_name}: expected the raw "
                       f"file, found a JSON answer ({str(answer)[:80]!r})", call=f"GET {path}")

    def prune_dry_run(self, store: str, backup_type: str, backup_id: str, keep: dict[str, int],
                      ns: str | None = None) -> list[dict]:
        """POST /admin/datastore/{store}/prune with dry-run=1: what PBS itself would keep."""
        params = prune_dry_run_params(backup_type, backup_id, keep, ns)
        return self.api.call("post", f"/admin/datastore/{store}/prune", **params)

    def jobs(self, kind: str) -> list[dict]:
        """GET /admin/{verify|sync|prune|gc}: jobs with last-run-state, last-run-endtime, next-run"""
        if kind not in ("verify", "sync", "prune", "gc"):
            raise ValueError(f"unknown job kind {kind!r}")
        params = {"sync-direction": "all"} if kind == "sync" else {}
        return self.api.call("get", f"/admin/{kind}", **params)

    def notification_targets(self) -> list[dict]:
        """``proxmox-backup-manager notification target list`` / GET /config/notifications/targets"""
        return self.api.call("get", "/config/notifications/targets")

    def task_status(self, upid: str) -> dict:
        return self.api.call("get", f"/nodes/{self.node}/tasks/{upid}/status")

    def task_log(self, upid: str, limit: int = 500) -> list[str]:
        return [line.get("t", "") for line in self.api.call("get", f"/nodes/{self.node}/tasks/{upid}/log",
                                                              limit=limit)]

    def wait_task(self, upid: str, *, deadline: float, what: str) -> dict:
        return wait_for_task(lambda: self.task_status(upid), lambda: self.task_log(upid), upid,
                             deadline=deadline, what=what)


def snapshot_time(item: dict) -> datetime:
    return datetime.fromtimestamp(int(item["backup-time"]), tz=timezone.utc)
