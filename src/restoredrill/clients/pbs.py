"""Proxmox Backup Server client: the only code that talks to the PBS API. Read side
only, plus prune in dry-run mode (it can never remove a snapshot)."""
from __future__ import annotations

from datetime import datetime, timezone

from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError
from restoredrill.clients.pve import wait_for_task


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
        params = {"backup-type": backup_type, "backup-id": backup_id, "dry-run": 1,
                  **{k.replace("_", "-"): v for k, v in keep.items() if v}}
        if ns:
            params["ns"] = ns
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
