"""PBS prune engine: the spec's worked example and hand-derived cases per rule and edge."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from restoredrill.retention import Point, Policy, RetentionError, simulate, simulate_borg, simulate_pbs

UTC = timezone.utc
WORKED_POLICY = Policy(keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=2)


def at(text: str) -> datetime:
    """'2024-06-14T02:00' or '2024-06-14T02:00:00.5' as a UTC time."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def points(*texts: str, **flags: str) -> list[Point]:
    """Points named by their time text; flags={"protected": "time text", ...}."""
    return [
        Point(at(text), name=text, **{flag: True for flag, marked in flags.items() if marked == text})
        for text in texts
    ]


def kept(decisions) -> dict[str, tuple[str, int | None]]:
    return {d.point.name: (d.rule, d.rank) for d in decisions if d.keep}


def daily_history(first: date, last: date, hour: int = 2) -> list[Point]:
    days = (last - first).days + 1
    return [
        Point(datetime(d.year, d.month, d.day, hour, tzinfo=UTC), name=d.isoformat())
        for d in (first + timedelta(days=n) for n in range(days))
    ]


WORKED_PBS = {
    **{f"2024-06-{day:02d}": ("daily", 15 - day) for day in range(8, 15)},
    "2024-06-02": ("weekly", 1),
    "2024-05-26": ("weekly", 2),
    "2024-05-19": ("weekly", 3),
    "2024-05-12": ("weekly", 4),
    "2024-04-30": ("monthly", 1),
    "2024-03-31": ("monthly", 2),
    "2024-02-29": ("monthly", 3),
    "2024-01-31": ("monthly", 4),
    "2023-12-31": ("monthly", 5),
    "2023-11-30": ("monthly", 6),
    "2023-10-31": ("monthly", 7),
    "2023-09-30": ("monthly", 8),
    "2023-08-31": ("monthly", 9),
    "2023-07-31": ("monthly", 10),
    "2023-06-30": ("monthly", 11),
    "2023-05-31": ("monthly", 12),
    "2022-12-31": ("yearly", 1),
    "2021-12-31": ("yearly", 2),
}


def test_worked_example_pbs_keeps_25_with_2023_05_31_as_twelfth_month():
    history = daily_history(date(2021, 1, 1), date(2024, 6, 14))
    decisions = simulate_pbs(history, WORKED_POLICY, "UTC")
    assert kept(decisions) == WORKED_PBS
    assert len(kept(decisions)) == 25
    assert "2024-05-31" not in kept(decisions)


def test_worked_example_engines_keep_different_25():
    history = daily_history(date(2021, 1, 1), date(2024, 6, 14))
    pbs = kept(simulate("pbs", history, WORKED_POLICY, "UTC"))
    borg = kept(simulate("borg", history, WORKED_POLICY, "UTC"))
    assert len(pbs) == len(borg) == 25
    assert set(pbs) - set(borg) == {"2023-05-31"}
    assert set(borg) - set(pbs) == {"2024-05-31"}
    assert borg["2024-05-31"] == ("monthly", 1)


def test_decisions_come_back_in_input_order_one_per_point():
    history = points("2024-06-01T02:00", "2024-06-03T02:00", "2024-06-02T02:00")
    decisions = simulate_pbs(history, Policy(keep_daily=2), "UTC")
    assert [d.point for d in decisions] == history
    assert [d.keep for d in decisions] == [False, True, True]


def test_keep_last_two():
    decisions = simulate_pbs(points("2024-06-01T01:00", "2024-06-01T02:00", "2024-06-01T03:00"),
                             Policy(keep_last=2), "UTC")
    assert kept(decisions) == {"2024-06-01T03:00": ("last", 1), "2024-06-01T02:00": ("last", 2)}


def test_hourly_keeps_newest_of_each_hour_and_marks_the_rest():
    history = points("2024-06-01T11:10", "2024-06-01T10:50", "2024-06-01T10:05", "2024-06-01T09:00")
    decisions = simulate_pbs(history, Policy(keep_hourly=2), "UTC")
    assert kept(decisions) == {"2024-06-01T11:10": ("hourly", 1), "2024-06-01T10:50": ("hourly", 2)}


def test_monthly_and_yearly_rules():
    history = points("2024-06-10T00:00", "2024-05-31T00:00", "2024-05-01T00:00", "2023-12-31T00:00", "2022-01-01T00:00")
    assert kept(simulate_pbs(history, Policy(keep_monthly=2), "UTC")) == {
        "2024-06-10T00:00": ("monthly", 1), "2024-05-31T00:00": ("monthly", 2)}
    assert kept(simulate_pbs(history, Policy(keep_yearly=3), "UTC")) == {
        "2024-06-10T00:00": ("yearly", 1), "2023-12-31T00:00": ("yearly", 2), "2022-01-01T00:00": ("yearly", 3)}


