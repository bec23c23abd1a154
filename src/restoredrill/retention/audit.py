"""Audit a backup history against its retention policy, with the engine that owns it.

Three checks, each a failure (problem) or an observation (note), never an exception
for what is found in the history:

* conformance - points a prune run `prune_grace` ago would already have removed: the
  prune job is not running. What only a prune now would remove is noted (made, or
  shifted out of a rule, since the last prune).
* coverage - per rule, how many points an ideal history would keep, how many the real
  history keeps, and the periods with no backup at all ("no weekly for 2026-W14").
* freshness - the newest finished point must be younger than the RPO.

An invalid policy, zone or point raises `RetentionError`: that is a configuration
mistake, not a finding about the backups.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

from .borg import BORG_RULES, check_borg_policy, plan_borg
from .model import (
    LOCAL_EPOCH,
    PERIOD_KEYS,
    SECONDS_PER_DAY,
    Point,
    Policy,
    RetentionError,
    Zone,
    gc_paused,
    label_period,
)
from .pbs import PBS_RULES, plan_pbs

__all__ = ["Audit", "RuleCoverage", "audit"]

PERIOD_MIN_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 28 * 86400,
    "iso-quarter": 91 * 86400,
    "month-quarter": 90 * 86400,
    "year": 365 * 86400,
}
MAX_IDEAL_POINTS = 1_000_000
MAX_LISTED = 5  # examples named in one problem or note
MAX_EVIDENCE = 1000  # removable points described in Audit.would_remove


@dataclass(frozen=True)
class RuleCoverage:
    """One rule of the policy: `expected` kept in the ideal history, `found` kept in the
    real one, and `missing` periods (by name) that the ideal keeps but hold no backup."""

    rule: str
    wanted: int | str
    expected: int
    found: int
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Audit:
    """The result of `audit()`: `ok` when `problems` is empty; `notes` never fail.

    `would_remove` describes the newest 1000 points that a prune `prune_grace` ago
    would already have removed (`would_remove_count` counts all of them); `newest` is
    the newest finished point's time (UTC), None when there is none.
    """

    engine: str
    policy: Policy
    zone: str
    now: datetime
    rpo: timedelta
    problems: list[str]
    notes: list[str]
    coverage: list[RuleCoverage]
    would_remove: list[str]
    would_remove_count: int
    newest: datetime | None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def newest_age(self) -> timedelta | None:
        return None if self.newest is None else self.now - self.newest

    def summary(self) -> str:
        """One line: engine, policy, verdict and the first problems."""
        head = f"{self.engine} retention ({self.policy.describe()})"
        tail = f", {len(self.notes)} note(s)" if self.notes else ""
        if self.ok:
            return f"{head}: OK{tail}"
        shown = "; ".join(shorten(problem) for problem in self.problems[:2])
        shown += "; ..." if len(self.problems) > 2 else ""
        return f"{head}: FAIL, {len(self.problems)} problem(s): {shown}{tail}".replace("\n", " ")

    def to_dict(self) -> dict:
        """JSON-ready evidence."""
        age = self.newest_age
        return {
            "ok": self.ok,
            "engine": self.engine,
            "policy": self.policy.given(),
            "zone": self.zone,
            "now": self.now.isoformat(),
            "rpo_seconds": self.rpo.total_seconds(),
            "problems": list(self.problems),
            "notes": list(self.notes),
            "coverage": [rule.to_dict() for rule in self.coverage],
            "would_remove": list(self.would_remove),
            "would_remove_count": self.would_remove_count,
            "newest": None if self.newest is None else self.newest.isoformat(),
            "newest_age_seconds": None if age is None else age.total_seconds(),
        }


def shorten(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def audit(
    points: Sequence[Point],
    policy: Policy,
    engine: str,
    tz: object,
    now: datetime,
    *,
    rpo: timedelta,
    schedule: timedelta = timedelta(days=1),
    prune_grace: timedelta = timedelta(hours=26),
    oldest_rule: bool = True,
) -> Audit:
    """Check a history against its policy as the named engine ("pbs"/"borg") prunes it.

    Conformance: the engine is run as of `now - prune_grace` on the points made by
    then; any point it removes is overdue (see `check_conformance`).

    Expected coverage is defined by an ideal history: one point every `schedule`,
    from the first real finished point up to `now` (whole-day schedules step in the
    wall clock of `tz`, as cron does), simulated with the same engine and policy.
    For each rule, `expected` is how many points the ideal keeps by that rule and
    `found` how many the real history keeps by it. A period the ideal keeps for a
    rule but in which the real history holds no finished point at all is missing
    (a problem), unless the ideal point is newer than `now - rpo`: a backup not yet
    overdue is the freshness check's business. Periods shorter than the schedule (e.g. hourly with daily backups),
    keep-last and keep-within have no meaningful period names against an ideal
    grid: for them only the counts are compared (within allows one point of jitter at
    the window edge). A rule the ideal itself cannot fill (a history younger than
    the rule, e.g. yearly in the first year) is a note, not a failure.

    `oldest_rule` is passed to the Borg engine (False for borg older than 1.2).
    """
    points = list(points)
    check_audit_inputs(engine, now, rpo, schedule, prune_grace)
    zone = Zone(tz)
    run_engine = EngineRun(engine, policy, tz, oldest_rule)
    kept = run_engine(points, now)
    findings = Findings()
    removed, stale = check_conformance(run_engine, points, now, prune_grace, kept, findings)
    finished = finished_points(points, engine)
    coverage = check_coverage(run_engine, zone, now, schedule, rpo, finished, kept, findings)
    newest = check_freshness(points, finished, now, rpo, findings)
    return Audit(
        engine, policy, zone.name, now, rpo, findings.problems, findings.notes, coverage, removed, stale, newest
    )


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_audit_inputs(engine: str, now: datetime, *durations: timedelta) -> None:
    if engine not in ("pbs", "borg"):
        raise RetentionError(f"Unknown prune engine {engine!r}: use 'pbs' or 'borg'.")
    if now.tzinfo is None or now.utcoffset() is None:
        raise RetentionError("The audit's now is a naive time: give it a zone, e.g. datetime.now(timezone.utc).")
    rpo, schedule, grace = durations
    if rpo <= timedelta(0) or schedule <= timedelta(0) or grace < timedelta(0):
        raise RetentionError(
            f"Audit durations must be positive (rpo {rpo}, schedule {schedule}) and prune_grace "
            f"not negative ({grace}). Give them as timedeltas, e.g. rpo=timedelta(hours=26)."
        )


@dataclass(frozen=True)
class EngineRun:
    """The audited engine with its policy and zone, run on any points as of any time.

    Returns the kept points as {index: (rule, rank)}, like the engines' plans."""

    engine: str
    policy: Policy
    tz: object
    oldest_rule: bool

    def __call__(self, points: list[Point], now: datetime) -> dict[int, tuple[str, int | None]]:
        if self.engine == "pbs":
            return plan_pbs(points, self.policy, self.tz)
        return plan_borg(points, self.policy, self.tz, now=now, oldest_rule=self.oldest_rule)


