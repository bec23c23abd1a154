"""``restoredrill prune-sim``: what would a PBS or Borg prune keep of these points?

Reads one point per line on stdin (an RFC 3339 time, optionally followed by
``protected``, ``unfinished`` or ``checkpoint``; blank lines and ``#`` comments are
ignored), simulates the chosen engine with the given keep options and prints a
calendar-like table, or JSON with ``--json``. Exit 0 on success, 2 on bad input.

    printf '2024-06-14T02:00:00Z\\n2024-06-13T02:00:00Z\\n' |
        restoredrill prune-sim --engine borg --keep-daily 1
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import date, datetime
from itertools import compress, islice, repeat
from json.encoder import encode_basestring_ascii
from operator import attrgetter, contains, itemgetter, le, mod, ne
from typing import TextIO

from restoredrill.retention import Decision, Point, Policy, RetentionError, bulk, simulate
from restoredrill.retention.model import BORG_ONLY_OPTIONS, SECONDS_PER_DAY, Zone, gc_paused

__all__ = ["add_arguments", "run"]

EXIT_OK = 0
EXIT_USAGE = 2
MAX_COUNT = 100_000
COUNT_FLAGS = (
    ("keep_last", "number of newest points to keep"),
    ("keep_hourly", "number of hourly points to keep"),
    ("keep_daily", "number of daily points to keep"),
    ("keep_weekly", "number of weekly (ISO week) points to keep"),
    ("keep_monthly", "number of monthly points to keep"),
    ("keep_yearly", "number of yearly points to keep"),
    ("keep_secondly", "Borg only: number of secondly points (same as --keep-last in Borg)"),
    ("keep_minutely", "Borg only: number of minutely points to keep"),
    ("keep_13weekly", "Borg only: number of quarterly points, 13-week quarters"),
    ("keep_3monthly", "Borg only: number of quarterly points, 3-month quarters"),
)
FLAGS = {"pbs": ("protected", "unfinished"), "borg": ("checkpoint",)}
RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")
PLAIN_TIMES = re.compile(rf"(?:{RFC3339.pattern}\n)*(?:{RFC3339.pattern})?")   # a whole input of times
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")   # strftime %a in the C locale; day 0 a Thursday


class InputError(Exception):
    """Bad options or input; the message is the one paragraph shown to the user."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the prune-sim options on a (sub)parser."""
    parser.add_argument("--engine", required=True, choices=("pbs", "borg"), help="prune engine to simulate")
    for dest, text in COUNT_FLAGS:
        flag = "--" + dest.replace("_", "-")
        parser.add_argument(flag, dest=dest, metavar="N", help=text + " (-1: unlimited, Borg only)")
    parser.add_argument("--keep-within", dest="keep_within", metavar="INTERVAL",
                        help="Borg only: keep everything newer than INTERVAL, e.g. 2d, 12H, 1w, 1m, 1y")
    parser.add_argument("--tz", metavar="ZONE", help="zone of the pruning machine (default: this machine's)")
    parser.add_argument("--now", metavar="RFC3339", help="current time for --keep-within (default: now)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Simulate the prune described by `args` on the points read from `stdin`.

    The cyclic garbage collector is paused: millions of points, decisions and rows are
    acyclic, and its full passes over them made a million points take 10 times longer."""
    with gc_paused():
        return simulate_and_print(args, stdin, stdout, stderr)


def simulate_and_print(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    try:
        policy = build_policy(args)
        zone = check_zone(args.tz)
        now = parse_now(args.now)
        points = read_points(stdin, args.engine)
        if not keeps_anything(policy):
            warn_or_refuse(args.engine, stderr)
        decisions = simulate(args.engine, points, policy, args.tz, now=now)
    except (InputError, RetentionError) as error:
        stderr.write(f"restoredrill prune-sim: error: {error}\n")
        return EXIT_USAGE
    if args.json:
        stdout.write(format_json(args.engine, policy, decisions) + "\n")
    else:
        stdout.write(format_table(args.engine, policy, zone, decisions))
    return EXIT_OK


def build_policy(args: argparse.Namespace) -> Policy:
    """Counts from the options, checked for the chosen engine."""
    engine = args.engine
    values: dict[str, int | str] = {}
    for dest, _ in COUNT_FLAGS:
        text = getattr(args, dest, None)
        if text is not None:
            values[dest] = parse_count(dest, text, engine)
    if getattr(args, "keep_within", None) is not None:
        values["keep_within"] = args.keep_within
    foreign = [name for name in BORG_ONLY_OPTIONS if name in values and engine == "pbs"]
    if foreign:
        names = ", ".join("--" + name.replace("_", "-") for name in foreign)
        raise InputError(
            f"{names} is not a PBS option (only Borg has it). With --engine pbs use --keep-last, "
            "--keep-hourly, --keep-daily, --keep-weekly, --keep-monthly or --keep-yearly, or simulate "
            "with --engine borg."
        )
    return Policy(**values)


def parse_count(dest: str, text: str, engine: str) -> int:
    flag = "--" + dest.replace("_", "-")
    try:
        count = int(text)
    except ValueError:
        raise InputError(f"{flag} {text!r} is not a whole number. Give a count such as {flag} 7.") from None
    if count == -1 and engine == "borg":
        return count
    if count < 0:
        unlimited = " (Borg reads -1 as unlimited; PBS has no unlimited)" if count == -1 else ""
        raise InputError(f"{flag} {count} is negative{unlimited}. Give a count of 0 or more.")
    if count > MAX_COUNT:
        raise InputError(
            f"{flag} {count} is absurdly large (more than {MAX_COUNT}). Give a realistic count"
            + (", or -1 for unlimited in Borg." if engine == "borg" else ".")
        )
    return count


def keeps_anything(policy: Policy) -> bool:
    counts = [value for name, value in vars(policy).items() if name != "keep_within" and value]
    return bool(counts) or bool(policy.keep_within)


def warn_or_refuse(engine: str, stderr: TextIO) -> None:
    """No keep option: PBS keeps everything, Borg refuses to prune."""
    text = ("no keep option greater than 0 was given. PBS keeps every snapshot in that case, while "
            "Borg refuses to prune at all")
    if engine == "borg":
        raise InputError(text + ". Give at least one of --keep-within, --keep-last, --keep-hourly, "
                         "--keep-daily, --keep-weekly, --keep-monthly or --keep-yearly.")
    stderr.write(f"restoredrill prune-sim: warning: {text}; every point below is kept.\n")


def check_zone(tz: str | None) -> Zone:
    return Zone(tz)  # raises RetentionError naming the unknown zone


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time with its offset ("Z" or "+02:00"); None when it does not parse."""
    if not RFC3339.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text.upper().replace(" ", "T"))
    except ValueError:
        return None


