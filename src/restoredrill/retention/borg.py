"""The Borg 1.x prune engine, bit-exact with `borg prune` (1.2 to 1.4).

One call simulates one `borg prune --glob-archives PATTERN` run over the archives
that match. Control flow: check the options -> sort newest first -> set checkpoints
apart (the newest is kept only if it is the newest archive) -> keep-within -> each
period rule in the order secondly, minutely, hourly, daily, weekly, monthly, 13weekly,
3monthly, yearly -> everything not kept is removed.

Rule names in decisions are the ones `borg prune --list` prints ("secondly" for
--keep-last, "quarterly_13weekly", "daily[oldest]"), so they compare literally.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .model import (
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

__all__ = ["BORG_RULES", "BorgOptions", "check_borg_policy", "parse_within_hours", "plan_borg", "plan_prepared_borg",
           "simulate_borg"]

# (rule name as borg prints it, period kind), in borg's order.
BORG_RULES = (
    ("secondly", "second"),
    ("minutely", "minute"),
    ("hourly", "hour"),
    ("daily", "day"),
    ("weekly", "week"),
    ("monthly", "month"),
    ("quarterly_13weekly", "iso-quarter"),
    ("quarterly_3monthly", "month-quarter"),
    ("yearly", "year"),
)
RULE_FIELDS = {
    "minutely": "keep_minutely",
    "hourly": "keep_hourly",
    "daily": "keep_daily",
    "weekly": "keep_weekly",
    "monthly": "keep_monthly",
    "quarterly_13weekly": "keep_13weekly",
    "quarterly_3monthly": "keep_3monthly",
    "yearly": "keep_yearly",
}

WITHIN_UNIT_HOURS = {"H": 1, "d": 24, "w": 24 * 7, "m": 24 * 31, "y": 24 * 365}


@dataclass(frozen=True)
class BorgOptions:
    """A policy as `borg prune` reads it: counts by borg rule name, keep-within in hours."""

    counts: dict[str, int]
    within_hours: int | None


def simulate_borg(
    points: Sequence[Point],
    policy: Policy,
    tz: object = None,
    *,
    now: datetime | None = None,
    oldest_rule: bool = True,
) -> list[Decision]:
    """Decide keep/remove for every archive of one prune match, in input order.

    `tz` is the zone of the machine running `borg prune` (periods are local there);
    `now` matters only for keep-within (default: the current time); `oldest_rule`
    models borg >= 1.2, which keeps the oldest archive as "<rule>[oldest]" when a rule
    falls short. Manual equivalent: `borg prune --dry-run --list --keep-daily 7 ... REPO`.
    """
    points = list(points)
    return decide_all(points, plan_borg(points, policy, tz, now=now, oldest_rule=oldest_rule))


def plan_borg(
    points: list[Point], policy: Policy, tz: object = None, *, now: datetime | None = None, oldest_rule: bool = True
) -> dict[int, tuple[str, int | None]]:
    """The kept archives as {index: (rule, rank)}; every other index is removed."""
    options = check_borg_policy(policy)
    check_points(points, "borg")
    now = check_now(now)
    history = Prepared(points, "borg", Zone(tz), check=False)
    return plan_prepared_borg(history, options, now=now, oldest_rule=oldest_rule)


def plan_prepared_borg(
    history: Prepared, options: BorgOptions, *, now: datetime, oldest_rule: bool = True
) -> dict[int, tuple[str, int | None]]:
    """`plan_borg` on a history prepared once for several runs (options from `check_borg_policy`)."""
    points, order, archives = history.points, history.order, history.rule_order
    kept: dict[int, tuple[str, int | None]] = {}
    if options.within_hours is not None:
        keep_within(points, archives, now - timedelta(hours=options.within_hours), kept)
    newest_first = NewestFirst(history.zone, history.epochs, archives, history)
    for rule, period in BORG_RULES:
        count = options.counts.get(rule)
        if count is not None:
            prune_split(newest_first.keyed(period), rule, count, kept, oldest_rule)
    if order and order[0] in history.checkpoints:
        kept[order[0]] = ("checkpoint", None)
    return kept


def check_borg_policy(policy: Policy) -> BorgOptions:
    """Validate a policy the way `borg prune` does and translate it to borg's rules."""
    if policy.keep_last is not None and policy.keep_secondly is not None and policy.keep_last != policy.keep_secondly:
        raise RetentionError(
            f"keep-last ({policy.keep_last}) and keep-secondly ({policy.keep_secondly}) are one Borg option "
            "under two names and the values differ. Give only one of them."
        )
    if policy.keep_13weekly is not None and policy.keep_3monthly is not None:
        raise RetentionError(
            "keep-13weekly and keep-3monthly were both given, but borg prune accepts only one quarterly "
            "strategy (they are mutually exclusive). Keep one of them."
        )
    counts = {"secondly": policy.keep_secondly if policy.keep_last is None else policy.keep_last}
    counts.update({rule: getattr(policy, field) for rule, field in RULE_FIELDS.items()})
    counts = {rule: count for rule, count in counts.items() if count is not None}
    within = parse_within_hours(policy.keep_within) if policy.keep_within is not None else None
    if not within and not any(counts.values()):
        raise RetentionError(
            "Borg refuses to prune without a keep option: at least one of keep-within, keep-last, "
            "keep-secondly, keep-minutely, keep-hourly, keep-daily, keep-weekly, keep-monthly, "
            "keep-13weekly, keep-3monthly or keep-yearly must be given and not 0. (PBS would keep "
            "everything instead.)"
        )
    return BorgOptions(counts, within)


