"""The retention calendar: which periods hold a point and which rule keeps it (pure)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from restoredrill import retention
from restoredrill.report.calendar import build_calendar, last_months, last_weeks

NOW = datetime(2026, 3, 30, 12, 0, tzinfo=timezone.utc)
POLICY = retention.Policy(keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=2)


def daily_points(days: int) -> list[dict]:
    return [{"time": (NOW - timedelta(days=d, hours=10)).isoformat(), "name": f"app-{d:03d}"} for d in range(days)]


def test_recorded_decisions_are_shown_per_period():
    points = daily_points(3)
    points[0].update(keep=True, rule="daily", rank=1)
    points[1].update(keep=True, rule="daily", rank=2)
    points[2].update(keep=False, rule=None, rank=None)
    cal = build_calendar("borg:app", {"points": json.dumps(points), "timezone": "Europe/Berlin"}, NOW, "UTC")
    assert cal.problem is None and cal.zone == "Europe/Berlin"
    assert cal.source == "decisions recorded by the retention drill" and (cal.points, cal.kept) == (3, 2)
    days = {c.period: c for row in cal.weeks_of_days for c in row if c is not None}
    assert days["2026-03-30"].point.label == "daily #1" and days["2026-03-30"].point.css == "daily"
    assert days["2026-03-28"].point.label == "removed"
    assert days["2026-03-27"].point is None


def test_points_without_decisions_are_simulated_with_the_policy():
    cal = build_calendar("borg:app", {"points": daily_points(400)}, NOW, "Europe/Berlin", "borg", POLICY)
    assert cal.source.startswith("decided here: borg prune rules, 7 daily, 4 weekly, 12 monthly, 2 yearly")
    expected = sum(d.keep for d in retention.simulate(
        "borg", [retention.Point(datetime.fromisoformat(p["time"]), p["name"]) for p in daily_points(400)],
        POLICY, "Europe/Berlin", now=NOW))
    assert cal.kept == expected
    months = {c.period: c for c in cal.months}
    assert months["2026-02"].point.rule == "monthly" and months["2026-02"].point.css == "monthly"
    weeks = {c.period: c for c in cal.weeks}
    assert weeks["2026-W11"].point.css == "weekly"       # the week's own rule is shown first
    assert weeks["2026-W13"].point.css == "daily"        # every point of the week is kept as a daily
    years = {c.period: c for c in cal.years}
    assert years["2025"].point.rule.startswith("yearly")
    assert [c.period for c in cal.years] == ["2025", "2026"]


def test_points_only_without_a_policy():
    cal = build_calendar("pbs:x", {"points": daily_points(2)}, NOW, "UTC")
    assert cal.problem is None and cal.kept == 0
    days = [c for row in cal.weeks_of_days for c in row if c is not None and c.point]
    assert {c.point.label for c in days} == {"point"}


def test_missing_or_malformed_points_degrade_to_a_sentence():
    assert "recorded no points (evidence key 'points')" in build_calendar("borg:a", {}, NOW, "UTC").problem
    assert "cannot be read" in build_calendar("borg:a", {"points": "nope"}, NOW, "UTC").problem
    naive = [{"time": "2026-03-01T00:00:00", "name": "x"}]
    assert "UTC offset" in build_calendar("borg:a", {"points": naive}, NOW, "UTC").problem
    assert "unknown time zone" in build_calendar("borg:a", {"points": [], "timezone": "Mars/Base"}, NOW,
                                                 "UTC").problem


def test_day_grid_rows_start_on_monday_and_cover_35_days():
    cal = build_calendar("borg:a", {"points": []}, NOW, "UTC")
    cells = [c for row in cal.weeks_of_days for c in row if c is not None]
    assert len(cells) == 35 and all(len(row) == 7 for row in cal.weeks_of_days)
    assert cal.weeks_of_days[-1][0].period == "2026-03-30"          # a Monday


def test_period_lists():
    assert last_weeks(NOW.date(), 3) == ["2026-W12", "2026-W13", "2026-W14"]
    assert last_months(NOW.date(), 4) == ["2025-12", "2026-01", "2026-02", "2026-03"]


def test_points_that_carry_a_group_give_one_calendar_per_group():
    """The S3 copy's retention case records every backup group's points in one list."""
    import json
    from datetime import datetime, timezone

    from restoredrill.report.calendar import build_calendar, split_by_group
    points = [{"group": group, "time": f"2026-12-0{day}T01:00:00+00:00", "name": f"{group}/{day}", "keep": True,
               "rule": "daily", "rank": 8 - day} for group in ("ns/homelab/vm/110", "ns/homelab/ct/120")
              for day in range(1, 8)]
    parts = split_by_group("offsite:lab-s3", {"points": json.dumps(points), "timezone": "Europe/Berlin",
                                              "retention": "ns/homelab/vm/110: OK | ns/homelab/ct/120: no daily "
                                                           "for 2026-12-03"})
    assert [title for title, _ in parts] == ["offsite:lab-s3 ns/homelab/vm/110", "offsite:lab-s3 ns/homelab/ct/120"]
    assert parts[1][1]["retention"] == "ns/homelab/ct/120: no daily for 2026-12-03"
    cal = build_calendar(parts[0][0], parts[0][1], datetime(2026, 12, 7, 12, tzinfo=timezone.utc), "UTC")
    assert cal.problem is None and (cal.points, cal.kept) == (7, 7)
    assert split_by_group("borg:x", {"retention": "ok"}) == [("borg:x", {"retention": "ok"})]


def test_a_pbs_guests_retention_case_gets_its_calendar_and_a_failing_one_says_why():
    """pbs:local records retention:GUEST per guest (before, only check == 'retention' got one)."""
    import json
    from datetime import datetime, timezone

    from restoredrill.report.calendar import calendars_of
    from restoredrill.report.model import Case
    points = json.dumps([{"time": "2026-12-07T01:00:03+00:00", "name": "vm/110/2026-12-07T01:00:03Z", "keep": True,
                          "rule": "last", "rank": 1}])
    cases = [Case("n1", "pbs:local", "retention:app-vm", "passed", properties={"points": points,
                                                                                 "retention": "OK, 1 note(s)"}),
             Case("n2", "pbs:offsite", "retention:app-ct", "failed", "no daily for 2026-12-03",
                  properties={"points": points}),
             Case("n3", "pbs:local", "retention-server:app-vm", "passed", properties={"points": points})]
    cals = calendars_of(cases, datetime(2026, 12, 7, 12, tzinfo=timezone.utc), "UTC", lambda drill: (None, None))
    assert [(c.drill, c.points, c.summary) for c in cals] == [("pbs:local app-vm", 1, "OK, 1 note(s)"),
                                                             ("pbs:offsite app-ct", 1, "no daily for 2026-12-03")]
