"""Value objects shared by the PBS and Borg prune engines.

`Point` is one backup (a PBS snapshot or a Borg archive), `Policy` the keep options
of a prune, `Decision` what a prune does with one point and why. `RetentionError`
is raised for every input the engines cannot simulate faithfully; its message is one
paragraph that says what was wrong and how to fix it.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import gc
import math
import os
import re
import time
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta, timezone, tzinfo
from itertools import compress, repeat
from operator import add, is_
from typing import NamedTuple

from . import bulk

__all__ = ["Decision", "Point", "Policy", "RetentionError", "COUNT_OPTIONS"]


class RetentionError(ValueError):
    """A point, policy or zone that a prune engine would reject or cannot model."""


CHECKPOINT_NAME = re.compile(r"\.checkpoint(\.\d+)?\Z")

# Count options in the order `describe()` lists them (finest period first).
COUNT_OPTIONS = ("keep_last", "keep_secondly", "keep_minutely", "keep_hourly", "keep_daily", "keep_weekly",
                 "keep_monthly", "keep_13weekly", "keep_3monthly", "keep_yearly")
BORG_ONLY_OPTIONS = ("keep_within", "keep_secondly", "keep_minutely", "keep_13weekly", "keep_3monthly")


@dataclass(frozen=True, slots=True)
class Point:
    """One backup: a PBS snapshot or a Borg archive.

    `time` must be timezone-aware (any zone). `protected` and `unfinished` (no
    index.json.blob) only exist in PBS; `checkpoint` only in Borg, where a name
    ending in `.checkpoint` or `.checkpoint.N` marks a checkpoint as well.
    """

    time: datetime
    name: str = ""
    protected: bool = False
    unfinished: bool = False
    checkpoint: bool = False

    def is_borg_checkpoint(self) -> bool:
        return self.checkpoint or (".checkpoint" in self.name and CHECKPOINT_NAME.search(self.name) is not None)


class Decision(NamedTuple):
    """What a prune does with one point: keep it (and by which rule) or remove it.

    `rule` is the engine's own rule name ("daily", "yearly[oldest]", "within",
    "protected", "partial", "checkpoint", "all"), None when the point is removed;
    `rank` is the 1-based position inside that rule ("daily #3"), None when the
    rule has no ranking. A NamedTuple (immutable like the frozen dataclass it was): a
    million of them are built in C (`decide_all`), about 5x faster (issue 26).
    """

    point: Point
    keep: bool
    rule: str | None
    rank: int | None


@dataclass(frozen=True)
class Policy:
    """The keep options of a prune; None means "option not given".

    Counts are integers >= 0, or -1 (unlimited) for Borg. `keep_within` ("2d",
    "12H", "1w", "1m", "1y") and the secondly, minutely, 13weekly and 3monthly
    counts exist only in Borg, where `keep_last` is another name for
    `keep_secondly`.
    """

    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: str | None = None
    keep_secondly: int | None = None
    keep_minutely: int | None = None
    keep_13weekly: int | None = None
    keep_3monthly: int | None = None

    def __post_init__(self) -> None:
        problems = [problem for name in COUNT_OPTIONS if (problem := check_count(name, getattr(self, name)))]
        if self.keep_within is not None and not isinstance(self.keep_within, str):
            problems.append(f"keep_within must be a string such as '2d', not {self.keep_within!r}")
        if problems:
            raise RetentionError(
                "Invalid retention policy: " + "; ".join(problems) + ". Give each keep option as a whole "
                "number (0 or more; -1 means unlimited and only Borg accepts it) or leave it out."
            )

    @classmethod
    def from_mapping(cls, mapping: dict) -> Policy:
        """Build a policy from config keys such as "keep-daily" or "keep_daily"."""
        known = {f.name for f in fields(cls)}
        values, unknown = {}, []
        for key, value in mapping.items():
            name = str(key).strip().lower().replace("-", "_")
            if name not in known:
                unknown.append(str(key))
                continue
            values[name] = value if name == "keep_within" else coerce_count(name, value)
        if unknown:
            raise RetentionError(
                f"Unknown retention option(s) {', '.join(sorted(unknown))}. Valid options are "
                f"{', '.join(sorted(n.replace('_', '-') for n in known))} (written with '-' or '_')."
            )
        return cls(**values)

    def given(self) -> dict[str, int | str]:
        """The options that were given, by their command-line name ("keep-daily")."""
        return {
            f.name.replace("_", "-"): getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not None
        }

    def describe(self) -> str:
        """A short human text such as "7 daily, 4 weekly, 12 monthly, 2 yearly"."""
        parts = [f"within {self.keep_within}"] if self.keep_within is not None else []
        for name in COUNT_OPTIONS:
            count = getattr(self, name)
            if count is not None:
                parts.append(f"{'all' if count == -1 else count} {name.removeprefix('keep_')}")
        return ", ".join(parts) if parts else "no keep option"


def check_count(name: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} must be a whole number, not {value!r}"
    if value < -1:
        return f"{name} is {value}, but counts must be 0 or more (or -1 for unlimited in Borg)"
    return None


def coerce_count(name: str, value: object) -> object:
    """Accept counts written as strings in config files ("7"); leave the rest to validation."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return value


