"""Issue 26: prune-sim's fast paths (whole-input parse, column-wise table, hand-written
JSON, C-built Points and Decisions) give exactly what the plain per-point code gave.
The references below are that plain code, kept here only to compare against."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from restoredrill import prune_sim
from restoredrill.retention import Decision, Point, Policy, bulk, simulate
from restoredrill.retention.model import Zone


def reference_table(engine: str, policy: Policy, zone: Zone, decisions: list[Decision]) -> str:
    """The table as prune_sim printed it before issue 26: one strftime per row."""
    lines = [f"{engine} prune simulation: {policy.describe()} (zone {zone.name})"]
    year = month = None
    for decision in sorted(decisions, key=lambda d: d.point.time):
        wall = zone.local_datetime(decision.point.time.timestamp())
        if wall.year != year:
            year, month = wall.year, None
            lines.append(f"{year}")
        if wall.month != month:
            month = wall.month
            lines.append(f"  {wall:%Y-%m}")
        point = decision.point
        flags = [name for name in ("protected", "unfinished", "checkpoint") if getattr(point, name)]
        verdict = "KEEP  " if decision.keep else "remove"
        text = f"    {wall:%d %a %H:%M:%S}  {verdict}  {prune_sim.describe_rule(decision)}".rstrip()
        lines.append(text + (f"  [{', '.join(flags)}]" if flags else ""))
    kept = sum(1 for d in decisions if d.keep)
    lines.append(f"{kept} kept, {len(decisions) - kept} removed, {len(decisions)} points")
    return "\n".join(lines) + "\n"


def reference_json(engine: str, policy: Policy, decisions: list[Decision]) -> str:
    return json.dumps({"engine": engine, "policy": policy.given(), "points": [
        {"time": d.point.name, "keep": d.keep, "rule": d.rule, "rank": d.rank} for d in decisions]}, indent=2)


def mixed_history(engine: str, seed: int) -> list[Point]:
    """Unsorted times in several offsets across DST changes, ties, and the engine's flags."""
    rng = random.Random(seed)
    start = datetime(2023, 3, 20, tzinfo=timezone.utc)
    points = []
    for _ in range(1500):
        when = (start + timedelta(minutes=rng.randrange(0, 60 * 24 * 500))).astimezone(
            timezone(timedelta(hours=rng.choice([0, 2, -5, 5.5]))))
        flags = {"checkpoint": rng.random() < 0.05} if engine == "borg" else \
            {"protected": rng.random() < 0.05, "unfinished": rng.random() < 0.05}
        points.append(Point(when, name=when.isoformat(), **flags))
    return points + points[:20]      # the same instants twice


@pytest.mark.parametrize("engine", ["pbs", "borg"])
@pytest.mark.parametrize("tz", ["Europe/Berlin", "UTC", "America/New_York"])
def test_table_and_json_are_the_plain_codes_text(engine, tz):
    policy = Policy(keep_last=3, keep_hourly=5, keep_daily=7, keep_weekly=4, keep_monthly=6, keep_yearly=2)
    decisions = simulate(engine, mixed_history(engine, 7), policy, tz, now=datetime(2025, 1, 1, tzinfo=timezone.utc))
    assert prune_sim.format_table(engine, policy, Zone(tz), decisions) == \
        reference_table(engine, policy, Zone(tz), decisions)
    assert prune_sim.format_json(engine, policy, decisions) == reference_json(engine, policy, decisions)
    assert prune_sim.format_json(engine, policy, []) == reference_json(engine, policy, [])


def test_json_escapes_names_like_json_dumps():
    point = Point(datetime(2024, 1, 1, tzinfo=timezone.utc), name='a"\\é\n\u2028')
    decisions = [Decision(point, True, "daily", 1), Decision(point, False, None, None)]
    assert prune_sim.format_json("borg", Policy(keep_daily=1), decisions) == \
        reference_json("borg", Policy(keep_daily=1), decisions)


@pytest.mark.parametrize("text", [
    "2024-06-14T02:00:00Z\n2024-06-13T02:00:00.250Z\n2024-06-12T04:00:00+02:00\n",
    "2024-06-14T02:00:00Z",                         # no newline at the end
    "2024-06-14T02:00:00Z\n\n2024-06-15T02:00:00Z\n",  # a blank line: the general path
    "2024-06-14t02:00:00z\n",                       # lower case: the general path
    "",
])
def test_whole_input_parse_equals_the_line_by_line_parse(text):
    general = [prune_sim.parse_point_line(line.strip(), n, "borg")
               for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    assert prune_sim.read_points(io.StringIO(text), "borg") == general


@pytest.mark.parametrize("text,line", [("2024-06-14T02:00:00Z\n2024-02-30T02:00:00Z\n", 2),
                                       ("2024-06-14T02:00:00Z\n2024-06-14T02:00:00\n", 2)])
def test_a_bad_time_in_a_plain_input_is_still_named_by_line(text, line):
    with pytest.raises(prune_sim.InputError, match=f"line {line}: "):
        prune_sim.read_points(io.StringIO(text), "borg")


def test_points_built_in_c_are_the_same_points():
    times = [datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 2, tzinfo=timezone(timedelta(hours=2)))]
    built = bulk.make_points(Point, times, ["a", "b"])
    assert built == [Point(times[0], name="a"), Point(times[1], name="b")]
    assert [hash(p) for p in built] == [hash(Point(times[0], name="a")), hash(Point(times[1], name="b"))]
    with pytest.raises(AttributeError):
        built[0].name = "changed"       # still frozen


def test_the_command_line_imports_pytest_only_for_run():
    """`prune-sim`, `check-inventory`, `lint` and `--version` do not pay for importing pytest
    (0.3 s of a 0.4 s prune-sim run, issue 26)."""
    code = ("import io, sys; sys.stdin = io.StringIO('2024-06-14T02:00:00Z\\n'); "
            "from restoredrill.cli import main; main(['prune-sim', '--engine', 'borg', '--keep-daily', '1']); "
            "print('pytest' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "False", out
