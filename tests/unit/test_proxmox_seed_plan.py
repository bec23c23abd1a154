"""The seeded history plan and the PBS job calendar (pure)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from restoredrill import retention
from restoredrill.lab.proxmox.pbs_jobs import next_run
from restoredrill.lab.proxmox.seed import (OFFSITE_POLICY, SEED_GUESTS, backup_time,
                                           newest_backup_day, plan_history)

ZONE = "Europe/Berlin"
NEWEST = datetime(2026, 11, 25, tzinfo=timezone.utc)


def test_plan_creates_what_the_prune_keeps_plus_a_few():
    days, kept = plan_history(NEWEST, ZONE)
    assert kept <= set(days) and len(set(days) - kept) == 4
    assert 20 <= len(kept) <= 30 and min(days) >= NEWEST - timedelta(days=730)
    points = [retention.Point(time=d) for d in days]
    decisions = retention.simulate_pbs(points, retention.Policy.from_mapping(OFFSITE_POLICY),
                                       ZONE)
    assert {d.point.time for d in decisions if d.keep} == kept   # prune of the subset agrees


def test_backup_times_and_newest_day():
    vm, ct = SEED_GUESTS
    assert backup_time(NEWEST, vm) == NEWEST.replace(hour=1, second=3)
    assert backup_time(NEWEST, ct) == NEWEST.replace(hour=1, minute=1, second=3)
    assert newest_backup_day(NEWEST.replace(hour=0, minute=30)) == NEWEST - timedelta(days=1)
    assert newest_backup_day(NEWEST.replace(hour=6)) == NEWEST
    # the retired CT's lookalike is taken at 01:30: at 01:10 the day's run is not done
    assert newest_backup_day(NEWEST.replace(hour=1, minute=10)) == NEWEST - timedelta(days=1)
    assert newest_backup_day(NEWEST.replace(hour=1, minute=35)) == NEWEST


def test_next_run_of_simple_calendar_events():
    after = datetime(2026, 11, 25, 12, 0, tzinfo=ZoneInfo(ZONE))      # a Wednesday
    assert datetime.fromtimestamp(next_run("03:00", after, ZONE), ZoneInfo(ZONE)) == \
        datetime(2026, 11, 26, 3, 0, tzinfo=ZoneInfo(ZONE))
    assert datetime.fromtimestamp(next_run("sat 06:00", after, ZONE), ZoneInfo(ZONE)) == \
        datetime(2026, 11, 28, 6, 0, tzinfo=ZoneInfo(ZONE))
    assert datetime.fromtimestamp(next_run("daily", after, ZONE), ZoneInfo(ZONE)) == \
        datetime(2026, 11, 26, 0, 0, tzinfo=ZoneInfo(ZONE))
    assert next_run("*:0/15", after, ZONE) is None