def check_points(points: list[Point], engine: str) -> None:
    """Reject naive times and flags the engine does not know, naming the first offender.

    Written as whole-list passes (not one loop with every check) because it runs on
    every point of histories with millions of points; plain Points with stdlib zones and
    no foreign flag (the usual case) pass through C-level maps only (`bulk`).
    """
    if bulk.all_of_type(points, Point) and bulk.known_offsets(points) and not (
        bulk.any_flag(points, "protected") or bulk.any_flag(points, "unfinished") if engine == "borg"
        else bulk.any_flag(points, "checkpoint")
    ):
        return
    wrong = next((i for i, p in enumerate(points) if not isinstance(p, Point) or p.time.tzinfo is None), None)
    if wrong is None:
        wrong = first_without_offset(points)
    if wrong is not None:
        point = points[wrong]
        if not isinstance(point, Point):
            raise RetentionError(f"Point #{wrong + 1} is a {type(point).__name__}, not a Point.")
        raise RetentionError(
            f"Point #{wrong + 1} ({point.name or point.time.isoformat()}) has a naive time. Periods "
            "depend on the zone, so give every time a zone, e.g. datetime(..., tzinfo=timezone.utc)."
        )
    if engine == "borg":
        wrong = next((i for i, p in enumerate(points) if p.protected or p.unfinished), None)
        text = "is marked protected or unfinished, which only PBS knows. Borg has no such archives"
        fix = "use engine 'pbs' or drop the flag"
    else:
        wrong = next((i for i, p in enumerate(points) if p.checkpoint), None)
        text = "is marked as a checkpoint, which only Borg knows. PBS marks interrupted backups as unfinished"
        fix = "use the unfinished flag or engine 'borg'"
    if wrong is not None:
        point = points[wrong]
        raise RetentionError(f"Point #{wrong + 1} ({point.name or point.time.isoformat()}) {text}: {fix}.")