def finished_points(points: list[Point], engine: str) -> list[Point]:
    """Complete backups: not unfinished PBS snapshots, not Borg checkpoints."""
    if engine == "borg":
        return [p for p in points if not (p.checkpoint or ".checkpoint" in p.name and p.is_borg_checkpoint())]
    return [p for p in points if not p.unfinished]


def describe_point(point: Point) -> str:
    when = point.time.isoformat(timespec="seconds")
    return f"{point.name} ({when})" if point.name else when


def list_some(items: list[str], total: int | None = None) -> str:
    total = len(items) if total is None else total
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {total - MAX_LISTED} more" if total > MAX_LISTED else "")


def check_conformance(
    run_engine: EngineRun, points: list[Point], now: datetime, grace: timedelta, kept: dict, findings: Findings
) -> tuple[list[str], int]:
    """Points a prune run `grace` ago would already have removed: the prune is not running.

    A prune at `now - grace` sees only the points made by then; whatever it removes
    is gone after any later prune too (newer points only push old ones further out
    of every rule). Points that a prune now would remove but that one did not are
    noted: made, or shifted out of a rule, since the last prune.
    Returns the newest `MAX_EVIDENCE` overdue points (described) and their number.
    """
    cutoff = now - grace
    before = [index for index, point in enumerate(points) if point.time <= cutoff]
    kept_then = run_engine([points[index] for index in before], cutoff)
    stale_indices = {index for position, index in enumerate(before) if position not in kept_then}
    stale = [points[index] for index in sorted(stale_indices)]
    recent = [p for index, p in enumerate(points) if index not in kept and index not in stale_indices]
    evidence = [describe_point(p) for p in newest(stale, MAX_EVIDENCE)]
    if stale:
        findings.problems.append(
            f"prune is not running: a prune {format_duration(grace)} ago would already have removed "
            f"{len(stale)} point(s): {list_some(evidence, len(stale))}"
        )
    if recent:
        shown = [describe_point(p) for p in newest(recent, MAX_LISTED)]
        findings.notes.append(
            f"the next prune will remove {len(recent)} point(s), made or shifted out of a rule within the "
            f"last {format_duration(grace)}: {list_some(shown, len(recent))}"
        )
    return evidence, len(stale)


