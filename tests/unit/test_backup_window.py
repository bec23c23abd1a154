"""Backup-window arithmetic: deadlines across midnight, DST, margins, and which borg checks fit."""
from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from restoredrill.backup_window import (
    MIN_START,
    Budget,
    CheckCall,
    Window,
    budget,
    check_steps,
    occurrences,
    parse_start,
    refusal,
    segment_pass,
)

BERLIN = "Europe/Berlin"
M15 = timedelta(minutes=15)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def window(start: str, hours: float, zone: str = BERLIN) -> Window:
    return Window(parse_start(start), timedelta(hours=hours), zone)


def test_deadline_is_next_start_minus_margin_in_the_windows_zone():
    left = budget([window("02:00", 2)], at("2025-06-10T20:00:00+02:00"), M15)
    assert left.deadline == at("2025-06-11T01:45:00+02:00")
    assert left.remaining == 5 * 3600 + 45 * 60
    assert not left.inside and left.window_start == at("2025-06-11T02:00:00+02:00")
    assert left.bound(3600) == 3600 and left.bound(10 ** 6) == left.remaining


def test_window_across_midnight_is_inside_after_midnight():
    late = window("23:00", 3)                                            # 23:00 - 02:00
    assert budget([late], at("2025-06-11T01:30:00+02:00"), M15).inside   # started the day before
    assert budget([late], at("2025-06-10T22:50:00+02:00"), M15).inside   # within the margin
    after = budget([late], at("2025-06-11T02:00:00+02:00"), M15)         # the end is exclusive
    assert not after.inside and after.deadline == at("2025-06-11T22:45:00+02:00")


def test_the_nearest_of_several_windows_wins():
    left = budget([window("02:00", 1), window("12:00", 1)], at("2025-06-10T09:00:00+02:00"), M15)
    assert left.window.start == time(12) and left.remaining == 2 * 3600 + 45 * 60


def test_no_window_no_deadline():
    left = budget([], at("2025-06-10T09:00:00+02:00"), M15)
    assert left.deadline is None and left.remaining is None and left.bound(5) == 5
    assert refusal("borg check", left) is None


def test_dst_spring_forward_gap_covers_every_instant_the_start_can_mean():
    # 2025-03-30: Berlin skips 02:00-03:00; 02:30 does not exist
    start, end = occurrences(window("02:30", 1), datetime(2025, 3, 30).date())
    assert start == at("2025-03-30T00:30:00+00:00")     # 02:30 read with the old offset (+01:00) ...
    assert end == at("2025-03-30T02:30:00+00:00")       # ... and with the new one (+02:00), plus 1 h
    assert budget([window("02:30", 1)], at("2025-03-30T00:20:00+00:00"), M15).inside


def test_dst_fall_back_fold_takes_both_0230s():
    # 2025-10-26: Berlin repeats 02:00-03:00; 02:30 happens at 00:30 and at 01:30 UTC
    start, end = occurrences(window("02:30", 1), datetime(2025, 10, 26).date())
    assert (start, end) == (at("2025-10-26T00:30:00+00:00"), at("2025-10-26T02:30:00+00:00"))
    left = budget([window("02:30", 1)], at("2025-10-25T22:00:00+00:00"), M15)
    assert left.deadline == at("2025-10-26T00:15:00+00:00")


def test_ordinary_day_after_dst_uses_the_new_offset():
    left = budget([window("02:00", 1)], at("2025-03-30T12:00:00+00:00"), M15)
    assert left.window_start == at("2025-03-31T00:00:00+00:00")      # 02:00 CEST


def test_refusal_names_window_and_fix():
    inside = budget([window("02:00", 2)], at("2025-06-11T02:30:00+02:00"), M15)
    text = refusal("borg check", inside)
    assert text.startswith("borg check would run into") and "inside the backup window 02:00 Europe/Berlin for 2h" in text
    assert "Schedule the drill earlier" in text and "backup_window" in text
    close = budget([window("02:00", 2)], at("2025-06-11T01:44:30+02:00"), M15)
    assert close.remaining == 30 and "only 30 s are left" in refusal("borg list", close)
    assert refusal("borg list", budget([window("02:00", 2)], at("2025-06-11T01:40:00+02:00"), M15)) \
        is None