def parse_now(text: str | None) -> datetime | None:
    if text is None:
        return None
    now = parse_time(text)
    if now is None:
        raise InputError(f"--now {text!r} is not an RFC 3339 time. Write it like 2024-06-14T03:00:00Z.")
    return now


def read_points(stdin: TextIO, engine: str) -> list[Point]:
    """One point per line: TIME [FLAG...]; blank lines and # comments are skipped.

    A line that is only an upper-case ``T`` time (the usual case) is parsed without
    splitting it into words; anything else takes the general path."""
    data = stdin.read()
    fast = read_plain_times(data)
    if fast is not None:
        return fast
    points, match, parse = [], RFC3339.fullmatch, datetime.fromisoformat
    append = points.append
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        text = line.strip() if "#" not in line else line.split("#", 1)[0].strip()
        if not text:
            continue
        if " " not in text and "\t" not in text and "t" not in text and "z" not in text and match(text):
            try:
                append(Point(parse(text), name=text))
                continue
            except ValueError:      # a month 13 and the like: the general path words the error
                pass
        append(parse_point_line(text, number, engine))
    return points


def read_plain_times(data: str) -> list[Point] | None:
    """The points of an input that is only ``T``/``Z`` times, one a line (what a script
    prints): checked and parsed by C-level maps. None sends any other input down the
    general path, which also words every error."""
    if any(map(contains, repeat(data), ("#", " ", "\t", "\r", "t", "z"))):
        return None
    if not PLAIN_TIMES.fullmatch(data):
        return None
    lines = data.split("\n")
    if lines[-1] == "":
        lines.pop()
    try:
        times = list(map(datetime.fromisoformat, lines))
    except ValueError:
        return None
    return bulk.make_points(Point, times, lines)


def parse_point_line(text: str, number: int, engine: str) -> Point:
    words = text.split()
    if len(words) > 1 and re.fullmatch(r"\d\d:\d\d:\d\d\S*", words[1]):
        words[0:2] = [words[0] + " " + words[1]]  # "2024-06-14 02:00:00Z", RFC 3339's space form
    when = parse_time(words[0])
    if when is None:
        raise InputError(
            f"line {number}: {words[0]!r} is not an RFC 3339 time with an offset. Write each point as "
            "e.g. 2024-06-14T02:00:00Z or 2024-06-14T04:00:00+02:00, optionally followed by a flag."
        )
    flags = [word.lower() for word in words[1:]]
    for flag in flags:
        if flag not in FLAGS[engine]:
            raise InputError(f"line {number}: {explain_flag(flag, engine)}")
    return Point(when, name=words[0], protected="protected" in flags,
                 unfinished="unfinished" in flags, checkpoint="checkpoint" in flags)


def explain_flag(flag: str, engine: str) -> str:
    allowed = " or ".join(FLAGS[engine])
    other = "borg" if engine == "pbs" else "pbs"
    where = f"{flag!r} is a {other.upper()} flag" if flag in FLAGS[other] else f"{flag!r} is not a flag"
    return (f"{where}, but this simulates {engine.upper()}, which accepts only {allowed} after the time. "
            "Remove the word or change --engine.")