def parse_within_hours(text: str) -> int:
    """Borg's --keep-within INTERVAL as hours: n x {H:1, d:24, w:168, m:744, y:8760}."""
    unit = text[-1:] if text else ""
    if unit not in WITHIN_UNIT_HOURS:
        raise RetentionError(
            f"keep-within {text!r} has no valid unit. Borg expects a whole number followed by one of "
            "H (hours), d (days), w (weeks), m (months of 31 days) or y (years of 365 days), e.g. '2d'."
        )
    try:
        hours = int(text[:-1]) * WITHIN_UNIT_HOURS[unit]
    except ValueError:
        hours = -1
    if hours <= 0:
        raise RetentionError(
            f"keep-within {text!r} needs a whole number greater than 0 before its unit, e.g. '2d' or '12H'."
        )
    return hours


def check_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None or now.utcoffset() is None:
        raise RetentionError(
            f"now ({now.isoformat()}) is a naive time. keep-within compares against the current "
            "instant, so give it a zone, e.g. datetime.now(timezone.utc)."
        )
    return now


def keep_within(points: list[Point], archives: list[int], cutoff: datetime, kept: dict) -> None:
    """Keep every archive strictly newer than the cutoff, counted newest first."""
    for rank, index in enumerate(archives, start=1):
        if not points[index].time > cutoff:
            break
        kept[index] = ("within", rank)


def prune_split(
    keyed: Iterator[tuple[int, int]],
    rule: str,
    count: int,
    kept: dict[int, tuple[str, int | None]],
    oldest_rule: bool,
) -> None:
    """One borg rule over (archive, period key) newest first: keep the newest archive of
    each new period, unless already kept.

    A period whose newest archive an earlier rule kept is spent without counting.
    Negative counts never stop the walk (unlimited). With `oldest_rule`, a rule that
    runs out of archives short of its count also keeps the oldest archive.
    """
    if count == 0:
        return
    last = None
    found = 0
    index = None
    for index, key in keyed:
        if key != last:
            last = key
            if index not in kept:
                found += 1
                kept[index] = (rule, found)
                if found == count:
                    break
    if oldest_rule and index is not None and found < count and index not in kept:
        kept[index] = (rule + "[oldest]", found + 1)
