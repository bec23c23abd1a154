"""Borg before PBS: the pure comparison of an archive's end with a snapshot's start."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from restoredrill.checks.sequencing import BorgRun, archive_before, check_sequencing

SNAPSHOT = datetime(2026, 5, 10, 1, 1, 3, tzinfo=timezone.utc)
WINDOW = timedelta(hours=2)


def run(start_minutes_before: float, minutes_long: float, name: str = "media-x") -> BorgRun:
    start = SNAPSHOT - timedelta(minutes=start_minutes_before)
    return BorgRun(name, start, start + timedelta(minutes=minutes_long))


def check(archive: BorgRun | None):
    return check_sequencing(archive, snapshot="ct/120/2026-05-10T01:01:03Z", snapshot_start=SNAPSHOT,
                            window=WINDOW, where="guest app-ct (VMID 120)", repository="media")


def test_the_newest_archive_started_before_the_snapshot_is_chosen():
    archives = [run(24 * 60, 5, "yesterday"), run(45, 30, "tonight"), run(-10, 5, "after")]
    assert archive_before(archives, SNAPSHOT).name == "tonight"
    assert archive_before([run(-10, 5)], SNAPSHOT) is None
    assert archive_before([], SNAPSHOT) is None


def test_borg_ended_before_the_snapshot_within_the_window():
    result = check(run(45, 30))
    assert result.ok and result.facts["gap_minutes"] == 15.0 and result.facts["archive"] == "media-x"


def test_ending_exactly_when_the_snapshot_starts_is_in_order():
    assert check(run(30, 30)).ok


def test_an_archive_still_running_when_the_snapshot_started_fails():
    result = check(run(20, 30))
    message = result.problems[0]
    assert "guest app-ct (VMID 120)" in message and "media-x" in message and "overlap" in message
    assert "01:11:03 UTC, 10 min later" in message


def test_an_archive_ending_longer_ago_than_the_window_fails():
    result = check(run(5 * 60, 10))
    message = result.problems[0]
    assert "at most 2.0 h" in message and "4.8 h before" in message and "no Borg run preceded" in message


def test_no_archive_before_the_snapshot_fails_naming_repository_and_snapshot():
    message = check(None).message()
    assert "media" in message and "ct/120/2026-05-10T01:01:03Z" in message and "did not run" in message


def test_the_end_time_is_required():
    with pytest.raises(ValueError, match="end time"):
        check(BorgRun("x", SNAPSHOT - timedelta(hours=1)))
