"""Per-point steps of the engines done over whole lists with C-level ``map`` (issue 26).

A history of a million points makes every Python-level step per point cost about 0.1 s;
these helpers run the same steps through ``map`` with ``operator`` functions, so the
interpreter loop runs per distinct day (period tables) or not at all. Each helper
returns exactly what the plain per-point code returned; the engines' tests and the
equivalence test (tests/unit/test_retention_perf_equivalence.py) hold them to it.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import fields
from datetime import datetime, timezone
from itertools import compress, repeat
from operator import add, attrgetter, contains, floordiv, lt, ne

TIME = attrgetter("time")
TZINFO = attrgetter("tzinfo")
NAME = attrgetter("name")
SECONDS_PER_DAY = 86400


def all_of_type(points: list, kind: type) -> bool:
    """Every point is exactly ``kind`` (not a subclass: those take the plain path)."""
    return set(map(type, points)) <= {kind}


def known_offsets(points: list) -> bool:
    """Every time is aware with a stdlib zone (``timezone``/``ZoneInfo``: always an offset)."""
    zones = set(map(TZINFO, map(TIME, points)))
    return all(isinstance(zone, (timezone, zoneinfo.ZoneInfo)) for zone in zones)


def any_flag(points: list, name: str) -> bool:
    return any(map(attrgetter(name), points))


def any_name_has(points: list, text: str) -> bool:
    return any(map(contains, map(NAME, points), repeat(text)))


def timestamps(points: list) -> list[float]:
    return list(map(datetime.timestamp, map(TIME, points)))


def newest_first(epochs: list[float]) -> list[int]:
    """Indices by timestamp, newest first; equal timestamps keep input order (a stable
    ``sorted(..., reverse=True)``). Histories come sorted, which needs no sort at all."""
    count = len(epochs)
    if all(map(lt, epochs, epochs[1:])):          # strictly ascending: plain reverse
        return list(range(count - 1, -1, -1))
    if all(map(lt, epochs[1:], epochs)):          # strictly descending: as given
        return list(range(count))
    return sorted(range(count), key=epochs.__getitem__, reverse=True)


def days_of(locals_: list[int]) -> list[int]:
    return list(map(floordiv, locals_, repeat(SECONDS_PER_DAY)))


def period_keys(period: str, locals_: list[int], key_of_day) -> list[int]:
    """The period key of each local time: what ``PERIOD_KEYS[period]`` gives one by one.

    ``key_of_day`` maps a day number to the key (months, quarters, years), called once
    per distinct day."""
    if period == "second":
        return locals_
    if period == "minute":
        return list(map(floordiv, locals_, repeat(60)))
    if period == "hour":
        return list(map(floordiv, locals_, repeat(3600)))
    days = days_of(locals_)
    if period == "day":
        return days
    if period == "week":        # ISO week: 1970-01-01 is a Thursday, weeks start at day -3
        return list(map(floordiv, map(add, days, repeat(3)), repeat(7)))
    table = {day: key_of_day(day) for day in dict.fromkeys(days)}
    return list(map(table.__getitem__, days))


def runs(keys: list[int]) -> list[tuple[int, int]]:
    """(start, stop) of each run of equal neighbouring keys, in order: the positions where a
    key differs from the one before are found by a C-level map, not a loop per key."""
    if not keys:
        return []
    starts = [0, *compress(range(1, len(keys)), map(ne, keys[1:], keys))]
    return list(zip(starts, [*starts[1:], len(keys)]))


def make_points(point_class: type, times: list[datetime], names: list[str]) -> list:
    """``[Point(time, name) for ...]`` without a Python ``__init__`` per point.

    A frozen slotted dataclass sets each field through ``object.__setattr__`` in Python
    (about 1 us a point); here every slot is filled through its member descriptor by a
    C-level map. The objects are the same (equal, hashed and frozen alike); the flags
    take their defaults."""
    objects = list(map(object.__new__, repeat(point_class, len(times))))
    fill = {"time": times, "name": names}
    for field in fields(point_class):
        values = fill.get(field.name)
        setter = getattr(point_class, field.name).__set__
        any(map(setter, objects, repeat(field.default) if values is None else values))
    return objects
