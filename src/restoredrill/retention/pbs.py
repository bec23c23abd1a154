"""The Proxmox Backup Server prune engine, bit-exact with PBS `compute_prune_info`.

The same algorithm runs behind `proxmox-backup-client prune --dry-run` and the PBS web
prune simulator. One call simulates one backup group (type/id in one namespace).
Control flow: sort newest first -> mark unfinished snapshots -> apply each given rule
in the fixed order last, hourly, daily, weekly, monthly, yearly -> protected are kept,
unmarked are removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat
from operator import is_

from . import bulk
from .model import (
    BORG_ONLY_OPTIONS,
    Decision,
    NewestFirst,
    Point,
    Prepared,
    Policy,
    RetentionError,
    Zone,
    check_points,
    decide_all,
)

__all__ = ["PBS_RULES", "check_pbs_policy", "plan_pbs", "plan_prepared_pbs", "simulate_pbs"]

# (rule name, policy field, period kind); "point" means the snapshot itself.
PBS_RULES = (
    ("last", "keep_last", "point"),
    ("hourly", "keep_hourly", "hour"),
    ("daily", "keep_daily", "day"),
    ("weekly", "keep_weekly", "week"),
    ("monthly", "keep_monthly", "month"),
    ("yearly", "keep_yearly", "year"),
)

REMOVE = "remove"  # a mark that later rules skip and that ends as removal


def simulate_pbs(points: Sequence[Point], policy: Policy, tz: object = None) -> list[Decision]:
    """Decide keep/remove for every snapshot of one PBS backup group, in input order.

    `tz` is the PBS server's zone (an IANA name, a tzinfo, or None for this machine's
    zone): periods are computed in it. Manual equivalent:
    `proxmox-backup-client prune GROUP --dry-run --keep-daily 7 ...`.
    """
    points = list(points)
    return decide_all(points, plan_pbs(points, policy, tz))


def plan_pbs(points: list[Point], policy: Policy, tz: object = None) -> dict[int, tuple[str, int | None]]:
    """The kept snapshots as {index: (rule, rank)}; every other index is removed."""
    check_pbs_policy(policy)
    check_points(points, "pbs")
    zone = Zone(tz)
    if not keeps_something(policy):
        return dict.fromkeys(range(len(points)), ("all", None))
    return plan_prepared_pbs(Prepared(points, "pbs", zone, check=False), policy)


def plan_prepared_pbs(history: Prepared, policy: Policy) -> dict[int, tuple[str, int | None]]:
    """`plan_pbs` on a history prepared once for several runs (the policy already checked).

    Works in the time of the rules' walk: marks are set only on snapshots a rule
    reaches, and the kept ones are collected from the marked indices, not every point.
    """
    if not keeps_something(policy):
        return dict.fromkeys(history.indices(), ("all", None))
    points, order = history.points, history.order
    marks: list[str | None] = [None] * len(points)
    ranks: list[int | None] = [None] * len(points)
    for index in history.unfinished:  # KeepPartial: only if no finished snapshot is newer
        marks[index] = "partial" if index == order[0] else REMOVE
    kept: list[int] = []
    newest_first = NewestFirst(history.zone, history.epochs, order, history)
    protected = set(history.protected)
    for rule, field, period in PBS_RULES:
        count = getattr(policy, field)
        if count is not None:
            mark_selections(protected, newest_first, period, marks, ranks, kept, rule, count)
    marked = sorted({*kept, *history.unfinished, *history.protected})
    reasons = {index: (marks[index], ranks[index]) for index in marked if marks[index] not in (None, REMOVE)}
    reasons.update((index, ("protected", None)) for index in history.protected)
    return reasons


def check_pbs_policy(policy: Policy) -> None:
    """Reject options PBS does not have, so a simulation never silently ignores one."""
    borg_only = [name.replace("_", "-") for name in BORG_ONLY_OPTIONS if getattr(policy, name) is not None]
    if borg_only:
        raise RetentionError(
            f"PBS has no {', '.join(borg_only)} option (only Borg does). PBS knows keep-last, "
            "keep-hourly, keep-daily, keep-weekly, keep-monthly and keep-yearly: drop the others "
            "or simulate with engine 'borg'."
        )
    unlimited = [field.replace("_", "-") for _, field, _ in PBS_RULES if getattr(policy, field) == -1]
    if unlimited:
        raise RetentionError(
            f"{', '.join(unlimited)} is -1, but PBS counts must be 0 or more (only Borg reads -1 as "
            "unlimited). Give a count, or leave the option out."
        )


def keeps_something(policy: Policy) -> bool:
    """PBS keeps every snapshot when no keep option is greater than 0."""
    return any((getattr(policy, field) or 0) > 0 for _, field, _ in PBS_RULES)


def mark_selections(
    protected: set[int],
    newest_first: NewestFirst,
    period: str,
    marks: list[str | None],
    ranks: list[int | None],
    kept: list[int],
    rule: str,
    count: int,
) -> None:
    """One PBS rule: keep the newest unmarked snapshot of up to `count` new periods.

    Periods holding a snapshot kept by an earlier rule are skipped without counting;
    the other snapshots of a period this rule keeps are marked removed for good.
    """
    already = {newest_first.key_of(period, index) for index in kept}
    included: set[int] = set()
    if period == "point":       # keep-last: every key its own run
        for index in newest_first.order:
            if not select_one(index, index, protected, marks, ranks, kept, rule, count, already, included):
                return
        return
    for indices, keys in newest_first.keyed_chunks(period):
        for start, stop in bulk.runs(keys):
            run, key = indices[start:stop], keys[start]
            if any(map(marks.__getitem__, run)):    # marked snapshots are skipped: leave them out
                run = list(compress(run, map(is_, map(marks.__getitem__, run), repeat(None))))
            if protected.isdisjoint(run):
                # the unmarked snapshots of one period, none protected (the usual case): the
                # per-point steps of select_one, for the whole run at once (issue 26)
                if not run or key in already:
                    continue
                if key not in included:
                    if len(included) >= count:
                        return
                    included.add(key)
                    marks[run[0]], ranks[run[0]] = rule, len(included)
                    kept.append(run[0])
                    run = run[1:]
                any(map(marks.__setitem__, run, repeat(REMOVE)))
                continue
            for index in run:
                if not select_one(index, key, protected, marks, ranks, kept, rule, count, already, included):
                    return


def select_one(index: int, key: int, protected: set[int], marks: list[str | None], ranks: list[int | None],
               kept: list[int], rule: str, count: int, already: set[int], included: set[int]) -> bool:
    """One snapshot under a PBS rule (`mark_selections`); False when the rule is done."""
    if marks[index] is not None:
        return True
    if index in protected:
        marks[index] = "protected"
        return True
    if key in already:
        return True
    if key in included:
        marks[index] = REMOVE
        return True
    if len(included) >= count:
        return False
    included.add(key)
    marks[index] = rule
    ranks[index] = len(included)
    kept.append(index)
    return True
