"""History of runs in the state database, and what it shows.

``record_run`` appends a run and its cases to the ``runs`` and ``results`` tables of
:class:`restoredrill.state.StateStore` (evidence as JSON), ``load_history`` reads them
back, and the rest is pure: the RTO trend, the last successful restore test, since
when a drill passes, the newest verified and restore-tested points, RTO regressions
and coverage gaps. A regression or a gap is a failing :class:`Finding`; the drill
report lists it in its ``history`` suite, never silently.
"""
from __future__ import annotations

import json
import sqlite3
import statistics
from collections import OrderedDict
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from restoredrill.report.model import (FRESH_CHECKS, PASSED, RTO_PHASES, SKIPPED, VERIFY_CHECKS, RunReport,
                                       drill_kind, parse_time, rto_of)

# thresholds (command-line options override them; proposed inventory keys in reports.*)
MAX_UNTESTED_DAYS = 35          # a drill with no passing restore test for longer is a coverage gap
RTO_REGRESSION_SHARE = 0.5      # restore time more than 50 % over the median ...
RTO_WINDOW = 5                  # ... of the last 5 passing runs ...
RTO_MIN_POINTS = 3              # ... judged only with at least 3 earlier runs ...
RTO_MIN_SECONDS = 5.0           # ... and only when it grew by 5 s or more (small restores are noisy)
NO_COVERAGE_KINDS = ("lint", "monitoring")   # drills that prove nothing about a backup
RESTORING_KINDS = ("borg", "guest")   # their coverage is a passing restore, not just a pass


@dataclass(frozen=True)
class Thresholds:
    max_untested_days: float = MAX_UNTESTED_DAYS
    rto_share: float = RTO_REGRESSION_SHARE
    rto_window: int = RTO_WINDOW
    rto_min_points: int = RTO_MIN_POINTS
    rto_min_seconds: float = RTO_MIN_SECONDS


@dataclass(frozen=True)
class Row:
    """One case of one past (or this) run."""

    run_id: str
    run_started: datetime
    drill: str
    check: str
    outcome: str
    seconds: float | None
    evidence: dict


@dataclass(frozen=True)
class Finding:
    """A history check: an RTO regression or a coverage gap (ok=False fails the case)."""

    kind: str        # regression | coverage
    drill: str
    name: str        # case name in the drill report's history suite
    ok: bool
    message: str
    facts: dict = field(default_factory=dict)
    skipped: bool = False       # nothing to judge this run (ok stays True): a JUnit skipped case with the reason


@dataclass
class History:
    rows: list[Row]
    runs: "OrderedDict[str, datetime]"      # run id -> start, oldest first
    source: str = "state database"

    @classmethod
    def from_run(cls, run: RunReport) -> "History":
        """This run alone (when the database could not be used)."""
        rows = [row_of_case(run.run_id, run.started, case) for case in run.cases]
        return cls(rows, OrderedDict([(run.run_id, run.started)]), source="this run only")

    @property
    def started(self) -> datetime | None:
        return next(iter(self.runs.values()), None)

    def drills(self) -> list[str]:
        return sorted({row.drill for row in self.rows})

    def of_drill(self, drill: str) -> list[Row]:
        """The drill's rows, oldest first (indexed once: the report asks for every drill several times)."""
        index = self.__dict__.get("_by_drill")
        if index is None or index[0] != len(self.rows):
            by_drill: dict[str, list[Row]] = {}
            for row in self.rows:
                by_drill.setdefault(row.drill, []).append(row)
            index = self.__dict__["_by_drill"] = (len(self.rows), by_drill)
        return list(index[1].get(drill, ()))


# --- the state database (I/O) ---------------------------------------------------------

def row_of_case(run_id: str, started: datetime, case) -> Row:
    return Row(run_id, started, case.drill, case.check, case.outcome,
               case.measured_seconds() if case.measured_seconds() is not None else case.seconds,
               evidence_of(case))


def evidence_of(case) -> dict:
    evidence = {str(k): json_safe(v) for k, v in case.properties.items()}
    evidence["nodeid"] = case.nodeid
    evidence["duration"] = round(case.seconds, 3)
    if case.message:
        evidence["message"] = case.message[:1000]
    return evidence