def newest(points: list[Point], count: int) -> list[Point]:
    """The `count` newest points (a sort, which is linear on the usual sorted input)."""
    return sorted(points, key=lambda point: point.time, reverse=True)[:count]


def check_coverage(run_engine, zone, now, schedule, rpo, finished, kept, findings) -> list[RuleCoverage]:
    """Per rule: expected vs found counts and missing periods (see `audit`)."""
    rules = rules_of(run_engine.engine, run_engine.policy)
    if not finished or not rules:
        if finished:
            findings.notes.append("PBS keeps every snapshot: no keep option is greater than 0")
        return []
    ideal_points = make_ideal_history(finished, zone, now, schedule)
    if ideal_points is None:
        findings.notes.append(
            f"coverage not checked: an ideal history at one point per {format_duration(schedule)} "
            f"would exceed {MAX_IDEAL_POINTS} points; give a coarser schedule"
        )
        return []
    ideal = run_engine(ideal_points, now)
    held = HeldPeriods(zone, finished)
    found = Counter(base_rule(rule) for rule, _ in kept.values())
    first = min(point.time for point in finished)
    coverage = []
    for rule, wanted, period in rules:
        ideal_kept = [(ideal_points[index], why) for index, (why, _) in ideal.items() if base_rule(why) == rule]
        named = names_periods(period, schedule)
        due = [point for point, _ in ideal_kept if point.time <= now - rpo]
        missing = held.missing(period, due) if named else []
        result = RuleCoverage(rule, wanted, len(ideal_kept), found[rule], missing)
        full = sum(1 for _, why in ideal_kept if why == rule)
        report_rule(result, not named, full, first, findings)
        coverage.append(result)
    return coverage


def rules_of(engine: str, policy: Policy) -> list[tuple[str, int | str, str | None]]:
    """(rule name, wanted count, period kind) for every rule the policy uses, in engine order."""
    if engine == "pbs":
        return [(rule, getattr(policy, f), kind) for rule, f, kind in PBS_RULES if getattr(policy, f)]
    options = check_borg_policy(policy)
    rules = [("within", policy.keep_within, None)] if options.within_hours else []
    return rules + [(rule, options.counts[rule], kind) for rule, kind in BORG_RULES if options.counts.get(rule)]


def make_ideal_history(finished: list[Point], zone: Zone, now: datetime, schedule: timedelta) -> list[Point] | None:
    """One point per schedule from the first finished point to now (None if too many)."""
    first = min(point.time for point in finished)
    if first > now:
        return []
    steps = int((now - first) / schedule)
    if steps + 1 > MAX_IDEAL_POINTS:
        return None
    if schedule % timedelta(days=1) == timedelta(0):
        wall = zone.local_datetime(first.timestamp())
        times = [zone.from_wall_clock(wall + step * schedule) for step in range(steps + 1)]
        times = [when for when in times if when <= now]
    else:
        times = [first + step * schedule for step in range(steps + 1)]
    with gc_paused():
        return list(map(Point, times))


