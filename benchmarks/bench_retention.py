"""Time the PBS and Borg prune engines and the audit on large synthetic histories.

Run: python benchmarks/bench_retention.py [--sizes 10000,1000000] [--tz Europe/Berlin] [--repeat 2]

Histories: one point every 5 minutes ending now (1M points span ~9.5 years), and
one point a day from 2000-01-01 (1M points reach the year 4737; the audit's now is
an hour after the last one). Policy: 3 last, 24 hourly, 7 daily, 4 weekly, 12
monthly, 2 yearly, periods in a DST zone.
Columns: simulate; audit with the default daily schedule (the history now, as of
the prune grace, and an ideal daily history); audit with the 5-minute schedule
(the ideal history is as large as a 5-minute real one; for the daily history it
would exceed the ideal's limit, so coverage is skipped); and the ratios audit /
simulate. Each time is the best of --repeat runs.
Targets: simulate 1M points in under 1 s per engine (issue 26); each audit of 1M
points at most 1.5 times one simulation of the same points, at both spacings. (Small
histories are shown but not held to it: with 10k points the rules read the whole
history, so the audit's three engine runs each cost a full walk.) Then
`restoredrill prune-sim` on 1M points (one every 5 minutes, table and --json), the
whole command, target under 5 s. Times are wall clock; "cpu" is this process's (or
the command's) CPU time, which a loaded machine inflates far less; each target line
gives the ratio to the target.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from restoredrill.retention import Point, Policy, audit, simulate  # noqa: E402

STEP = timedelta(minutes=5)
DAY = timedelta(days=1)
POLICY = Policy(keep_last=3, keep_hourly=24, keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=2)
TARGET_RATIO = 1.5
TARGET_SIZE = 1_000_000
TARGET_SIMULATE = 1.0
TARGET_PRUNE_SIM = 5.0


def make_history(size: int, now: datetime) -> list[Point]:
    """One point every 5 minutes, the last one at `now`."""
    first = now - STEP * (size - 1)
    return [Point(first + STEP * step, name=f"p{step}") for step in range(size)]


def make_daily_history(size: int) -> tuple[list[Point], datetime]:
    """One point a day at 02:00 UTC from 2000-01-01, and a now an hour after the last one."""
    first = datetime(2000, 1, 1, 2, tzinfo=timezone.utc)
    points = [Point(first + DAY * step, name=f"d{step}") for step in range(size)]
    return points, points[-1].time + timedelta(hours=1)


CPU: dict[int, float] = {}      # id(function) -> best CPU seconds of the last time_call


def time_call(function, repeat: int) -> tuple[float, object]:
    best, result, cpu = float("inf"), None, float("inf")
    for _ in range(repeat):
        start, used = time.perf_counter(), time.process_time()
        result = function()
        best = min(best, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - used)
    CPU[id(function)] = cpu
    return best, result


def measure(engine: str, points: list[Point], tz: str, now: datetime, repeat: int):
    run = lambda: simulate(engine, points, POLICY, tz, now=now)  # noqa: E731
    sim_seconds, decisions = time_call(run, repeat)
    SIM_CPU[engine, len(points)] = max(SIM_CPU.get((engine, len(points)), 0.0), CPU[id(run)])
    daily_seconds, _ = time_call(lambda: audit(points, POLICY, engine, tz, now, rpo=timedelta(hours=1)), repeat)
    dense_seconds, _ = time_call(
        lambda: audit(points, POLICY, engine, tz, now, rpo=timedelta(hours=1), schedule=STEP), repeat
    )
    return sim_seconds, daily_seconds, dense_seconds, sum(1 for d in decisions if d.keep)


SIM_CPU: dict[tuple[str, int], float] = {}


def prune_sim(size: int, tz: str) -> list[tuple[str, float, float]]:
    """`restoredrill prune-sim` on `size` points (one every 5 min): (format, wall, CPU) per run."""
    first = datetime(2017, 1, 1, tzinfo=timezone.utc)
    command = [str(Path(sys.executable).parent / "restoredrill"), "prune-sim", "--engine", "borg",
               "--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "12", "--tz", tz,
               "--now", "2026-12-01T00:00:00Z"]
    with tempfile.TemporaryFile("w+") as points:
        points.writelines(f"{first + STEP * step:%Y-%m-%dT%H:%M:%SZ}\n" for step in range(size))
        rows = []
        for form in ("table", "json"):
            points.seek(0)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(command + (["--json"] if form == "json" else []), stdin=points,
                           stdout=subprocess.DEVNULL, check=True)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            rows.append((form, wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="comma-separated history sizes")
    parser.add_argument("--tz", default="Europe/Berlin", help="zone the engines compute periods in")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best is shown")
    args = parser.parse_args()
    now = datetime(2026, 4, 1, 12, 0, tzinfo=timezone.utc)
    print(f"{'engine':<6} {'spacing':>7} {'points':>9} {'simulate s':>11} {'audit 1d s':>11} {'audit 5m s':>11} "
          f"{'1d/sim':>7} {'5m/sim':>7} {'kept':>6}")
    worst: dict[bool, float] = {True: 0.0, False: 0.0}  # by "size is held to the target"
    for size in (int(text) for text in args.sizes.split(",")):
        histories = [("5m", make_history(size, now), now), ("1d", *make_daily_history(size))]
        for spacing, points, history_now in histories:
            for engine in ("pbs", "borg"):
                sim, daily, dense, kept = measure(engine, points, args.tz, history_now, args.repeat)
                held = size >= TARGET_SIZE
                worst[held] = max(worst[held], daily / sim, dense / sim)
                print(f"{engine:<6} {spacing:>7} {size:>9} {sim:>11.3f} {daily:>11.3f} {dense:>11.3f} "
                      f"{daily / sim:>7.2f} {dense / sim:>7.2f} {kept:>6}")
    if worst[True]:
        verdict = "met" if worst[True] <= TARGET_RATIO else "NOT met"
        print(f"worst audit/simulate ratio at >= {TARGET_SIZE} points: {worst[True]:.2f} "
              f"(target <= {TARGET_RATIO}: {verdict})")
    if worst[False]:
        print(f"worst audit/simulate ratio at smaller sizes: {worst[False]:.2f} (not held to the target)")
    for (engine, size), cpu in SIM_CPU.items():
        if size >= TARGET_SIZE:
            print(f"simulate {engine} {size} points: CPU {cpu:.2f} s = {cpu / TARGET_SIMULATE:.2f} x the "
                  f"{TARGET_SIMULATE:g} s target")
    print(f"prune-sim, {TARGET_SIZE} points (the whole command), load average {os.getloadavg()[0]:.1f}:")
    for form, wall, cpu in prune_sim(TARGET_SIZE, args.tz):
        print(f"  {form:5}  wall {wall:.2f} s, CPU {cpu:.2f} s = {cpu / TARGET_PRUNE_SIM:.2f} x the "
              f"{TARGET_PRUNE_SIM:g} s target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