def test_refusal_threshold_is_min_start():
    now = at("2025-06-11T00:00:00+00:00")
    exactly = Budget(now, now + MIN_START, window("02:00", 1), now + MIN_START + M15)
    assert refusal("x", exactly) is None
    assert refusal("x", Budget(now, now + MIN_START - timedelta(seconds=1), window("02:00", 1), now))


@pytest.mark.parametrize("text", ["2:0", "24:00", "02:60", "0200", "noon"])
def test_bad_start_is_refused(text):
    with pytest.raises(ValueError, match="HH:MM"):
        parse_start(text)


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        budget([window("02:00", 1)], datetime(2025, 1, 1), M15)


# --- check steps -----------------------------------------------------------------------

def test_without_window_the_plan_is_unchanged():
    full = check_steps(True, remote=True, max_duration=None, remaining=None, full_estimate=None,
                       repository_estimate=None)
    assert full.calls == (CheckCall(verify_data=True),) and full.full
    part = check_steps(False, remote=False, max_duration=1800, remaining=None, full_estimate=None,
                       repository_estimate=None)
    assert part.calls == (CheckCall(repository_only=True, max_duration=1800), CheckCall(archives_only=True, last=1))
    assert not part.full and part.mode == "partial: 1800 s"


def test_partial_check_is_bounded_by_the_deadline_minus_slack():
    steps = check_steps(False, remote=True, max_duration=1800, remaining=600, full_estimate=None,
                        repository_estimate=None)
    assert steps.calls[0].max_duration == 540 and steps.mode == "partial: 540 s"


def test_remote_full_check_without_estimate_is_deferred_never_reported_full():
    steps = check_steps(True, remote=True, max_duration=None, remaining=7200, full_estimate=None,
                        repository_estimate=None)
    assert not steps.full and steps.mode == "partial: 7140 s"
    assert all(c.max_duration for c in steps.calls if c.repository_only)
    assert "deferred" in steps.note and "borg serve" in steps.note


def test_remote_full_check_runs_split_when_the_last_repository_check_fits():
    steps = check_steps(True, remote=True, max_duration=None, remaining=7200, full_estimate=None,
                        repository_estimate=600)
    assert steps.full and steps.calls == (CheckCall(repository_only=True),
                                          CheckCall(archives_only=True, verify_data=True))
    tight = check_steps(True, remote=True, max_duration=None, remaining=900, full_estimate=None,
                        repository_estimate=600)
    assert not tight.full and "600 s" in tight.note


def test_local_full_check_runs_unless_known_too_long():
    assert check_steps(True, remote=False, max_duration=None, remaining=3600, full_estimate=None,
                       repository_estimate=None).full
    steps = check_steps(True, remote=False, max_duration=None, remaining=3600, full_estimate=5000,
                        repository_estimate=None)
    assert not steps.full and "5000 s" in steps.note


def test_segment_pass_accumulates_partial_runs_into_one_whole_pass():
    first = "skipping to segments >= 0\nfinished partial segment check, last segment checked is 40"
    carried, done = segment_pass(first, 100.0, None)
    assert (carried, done) == (100.0, None)
    carried, done = segment_pass("skipping to segments >= 41\nfinished segment check at segment 90", 80.0, carried)
    assert (carried, done) == (None, 180.0)
    # a resumed pass whose beginning we did not see measures nothing
    assert segment_pass("skipping to segments >= 41\nfinished segment check at segment 90", 80.0, None) == \
        (None, None)
    # a full (unbounded) repository check is one whole pass
    assert segment_pass("Starting repository check\nfinished segment check at segment 9", 12.0, None) == \
        (None, 12.0)