def test_period_covered_by_an_earlier_rule_is_skipped_without_counting():
    # 06-03 is ISO week 23; 06-02 and 06-01 week 22; 05-26 week 21.
    history = points("2024-06-03T02:00", "2024-06-02T02:00", "2024-06-01T02:00", "2024-05-26T02:00")
    decisions = simulate_pbs(history, Policy(keep_daily=2, keep_weekly=2), "UTC")
    assert kept(decisions) == {
        "2024-06-03T02:00": ("daily", 1), "2024-06-02T02:00": ("daily", 2), "2024-05-26T02:00": ("weekly", 1)}


def test_remove_mark_is_final_so_monthly_takes_an_older_snapshot():
    # Week 22 (05-27..06-02) straddles May/June: the weekly rule keeps 06-02 and marks
    # 05-27..05-31 removed, so May's monthly becomes 05-20; Borg takes 05-31.
    history = daily_history(date(2024, 5, 27), date(2024, 6, 2)) + daily_history(date(2024, 5, 20), date(2024, 5, 20))
    policy = Policy(keep_weekly=1, keep_monthly=2)
    assert kept(simulate_pbs(history, policy, "UTC")) == {"2024-06-02": ("weekly", 1), "2024-05-20": ("monthly", 1)}
    assert kept(simulate_borg(history, policy, "UTC", oldest_rule=False)) == {
        "2024-06-02": ("weekly", 1), "2024-05-31": ("monthly", 1)}


def test_protected_never_uses_a_slot():
    history = points("2024-06-04T02:00", "2024-06-03T02:00", "2024-06-02T02:00", "2024-06-01T02:00",
                     protected="2024-06-04T02:00")
    assert kept(simulate_pbs(history, Policy(keep_daily=2), "UTC")) == {
        "2024-06-04T02:00": ("protected", None), "2024-06-03T02:00": ("daily", 1), "2024-06-02T02:00": ("daily", 2)}


def test_protected_never_marks_its_period_as_covered():
    history = points("2024-06-04T14:00", "2024-06-04T02:00", "2024-06-03T02:00", protected="2024-06-04T14:00")
    assert kept(simulate_pbs(history, Policy(keep_daily=1), "UTC")) == {
        "2024-06-04T14:00": ("protected", None), "2024-06-04T02:00": ("daily", 1)}


def test_protected_old_snapshot_is_kept_outside_every_rule():
    history = points("2024-06-04T02:00", "2020-01-01T02:00", protected="2020-01-01T02:00")
    decisions = simulate_pbs(history, Policy(keep_last=1), "UTC")
    assert kept(decisions) == {"2024-06-04T02:00": ("last", 1), "2020-01-01T02:00": ("protected", None)}


def test_newest_unfinished_is_kept_partial_and_uses_no_slot():
    history = points("2024-06-05T02:00", "2024-06-04T02:00", "2024-06-03T02:00", unfinished="2024-06-05T02:00")
    assert kept(simulate_pbs(history, Policy(keep_daily=1), "UTC")) == {
        "2024-06-05T02:00": ("partial", None), "2024-06-04T02:00": ("daily", 1)}


def test_unfinished_walk_keeps_only_an_unfinished_newer_than_every_finished():
    history = [
        Point(at("2024-06-05T03:00"), "u-newest", unfinished=True),
        Point(at("2024-06-05T02:00"), "u-second", unfinished=True),
        Point(at("2024-06-04T02:00"), "finished"),
        Point(at("2024-06-03T02:00"), "u-old", unfinished=True),
    ]
    assert kept(simulate_pbs(history, Policy(keep_last=5), "UTC")) == {
        "u-newest": ("partial", None), "finished": ("last", 1)}


def test_unfinished_older_than_a_finished_is_removed_even_when_a_rule_has_room():
    history = [Point(at("2024-06-04T02:00"), "finished"), Point(at("2024-06-03T02:00"), "u", unfinished=True)]
    assert kept(simulate_pbs(history, Policy(keep_daily=7), "UTC")) == {"finished": ("daily", 1)}


@pytest.mark.parametrize("policy", [Policy(), Policy(keep_daily=0), Policy(keep_last=0, keep_yearly=0)])
def test_no_keep_option_above_zero_keeps_everything(policy):
    history = points("2024-06-02T02:00", "2024-06-01T02:00", unfinished="2024-06-01T02:00")
    decisions = simulate_pbs(history, policy, "UTC")
    assert all(d.keep and d.rule == "all" for d in decisions)


def test_zero_count_rule_is_a_no_op_next_to_others():
    history = points("2024-06-02T02:00", "2024-06-01T02:00")
    assert kept(simulate_pbs(history, Policy(keep_last=0, keep_daily=1), "UTC")) == {"2024-06-02T02:00": ("daily", 1)}