def json_safe(value):
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def record_run(store, run: RunReport, mode: str, inventory: str, keep_runs: int | None = None) -> None:
    """Append this run: ``runs`` row (verdict) and one ``results`` row per case."""
    store.start_run(run.run_id, mode, inventory)
    for case in run.cases:
        row = row_of_case(run.run_id, run.started, case)
        store.record_result(run.run_id, case.drill, case.check, case.outcome, row.seconds, row.evidence)
    store.finish_run(run.run_id, run.verdict)
    if keep_runs:
        prune_runs(store.path, keep_runs)


def prune_runs(path, keep_runs: int) -> int:
    """Forget runs beyond the newest ``keep_runs`` (``reports.keep_runs``); returns how many."""
    with closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as conn:
        old = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY started_at DESC, rowid DESC "
                                          "LIMIT -1 OFFSET ?", (keep_runs,))]
        if old:
            conn.execute("BEGIN")
            conn.executemany("DELETE FROM results WHERE run_id=?", [(r,) for r in old])
            conn.executemany("DELETE FROM runs WHERE id=?", [(r,) for r in old])
            conn.execute("COMMIT")
    return len(old)


def load_history(path) -> History:
    """Every recorded case, oldest run first."""
    with closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.execute("PRAGMA busy_timeout = 30000")
        runs = conn.execute("SELECT id, started_at FROM runs ORDER BY started_at, rowid").fetchall()
        results = conn.execute(
            "SELECT r.run_id, COALESCE(runs.started_at, r.recorded_at), r.drill, r.name, r.outcome, "
            "r.seconds, r.evidence FROM results r LEFT JOIN runs ON runs.id = r.run_id "
            "ORDER BY COALESCE(runs.started_at, r.recorded_at), r.rowid").fetchall()
    run_starts: OrderedDict[str, datetime] = OrderedDict((rid, parse_stamp(at)) for rid, at in runs)
    rows = []
    for run_id, at, drill, name, outcome, seconds, evidence in results:
        run_starts.setdefault(run_id, parse_stamp(at))
        rows.append(Row(run_id, run_starts[run_id], drill, name, outcome, seconds, parse_evidence(evidence)))
    return History(rows, run_starts)


def parse_stamp(text: str) -> datetime:
    when = parse_time(text)
    return when or datetime.fromtimestamp(0, timezone.utc)