def base_rule(rule: str | None) -> str | None:
    return rule.removesuffix("[oldest]") if rule else rule


def names_periods(period: str | None, schedule: timedelta) -> bool:
    """Missing periods are named only for calendar periods at least as long as the schedule."""
    return period in PERIOD_MIN_SECONDS and PERIOD_MIN_SECONDS[period] >= schedule.total_seconds()


class HeldPeriods:
    """Which periods of each kind hold at least one finished real point."""

    def __init__(self, zone: Zone, finished: list[Point]):
        self.zone = zone
        self.local = zone.local_seconds_many([point.time.timestamp() for point in finished])
        self.days = {local // SECONDS_PER_DAY for local in self.local}
        self.keys: dict[str, set[int]] = {}

    def held(self, period: str) -> set[int]:
        if period not in self.keys:
            key = PERIOD_KEYS[period]
            if period in ("second", "minute", "hour"):
                self.keys[period] = {key(local) for local in self.local}
            else:  # a day or longer: the key depends on the day only
                self.keys[period] = {key(day * SECONDS_PER_DAY) for day in self.days}
        return self.keys[period]

    def missing(self, period: str, kept: list[Point]) -> list[str]:
        """Labels of the periods of `kept` (oldest first) that hold no real point."""
        key, held, labels = PERIOD_KEYS[period], self.held(period), []
        for point in sorted(kept, key=lambda p: p.time):
            local = self.zone.local_seconds(point.time.timestamp())
            if key(local) not in held:
                labels.append(label_period(period, LOCAL_EPOCH + timedelta(seconds=local)))
        return labels


def report_rule(result: RuleCoverage, counted_only: bool, full: int, first: datetime, findings: Findings) -> None:
    """Missing periods fail; a count shortfall fails only where periods are not named."""
    name = display_rule(result.rule)
    counts = f"{result.found} kept of {result.expected} expected"
    jitter = 1 if result.rule == "within" else 0
    if result.missing:
        findings.problems.append(f"no {name} for {list_some(result.missing)} ({counts})")
    elif counted_only and result.found < result.expected - jitter:
        findings.problems.append(f"{name}: {counts}")
    elif result.found < result.expected:
        why = "one point of jitter at the window edge" if jitter else "every expected period holds a backup"
        findings.notes.append(f"{name}: {counts}, tolerated: {why}")
    if isinstance(result.wanted, int) and 0 < result.wanted and full < result.wanted:
        findings.notes.append(
            f"history is younger than the {name} rule needs: an ideal history since the first backup "
            f"({first.date().isoformat()}) fills only {full} of {result.wanted}"
        )


def display_rule(rule: str) -> str:
    return {"last": "keep-last", "secondly": "keep-last/secondly", "within": "keep-within"}.get(
        rule, rule.removeprefix("quarterly_")
    )


def check_freshness(points, finished, now, rpo, findings: Findings) -> datetime | None:
    """The newest finished point must be younger than the RPO."""
    if not finished:
        partial = f" ({len(points)} unfinished or checkpoint only)" if points else ""
        findings.problems.append(f"no finished backup at all{partial}: nothing to restore")
        return None
    latest = max(finished, key=lambda point: point.time)
    age = now - latest.time
    if age > rpo:
        findings.problems.append(
            f"newest backup {describe_point(latest)} is {format_duration(age)} old, older than the RPO "
            f"of {format_duration(rpo)}"
        )
    elif age < timedelta(0):
        findings.notes.append(f"newest backup {describe_point(latest)} is dated {format_duration(-age)} after now")
    else:
        findings.notes.append(f"newest backup is {format_duration(age)} old (RPO {format_duration(rpo)})")
    return latest.time.astimezone(timezone.utc)


def format_duration(span: timedelta) -> str:
    """A short human duration: "1d 2h", "3h 5m", "45m", "30s" (seconds only when alone)."""
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    text = " ".join(part for part in parts if part)
    return text or f"{seconds}s"
