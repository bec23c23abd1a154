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

import bisect
import math
import zoneinfo
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone

from .borg import BORG_RULES, check_borg_policy
from .model import (
    EPOCH_ORDINAL,
    LOCAL_EPOCH,
    PERIOD_KEYS,
    SECONDS_PER_DAY,
    Point,
    Policy,
    Prepared,
    RetentionError,
    Zone,
    gc_paused,
    label_period,
)
from .pbs import PBS_RULES
from .runs import EngineRun, FinishedPoints, IdealDayPoints, IdealPoints, newest, newest_indices, prepare_ideal

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
    run_engine = EngineRun(engine, policy, zone, oldest_rule)
    history = run_engine.prepare(points)
    kept = run_engine(history, now)
    findings = Findings()
    removed, stale = check_conformance(run_engine, history, now, prune_grace, kept, findings)
    finished = FinishedPoints(history)
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


def describe_point(point: Point) -> str:
    when = point.time.isoformat(timespec="seconds")
    return f"{point.name} ({when})" if point.name else when


def list_some(items: list[str], total: int | None = None) -> str:
    total = len(items) if total is None else total
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {total - MAX_LISTED} more" if total > MAX_LISTED else "")


def check_conformance(
    run_engine: EngineRun, history: Prepared, now: datetime, grace: timedelta, kept: dict, findings: Findings
) -> tuple[list[str], int]:
    """Points a prune run `grace` ago would already have removed: the prune is not running.

    A prune at `now - grace` sees only the points made by then; whatever it removes
    is gone after any later prune too (newer points only push old ones further out
    of every rule). Points that a prune now would remove but that one did not are
    noted: made, or shifted out of a rule, since the last prune.
    Returns the newest `MAX_EVIDENCE` overdue points (described) and their number.

    The run as of the cutoff reuses the prepared history (a suffix of its order and
    the local times already computed); the overdue points are counted, not listed,
    and only the newest are picked out (see `newest_indices`).
    """
    cutoff, points = now - grace, history.points
    view = history.until(cutoff)
    if view is None:  # the points made by the cutoff are not a suffix of the order
        before = [index for index, point in enumerate(points) if point.time <= cutoff]
        then = run_engine.prepare([points[index] for index in before])
        kept_then = {before[position]: why for position, why in run_engine(then, cutoff).items()}
        newer = [index for index, point in enumerate(points) if not point.time <= cutoff]
        stale_order = [before[position] for position in then.order]
    else:
        kept_then = run_engine(view, cutoff)
        newer = history.order[: len(history.order) - len(view.order)]
        stale_order = view.order
    stale_count = len(stale_order) - len(kept_then)
    stale = newest_indices(history, (i for i in stale_order if i not in kept_then), MAX_EVIDENCE)
    recent = sorted({index for index in (*newer, *kept_then) if index not in kept})
    evidence = [describe_point(p) for p in stale]
    if stale_count:
        findings.problems.append(
            f"prune is not running: a prune {format_duration(grace)} ago would already have removed "
            f"{stale_count} point(s): {list_some(evidence, stale_count)}"
        )
    if recent:
        shown = [describe_point(p) for p in newest([points[index] for index in recent], MAX_LISTED)]
        findings.notes.append(
            f"the next prune will remove {len(recent)} point(s), made or shifted out of a rule within the "
            f"last {format_duration(grace)}: {list_some(shown, len(recent))}"
        )
    return evidence, stale_count


def check_coverage(run_engine, zone, now, schedule, rpo, finished, kept, findings) -> list[RuleCoverage]:
    """Per rule: expected vs found counts and missing periods (see `audit`)."""
    rules = rules_of(run_engine.engine, run_engine.policy)
    if not finished or not rules:
        if finished:
            findings.notes.append("PBS keeps every snapshot: no keep option is greater than 0")
        return []
    first = finished.extreme(oldest=True).time
    ideal_points = make_ideal_history(first, zone, now, schedule)
    if ideal_points is None:
        findings.notes.append(
            f"coverage not checked: an ideal history at one point per {format_duration(schedule)} "
            f"would exceed {MAX_IDEAL_POINTS} points; give a coarser schedule"
        )
        return []
    ideal = run_engine(prepare_ideal(run_engine, ideal_points), now)
    held = HeldPeriods(zone, finished)
    found = Counter(base_rule(rule) for rule, _ in kept.values())
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


