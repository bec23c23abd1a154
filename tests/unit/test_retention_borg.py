"""Borg prune engine: hand-derived cases per rule, checkpoints, "oldest", keep-within, DST."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from restoredrill.retention import Point, Policy, RetentionError, simulate_borg
from restoredrill.retention.borg import parse_within_hours

UTC = timezone.utc
NOW = datetime(2024, 6, 14, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def points(*texts: str) -> list[Point]:
    return [Point(at(text), name=text) for text in texts]


def kept(decisions) -> dict[str, tuple[str, int | None]]:
    return {d.point.name: (d.rule, d.rank) for d in decisions if d.keep}


def borg(history, oldest_rule=False, tz="UTC", now=NOW, **policy):
    return kept(simulate_borg(history, Policy(**policy), tz, now=now, oldest_rule=oldest_rule))


def test_worked_example_borg_keeps_2024_05_31_as_mays_monthly():
    history = [
        Point(datetime(d.year, d.month, d.day, 2, tzinfo=UTC), name=d.isoformat())
        for d in (date(2021, 1, 1) + timedelta(days=n) for n in range((date(2024, 6, 14) - date(2021, 1, 1)).days + 1))
    ]
    result = kept(simulate_borg(history, Policy(keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=2), "UTC"))
    months = ["2024-05-31", "2024-04-30", "2024-03-31", "2024-02-29", "2024-01-31", "2023-12-31",
              "2023-11-30", "2023-10-31", "2023-09-30", "2023-08-31", "2023-07-31", "2023-06-30"]
    assert result == {
        **{f"2024-06-{day:02d}": ("daily", 15 - day) for day in range(8, 15)},
        "2024-06-02": ("weekly", 1), "2024-05-26": ("weekly", 2),
        "2024-05-19": ("weekly", 3), "2024-05-12": ("weekly", 4),
        **{name: ("monthly", rank) for rank, name in enumerate(months, start=1)},
        "2022-12-31": ("yearly", 1), "2021-12-31": ("yearly", 2),
    }
    assert "2023-05-31" not in result


def test_keep_last_is_secondly_and_one_per_second():
    history = points("2024-06-01T02:00:00.900", "2024-06-01T02:00:00.100", "2024-06-01T01:59:59", "2024-06-01T01:00")
    assert borg(history, keep_last=2) == {"2024-06-01T02:00:00.900": ("secondly", 1),
                                          "2024-06-01T01:59:59": ("secondly", 2)}
    assert borg(history, keep_secondly=2) == borg(history, keep_last=2)


def test_minutely_and_hourly():
    history = points("2024-06-01T10:05:30", "2024-06-01T10:05:10", "2024-06-01T10:04", "2024-06-01T09:59")
    assert borg(history, keep_minutely=2) == {"2024-06-01T10:05:30": ("minutely", 1),
                                              "2024-06-01T10:04": ("minutely", 2)}
    assert borg(history, keep_hourly=2) == {"2024-06-01T10:05:30": ("hourly", 1), "2024-06-01T09:59": ("hourly", 2)}


def test_daily_weekly_monthly_yearly_take_newest_of_each_period():
    history = points("2024-06-03T09:00", "2024-06-03T02:00", "2024-06-02T02:00", "2024-05-31T02:00",
                     "2024-01-01T02:00", "2023-12-31T02:00")
    assert borg(history, keep_daily=2) == {"2024-06-03T09:00": ("daily", 1), "2024-06-02T02:00": ("daily", 2)}
    assert borg(history, keep_weekly=2) == {"2024-06-03T09:00": ("weekly", 1), "2024-06-02T02:00": ("weekly", 2)}
    assert borg(history, keep_monthly=2) == {"2024-06-03T09:00": ("monthly", 1), "2024-05-31T02:00": ("monthly", 2)}
    assert borg(history, keep_yearly=2) == {"2024-06-03T09:00": ("yearly", 1), "2023-12-31T02:00": ("yearly", 2)}


def test_period_whose_newest_was_kept_earlier_is_spent_without_counting():
    # Daily keeps 06-03 and 06-02: week 23 (06-03) and week 22 (newest 06-02) are spent,
    # even though 06-01 in week 22 was not kept.
    history = points("2024-06-03T02:00", "2024-06-02T02:00", "2024-06-01T02:00", "2024-05-26T02:00")
    assert borg(history, keep_daily=2, keep_weekly=2) == {
        "2024-06-03T02:00": ("daily", 1), "2024-06-02T02:00": ("daily", 2), "2024-05-26T02:00": ("weekly", 1)}


def test_quarterly_13weekly_uses_iso_year_and_week():
    # 2024-12-30 is ISO 2025-W01 (quarter 1 of 2025); 12-29 and 10-01 are 2024-W52/W40.
    history = points("2024-12-30T02:00", "2024-12-29T02:00", "2024-10-01T02:00", "2024-09-22T02:00")
    assert borg(history, keep_13weekly=3) == {"2024-12-30T02:00": ("quarterly_13weekly", 1),
                                              "2024-12-29T02:00": ("quarterly_13weekly", 2),
                                              "2024-09-22T02:00": ("quarterly_13weekly", 3)}


def test_quarterly_3monthly_uses_calendar_quarters():
    history = points("2024-12-30T02:00", "2024-12-29T02:00", "2024-10-01T02:00", "2024-09-30T02:00")
    assert borg(history, keep_3monthly=2) == {"2024-12-30T02:00": ("quarterly_3monthly", 1),
                                              "2024-09-30T02:00": ("quarterly_3monthly", 2)}


def test_oldest_rule_keeps_the_oldest_archive_when_a_rule_falls_short():
    history = points("2024-06-02T10:00", "2024-06-01T10:00", "2024-06-01T09:00")
    assert borg(history, oldest_rule=True, keep_daily=5) == {
        "2024-06-02T10:00": ("daily", 1), "2024-06-01T10:00": ("daily", 2), "2024-06-01T09:00": ("daily[oldest]", 3)}
    assert borg(history, oldest_rule=False, keep_daily=5) == {
        "2024-06-02T10:00": ("daily", 1), "2024-06-01T10:00": ("daily", 2)}


def test_oldest_rule_does_nothing_when_the_rule_is_filled_or_the_oldest_is_kept():
    history = points("2024-06-02T10:00", "2024-06-01T10:00", "2024-06-01T09:00")
    assert borg(history, oldest_rule=True, keep_daily=2) == {
        "2024-06-02T10:00": ("daily", 1), "2024-06-01T10:00": ("daily", 2)}
    assert borg(history, oldest_rule=True, keep_last=5) == {
        name: ("secondly", rank) for rank, name in enumerate([p.name for p in history], start=1)}


def test_oldest_rule_applies_after_earlier_rules():
    history = points("2024-06-02T10:00", "2024-03-01T10:00")
    assert borg(history, oldest_rule=True, keep_daily=1, keep_yearly=2) == {
        "2024-06-02T10:00": ("daily", 1), "2024-03-01T10:00": ("yearly[oldest]", 1)}


def test_unlimited_keeps_newest_of_every_period_and_never_the_oldest():
    history = points("2024-06-03T10:00", "2024-06-03T09:00", "2024-06-02T10:00", "2024-06-01T10:00", "2024-06-01T09:00")
    assert borg(history, oldest_rule=True, keep_daily=-1) == {
        "2024-06-03T10:00": ("daily", 1), "2024-06-02T10:00": ("daily", 2), "2024-06-01T10:00": ("daily", 3)}


def test_newest_checkpoint_is_kept_only_when_it_is_the_newest_archive():
    history = [
        Point(at("2024-06-03T05:00"), "host-0603.checkpoint"),
        Point(at("2024-06-03T02:00"), "host-0603"),
        Point(at("2024-06-02T05:00"), "host-0602.checkpoint.1"),
        Point(at("2024-06-02T02:00"), "host-0602"),
    ]
    assert borg(history, keep_daily=2) == {
        "host-0603.checkpoint": ("checkpoint", None), "host-0603": ("daily", 1), "host-0602": ("daily", 2)}
    assert borg(history[1:], keep_daily=2) == {"host-0603": ("daily", 1), "host-0602": ("daily", 2)}


def test_checkpoint_flag_and_name_pattern_both_mark_checkpoints():
    history = [
        Point(at("2024-06-03T02:00"), "flagged", checkpoint=True),
        Point(at("2024-06-02T02:00"), "x.checkpointy"),  # not a checkpoint name
        Point(at("2024-06-01T02:00"), "y.checkpoint.12"),
    ]
    assert borg(history, keep_daily=3) == {"flagged": ("checkpoint", None), "x.checkpointy": ("daily", 1)}


def test_only_checkpoints():
    history = [Point(at("2024-06-02T02:00"), "a.checkpoint"), Point(at("2024-06-01T02:00"), "b.checkpoint")]
    assert borg(history, oldest_rule=True, keep_daily=3) == {"a.checkpoint": ("checkpoint", None)}


def test_keep_within_is_strictly_newer_than_now_minus_interval_and_counts_for_no_rule():
    history = points("2024-06-14T11:00", "2024-06-13T11:00", "2024-06-12T12:00:01", "2024-06-12T12:00",
                     "2024-06-10T12:00")
    assert borg(history, keep_within="2d") == {
        "2024-06-14T11:00": ("within", 1), "2024-06-13T11:00": ("within", 2), "2024-06-12T12:00:01": ("within", 3)}
    assert borg(history, keep_within="2d", keep_daily=1) == {
        "2024-06-14T11:00": ("within", 1), "2024-06-13T11:00": ("within", 2),
        "2024-06-12T12:00:01": ("within", 3), "2024-06-10T12:00": ("daily", 1)}


@pytest.mark.parametrize(("text", "hours"), [("12H", 12), ("2d", 48), ("1w", 168), ("1m", 744), ("1y", 8760)])
def test_keep_within_units(text, hours):
    assert parse_within_hours(text) == hours


@pytest.mark.parametrize("text", ["2", "2x", "0d", "-1d", "d", ""])
def test_keep_within_invalid(text):
    with pytest.raises(RetentionError, match="keep-within"):
        simulate_borg(points("2024-06-01T00:00"), Policy(keep_within=text), "UTC", now=NOW)


def test_daily_periods_follow_the_zone_across_dst():
    # 2024-03-30T23:30Z is 03-31 00:30 in Berlin (CET, +1).
    history = points("2024-03-30T23:30", "2024-03-30T12:00")
    assert len(borg(history, keep_daily=2)) == 1
    assert len(borg(history, keep_daily=2, tz="Europe/Berlin")) == 2


def test_repeated_dst_hour_is_one_hourly_period():
    # 2024-10-27 Berlin: 00:30Z is 02:30 CEST, 01:30Z is 02:30 CET.
    history = points("2024-10-27T01:30", "2024-10-27T00:30", "2024-10-26T23:30")
    assert borg(history, keep_hourly=3, tz="Europe/Berlin") == {
        "2024-10-27T01:30": ("hourly", 1), "2024-10-26T23:30": ("hourly", 2)}


def test_repeated_minute_is_a_new_period_when_not_adjacent():
    # Wall clocks 02:10 CET, 02:50 CEST, 02:10 CEST: borg compares with the previous key only.
    history = points("2024-10-27T01:10", "2024-10-27T00:50", "2024-10-27T00:10")
    assert borg(history, keep_minutely=5, tz="Europe/Berlin") == {
        "2024-10-27T01:10": ("minutely", 1), "2024-10-27T00:50": ("minutely", 2), "2024-10-27T00:10": ("minutely", 3)}


def test_weekly_in_a_zone_west_of_utc():
    # Monday 2024-06-03 03:00Z is still Sunday 06-02 in New York (week 22).
    history = points("2024-06-03T03:00", "2024-06-02T12:00")
    assert len(borg(history, keep_weekly=2)) == 2
    assert len(borg(history, keep_weekly=2, tz="America/New_York")) == 1


def test_local_machine_zone_follows_tz(monkeypatch):
    import time as time_module

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time_module.tzset()
    try:
        history = points("2024-03-30T23:30", "2024-03-30T12:00")
        assert len(borg(history, keep_daily=2, tz=None)) == 2
    finally:
        monkeypatch.undo()
        time_module.tzset()


def test_decisions_in_input_order():
    history = points("2024-06-01T02:00", "2024-06-03T02:00", "2024-06-02T02:00")
    decisions = simulate_borg(history, Policy(keep_daily=1), "UTC")
    assert [d.point for d in decisions] == history
    assert [d.keep for d in decisions] == [False, True, False]


@pytest.mark.parametrize("policy", [Policy(), Policy(keep_daily=0), Policy(keep_last=0, keep_yearly=0)])
def test_no_keep_option_is_an_error(policy):
    with pytest.raises(RetentionError, match="Borg refuses"):
        simulate_borg(points("2024-06-01T00:00"), policy, "UTC")


@pytest.mark.parametrize(
    ("policy", "history", "message"),
    [
        (Policy(keep_last=2, keep_secondly=3), points("2024-06-01T00:00"), "one Borg option"),
        (Policy(keep_13weekly=1, keep_3monthly=1), points("2024-06-01T00:00"), "mutually exclusive"),
        (Policy(keep_daily=1), [Point(at("2024-06-01T00:00"), protected=True)], "only PBS"),
        (Policy(keep_daily=1), [Point(at("2024-06-01T00:00"), unfinished=True)], "only PBS"),
        (Policy(keep_daily=1), [Point(datetime(2024, 6, 1))], "naive"),
    ],
)
def test_inputs_borg_would_reject_are_errors(policy, history, message):
    with pytest.raises(RetentionError, match=message):
        simulate_borg(history, policy, "UTC", now=NOW)


def test_naive_now_is_an_error():
    with pytest.raises(RetentionError, match="naive"):
        simulate_borg(points("2024-06-01T00:00"), Policy(keep_within="1d"), "UTC", now=datetime(2024, 6, 2))


def test_keep_within_alone_and_unlimited_alone_are_enough():
    history = points("2024-06-01T00:00")
    assert borg(history, keep_within="1y") == {"2024-06-01T00:00": ("within", 1)}
    assert borg(history, keep_yearly=-1) == {"2024-06-01T00:00": ("yearly", 1)}
