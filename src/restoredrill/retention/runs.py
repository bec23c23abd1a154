"""The audit's engine runs on histories prepared once (pure; no I/O).

One audit runs an engine three times: on the history now, on the points made by the
prune grace's cutoff, and on an ideal history at the schedule. `EngineRun` checks the
policy once and runs the engines' `plan_prepared_*` on a `Prepared` history, so the
runs share the sorting, the flags and the local times; `FinishedPoints` answers the
audit's questions about finished points from the flags, and the ideal histories make
their Points only when asked. tests/unit/test_retention_perf_equivalence.py holds the
straightforward path these must equal; benchmarks/bench_retention.py measures them.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from itertools import accumulate, compress, islice, repeat
from operator import le, sub, truediv

from .borg import check_borg_policy, plan_prepared_borg
from .model import LOCAL_EPOCH, Point, Policy, Prepared, Zone
from .pbs import check_pbs_policy, plan_prepared_pbs

__all__ = ["EngineRun", "FinishedPoints", "IdealDayPoints", "IdealPoints", "newest", "newest_indices", "prepare_ideal"]

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)


class EngineRun:
    """The audited engine with its policy and zone, run on prepared histories as of any time.

    The policy is checked once here; `prepare` checks, times and sorts points once, so
    the runs of one audit (now, as of the prune grace, the ideal history) share that
    work. A run returns the kept points as {index: (rule, rank)}, like the engines' plans.
    """

    def __init__(self, engine: str, policy: Policy, zone: Zone, oldest_rule: bool):
        self.engine, self.policy, self.zone, self.oldest_rule = engine, policy, zone, oldest_rule
        if engine == "pbs":
            check_pbs_policy(policy)
            self.options = None
        else:
            self.options = check_borg_policy(policy)

    def prepare(self, points, epochs=None, order=None, *, plain: bool = False) -> Prepared:
        return Prepared(points, self.engine, self.zone, epochs, order, check=not plain, plain=plain)

    def __call__(self, history: Prepared, now: datetime) -> dict[int, tuple[str, int | None]]:
        if self.engine == "pbs":
            return plan_prepared_pbs(history, self.policy)
        return plan_prepared_borg(history, self.options, now=now, oldest_rule=self.oldest_rule)


class FinishedPoints:
    """The finished points of a prepared history (not unfinished PBS snapshots, not Borg checkpoints), found from its
    flags without a pass over every point; iterating gives them in input order."""

    def __init__(self, history: Prepared):
        self.history = history
        self.left_out = set(history.unfinished) | history.checkpoints
        self.count = len(history.points) - len(self.left_out)

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self):
        points, left_out = self.history.points, self.left_out
        if not left_out:
            return iter(points)
        return (point for index, point in enumerate(points) if index not in left_out)

    def local_seconds(self) -> list[int]:
        """Local wall-clock seconds of the finished points (in no particular order)."""
        history = self.history
        local = history.local_all()
        base = history.base[history.offset:]
        left_out = self.left_out - history.checkpoints  # rules already walk without checkpoints
        if not left_out:
            return local[history.offset:]
        return [second for index, second in zip(base, local[history.offset:]) if index not in left_out]

    def newest_first(self) -> list[int]:
        """Indices of the finished points, newest first (ties in input order)."""
        order, left_out = self.history.order, self.left_out
        return [index for index in order if index not in left_out] if left_out else order

    def extreme(self, oldest: bool) -> Point:
        """`min` (oldest) or `max` of the finished points by time, with Python's tie rule."""
        history = self.history
        pick = min if oldest else max
        if not history.instant_ordered():
            return pick(self, key=lambda point: point.time)
        order, left_out, epochs = history.order, self.left_out, history.epochs
        walk = reversed(order) if oldest else iter(order)
        first = next(index for index in walk if index not in left_out)
        # Equal timestamps may hide different times: decide among them as `min`/`max` would.
        ties = [first]
        for index in walk:
            if epochs[index] != epochs[first]:
                break
            if index not in left_out:
                ties.append(index)
        if len(ties) == 1:
            return history.points[first]
        return pick((history.points[index] for index in sorted(ties)), key=lambda point: point.time)



