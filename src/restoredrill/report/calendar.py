"""The retention calendar of one target: which days, weeks, months and years hold a point,
and which rule keeps it. Pure: no I/O.

Its input is the ``points`` evidence of a retention case: a JSON list of
``{"time": ISO-8601 with offset, "name": str, "keep": bool, "rule": str|null,
"rank": int|null}`` (what ``restoredrill.retention.simulate`` decided, as the drill
audited it). Points without ``keep`` are decided here with ``simulate`` when the
caller knows the policy (from the inventory); without points the calendar says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from restoredrill import retention

POINTS_KEY = "points"
DAYS_SHOWN = 35
WEEKS_SHOWN = 16
MONTHS_SHOWN = 24
YEARS_SHOWN = 10
# the rule a cell of each grid is about ("daily" for a day): shown first when a period holds several
OWN_RULE = {"day": "daily", "week": "weekly", "month": "monthly", "year": "yearly"}


@dataclass(frozen=True)
class CalendarPoint:
    time: datetime          # in the calendar's zone
    name: str
    keep: bool | None       # None: unknown (no decision recorded, no policy to simulate)
    rule: str | None
    rank: int | None

    @property
    def label(self) -> str:
        if self.keep is None:
            return "point"
        if not self.keep:
            return "removed"
        return f"{self.rule} #{self.rank}" if self.rank else str(self.rule)

    @property
    def css(self) -> str:
        """daily, weekly, monthly, yearly, within, last, other, removed or unknown."""
        if self.keep is None:
            return "unknown"
        if not self.keep:
            return "removed"
        base = (self.rule or "").split("[", 1)[0]
        return base if base in ("daily", "weekly", "monthly", "yearly", "within", "last", "hourly") else "other"


@dataclass(frozen=True)
class Cell:
    period: str                      # "2026-03-14", "2026-W11", "2026-03", "2026"
    point: CalendarPoint | None      # the point shown for the period (kept by the cell's own rule first)
    count: int = 0                   # points in the period


@dataclass
class Calendar:
    drill: str
    zone: str
    source: str                                      # where the decisions come from
    weeks_of_days: list[list[Cell | None]] = field(default_factory=list)   # rows Mon..Sun
    weeks: list[Cell] = field(default_factory=list)
    months: list[Cell] = field(default_factory=list)
    years: list[Cell] = field(default_factory=list)
    points: int = 0
    kept: int = 0
    problem: str | None = None       # why there is no calendar
    summary: str = ""                # the retention audit's verdict: missing periods, extra points


def load_points(raw) -> list[dict]:
    """The ``points`` evidence (a JSON text or a list) as dicts; raises ValueError if malformed."""
    data = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    if not isinstance(data, list) or not all(isinstance(item, dict) and "time" in item for item in data):
        raise ValueError("expected a JSON list of {time, name, keep, rule, rank}")
    return data


def decide(items: list[dict], engine: str | None, policy: retention.Policy | None, zone: str,
           now: datetime) -> tuple[list[CalendarPoint], str]:
    """Points with their decision: as recorded, else simulated (when the policy is known)."""
    tz = ZoneInfo(zone)
    times = [datetime.fromisoformat(str(item["time"])) for item in items]
    if any(when.tzinfo is None for when in times):
        raise ValueError("every point time needs a UTC offset")
    if all("keep" in item for item in items):
        points = [CalendarPoint(when.astimezone(tz), str(item.get("name") or ""), bool(item["keep"]),
                                item.get("rule"), item.get("rank")) for when, item in zip(times, items)]
        return points, "decisions recorded by the retention drill"
    if engine and policy is not None:
        raw = [retention.Point(time=when, name=str(item.get("name") or "")) for when, item in zip(times, items)]
        decisions = retention.simulate(engine, raw, policy, zone, now=now)
        points = [CalendarPoint(d.point.time.astimezone(tz), d.point.name, d.keep, d.rule, d.rank)
                  for d in decisions]
        return points, f"decided here: {engine} prune rules, {policy.describe()}"
    points = [CalendarPoint(when.astimezone(tz), str(item.get("name") or ""), None, None, None)
              for when, item in zip(times, items)]
    return points, "points only (no decisions recorded and no policy known)"


def build_calendar(drill: str, evidence: dict, now: datetime, zone: str, engine: str | None = None,
                   policy: retention.Policy | None = None) -> Calendar:
    zone = str(evidence.get("timezone") or zone or "UTC")
    try:
        ZoneInfo(zone)
    except (ValueError, KeyError, OSError):
        return Calendar(drill, zone, "", problem=f"unknown time zone {zone!r} for {drill}")
    if POINTS_KEY not in evidence:
        return Calendar(drill, zone, "", problem=f"the retention drill recorded no points (evidence key "
                                                 f"'{POINTS_KEY}'), so there is no calendar for {drill}")
    try:
        points, source = decide(load_points(evidence[POINTS_KEY]), engine, policy, zone, now)
    except (ValueError, TypeError, KeyError, retention.RetentionError) as exc:
        return Calendar(drill, zone, "", problem=f"the points recorded for {drill} cannot be read: {exc}")
    local_now = now.astimezone(ZoneInfo(zone))
    calendar = Calendar(drill, zone, source, points=len(points), kept=sum(bool(p.keep) for p in points))
    by = {kind: group(points, kind) for kind in ("day", "week", "month", "year")}
    calendar.weeks_of_days = day_grid(by["day"], local_now.date())
    calendar.weeks = [cell(by["week"], "week", key) for key in last_weeks(local_now.date(), WEEKS_SHOWN)]
    calendar.months = [cell(by["month"], "month", key) for key in last_months(local_now.date(), MONTHS_SHOWN)]
    first_year = min((p.time.year for p in points), default=local_now.year)
    calendar.years = [cell(by["year"], "year", str(year))
                      for year in range(max(first_year, local_now.year - YEARS_SHOWN + 1), local_now.year + 1)]
    return calendar


def period_of(when: datetime, kind: str) -> str:
    if kind == "day":
        return when.strftime("%Y-%m-%d")
    if kind == "week":
        year, week, _ = when.isocalendar()
        return f"{year}-W{week:02d}"
    if kind == "month":
        return when.strftime("%Y-%m")
    return str(when.year)


def group(points: list[CalendarPoint], kind: str) -> dict[str, list[CalendarPoint]]:
    grouped: dict[str, list[CalendarPoint]] = {}
    for point in points:
        grouped.setdefault(period_of(point.time, kind), []).append(point)
    return grouped


def cell(grouped: dict[str, list[CalendarPoint]], kind: str, period: str) -> Cell:
    found = grouped.get(period, [])
    if not found:
        return Cell(period, None, 0)
    own = OWN_RULE[kind]
    ranked = sorted(found, key=lambda p: (not (p.keep and (p.rule or "").startswith(own)), not p.keep,
                                          -p.time.timestamp()))
    return Cell(period, ranked[0], len(found))


def day_grid(days: dict[str, list[CalendarPoint]], today: date) -> list[list[Cell | None]]:
    """Rows of ISO weeks (Monday first) covering the last DAYS_SHOWN days; None outside the range."""
    first = today - timedelta(days=DAYS_SHOWN - 1)
    start = first - timedelta(days=first.weekday())
    rows, day = [], start
    while day <= today:
        row = []
        for _ in range(7):
            row.append(cell(days, "day", day.isoformat()) if first <= day <= today else None)
            day += timedelta(days=1)
        rows.append(row)
    return rows


def last_weeks(today: date, count: int) -> list[str]:
    monday = today - timedelta(days=today.weekday())
    keys = []
    for back in range(count - 1, -1, -1):
        year, week, _ = (monday - timedelta(weeks=back)).isocalendar()
        keys.append(f"{year}-W{week:02d}")
    return keys


def last_months(today: date, count: int) -> list[str]:
    index = today.year * 12 + today.month - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - count + 1, index + 1)]


def split_by_group(title: str, evidence: dict) -> list[tuple[str, dict]]:
    """``(title, evidence)`` per backup group when the points carry one (an S3 copy's retention case
    records every group's points in one list), else the case as it is."""
    try:
        items = load_points(evidence[POINTS_KEY]) if POINTS_KEY in evidence else None
    except (ValueError, TypeError):
        items = None
    if not items or not all("group" in item for item in items):
        return [(title, evidence)]
    groups: dict[str, list[dict]] = {}
    for item in items:
        groups.setdefault(str(item["group"]), []).append(item)
    verdicts = {part.split(": ", 1)[0]: part for part in str(evidence.get("retention") or "").split(" | ")}
    return [(f"{title} {group}", {**evidence, POINTS_KEY: points, "retention": verdicts.get(group, "")})
            for group, points in groups.items()]


def calendars_of(cases, now: datetime, zone: str, policy_of) -> list[Calendar]:
    """One calendar per retention case: a Borg repository, each guest in each PBS datastore
    (``retention:GUEST``), each backup group of an S3 copy (its points carry the group), with the
    audit's verdict under it. ``policy_of(drill)``: (engine, Policy) for points without decisions."""
    out = []
    for case in cases:
        if case.check != "retention" and not case.check.startswith("retention:"):
            continue
        engine, policy = policy_of(case.drill)
        title = case.drill + (f" {case.check.split(':', 1)[1]}" if ":" in case.check else "")
        for name, evidence in split_by_group(title, case.properties):
            calendar = build_calendar(name, evidence, now, zone, engine, policy)
            calendar.summary = case.message if not case.ok and case.message else str(evidence.get("retention") or "")
            out.append(calendar)
    return out