def parse_evidence(text: str | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- what the history shows (pure) ----------------------------------------------------

def runs_of(rows: list[Row]) -> "OrderedDict[str, list[Row]]":
    grouped: OrderedDict[str, list[Row]] = OrderedDict()
    for row in rows:
        grouped.setdefault(row.run_id, []).append(row)
    return grouped


def drill_passed(rows: list[Row]) -> bool:
    return bool(rows) and all(row.outcome in (PASSED, SKIPPED) for row in rows)


def rto_series(history: History, drill: str) -> "OrderedDict[str, list[tuple[str, datetime, float]]]":
    """Phase (restore, boot) -> [(run id, run start, seconds)] of passing cases, oldest first.
    A guest restored from its offsite copy (evidence ``copy: offsite``, issue 23) has its own
    series, ``restore@offsite`` / ``boot@offsite``: the disaster RTO is judged against earlier
    offsite restores, never against the faster local ones."""
    series: OrderedDict[str, list] = OrderedDict()
    for row in history.of_drill(drill):
        if row.outcome == PASSED:
            copy = row.evidence.get("copy")
            for phase, seconds in rto_of(row.check, row.evidence).items():
                key = f"{phase}@{copy}" if copy and copy != "local" else phase
                series.setdefault(key, []).append((row.run_id, row.run_started, seconds))
    return series


def last_restore_tested(history: History, drill: str) -> datetime | None:
    """Start of the newest run whose restore (extract, restore or boot) case passed."""
    times = [row.run_started for row in history.of_drill(drill)
             if row.check in RTO_PHASES and row.outcome == PASSED]
    return max(times, default=None)


def last_success(history: History, drill: str) -> datetime | None:
    """Start of the newest run in which every case of the drill passed."""
    passed = [rows[0].run_started for rows in runs_of(history.of_drill(drill)).values() if drill_passed(rows)]
    return max(passed, default=None)


def streak(history: History, drill: str) -> tuple[bool | None, datetime | None]:
    """(passing now?, since when): the first run of the current unbroken streak."""
    per_run = list(runs_of(history.of_drill(drill)).values())
    if not per_run:
        return None, None
    state = drill_passed(per_run[-1])
    since = per_run[-1][0].run_started
    for rows in reversed(per_run):
        if drill_passed(rows) != state:
            break
        since = rows[0].run_started
    return state, since


@dataclass(frozen=True)
class ProvenPoint:
    """The newest backup point proven in some way: its time, its name and the run that proved it."""

    time: datetime
    name: str
    run_id: str


def proven_points(history: History, drill: str) -> dict[str, ProvenPoint | None]:
    """newest (listed by the last fresh check), verified (fresh in a run whose check passed),
    restore_tested (the point a passing restore case restored: a Borg archive, a guest's PBS snapshot)."""
    newest = verified = restored = None
    for run_id, rows in runs_of(history.of_drill(drill)).items():
        checks = {row.check: row for row in rows}
        point = None        # a PBS datastore has one fresh:GUEST case per guest: its newest point
        for row in rows:
            if row.check in FRESH_CHECKS or row.check.split(":", 1)[0] in FRESH_CHECKS:
                point = newer(point, point_of(row, run_id))
        if point:
            newest = point
            verifies = [row for row in rows if row.check.split(":", 1)[0] == "verified"]
            if any(c in checks and checks[c].outcome == PASSED for c in VERIFY_CHECKS) or (
                    verifies and all(row.outcome == PASSED for row in verifies)):
                verified = newer(verified, point)
        for row in rows:
            if row.check in RTO_PHASES and row.outcome == PASSED:
                restored = newer(restored, point_of(row, run_id))
    return {"newest": newest, "verified": verified, "restore_tested": restored}


def point_of(row: Row, run_id: str) -> ProvenPoint | None:
    facts = row.evidence
    when = parse_time(facts.get("archive_time") or facts.get("point_time") or facts.get("revision_time")
                      or facts.get("snapshot_time"))
    if when is None:
        return None
    name = facts.get("archive") or facts.get("point") or facts.get("newest") or facts.get("snapshot") or ""
    return ProvenPoint(when, str(name), run_id)


def newer(current: ProvenPoint | None, candidate: ProvenPoint | None) -> ProvenPoint | None:
    if candidate is None:
        return current
    return candidate if current is None or candidate.time >= current.time else current


# the RTO phases each restoring drill kind measures: one regression case each, in every run
RTO_PHASES_OF_KIND = {"borg": ("restore",), "guest": ("restore", "boot")}


def regressions(history: History, run_id: str, limits: Thresholds = Thresholds(),
                expected_drills: list[str] = ()) -> list[Finding]:
    """One finding per drill and RTO phase: slower than the recent median? Every restoring drill
    of this run (``expected_drills``) has its cases in every run, so case counts stay stable: a
    phase not measured this run (the restore failed, or the rotation left it out) is skipped,
    saying why, never left out."""
    findings = []
    wanted = [(drill, phase) for drill in expected_drills for phase in RTO_PHASES_OF_KIND.get(drill_kind(drill), ())]
    for drill in history.drills():
        wanted += [(drill, phase) for phase, points in rto_series(history, drill).items()
                   if any(rid == run_id for rid, _, _ in points)]
    for drill, phase in dict.fromkeys(wanted):
        points = rto_series(history, drill).get(phase, [])
        now = [seconds for rid, _, seconds in points if rid == run_id]
        if not now:
            findings.append(Finding("regression", drill, f"rto:{drill}:{phase}", True,
                                    f"{drill}: no {phase} time measured in run {run_id} (its restore case did not "
                                    f"run or did not pass), so no trend to judge", {"earlier_runs": len(points)},
                                    skipped=True))
            continue
        earlier = [seconds for rid, _, seconds in points if rid != run_id][-limits.rto_window:]
        findings.append(judge_rto(drill, phase, now[-1], earlier, run_id, limits))
    return findings


def judge_rto(drill: str, phase: str, current: float, earlier: list[float], run_id: str,
              limits: Thresholds) -> Finding:
    name = f"rto:{drill}:{phase}"
    facts = {"seconds": round(current, 3), "earlier_runs": len(earlier)}
    if len(earlier) < limits.rto_min_points:
        return Finding("regression", drill, name, True,
                       f"{drill}: {phase} took {current:.1f} s; {len(earlier)} earlier run(s), "
                       f"{limits.rto_min_points} needed to judge a trend", facts)
    median = statistics.median(earlier)
    allowed = median * (1 + limits.rto_share)
    facts.update(median_seconds=round(median, 3), allowed_seconds=round(allowed, 3))
    if current > allowed and current - median >= limits.rto_min_seconds:
        return Finding("regression", drill, name, False,
                       f"{drill}: expected the {phase} time to stay within {limits.rto_share:.0%} above the "
                       f"median of the last {len(earlier)} runs ({median:.1f} s, so at most {allowed:.1f} s); "
                       f"found {current:.1f} s in run {run_id}: the RTO is growing", facts)
    return Finding("regression", drill, name, True,
                   f"{drill}: {phase} took {current:.1f} s (median of the last {len(earlier)} runs "
                   f"{median:.1f} s, at most {allowed:.1f} s)", facts)


def coverage_gaps(history: History, drills: list[str], now: datetime,
                  limits: Thresholds = Thresholds()) -> list[Finding]:
    """One finding per drill: proven within ``max_untested_days``? A drill that restores
    (it has an extract, restore or boot case, or is of a restoring kind) needs a passing
    restore; one that only audits (an offsite copy) needs a run in which every check passed."""
    findings = []
    for drill in sorted(set(drills) | set(history.drills())):
        if not drill_kind(drill) or drill_kind(drill) in NO_COVERAGE_KINDS:   # e.g. a collection error
            continue
        rows = history.of_drill(drill)
        restores = drill_kind(drill) in RESTORING_KINDS or any(row.check in RTO_PHASES for row in rows)
        what = "passing restore test" if restores else "run with every check passing"
        last = last_restore_tested(history, drill) if restores else last_success(history, drill)
        first = rows[0].run_started if rows else (history.started or now)
        findings.append(judge_coverage(drill, what, last, first, now, limits.max_untested_days))
    return findings


def judge_coverage(drill: str, what: str, last: datetime | None, first: datetime, now: datetime,
                   max_days: float) -> Finding:
    name, limit = f"coverage:{drill}", timedelta(days=max_days)
    if last is not None:
        age = now - last
        facts = {"last": last.isoformat(), "days": round(age.total_seconds() / 86400, 1)}
        if age > limit:
            return Finding("coverage", drill, name, False,
                           f"{drill}: expected a {what} at least every {max_days:g} days; found the last one "
                           f"on {last:%Y-%m-%d %H:%M} UTC, {age.days} days ago", facts)
        return Finding("coverage", drill, name, True, f"{drill}: last {what} {last:%Y-%m-%d %H:%M} UTC", facts)
    facts = {"first_seen": first.isoformat()}
    if now - first > limit:
        return Finding("coverage", drill, name, False,
                       f"{drill}: expected a {what} at least every {max_days:g} days; found none since "
                       f"{first:%Y-%m-%d} ({(now - first).days} days of history)", facts)
    return Finding("coverage", drill, name, True,
                   f"{drill}: no {what} yet (history since {first:%Y-%m-%d}, within {max_days:g} days)", facts)


def failing(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not f.ok]


__all__ = ["Finding", "History", "ProvenPoint", "Row", "Thresholds", "coverage_gaps",
           "last_restore_tested", "last_success", "load_history", "proven_points", "record_run", "regressions",
           "rto_series", "streak"]