def describe_rule(decision: Decision) -> str:
    if decision.rule is None:
        return ""
    return decision.rule if decision.rank is None else f"{decision.rule} #{decision.rank}"


def format_json(engine: str, policy: Policy, decisions: list[Decision]) -> str:
    """Exactly {"engine", "policy", "points": [{"time", "keep", "rule", "rank"}]}, input order.

    The text of ``json.dumps(..., indent=2)``, whose pure-Python indenting encoder costs
    about 30 us a point; each point is written here with the C string encoder instead."""
    head = json.dumps({"engine": engine, "policy": policy.given(), "points": []}, indent=2)
    if not decisions:
        return head
    assert head.endswith('"points": []\n}')
    body = ",\n".join(map(point_json, decisions))
    return f"{head[:-4]}[\n{body}\n  ]\n}}"


def point_json(decision: Decision) -> str:
    point, keep, rule, rank = decision
    rule_text = "null" if rule is None else encode_basestring_ascii(rule)
    return (f'    {{\n      "time": {encode_basestring_ascii(point.name)},\n      "keep": '
            f'{"true" if keep else "false"},\n      "rule": {rule_text},\n      "rank": '
            f'{"null" if rank is None else int(rank)}\n    }}')


def format_table(engine: str, policy: Policy, zone: Zone, decisions: list[Decision]) -> str:
    """Oldest first, grouped by year and month in the simulated zone.

    Built column by column with C-level maps (a million rows in about a second): the
    rows' fields, then one ``str.format`` per row, then the year and month headings
    between runs of rows of one month."""
    lines = [f"{engine} prune simulation: {policy.describe()} (zone {zone.name})"]
    points = list(map(attrgetter("point"), decisions))
    epochs = bulk.timestamps(points)
    if all(map(le, epochs, islice(epochs, 1, None))):    # already oldest first (a stable sort's order)
        order = list(range(len(decisions)))
    else:
        order = sorted(range(len(decisions)), key=epochs.__getitem__)   # the times carry fixed offsets
    locals_ = zone.local_seconds_many(list(map(epochs.__getitem__, order)))
    days, seconds = bulk.days_of(locals_), list(map(mod, locals_, repeat(SECONDS_PER_DAY)))
    calendar = {day: day_fields(day) for day in dict.fromkeys(days)}   # (year, month, day of month)
    fields = list(map(calendar.__getitem__, days))
    tails = list(map(ROW_TAIL.__getitem__, map(attrgetter("keep"), map(decisions.__getitem__, order))))
    for position in compress(range(len(order)), map(attrgetter("keep"), map(decisions.__getitem__, order))):
        tails[position] = (tails[position] + describe_rule(decisions[order[position]])).rstrip()
    # "DD Www" per distinct day, "HH:MM:SS" per distinct second of the day, then one % a row
    day_text = {day: f"{calendar[day][2]:02d} {WEEKDAYS[(day + 3) % 7]}" for day in calendar}
    clock = {second: f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
             for second in dict.fromkeys(seconds)}
    rows = list(map(mod, repeat(ROW), zip(map(day_text.__getitem__, days), map(clock.__getitem__, seconds), tails)))
    for position in flagged_positions(points, order):
        point = points[order[position]]
        names = [name for name in ("protected", "unfinished", "checkpoint") if getattr(point, name)]
        rows[position] += f"  [{', '.join(names)}]"
    months = list(map(itemgetter(0, 1), fields))
    starts = [*compress(range(len(months)), map(ne, months, [None, *months])), len(months)]
    year = None
    for start, stop in zip(starts, starts[1:]):
        wall_year, wall_month = months[start]
        if wall_year != year:
            year = wall_year
            lines.append(f"{year}")
        lines.append(f"  {year}-{wall_month:02d}")   # strftime %Y: no zero padding
        lines.extend(rows[start:stop])
    kept = sum(1 for d in decisions if d.keep)
    lines.append(f"{kept} kept, {len(decisions) - kept} removed, {len(decisions)} points")
    return "\n".join(lines) + "\n"


ROW = "    %s %s  %s"   # DD Www, HH:MM:SS, then "KEEP    rule #rank" or "remove"
ROW_TAIL = {False: "remove", True: "KEEP    "}


def flagged_positions(points: list[Point], order: list[int]) -> list[int]:
    """Positions in ``order`` of the points that carry a flag (usually none: then no loop)."""
    names = [name for name in ("protected", "unfinished", "checkpoint") if bulk.any_flag(points, name)]
    if not names:
        return []
    return [position for position, index in enumerate(order)
            if any(getattr(points[index], name) for name in names)]


def day_fields(day: int) -> tuple[int, int, int]:
    """(year, month, day of month) of a day number since 1970-01-01."""
    when = date.fromordinal(day + 719163)    # 719163: 1970-01-01
    return when.year, when.month, when.day