def test_days_follow_the_server_zone():
    # 23:30 UTC on 03-30 is already 03-31 in Berlin.
    history = points("2024-03-30T23:30", "2024-03-30T12:00")
    assert len(kept(simulate_pbs(history, Policy(keep_daily=2), "UTC"))) == 1
    assert len(kept(simulate_pbs(history, Policy(keep_daily=2), "Europe/Berlin"))) == 2


def test_repeated_dst_hour_is_one_hourly_period():
    # 2024-10-27 Berlin: 00:30Z is 02:30 CEST and 01:30Z is 02:30 CET; 23:30Z is 01:30 CEST.
    history = points("2024-10-27T01:30", "2024-10-27T00:30", "2024-10-26T23:30")
    berlin = kept(simulate_pbs(history, Policy(keep_hourly=3), "Europe/Berlin"))
    assert berlin == {"2024-10-27T01:30": ("hourly", 1), "2024-10-26T23:30": ("hourly", 2)}
    assert len(kept(simulate_pbs(history, Policy(keep_hourly=3), "UTC"))) == 3


def test_weekly_uses_iso_weeks_across_new_year():
    # 2024-12-30 (Mon) is ISO week 2025-W01, together with 2025-01-02.
    history = points("2025-01-02T02:00", "2024-12-30T02:00", "2024-12-29T02:00")
    assert kept(simulate_pbs(history, Policy(keep_weekly=2), "UTC")) == {
        "2025-01-02T02:00": ("weekly", 1), "2024-12-29T02:00": ("weekly", 2)}


def test_equal_times_keep_input_order_as_newest_first():
    history = [Point(at("2024-06-01T02:00"), "first"), Point(at("2024-06-01T02:00"), "second")]
    assert kept(simulate_pbs(history, Policy(keep_last=1), "UTC")) == {"first": ("last", 1)}


def test_any_aware_zone_is_accepted_for_point_times():
    berlin_time = datetime(2024, 6, 1, 4, 0, tzinfo=timezone(timedelta(hours=2)))
    history = [Point(berlin_time, "b"), Point(at("2024-06-01T01:00"), "u")]
    assert kept(simulate_pbs(history, Policy(keep_last=1), "UTC")) == {"b": ("last", 1)}


@pytest.mark.parametrize(
    ("history", "policy", "message"),
    [
        ([Point(datetime(2024, 6, 1))], Policy(keep_daily=1), "naive"),
        ([Point(at("2024-06-01T00:00"))], Policy(keep_daily=1, keep_within="2d"), "keep-within"),
        ([Point(at("2024-06-01T00:00"))], Policy(keep_minutely=3), "keep-minutely"),
        ([Point(at("2024-06-01T00:00"))], Policy(keep_daily=-1), "-1"),
        ([Point(at("2024-06-01T00:00"), checkpoint=True)], Policy(keep_daily=1), "checkpoint"),
    ],
)
def test_inputs_pbs_cannot_model_are_errors(history, policy, message):
    with pytest.raises(RetentionError, match=message):
        simulate_pbs(history, policy, "UTC")


def test_unknown_zone_is_an_error():
    with pytest.raises(RetentionError, match="Unknown time zone"):
        simulate_pbs([Point(at("2024-06-01T00:00"))], Policy(keep_daily=1), "Mars/Olympus")


def test_policy_from_mapping_and_describe():
    policy = Policy.from_mapping({"keep-daily": 7, "keep_weekly": "4", "keep-monthly": 12, "keep-yearly": 2})
    assert policy == WORKED_POLICY
    assert policy.describe() == "7 daily, 4 weekly, 12 monthly, 2 yearly"
    assert policy.given() == {"keep-daily": 7, "keep-weekly": 4, "keep-monthly": 12, "keep-yearly": 2}
    with pytest.raises(RetentionError, match="keep-dayly"):
        Policy.from_mapping({"keep-dayly": 7})
    with pytest.raises(RetentionError, match="whole number"):
        Policy(keep_daily=True)
    with pytest.raises(RetentionError, match="-2"):
        Policy(keep_daily=-2)


@pytest.mark.slow
def test_spec_count_of_differing_daily_histories(request):
    """Spec: of 1,499 daily histories from 2021-01-01, 1,425 keep sets differ (1,204 without "oldest")."""
    history = daily_history(date(2021, 1, 1), date(2025, 2, 7))
    differ = differ_without_oldest = 0
    for end in range(1, len(history) + 1):
        prefix = history[:end]
        pbs = kept(simulate_pbs(prefix, WORKED_POLICY, "UTC")).keys()
        differ += pbs != kept(simulate_borg(prefix, WORKED_POLICY, "UTC")).keys()
        differ_without_oldest += pbs != kept(simulate_borg(prefix, WORKED_POLICY, "UTC", oldest_rule=False)).keys()
    assert (len(history), differ, differ_without_oldest) == (1499, 1425, 1204)
