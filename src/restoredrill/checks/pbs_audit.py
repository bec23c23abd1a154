"""The PBS audits that need no restore, as pure functions over the API answers.

Control flow: the drills (``drills/test_pbs_audit.py``) fetch the answers once through
the clients (``fixtures/pbs.py``), hand them here as plain values, and fail with the
problems. Every check returns a :class:`Verdict`: ``problems`` (each one sentence
saying what was expected, what was found, and where) and ``facts`` (JSON-ready
evidence). Nothing here does I/O or reads the clock: ``now`` is always passed in.

Checks: guest coverage (backed up, or an exception with its proof), the cluster's
guests all in the inventory, newest snapshot against the RPO, verification state and
age, PBS's prune answer against restoredrill's engine, datastore usage, job last runs,
notification targets.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from restoredrill.checks.coverage import note_coverage
from restoredrill.checks.errors import Verdict
from restoredrill.checks.pbs_jobs import (check_job, check_jobs, check_running_job, job_covers,  # noqa: F401
                                          job_disabled, job_id, job_upid, list_some, namespace_depth,
                                          show_age, show_time)
from restoredrill.clients.upid import UpidError, parse_upid
from restoredrill.plan import backup_finished, backup_of_type

MANIFEST = "index.json.blob"
MAX_LISTED = 5
KEEP_OPTIONS = ("keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly")
NO_GUEST_CAUSE = ("the audit token sees no VM and no container in /cluster/resources: it lacks VM.Audit "
                  "on /vms (or the guests' pools), or the API URL names another cluster")
NOTHING_COMPARED_CAUSE = ("no snapshot is in both restoredrill's listing and PBS's prune dry-run answer: the "
                          "group is empty, or the dry-run answered for another group or namespace")




@dataclass(frozen=True)
class Snapshot:
    """One item of ``GET /admin/datastore/{store}/snapshots``, as the audits need it."""

    backup_type: str
    backup_id: str
    time: datetime
    finished: bool = True
    protected: bool = False
    verify_state: str | None = None
    verify_upid: str | None = None
    fingerprint: str | None = None

    @property
    def name(self) -> str:
        """The snapshot path PBS prints: ``vm/110/2026-05-01T01:00:03Z``."""
        return f"{self.backup_type}/{self.backup_id}/{self.time.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"

    @property
    def epoch(self) -> int:
        return int(self.time.timestamp())


def snapshot_from_api(item: Mapping) -> Snapshot:
    """A snapshot list item; ``files`` holds objects on the wire, strings in the schema.
    A snapshot without ``index.json.blob`` is unfinished (a backup still running or aborted)."""
    names = {f.get("filename") if isinstance(f, Mapping) else str(f) for f in item.get("files") or []}
    verification = item.get("verification") or {}
    return Snapshot(str(item["backup-type"]), str(item["backup-id"]),
                    datetime.fromtimestamp(int(item["backup-time"]), tz=timezone.utc),
                    finished=MANIFEST in names, protected=bool(item.get("protected")),
                    verify_state=verification.get("state"), verify_upid=verification.get("upid"),
                    fingerprint=item.get("fingerprint"))


def group_type(guest_type: str) -> str:
    """PBS backup type of a guest: ``vm`` for qemu, ``ct`` for lxc."""
    return {"qemu": "vm", "lxc": "ct"}[guest_type]


# --- guests ---------------------------------------------------------------------------

def check_guest_coverage(guest, resource: Mapping | None, backups: list[Mapping], storages: list[str],
                         not_backed_up: set[int]) -> Verdict:
    """A guest of the inventory is in the cluster, and is backed up (a snapshot on a PBS
    storage, and a backup job covering it) or carries an exception with its proof.

    ``guest`` is an inventory ``Guest``; ``resource`` its ``/cluster/resources`` item (None:
    not in the cluster); ``backups`` its volumes on the PBS storages ``storages``;
    ``not_backed_up`` the VMIDs of ``/cluster/backup-info/not-backed-up``.
    """
    verdict = Verdict(facts={"vmid": guest.vmid, "strategy": guest.strategy})
    where = f"guest {guest.name} (VMID {guest.vmid})"
    if resource is None:
        verdict.problems.append(f"{where}: expected it in the cluster (/cluster/resources); found no such "
                                f"guest: it was removed or renumbered, or the token cannot see it. Fix the "
                                f"inventory's vmid or remove the guest from it")
        return verdict
    verdict.facts.update(node=resource.get("node"), cluster_name=resource.get("name"))
    if resource.get("type") != guest.type:
        verdict.problems.append(f"{where}: expected a {guest.type} guest (inventory); found a "
                                f"{resource.get('type')} guest in the cluster")
    if guest.strategy != "pbs":
        return _check_exception(guest, where, verdict)
    mine = [b for b in backups if backup_of_type(b, guest.type)]      # vm/110 and ct/110 share a listing
    finished = [b for b in mine if backup_finished(b)]
    newest = max(finished, key=lambda b: int(b.get("ctime", 0)), default=None)
    verdict.facts.update(backups=len(finished), storages=",".join(storages),
                         newest_backup=newest.get("volid") if newest else None)
    if len(mine) < len(backups):
        verdict.facts["other_type_same_id"] = len(backups) - len(mine)
    if len(finished) < len(mine):
        verdict.facts["unfinished"] = len(mine) - len(finished)
    if newest is None:
        verdict.problems.append(f"{where}: expected a backup on a PBS storage ({', '.join(storages) or 'none found'}); "
                                f"found no snapshot at all: nothing to restore")
    if guest.vmid in not_backed_up:
        verdict.problems.append(f"{where}: expected a backup job to include it; found it in "
                                f"/cluster/backup-info/not-backed-up: no new snapshot will be made")
    return verdict


def _check_exception(guest, where: str, verdict: Verdict) -> Verdict:
    verdict.facts["exception"] = guest.exception
    if guest.strategy == "config-export":
        if not guest.config_export:
            verdict.problems.append(f"{where}: strategy config-export expects config_export to name the "
                                    f"offsite.config_exports entry that proves the config backup; found none")
        else:
            verdict.facts["proof"] = f"offsite:{guest.config_export} (config export drill: fresh, parses)"
    else:
        verdict.facts["proof"] = "none: not backed up by decision (exception)"
    return verdict


def check_cluster_inventoried(resources: Iterable[Mapping], inventory_vmids: set[int],
                              scratch: tuple[int, int], *, empty_ok: bool = False) -> Verdict:
    """Every guest of the cluster is in the inventory (scratch guests made by drills excepted);
    a cluster where the token sees no guest at all fails (nothing was checked)."""
    low, high = scratch
    guests = [r for r in resources if r.get("type") in ("qemu", "lxc")]
    unlisted = [r for r in guests if int(r["vmid"]) not in inventory_vmids and not low <= int(r["vmid"]) <= high]
    verdict = Verdict(facts={"cluster_guests": len(guests), "unlisted": len(unlisted)})
    if unlisted:
        named = [f"{r['type']} {r['vmid']} ({r.get('name', '?')} on {r.get('node', '?')})"
                 for r in sorted(unlisted, key=lambda r: int(r["vmid"]))]
        verdict.problems.append(f"cluster: expected every guest in the inventory (backed up or with an "
                                f"exception); found {len(unlisted)} guest(s) the inventory does not list: "
                                f"{list_some(named)}. Add them to guests: with a strategy")
    return note_coverage(verdict, len(guests), "guests", "cluster", empty_ok=empty_ok, cause=NO_GUEST_CAUSE)


# --- snapshots ------------------------------------------------------------------------

def check_fresh(snapshots: list[Snapshot], *, now: datetime, limit: timedelta, where: str,
                rpo_name: str) -> Verdict:
    """The newest finished snapshot is younger than the RPO (max_age + grace)."""
    finished = [s for s in snapshots if s.finished]
    verdict = Verdict(facts={"snapshots": len(snapshots), "rpo": rpo_name,
                             "rpo_hours": round(limit.total_seconds() / 3600, 2)})
    if not finished:
        extra = f" ({len(snapshots)} unfinished)" if snapshots else ""
        verdict.problems.append(f"{where}: expected a snapshot younger than {show_age(limit)} (RPO {rpo_name}); "
                                f"found no finished snapshot{extra}")
        return verdict
    newest = max(finished, key=lambda s: s.time)
    age = now - newest.time
    verdict.facts.update(snapshot=newest.name, snapshot_time=newest.time.isoformat(),
                         age_hours=round(age.total_seconds() / 3600, 2))
    if age > limit:
        verdict.problems.append(f"{where}: expected the newest snapshot to be younger than {show_age(limit)} "
                                f"(RPO {rpo_name}); found {newest.name} from {show_time(newest.time)}, "
                                f"{show_age(age)} old: backups (or the sync feeding this datastore) have "
                                f"stopped or are failing")
    return verdict


def verify_started(upid: str | None) -> datetime | None:
    """Start time of the verify task, from its UPID; None when there is none."""
    return parse_upid(upid).starttime if upid else None


def check_verification(snapshots: list[Snapshot], *, now: datetime, max_age: timedelta, where: str) -> Verdict:
    """No snapshot failed verification; the group's newest verification is ok and younger
    than ``max_age``; no finished snapshot older than ``max_age`` was never verified."""
    verdict = Verdict()
    finished = [s for s in snapshots if s.finished]
    verified: list[tuple[datetime, Snapshot]] = []
    for snapshot in finished:
        if snapshot.verify_state is None:
            continue
        try:
            started = verify_started(snapshot.verify_upid)
        except UpidError as exc:
            verdict.problems.append(f"{where}: snapshot {snapshot.name}: the verification's task id is "
                                    f"unreadable ({exc})")
            continue
        verified.append((started or snapshot.time, snapshot))
    failed = [s for _, s in sorted(verified, key=lambda pair: pair[1].time) if s.verify_state != "ok"]
    for snapshot in failed:
        verdict.problems.append(f"{where}: snapshot {snapshot.name} failed verification "
                                f"(state {snapshot.verify_state!r}, task {snapshot.verify_upid}): its data is "
                                f"damaged or missing; restore from another copy and re-run verify")
    never = [s.name for s in finished if s.verify_state is None and now - s.time > max_age]
    if never:
        verdict.problems.append(f"{where}: expected every snapshot older than {show_age(max_age)} to be "
                                f"verified; found {len(never)} never verified: {list_some(never)}: the "
                                f"verify job does not reach them")
    verdict.facts.update(snapshots=len(finished), verified=len(verified), failed=len(failed),
                         never_verified=sum(1 for s in finished if s.verify_state is None))
    if not verified:
        if finished and not never:
            verdict.facts["note"] = "no snapshot verified yet; all are younger than verify_max_age"
        elif not finished:
            verdict.problems.append(f"{where}: expected verified snapshots; found no finished snapshot")
        return verdict
    last_time, last = max(verified, key=lambda pair: (pair[0], pair[1].time))   # a job verifies many at once
    age = now - last_time
    verdict.facts.update(last_verified=last.name, last_verify_state=last.verify_state,
                         last_verify_time=last_time.isoformat(), last_verify_upid=last.verify_upid,
                         last_verify_age_hours=round(age.total_seconds() / 3600, 2))
    if age > max_age:
        verdict.problems.append(f"{where}: expected a verification within {show_age(max_age)}; the newest "
                                f"one (of {last.name}, task {last.verify_upid}) started {show_time(last_time)}, "
                                f"{show_age(age)} ago: the verify job is not running")
    return verdict


# --- retention: restoredrill's engine against PBS's own prune answer ------------------

def server_prune_policies(prune_jobs: Iterable[Mapping], store: str,
                          ns: str | None = None) -> list[tuple[str, dict[str, int]]]:
    """(job id, keep options) of the enabled prune jobs of the server that prune namespace
    ``ns`` of ``store`` (a disabled job, or one limited to another namespace or depth, is no
    prune of these groups)."""
    return [(str(job.get("id")), {k: int(job[k]) for k in KEEP_OPTIONS if job.get(k)})
            for job in prune_jobs if job_covers(job, store, ns) and not job_disabled(job)]


def policy_differences(inventory: Mapping[str, int], server: Mapping[str, int]) -> list[str]:
    """Keep options that differ (``keep-daily: inventory 7, server 6``); 0 counts as unset."""
    differ = []
    for option in KEEP_OPTIONS:
        mine, theirs = inventory.get(option) or None, server.get(option) or None
        if mine != theirs:
            differ.append(f"{option}: inventory {mine or 'unset'}, server {theirs or 'unset'}")
    return differ


def compare_keep_sets(engine_keeps: Mapping[int, bool], server_answers: list[list[Mapping]],
                      names: Mapping[int, str], *, where: str, empty_ok: bool = False) -> Verdict:
    """The keep set of restoredrill's PBS engine against PBS's dry-run answers (a snapshot
    survives when every prune job keeps it). Snapshots only one side listed (made or
    removed between the two calls) are noted, not compared; 0 compared fails."""
    server: dict[int, bool] = {}
    for answer in server_answers:
        for item in answer:
            epoch = int(item["backup-time"])
            server[epoch] = server.get(epoch, True) and bool(item.get("keep"))
    both = set(engine_keeps) & set(server)
    verdict = Verdict(facts={"compared": len(both), "engine_keeps": sum(1 for e in both if engine_keeps[e]),
                             "server_keeps": sum(1 for e in both if server[e]),
                             "not_compared": len(set(engine_keeps) ^ set(server))})
    only_engine = sorted((e for e in both if engine_keeps[e] and not server[e]), reverse=True)
    only_server = sorted((e for e in both if server[e] and not engine_keeps[e]), reverse=True)
    if only_engine:
        verdict.problems.append(f"{where}: restoredrill's engine keeps {len(only_engine)} snapshot(s) the server's "
                                f"prune removes: {list_some([names.get(e, str(e)) for e in only_engine])}")
    if only_server:
        verdict.problems.append(f"{where}: the server's prune keeps {len(only_server)} snapshot(s) restoredrill's "
                                f"engine removes: {list_some([names.get(e, str(e)) for e in only_server])}")
    return note_coverage(verdict, len(both), "snapshots compared", where, empty_ok=empty_ok,
                         cause=NOTHING_COMPARED_CAUSE)


# --- datastore usage ------------------------------------------------------------------

def check_usage(status: Mapping, *, store: str, quota: int | None, max_usage: float) -> Verdict:
    """Used bytes against the quota (or the status' total) and ``max_usage``."""
    used, total = int(status.get("used") or 0), int(status.get("total") or 0)
    limit = quota or total
    share = used / limit if limit else 1.0
    verdict = Verdict(facts={"used": used, "total": total, "avail": status.get("avail"), "quota": quota,
                             "usage": round(share, 4), "max_usage": max_usage,
                             "backend": status.get("backend-type", "filesystem")})
    where = f"datastore {store}"
    if not limit:
        verdict.problems.append(f"{where}: expected a size to compare usage with; found total 0 and no quota")
    elif share > max_usage:
        basis = f"quota {quota:,} bytes" if quota else f"total {total:,} bytes"
        verdict.problems.append(f"{where}: expected at most {max_usage:.0%} of the {basis} in use; found "
                                f"{used:,} bytes ({share:.1%}): prune/GC or grow the quota before backups fail")
    return verdict


# --- notifications --------------------------------------------------------------------

def check_notification_target(name: str, answers: Mapping[str, list[Mapping] | None]) -> Verdict:
    """The target exists and is enabled on every product in ``answers`` ({"PVE": [...], "PBS": [...]};
    None: that product is not in the inventory)."""
    verdict = Verdict()
    for product, targets in answers.items():
        if targets is None:
            verdict.facts[product.lower()] = "not audited (not in the inventory)"
            continue
        found = next((t for t in targets if t.get("name") == name), None)
        if found is None:
            known = ", ".join(sorted(str(t.get("name")) for t in targets)) or "none"
            verdict.problems.append(f"{product}: expected notification target {name} (notifications.pve_targets); "
                                    f"found no such target (targets: {known}): job failures would go unnoticed")
        elif found.get("disable") in (True, 1, "1"):
            verdict.problems.append(f"{product}: expected notification target {name} enabled; found it disabled")
        else:
            verdict.facts[product.lower()] = f"{found.get('type')} ({found.get('origin', 'user-created')})"
    return verdict
