"""The PBS job audits (GC, verify, prune, sync), as pure functions over the job lists.

A job's last run ended OK within its period; a job that runs now is judged by its start
(or, for GC, by the previous run's); prune and verify jobs count only where their
``ns``/``max-depth`` reach and when not ``disable``d. ``now`` is always passed in.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from restoredrill.checks.errors import Verdict
from restoredrill.clients.upid import UpidError, parse_upid


def show_time(when: datetime | None) -> str:
    return "never" if when is None else f"{when.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def show_age(span: timedelta) -> str:
    seconds = span.total_seconds()
    if abs(seconds) < 3600:
        return f"{seconds / 60:.0f} min" if abs(seconds) >= 60 else f"{seconds:.0f} s"
    hours = seconds / 3600
    return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"


def list_some(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def namespace_depth(ns: str | None) -> int:
    return len(ns.split("/")) if ns else 0


def job_covers(job: Mapping, store: str, ns: str | None) -> bool:
    """A prune or verify job works on namespace ``ns`` of ``store``: its ``ns`` (root when
    unset) is ``ns`` or above it, within ``max-depth`` levels (unset: every level below).
    pbs-api-types ``PruneJobOptions`` / ``VerificationJobConfig``: ``ns``, ``max-depth``
    (NS_MAX_DEPTH_SCHEMA, 0 == no recursion)."""
    if job.get("store") != store:
        return False
    base, mine = job.get("ns") or "", ns or ""
    if base and mine != base and not mine.startswith(base + "/"):
        return False
    depth = job.get("max-depth")
    return depth is None or namespace_depth(mine) - namespace_depth(base) <= int(depth)


def job_disabled(job: Mapping) -> bool:
    """``disable`` of a prune job (PruneJobConfig): it never runs, so it prunes nothing."""
    return job.get("disable") in (True, 1, "1", "true")


# --- jobs -----------------------------------------------------------------------------

def job_id(job: Mapping) -> str:
    return str(job.get("id") or job.get("store"))


def job_upid(job: Mapping) -> str | None:
    return job.get("last-run-upid") or job.get("upid")


def check_job(job: Mapping, *, kind: str, store: str, max_age: timedelta, now: datetime) -> Verdict:
    """A job's last run ended OK within ``max_age`` (``last-run-state``, ``last-run-endtime``);
    a job that is running now is judged by :func:`check_running_job`."""
    state, ended, upid = job.get("last-run-state"), job.get("last-run-endtime"), job_upid(job)
    end = datetime.fromtimestamp(int(ended), tz=timezone.utc) if ended else None
    name = f"{kind} job {job_id(job)} (datastore {store})"
    verdict = Verdict(facts={"job": job_id(job), "state": state, "last_run_end": end.isoformat() if end else None,
                             "upid": upid, "schedule": job.get("schedule")})
    if not state and upid:
        return check_running_job(job, verdict, name=name, max_age=max_age, now=now)
    found = f"state {state or 'none'}, last run ended {show_time(end)}, task {upid or 'none'}"
    if end is None or not state:
        schedule = job.get("schedule") or "none"
        verdict.problems.append(f"{name}: expected a run within {show_age(max_age)}; found it never ran "
                                f"(schedule {schedule}; {found})")
        return verdict
    if state != "OK":
        verdict.problems.append(f"{name}: expected the last run to end OK; found {found}")
    if now - end > max_age:
        verdict.problems.append(f"{name}: expected a run within {show_age(max_age)}; found {found}, "
                                f"{show_age(now - end)} ago")
    return verdict


def check_running_job(job: Mapping, verdict: Verdict, *, name: str, max_age: timedelta,
                      now: datetime) -> Verdict:
    """A task id but no ``last-run-state``: the job runs now (proxmox-backup server/jobstate.rs
    ``JobState::Started``; ``compute_schedule_status`` then gives no state and no end time).
    Jobs with ``last-run-upid``: that UPID is this run, and the previous run's result is not in
    the list (one state file per job), so freshness is judged by this run's start. GC
    (``upid`` of the datastore's last GC status): that UPID is the previous, finished run."""
    previous = "last-run-upid" not in job
    upid = job_upid(job)
    try:
        started = parse_upid(upid).starttime
    except UpidError as exc:
        verdict.problems.append(f"{name}: it is running (task id but no last-run-state); its task id is "
                                f"unreadable ({exc})")
        return verdict
    age = now - started
    if previous:
        verdict.facts.update(state="running", previous_run_start=started.isoformat(),
                             note="a garbage collection is running; the list shows the previous GC's task, "
                                  "whose start is judged")
        what = f"it is running now; the previous garbage collection (task {upid}) started {show_time(started)}"
    else:
        verdict.facts.update(state="running", running_since=started.isoformat(),
                             note="the job list gives no result of the previous run while a run is in "
                                  "progress (PBS keeps one state per job: jobstate.rs), so this run's start "
                                  "is judged")
        what = f"it is running since {show_time(started)} (task {upid})"
    if age > max_age:
        verdict.problems.append(f"{name}: expected a run within {show_age(max_age)}; found {what}, "
                                f"{show_age(age)} ago: it is stuck or far slower than its schedule allows "
                                f"(read the task log on the PBS)")
    return verdict


def check_jobs(jobs: list[Mapping], *, kind: str, store: str, max_age: timedelta, now: datetime,
               wanted_id: str | None = None, ns: str | None = None) -> Verdict:
    """Every ``kind`` job of ``store`` (or the one named ``wanted_id``) ran OK within ``max_age``.
    Prune and verify jobs count only when they reach namespace ``ns`` (their ``ns`` and
    ``max-depth``); a disabled prune job is no prune."""
    if wanted_id is not None:
        chosen = [j for j in jobs if job_id(j) == wanted_id]
        if not chosen:
            known = sorted(job_id(j) for j in jobs) or ["none"]
            problem = (f"{kind} job {wanted_id} (datastore {store}): expected it on the PBS; found no such job "
                       f"(jobs: {', '.join(known)})")
            return Verdict([problem], {"job": wanted_id})
        wrong = [j for j in chosen if j.get("store") not in (None, store)]
        if wrong:
            feeds = wrong[0].get("store")
            problem = f"{kind} job {wanted_id}: expected it to feed datastore {store}; found it feeds {feeds}"
            return Verdict([problem], {"job": wanted_id})
    else:
        chosen = [j for j in jobs if j.get("store") == store]
        if kind in ("prune", "verify"):
            problem = _coverage_problem(chosen, kind, store, ns)
            if problem:
                return Verdict([problem], {"namespace": ns or "root"})
            chosen = [j for j in chosen if job_covers(j, store, ns) and not job_disabled(j)]
        if not chosen:
            return Verdict([f"datastore {store}: expected a {kind} job; found none configured on the PBS"])
    verdicts = [check_job(j, kind=kind, store=store, max_age=max_age, now=now) for j in chosen]
    merged = Verdict([p for v in verdicts for p in v.problems])
    merged.facts = verdicts[0].facts if len(verdicts) == 1 else {
        "jobs": ",".join(str(v.facts["job"]) for v in verdicts),
        "states": ",".join(str(v.facts["state"]) for v in verdicts)}
    return merged


def _coverage_problem(jobs: list[Mapping], kind: str, store: str, ns: str | None) -> str | None:
    """Jobs of the store exist, yet none reaches the namespace (or all that do are disabled)."""
    if not jobs:
        return None
    covering = [j for j in jobs if job_covers(j, store, ns)]
    enabled = [j for j in covering if not job_disabled(j)]
    if enabled:
        return None
    where = f"datastore {store}, namespace {ns or 'root'}"
    if covering:
        return (f"{where}: expected an enabled {kind} job; found only disabled ones "
                f"({', '.join(job_id(j) for j in covering)}): a disabled job never runs, so nothing "
                f"{'prunes' if kind == 'prune' else 'verifies'} these groups. Enable it on the PBS")
    scopes = [f"{job_id(j)} (ns {j.get('ns') or 'root'}, max-depth {j.get('max-depth', 'all')})" for j in jobs]
    return (f"{where}: expected a {kind} job reaching this namespace; found only jobs limited to other "
            f"namespaces or depths: {list_some(scopes)}. Set the job's ns and max-depth to include it")


