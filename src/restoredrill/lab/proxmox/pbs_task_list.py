"""PBS ``GET /nodes/{node}/tasks`` as proxmox-backup src/api2/node/tasks.rs ``list_tasks``
answers it: which tasks a caller sees, the ``store`` filter and the "virtual" ``total``.

Visibility (``check_task_access``): Sys.Audit on /system/tasks sees every task; otherwise the
caller's own tasks, plus the scheduled-job tasks it could have run itself
(``check_job_privs``): a verification job with Datastore.Verify on its store, a sync job
with the pull privileges (``check_pull_privs``: Datastore.Backup on the local store or
namespace, Remote.Read on the remote's store, or Datastore.Backup on a local source), a
garbage collection or prune (job) with Datastore.Modify on the store (and namespace).
``store=`` keeps a task by ``check_job_store``: a verification job's store, a sync job's
LOCAL store (the one it writes into), a prune/gc/backup worker id equal to the store or
starting with ``store:``; any other task is left out. ``total`` is the number of items
before this page plus this page, plus one "virtual" entry when the page is full.
"""
from __future__ import annotations

import re
from typing import Any

from restoredrill.lab.proxmox.permissions import ApiToken, has_privs
from restoredrill.lab.proxmox.tasks import Task, Upid

SAFE_ID = r"[A-Za-z0-9_][A-Za-z0-9._\-]*"
NS = rf"(?:{SAFE_ID}/){{0,7}}{SAFE_ID}"
# pbs-api-types src/jobs.rs
VERIFICATION_JOB_WORKER_ID = re.compile(rf"^({SAFE_ID}):")
SYNC_JOB_WORKER_ID = re.compile(rf"^({SAFE_ID}|-):({SAFE_ID}):({SAFE_ID})(?::({NS}))?:")
STATUS_TYPES = {"ok": lambda s: s == "OK", "warning": lambda s: s.startswith("WARNINGS: "),
                "unknown": lambda s: s == "unknown"}


def may_see(token: ApiToken, upid: Upid) -> bool:
    """``check_task_access`` for a caller without Sys.Audit on /system/tasks."""
    if upid.authid == token.authid:
        return True
    worker_id = upid.worker_id or ""

    def on(path: list[str], priv: str) -> bool:
        return has_privs(token, "/" + "/".join(path), [priv])
    if upid.worker_type == "verificationjob" and (m := VERIFICATION_JOB_WORKER_ID.match(worker_id)):
        return on(["datastore", m.group(1)], "Datastore.Verify")
    if upid.worker_type == "syncjob" and (m := SYNC_JOB_WORKER_ID.match(worker_id)):
        remote, remote_store, local_store, ns = m.groups()
        local = ["datastore", local_store, *([ns] if ns else [])]
        source = (["remote", remote, remote_store], "Remote.Read") if remote != "-" else \
            (["datastore", remote_store], "Datastore.Backup")
        return on(local, "Datastore.Backup") and on(*source)
    if upid.worker_type == "garbage_collection" and worker_id:
        return on(["datastore", worker_id], "Datastore.Modify")
    if upid.worker_type in ("prune", "prunejob") and worker_id:
        parts = ["datastore", *worker_id.split(":")]
        if len(parts) not in (2, 3, 4):
            return False
        return on(parts[:3], "Datastore.Modify")
    return False


def in_store(upid: Upid, store: str) -> bool:
    """``check_job_store``."""
    kind, worker_id = upid.worker_type, upid.worker_id or ""
    if kind.startswith("verif"):
        m = VERIFICATION_JOB_WORKER_ID.match(worker_id)
        return m.group(1) == store if m else worker_id == store
    if kind == "syncjob":
        m = SYNC_JOB_WORKER_ID.match(worker_id)
        return bool(m) and m.group(3) == store
    if kind in ("prune", "prunejob", "backup", "garbage_collection"):
        return worker_id == store or worker_id.startswith(f"{store}:")
    return False


def status_matches(task: Task, wanted: list[str] | None) -> bool:
    """``statusfilter``: a running task never matches; "error" is any other end."""
    if not wanted:
        return True
    if task.exitstatus is None:
        return False
    kind = next((name for name, test in STATUS_TYPES.items() if test(task.exitstatus)), "error")
    return kind in wanted


def page(chosen: list[Any], start: int, limit: int) -> tuple[list[Any], int]:
    """This page and upstream's ``total`` (``count = len + start``, +1 when the page is full)."""
    items = chosen[start:start + limit if limit else None]
    total = len(items) + start
    if items and limit and len(items) >= limit:
        total += 1
    return items, total
