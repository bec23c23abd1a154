"""PBS jobs (verify, sync, prune, garbage collection): config, runs and their state.

A job run is a real worker task (``verificationjob``, ``syncjob``, ``prunejob``,
``garbage_collection``) whose UPID, end time and state the job lists report as
``last-run-upid``, ``last-run-endtime`` and ``last-run-state`` (``OK``, ``WARNINGS: N`` or
the error text). ``next-run`` is computed from a small calendar-event subset:
``daily``, ``HH:MM`` and ``<weekday> HH:MM`` in the server's time zone. Jobs only run
when asked (``run``): the double has no scheduler.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from restoredrill.lab.proxmox import store_ops
from restoredrill.lab.proxmox.store import PbsStore
from restoredrill.lab.proxmox.tasks import Task, TaskRegistry

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WORKER_TYPES = {"verify": "verificationjob", "sync": "syncjob", "prune": "prunejob",
                "gc": "garbage_collection"}


@dataclass
class Job:
    kind: str                # verify, sync, prune, gc
    id: str
    store: str
    schedule: str
    options: dict[str, Any] = field(default_factory=dict)
    comment: str = ""
    last_task: Task | None = None

    @property
    def worker_id(self) -> str:
        if self.kind == "gc":
            return self.store
        if self.kind == "sync":   # proxmox-backup src/api2/pull.rs do_sync_job: remote|-:src:dst:ns:id
            return (f"{self.options.get('remote') or '-'}:{self.options['remote-store']}:{self.store}:"
                    f"{self.options.get('ns') or ''}:{self.id}")
        return f"{self.store}:{self.id}"


def next_run(schedule: str, after: datetime, zone: str) -> int | None:
    """The next event of ``daily``, ``HH:MM`` or ``<weekday> HH:MM`` after ``after``."""
    match = re.fullmatch(r"(?:(mon|tue|wed|thu|fri|sat|sun)\s+)?(\d{1,2}):(\d{2})|daily",
                         schedule.strip())
    if not match:
        return None
    day_name, hour, minute = match.groups() if schedule.strip() != "daily" else (None, 0, 0)
    local = after.astimezone(ZoneInfo(zone))
    candidate = local.replace(hour=int(hour), minute=int(minute), second=0, microsecond=0)
    for _ in range(8):
        if candidate > local and (day_name is None or
                                  WEEKDAYS[candidate.weekday()] == day_name):
            return int(candidate.timestamp())
        candidate += timedelta(days=1)
    return None


class PbsJobs:
    def __init__(self, stores: dict[str, PbsStore], tasks: TaskRegistry, zone: str):
        self.stores = stores
        self.tasks = tasks
        self.zone = zone
        self.jobs: dict[tuple[str, str], Job] = {}

    def add(self, job: Job) -> Job:
        self.jobs[(job.kind, job.id)] = job
        return job

    def of_kind(self, kind: str) -> list[Job]:
        return [job for (k, _), job in sorted(self.jobs.items()) if k == kind]

    def run(self, kind: str, job_id: str, authid: str = "root@pam") -> Task:
        job = self.jobs[(kind, job_id)]
        task = self.tasks.start(WORKER_TYPES[kind], job.worker_id, authid,
                                lambda t: self._work(job, t))
        job.last_task = task
        return task

    def hold(self, kind: str, job_id: str, timeout: float = 600) -> threading.Event:
        """Start a run that stays running until the returned event is set (or ``timeout``):
        a slow or hung job. While it runs the job list shows ``last-run-upid`` and no
        ``last-run-state`` (jobstate.rs ``JobState::Started``); the previous result is gone."""
        job = self.jobs[(kind, job_id)]
        release = threading.Event()
        job.last_task = self.tasks.start(WORKER_TYPES[kind], job.worker_id, "root@pam",
                                         lambda task: release.wait(timeout))
        return release

    def run_and_wait(self, kind: str, job_id: str, timeout: float = 120) -> Task:
        task = self.run(kind, job_id)
        task.done.wait(timeout)
        return task

    def _work(self, job: Job, task: Task) -> None:
        store = self.stores[job.store]
        if job.kind == "verify":
            store_ops.verify_snapshots(
                store, store.all_snapshot_infos(), task,
                ignore_verified=bool(job.options.get("ignore-verified", True)),
                outdated_after=job.options.get("outdated-after"))
        elif job.kind == "prune":
            keep = {k: v for k, v in job.options.items() if k.startswith("keep-")}
            store_ops.prune_store(store, keep, task, self.zone, ns=job.options.get("ns"),
                                  max_depth=job.options.get("max-depth"))
        elif job.kind == "gc":
            store_ops.garbage_collect(store, task)
        else:
            source = self.stores[job.options["remote-store"]]
            store_ops.sync_stores(source, store, task, job.options.get("owner", "root@pam"),
                                  remote_ns=job.options.get("remote-ns"), ns=job.options.get("ns"))

    # --- listings ----------------------------------------------------------------------
    def last_run(self, job: Job) -> dict[str, Any]:
        task = job.last_task
        result: dict[str, Any] = {}
        after = datetime.now().astimezone()
        if task is not None:
            result["last-run-upid"] = task.text
            if task.exitstatus is not None:
                result["last-run-state"] = task.exitstatus
                result["last-run-endtime"] = task.endtime
                after = datetime.fromtimestamp(task.endtime).astimezone()
        upcoming = next_run(job.schedule, after, self.zone)
        if upcoming is not None:
            result["next-run"] = upcoming
        return result

    def listing(self, kind: str, store: str | None = None) -> list[dict[str, Any]]:
        entries = []
        for job in self.of_kind(kind):
            if store is not None and job.store != store:
                continue
            entry: dict[str, Any] = {"id": job.id, "store": job.store,
                                     "schedule": job.schedule, **job.options}
            if job.comment:
                entry["comment"] = job.comment
            entry.update(self.last_run(job))
            entries.append(entry)
        return entries

    def gc_listing(self, store_names: list[str]) -> list[dict[str, Any]]:
        entries = []
        for name in store_names:
            status = dict(gc_counters(self.stores[name].gc_status))
            status.pop("upid", None)
            entry: dict[str, Any] = {"store": name, **status}
            job = self.jobs.get(("gc", name))
            if job is not None:
                entry["schedule"] = job.schedule
                last = self.last_run(job)
                entry.update({k: v for k, v in last.items() if k != "last-run-upid"})
            # the flattened GarbageCollectionStatus: ``upid`` of the last GC that finished
            # (api2/admin/datastore.rs garbage_collection_status), not of one running now
            if self.stores[name].gc_status.get("upid"):
                entry["upid"] = self.stores[name].gc_status["upid"]
            entries.append(entry)
        return entries


def gc_counters(status: dict[str, Any]) -> dict[str, Any]:
    """Every counter PBS reports, zero before the first garbage collection."""
    base = {key: 0 for key in ("index-file-count", "index-data-bytes", "disk-bytes",
                               "disk-chunks", "removed-bytes", "removed-chunks",
                               "pending-bytes", "pending-chunks", "removed-bad", "still-bad")}
    base["cache-stats"] = {"hits": 0, "misses": 0}
    base.update(status)
    return base