def make_ideal_history(first: datetime, zone: Zone, now: datetime, schedule: timedelta):
    """One point per schedule from the first finished point to now (None if too many).

    A sequence of Points: a list, or for a fixed schedule from a fixed-offset time an
    `IdealPoints` that makes only the points asked for."""
    if first > now:
        return []
    steps = int((now - first) / schedule)
    if steps + 1 > MAX_IDEAL_POINTS:
        return None
    if schedule % timedelta(days=1) == timedelta(0):
        wall = zone.local_datetime(first.timestamp())
        if type(zone.tzinfo) is zoneinfo.ZoneInfo:
            return IdealDayPoints.make(wall, zone.tzinfo, schedule, steps + 1, now)
        times = [zone.from_wall_clock(wall + step * schedule) for step in range(steps + 1)]
        times = [when for when in times if when <= now]
    elif isinstance(first.tzinfo, timezone):
        return IdealPoints(first, schedule, steps + 1)
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
    """Which periods of each kind hold at least one finished real point.

    `missing` asks only about the few periods the ideal history keeps, so each is
    answered by looking at the finished points whose timestamps lie within the
    period's bounds widened by more than any UTC offset (Python keeps offsets within
    a day): their local times are computed, and compared by period key, exactly as
    for all points. Only when a period's bounds cannot be found (dates at the ends of
    the calendar) are the periods of every finished point collected.
    """

    BAND = 2 * SECONDS_PER_DAY

    def __init__(self, zone: Zone, finished: FinishedPoints):
        self.zone, self.finished = zone, finished
        self._epochs: list[float] | None = None
        self._local: list[int] | None = None
        self.keys: dict[str, set[int]] = {}

    @property
    def epochs(self) -> list[float]:
        """Timestamps of the finished points, oldest first."""
        if self._epochs is None:
            epochs = self.finished.history.epochs
            self._epochs = [epochs[index] for index in reversed(self.finished.newest_first())]
        return self._epochs

    def held(self, period: str) -> set[int]:
        """The keys of every period holding a finished point (the fallback)."""
        if period not in self.keys:
            if self._local is None:
                self._local = self.finished.local_seconds()
            key = PERIOD_KEYS[period]
            if period in ("second", "minute", "hour"):
                self.keys[period] = {key(local) for local in self._local}
            else:  # a day or longer: the key depends on the day only
                days = {local // SECONDS_PER_DAY for local in self._local}
                self.keys[period] = {key(day * SECONDS_PER_DAY) for day in days}
        return self.keys[period]

    def holds(self, period: str, local: int, offset: int = 0) -> bool:
        """Whether a finished point lies in the period of the local time `local`.

        `offset` (local minus UTC seconds where `local` was found) only guides which
        points are tried first: those at the period's bounds shifted by it."""
        key = PERIOD_KEYS[period]
        target = key(local)
        bounds = period_bounds(period, local)
        if bounds is None:
            return target in self.held(period)
        start, end = bounds
        epochs = self.epochs
        low = bisect.bisect_left(epochs, start - self.BAND)
        high = bisect.bisect_left(epochs, end + self.BAND, low)
        inner = bisect.bisect_left(epochs, start + self.BAND, low, high)  # likely inside: try it first
        if inner < high and key(self.zone.local_seconds(epochs[inner])) == target:
            return True
        near = bisect.bisect_left(epochs, start - offset, low, high)
        for chunk in range(near, min(bisect.bisect_left(epochs, end - offset, near, high) + 1, high), 1024):
            window = epochs[chunk:min(chunk + 1024, high)]
            if any(key(second) == target for second in self.zone.local_seconds_many(window)):
                return True
        for chunk in range(low, high, 1024):
            window = epochs[chunk:min(chunk + 1024, high)]
            if any(key(second) == target for second in self.zone.local_seconds_many(window)):
                return True
        return False

    def missing(self, period: str, kept: list[Point]) -> list[str]:
        """Labels of the periods of `kept` (oldest first) that hold no real point."""
        labels = []
        for point in sorted(kept, key=lambda p: p.time):
            epoch = point.time.timestamp()
            local = self.zone.local_seconds(epoch)
            if not self.holds(period, local, local - math.floor(epoch)):
                labels.append(label_period(period, LOCAL_EPOCH + timedelta(seconds=local)))
        return labels


FIXED_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": SECONDS_PER_DAY}


def period_bounds(period: str, local: int) -> tuple[int, int] | None:
    """[start, end) in local seconds of the period holding `local`, None if not found.

    The bounds are checked against the period key at both ends (keys never decrease
    with time, so a key that holds at start and end - 1 and differs just outside
    them has exactly these bounds)."""
    key = PERIOD_KEYS[period]
    try:
        if period in FIXED_PERIODS:
            size = FIXED_PERIODS[period]
            start = local - local % size
            end = start + size
        else:
            day = local // SECONDS_PER_DAY
            when = date.fromordinal(day + EPOCH_ORDINAL)
            if period == "week":
                first = (day + 3) // 7 * 7 - 3
                start_day, end_day = first, first + 7
            else:
                begin, after = calendar_span(period, when)
                start_day, end_day = begin.toordinal() - EPOCH_ORDINAL, after.toordinal() - EPOCH_ORDINAL
            start, end = start_day * SECONDS_PER_DAY, end_day * SECONDS_PER_DAY
        target = key(local)
        if key(start) == target == key(end - 1) and key(start - 1) != target != key(end):
            return start, end
    except (ValueError, OverflowError):
        pass
    return None


def calendar_span(period: str, when: date) -> tuple[date, date]:
    """First day of the period holding `when` and of the next one."""
    year, month = when.year, when.month
    if period == "month":
        return date(year, month, 1), date(year + month // 12, month % 12 + 1, 1)
    if period == "year":
        return date(year, 1, 1), date(year + 1, 1, 1)
    if period == "month-quarter":
        first = (month - 1) // 3 * 3 + 1
        return date(year, first, 1), date(year + (first + 3) // 13, (first + 2) % 12 + 1, 1)
    if period == "iso-quarter":
        iso_year, iso_week, _ = when.isocalendar()
        quarter = min((iso_week - 1) // 13, 3)
        begin = date.fromisocalendar(iso_year, quarter * 13 + 1, 1)
        after = date.fromisocalendar(iso_year + 1, 1, 1) if quarter == 3 else date.fromisocalendar(
            iso_year, quarter * 13 + 14, 1)
        return begin, after
    raise ValueError(period)


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
    latest = finished.extreme(oldest=False)
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