def first_without_offset(points: list[Point]) -> int | None:
    """Index of a time whose tzinfo gives no offset (only custom tzinfo classes can)."""
    zones = {point.time.tzinfo for point in points}
    if all(isinstance(zone, (timezone, zoneinfo.ZoneInfo)) for zone in zones):
        return None
    return next((i for i, point in enumerate(points) if point.time.utcoffset() is None), None)


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while allocating millions of acyclic objects.

    Building a Decision per point triggers repeated full collections that scan every
    live object; pausing halves the time of a 1M-point simulation. Nothing allocated
    inside forms reference cycles, so nothing is leaked.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def promote_young_objects() -> None:
    """Move the Decisions just built (collector paused) to the collector's oldest generation.

    Re-enabled, the collector would scan the million new Decisions of a 1M-point history as
    its youngest generation (0.09-0.2 s), then again as the middle one, only to find them
    alive (acyclic, held by the caller); `gc.freeze()` then `gc.unfreeze()` moves every
    tracked object to the oldest generation in O(1) instead (CPython Modules/gcmodule.c,
    gc_freeze_impl and gc_unfreeze_impl: list splices in the default build), where a full
    collection still sees them. Only in `decide_all`: around the audit's ideal history it
    made the audit slower (measured, issue 26). Skipped when the program froze objects itself
    (a pre-fork server): unfreezing would undo that.
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


def decide_all(points: list[Point], reasons: dict[int, tuple[str, int | None]]) -> list[Decision]:
    """One Decision per point in input order: kept with its (rule, rank) or removed."""
    with gc_paused():
        removed = zip(points, repeat(False), repeat(None), repeat(None))
        decisions = list(map(tuple.__new__, repeat(Decision), removed))
        for index, (rule, rank) in reasons.items():
            decisions[index] = Decision(points[index], True, rule, rank)
        promote_young_objects()
    return decisions


# --- zones and period keys -------------------------------------------------------
#
# Engines compare period keys only for equality, so a key is an integer computed from
# the local wall-clock time as seconds since 1970-01-01T00:00 local ("local seconds").
# Two instants with the same wall clock (the repeated hour at the end of DST) get the
# same key, exactly like the strftime strings the engines compare.

EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()
SECONDS_PER_DAY = 86400


class Zone:
    """A time zone as the engines use it: UTC seconds -> local wall-clock seconds.

    `tz` is an IANA name ("Europe/Berlin"), a tzinfo, or None / "local" for the zone
    of this machine (what Borg and PBS use: `time.localtime`).
    """

    def __init__(self, tz: object = None):
        self.tzinfo, self.name, self._offset_of = resolve_offset_function(tz)
        self._day_offsets: dict[int, int | None] = {}
        self._hour_offsets: dict[int, int | None] = {}

    def local_seconds(self, epoch: float) -> int:
        """Wall-clock seconds since 1970-01-01 local for a UTC timestamp (floored)."""
        return self.local_seconds_many((epoch,))[0]

    def local_seconds_many(self, epochs: Iterable[float]) -> list[int]:
        """`local_seconds` of many timestamps, with offsets cached per UTC day.

        A day (or failing that an hour) whose first and last second have the same
        offset is taken as having no transition inside: no zone in the tz database
        changes its offset twice within one day and back again.
        """
        seconds = list(map(math.floor, epochs))
        days = bulk.days_of(seconds)
        distinct = dict.fromkeys(days)
        for day in distinct:
            distinct[day] = self._offset_for_span(day, SECONDS_PER_DAY, self._day_offsets)
        offsets = list(map(distinct.__getitem__, days))
        if None in distinct.values():  # transition days: look those points up by hour
            for position in compress(range(len(offsets)), map(is_, offsets, repeat(None))):
                second = seconds[position]
                offset = self._offset_for_span(second // 3600, 3600, self._hour_offsets)
                offsets[position] = self._offset_of(second) if offset is None else offset
        return list(map(add, seconds, offsets))

    def _offset_for_span(self, number: int, length: int, cache: dict[int, int | None]) -> int | None:
        """The offset of a whole UTC day or hour, or None if a transition falls inside."""
        if number not in cache:
            start, end = self._offset_of(number * length), self._offset_of(number * length + length - 1)
            cache[number] = start if start == end else None
        return cache[number]

    def local_datetime(self, epoch: float) -> datetime:
        """The naive local wall-clock time, for labels and tables."""
        return LOCAL_EPOCH + timedelta(seconds=self.local_seconds(epoch))

    def from_wall_clock(self, wall: datetime) -> datetime:
        """The instant of a naive local wall-clock time (the earlier one when repeated)."""
        if self.tzinfo is None:
            return wall.astimezone(timezone.utc)
        return wall.replace(tzinfo=self.tzinfo).astimezone(timezone.utc)


class NewestFirst:
    """Period keys of points in newest-first order, computed only as far as rules read.

    Rules walk from the newest point and usually stop early, so local times are
    computed in growing chunks of the order and shared by all rules.
    """

    def __init__(self, zone: Zone, epochs: list[float], order: list[int], shared: Prepared | None = None):
        self.zone, self.epochs, self.order = zone, epochs, order
        # Local seconds along `base`, where order[j] == base[offset + j]; a Prepared
        # history shares them between runs on a suffix of one order (the audit).
        if shared is None:
            self.base, self.offset, self.local = order, 0, []
        else:
            self.base, self.offset, self.local = shared.base, shared.offset, shared.local

    def keyed(self, period: str) -> Iterator[tuple[int, int]]:
        """(point index, period key) newest first; "point" keys each point by itself."""
        if period == "point":
            yield from zip(self.order, self.order)
            return
        for indices, keys in self.keyed_chunks(period):
            yield from zip(indices, keys)

    def keyed_chunks(self, period: str) -> Iterator[tuple[list[int], list[int]]]:
        """`keyed` as (indices, keys) lists of growing chunks (512, 1024, ...), newest first."""
        key = PERIOD_KEYS[period]
        of_day = lambda day: key(day * SECONDS_PER_DAY)  # noqa: E731  months, quarters, years: by day
        start, size = 0, 512
        while start < len(self.order):
            stop = min(start + size, len(self.order))
            low, high = self.offset + start, self.offset + stop
            if high > len(self.local):
                todo = self.base[len(self.local):high]
                self.local.extend(self.zone.local_seconds_many(list(map(self.epochs.__getitem__, todo))))
            yield self.order[start:stop], bulk.period_keys(period, self.local[low:high], of_day)
            start, size = stop, size * 2

    def key_of(self, period: str, index: int) -> int:
        if period == "point":
            return index
        return PERIOD_KEYS[period](self.zone.local_seconds(self.epochs[index]))


class Prepared:
    """A history checked, timed and sorted once, for several engine runs (the audit).

    Indices are positions in `points`. `order` is the engines' newest-first order
    (by timestamp; ties keep input order, as the engines' stable sort does);
    `rule_order` is the order the period rules walk (Borg leaves checkpoints out).
    `until(cutoff)` gives the points made by `cutoff` as a view on a suffix of both
    orders, sharing the flags and the local times computed so far.
    """

    def __init__(
        self,
        points,
        engine: str,
        zone: Zone,
        epochs: list[float] | None = None,
        order: list[int] | None = None,
        *,
        check: bool = True,
        plain: bool = False,
    ):
        if check:
            check_points(points, engine)
        self.points, self.engine, self.zone = points, engine, zone
        self.epochs = bulk.timestamps(points) if epochs is None else epochs
        if order is None:
            order = bulk.newest_first(self.epochs)
        self.order = order
        self.cutoff: datetime | None = None  # a view holds the points with time <= cutoff
        self.unfinished: list[int] = []  # PBS, newest first
        self.protected: list[int] = []  # PBS, input order
        self.checkpoints: set[int] = set()  # Borg
        if plain:  # points known to carry no flag (the audit's ideal history)
            pass
        elif engine == "pbs" and not (bulk.any_flag(points, "unfinished") or bulk.any_flag(points, "protected")):
            pass
        elif engine == "pbs":
            flagged = [i for i, p in enumerate(points) if p.unfinished or p.protected]
            self.protected = [i for i in flagged if points[i].protected]
            self.unfinished = sorted(
                (i for i in flagged if points[i].unfinished), key=lambda i: (-self.epochs[i], i)
            )
        elif not (bulk.any_flag(points, "checkpoint") or bulk.any_name_has(points, ".checkpoint")):
            pass
        else:
            self.checkpoints = {
                i for i, p in enumerate(points) if p.checkpoint or ".checkpoint" in p.name and p.is_borg_checkpoint()
            }
        self.rule_order = [i for i in self.order if i not in self.checkpoints] if self.checkpoints else self.order
        self.base, self.offset, self.local = self.rule_order, 0, []
        self._zones: set | None = None

    def __len__(self) -> int:
        return len(self.order)

    def indices(self) -> list[int]:
        """The indices of this history's points in input order."""
        return list(range(len(self.points))) if self.cutoff is None else sorted(self.order)

    def local_all(self) -> list[int]:
        """Local seconds along `base` (the rule order of the whole history), all computed."""
        if len(self.local) < len(self.base):
            todo = self.base[len(self.local):]
            self.local.extend(self.zone.local_seconds_many([self.epochs[i] for i in todo]))
        return self.local

    def instant_ordered(self) -> bool:
        """True when comparing the times compares instants (every tzinfo a fixed offset).

        Python compares two times of one non-fixed tzinfo by wall clock, so only then
        does the timestamp order agree with sorting, min and max of the times."""
        if self._zones is None:
            self._zones = set(map(bulk.TZINFO, map(bulk.TIME, self.points)))
        return all(isinstance(zone, timezone) for zone in self._zones)

    def until(self, cutoff: datetime) -> Prepared | None:
        """The points with `time <= cutoff`, or None when they are not a suffix of the order.

        Only then can the view share this history's order; the caller falls back to
        preparing those points afresh. Comparing by timestamp equals comparing the
        times unless a time has the cutoff's own non-fixed tzinfo (then Python compares
        wall clocks), so that case falls back too.
        """
        if not isinstance(cutoff.tzinfo, timezone) and not self.instant_ordered():
            return None
        limit, epochs, order, points = cutoff.timestamp(), self.epochs, self.order, self.points
        start = bisect.bisect_left(order, -limit, key=lambda i: -epochs[i])
        # Timestamps are rounded, so a time just after the cutoff can share its timestamp.
        position = start
        while position < len(order) and epochs[order[position]] == limit:
            if points[order[position]].time > cutoff:
                return None
            position += 1
        view = object.__new__(Prepared)
        view.points, view.engine, view.zone, view.epochs = points, self.engine, self.zone, epochs
        view.order, view.cutoff = order[start:], cutoff
        view.unfinished = [i for i in self.unfinished if points[i].time <= cutoff]
        view.protected = [i for i in self.protected if points[i].time <= cutoff]
        view.checkpoints = {i for i in self.checkpoints if points[i].time <= cutoff}
        skipped = start - (len(self.checkpoints) - len(view.checkpoints))  # archives before the suffix
        view.rule_order = self.rule_order[skipped:] if self.checkpoints else view.order
        view.base, view.offset, view.local = self.base, self.offset + skipped, self.local
        view._zones = self._zones
        return view


LOCAL_EPOCH = datetime(1970, 1, 1)


def resolve_offset_function(tz: object):
    if tz is None or (isinstance(tz, str) and tz.strip().lower() in ("", "local")):
        return None, local_zone_name(), lambda second: time.localtime(second).tm_gmtoff
    if isinstance(tz, str):
        try:
            tz = zoneinfo.ZoneInfo(tz.strip())
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise RetentionError(
                f"Unknown time zone {tz!r}. Give an IANA zone name such as 'UTC' or 'Europe/Berlin' "
                "(see /usr/share/zoneinfo), or leave it out to use this machine's zone."
            ) from None
    if not isinstance(tz, tzinfo):
        raise RetentionError(f"Time zone must be a name or a tzinfo, not {type(tz).__name__}.")
    zone = tz
    return zone, str(getattr(zone, "key", zone)), lambda second: offset_seconds(zone, second)


def offset_seconds(zone: tzinfo, second: int) -> int:
    return int(datetime.fromtimestamp(second, zone).utcoffset().total_seconds())


def local_zone_name() -> str:
    """Best name for this machine's zone: $TZ, the /etc/localtime link, or 'local'."""
    if os.environ.get("TZ"):
        return os.environ["TZ"]
    target = os.path.realpath("/etc/localtime")
    return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "local"


def day_of(local: int) -> int:
    return local // SECONDS_PER_DAY


def week_of(local: int) -> int:
    """ISO week index: 1970-01-01 is a Thursday, so weeks start at day -3 (Monday)."""
    return (local // SECONDS_PER_DAY + 3) // 7


@functools.lru_cache(maxsize=65536)
def calendar_of_day(day: int) -> tuple[int, int, int, int]:
    """(year, month, ISO year, ISO week) of a day number since 1970-01-01."""
    when = date.fromordinal(day + EPOCH_ORDINAL)
    iso_year, iso_week, _ = when.isocalendar()
    return when.year, when.month, iso_year, iso_week


def month_of(local: int) -> int:
    year, month, _, _ = calendar_of_day(local // SECONDS_PER_DAY)
    return year * 12 + month - 1


def year_of(local: int) -> int:
    return calendar_of_day(local // SECONDS_PER_DAY)[0]


def iso_quarter_of(local: int) -> int:
    """Borg's 13weekly period: ISO year and quarter of the ISO week (<=13, <=26, <=39, rest)."""
    _, _, iso_year, iso_week = calendar_of_day(local // SECONDS_PER_DAY)
    return iso_year * 4 + min((iso_week - 1) // 13, 3)


def month_quarter_of(local: int) -> int:
    """Borg's 3monthly period: year and quarter of the month."""
    year, month, _, _ = calendar_of_day(local // SECONDS_PER_DAY)
    return year * 4 + (month - 1) // 3


PERIOD_KEYS = {
    "second": lambda local: local,
    "minute": lambda local: local // 60,
    "hour": lambda local: local // 3600,
    "day": day_of,
    "week": week_of,
    "month": month_of,
    "iso-quarter": iso_quarter_of,
    "month-quarter": month_quarter_of,
    "year": year_of,
}


def label_period(period: str, wall: datetime) -> str:
    """A person's name for the period holding a local wall-clock time ("2026-W14")."""
    if period == "week":
        iso_year, iso_week, _ = wall.isocalendar()
        return f"{iso_year}-W{iso_week:02d}"
    if period == "iso-quarter":
        iso_year, iso_week, _ = wall.isocalendar()
        quarter = min((iso_week - 1) // 13, 3)
        last = "53" if quarter == 3 else f"{quarter * 13 + 13:02d}"
        return f"{iso_year}-W{quarter * 13 + 1:02d}..W{last}"
    if period == "month-quarter":
        return f"{wall.year}-Q{(wall.month - 1) // 3 + 1}"
    formats = {
        "second": "%Y-%m-%d %H:%M:%S",
        "minute": "%Y-%m-%d %H:%M",
        "hour": "%Y-%m-%d %Hh",
        "day": "%Y-%m-%d",
        "month": "%Y-%m",
        "year": "%Y",
    }
    return wall.strftime(formats.get(period, "%Y-%m-%d %H:%M:%S"))
