"""Time the PBS and Borg prune engines and the audit on large synthetic histories.

Run: python benchmarks/bench_retention.py [--sizes 10000,1000000] [--tz Europe/Berlin]

History: one point every 5 minutes ending now (1M points span ~9.5 years), a policy
of 3 last, 24 hourly, 7 daily, 4 weekly, 12 monthly, 2 yearly, periods in a DST zone.
Columns: simulate; audit with the default daily schedule (it simulates the history
twice: now and as of the prune grace); audit with the 5-minute schedule, which adds
an ideal history as large as the real one. Target: simulate 1M points in under 2 s
per engine.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from restoredrill.retention import Point, Policy, audit, simulate  # noqa: E402

STEP = timedelta(minutes=5)
POLICY = Policy(keep_last=3, keep_hourly=24, keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=2)


def make_history(size: int, now: datetime) -> list[Point]:
    first = now - STEP * (size - 1)
    return [Point(first + STEP * step, name=f"p{step}") for step in range(size)]


def time_call(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def measure(engine: str, points: list[Point], tz: str, now: datetime) -> tuple[float, float, float, int]:
    sim_seconds, decisions = time_call(lambda: simulate(engine, points, POLICY, tz, now=now))
    daily_seconds, _ = time_call(lambda: audit(points, POLICY, engine, tz, now, rpo=timedelta(hours=1)))
    dense_seconds, _ = time_call(
        lambda: audit(points, POLICY, engine, tz, now, rpo=timedelta(hours=1), schedule=STEP)
    )
    return sim_seconds, daily_seconds, dense_seconds, sum(1 for d in decisions if d.keep)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="comma-separated history sizes")
    parser.add_argument("--tz", default="Europe/Berlin", help="zone the engines compute periods in")
    args = parser.parse_args()
    now = datetime(2026, 4, 1, 12, 0, tzinfo=timezone.utc)
    print(f"{'engine':<6} {'points':>9} {'simulate s':>11} {'audit 1d s':>11} {'audit 5m s':>11} {'kept':>6}")
    for size in (int(text) for text in args.sizes.split(",")):
        points = make_history(size, now)
        for engine in ("pbs", "borg"):
            sim_seconds, daily_seconds, dense_seconds, kept = measure(engine, points, args.tz, now)
            print(f"{engine:<6} {size:>9} {sim_seconds:>11.3f} {daily_seconds:>11.3f} {dense_seconds:>11.3f} {kept:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