def newest_indices(history: Prepared, newest_first, count: int) -> list[Point]:
    """`newest(points, count)` of the points whose indices `newest_first` yields in the
    history's order, reading only as far as needed when the times order as instants.

    Every point past the `count`-th one's timestamp is strictly older than all read
    before it, so sorting what was read (in input order, as `newest` gets it) gives
    the same first `count` points as sorting them all.
    """
    points, epochs = history.points, history.epochs
    if not history.instant_ordered():
        return newest([points[index] for index in sorted(newest_first)], count)
    taken: list[int] = []
    for index in newest_first:
        if len(taken) >= count and epochs[index] != epochs[taken[-1]]:
            break
        taken.append(index)
    return newest([points[index] for index in sorted(taken)], count)



class IdealPoints(Sequence):
    """`Point(first + i * schedule)` for i in range(count), made on demand.

    Only for a fixed-offset `first`, where adding a timedelta adds to the instant, so
    the timestamps follow exactly from integer microseconds (as `timestamp()` divides)."""

    def __init__(self, first: datetime, schedule: timedelta, count: int):
        self.first, self.schedule, self.count = first, schedule, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if not -self.count <= index < self.count:
            raise IndexError(index)
        return Point(self.first + (index % self.count) * self.schedule)

    def epochs(self) -> list[float]:
        start = (self.first - UNIX_EPOCH) // MICROSECOND
        step = self.schedule // MICROSECOND
        return [(start + i * step) / 1_000_000 for i in range(self.count)]


class IdealDayPoints(Sequence):
    """The whole-day ideal history in a ZoneInfo zone, as UTC microseconds since 1970.

    `zone.from_wall_clock(wall)` is `wall.replace(tzinfo=zone).astimezone(utc)`, that is
    `wall - zone.utcoffset(wall)` (fold 0), and a ZoneInfo reads only the fields and
    fold of the time it is given; the Points are made only when asked for."""

    def __init__(self, micros: list[int]):
        self.micros = micros

    @classmethod
    def make(cls, wall: datetime, zone: zoneinfo.ZoneInfo, schedule: timedelta, count: int, now: datetime):
        limit = (now - UNIX_EPOCH) // MICROSECOND
        walls = accumulate(repeat(schedule, count - 1), initial=wall)  # wall + step * schedule, exactly
        offsets = list(map(zone.utcoffset, walls))
        offset_micros = {offset: offset // MICROSECOND for offset in set(offsets)}
        start, step = (wall - LOCAL_EPOCH) // MICROSECOND, schedule // MICROSECOND
        # start + number * step - offset, and the filter, as C-level maps (issue 26: 0.2 s at 1 M)
        numbered = range(start, start + step * len(offsets), step) if step else repeat(start, len(offsets))
        micros = list(map(sub, numbered, map(offset_micros.__getitem__, offsets)))
        return cls(list(compress(micros, map(le, micros, repeat(limit)))))

    def __len__(self) -> int:
        return len(self.micros)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return Point(UNIX_EPOCH + timedelta(microseconds=self.micros[index]))

    def epochs(self) -> list[float]:
        return list(map(truediv, self.micros, repeat(1_000_000)))




def prepare_ideal(run_engine: EngineRun, ideal_points) -> Prepared:
    """The ideal history prepared for the engine: no flags, and already sorted oldest first."""
    if isinstance(ideal_points, (IdealPoints, IdealDayPoints)):
        epochs = ideal_points.epochs()
    else:
        epochs = [point.time.timestamp() for point in ideal_points]
    order = None
    if all(map(float.__lt__, epochs, islice(epochs, 1, None))):
        order = list(range(len(epochs) - 1, -1, -1))  # strictly increasing: no ties to keep in order
    return run_engine.prepare(ideal_points, epochs, order, plain=True)


def newest(points: list[Point], count: int) -> list[Point]:
    """The `count` newest points (a sort, which is linear on the usual sorted input)."""
    return sorted(points, key=lambda point: point.time, reverse=True)[:count]
