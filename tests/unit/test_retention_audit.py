"""Retention audit: conformance, coverage (missing periods by name), young histories, freshness."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from restoredrill.retention import Point, Policy, RetentionError, audit, simulate

UTC = timezone.utc
RPO = timedelta(hours=26)
POLICY = Policy(keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=2)


def daily(first: date, last: date, skip: tuple[date, date] | None = None) -> list[Point]:
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [
        Point(datetime(d.year, d.month, d.day, 2, tzinfo=UTC), name=d.isoformat())
        for d in days
        if not (skip and skip[0] <= d <= skip[1])
    ]


def pruned(history: list[Point], engine: str, policy: Policy = POLICY, tz: str = "UTC", now=None) -> list[Point]:
    """What is left after a prune ran: the history as a well-kept repository holds it."""
    return [d.point for d in simulate(engine, history, policy, tz, now=now) if d.keep]


def now_after(history: list[Point], hours: int = 1) -> datetime:
    return max(p.time for p in history) + timedelta(hours=hours)


@pytest.mark.parametrize("engine", ["pbs", "borg"])
def test_pruned_regular_history_is_ok(engine):
    history = pruned(daily(date(2021, 1, 1), date(2024, 6, 14)), engine)
    result = audit(history, POLICY, engine, "UTC", now_after(history), rpo=RPO)
    assert result.ok, result.problems
    assert [(c.rule, c.expected, c.found, c.missing) for c in result.coverage] == [
        ("daily", 7, 7, []), ("weekly", 4, 4, []), ("monthly", 12, 12, []), ("yearly", 2, 2, [])]
    assert result.summary().startswith(f"{engine} retention (7 daily, 4 weekly, 12 monthly, 2 yearly): OK")


@pytest.mark.parametrize("engine", ["pbs", "borg"])
def test_unpruned_history_means_prune_is_not_running(engine):
    history = daily(date(2024, 1, 1), date(2024, 6, 14))
    result = audit(history, POLICY, engine, "UTC", now_after(history), rpo=RPO)
    assert not result.ok
    assert result.problems[0].startswith("prune is not running: a prune 1d 2h ago would already have removed")
    cutoff = now_after(history) - timedelta(hours=26)
    before = [p for p in history if p.time <= cutoff]
    assert result.would_remove_count == len(before) - len(pruned(before, engine))
    assert result.would_remove[0].startswith("2024-06-05")  # the newest overdue point first


def test_points_made_since_the_last_prune_are_only_noted():
    history = pruned(daily(date(2024, 1, 1), date(2024, 6, 13)), "pbs")
    extra = [Point(datetime(2024, 6, 14, 2, tzinfo=UTC), "2024-06-14"),
             Point(datetime(2024, 6, 14, 9, tzinfo=UTC), "late")]
    result = audit(history + extra, POLICY, "pbs", "UTC", datetime(2024, 6, 14, 10, tzinfo=UTC), rpo=RPO)
    assert result.ok, result.problems
    assert any(n.startswith("the next prune will remove 2 point(s)") and "2024-06-07" in n for n in result.notes)


@pytest.mark.parametrize("engine", ["pbs", "borg"])
def test_missing_week_is_named(engine):
    # No backups from Monday 2026-03-30 to Sunday 2026-04-05: ISO week 2026-W14.
    policy = Policy(keep_daily=7, keep_weekly=8)
    gap = (date(2026, 3, 30), date(2026, 4, 5))
    history = pruned(daily(date(2026, 1, 1), date(2026, 4, 30), skip=gap), engine, policy)
    result = audit(history, policy, engine, "UTC", now_after(history), rpo=RPO)
    assert [p for p in result.problems if p.startswith("no weekly")] == [
        "no weekly for 2026-W14 (8 kept of 8 expected)"]
    weekly = next(c for c in result.coverage if c.rule == "weekly")
    assert weekly.missing == ["2026-W14"]


@pytest.mark.parametrize("engine", ["pbs", "borg"])
def test_missing_month_is_named(engine):
    history = pruned(daily(date(2025, 1, 1), date(2026, 5, 20), skip=(date(2026, 3, 1), date(2026, 3, 31))), engine)
    result = audit(history, POLICY, engine, "UTC", now_after(history), rpo=RPO)
    monthly = next(c for c in result.coverage if c.rule == "monthly")
    assert monthly.missing == ["2026-03"]
    assert any(p.startswith("no monthly for 2026-03") for p in result.problems)


def test_stopped_backups_name_the_missing_days_and_fail_freshness():
    history = pruned(daily(date(2024, 1, 1), date(2024, 6, 14)), "borg")
    result = audit(history, POLICY, "borg", "UTC", datetime(2024, 6, 20, 3, tzinfo=UTC), rpo=RPO)
    # The ideal keeps 06-14..06-20; those up to now - RPO (06-19 01:00) are due.
    assert "no daily for 2024-06-15, 2024-06-16, 2024-06-17, 2024-06-18 (7 kept of 7 expected)" in result.problems
    assert any(p.startswith("newest backup 2024-06-14") and "older than the RPO" in p for p in result.problems)


@pytest.mark.parametrize("engine", ["pbs", "borg"])
def test_young_history_is_a_note_not_a_failure(engine):
    history = pruned(daily(date(2024, 4, 1), date(2024, 6, 14)), engine)
    result = audit(history, POLICY, engine, "UTC", now_after(history), rpo=RPO)
    assert result.ok, result.problems
    assert any(n.startswith("history is younger than the yearly rule needs") for n in result.notes)
    assert any(n.startswith("history is younger than the monthly rule needs") for n in result.notes)


def test_missing_periods_in_a_dst_zone_use_local_days():
    # Backups at 23:30 UTC are on the next day in Berlin: 2024-06-10 UTC is missing,
    # which is the Berlin day 2024-06-11.
    policy = Policy(keep_daily=7)
    history = [Point(datetime(2024, 6, d, 23, 30, tzinfo=UTC), f"d{d}") for d in range(1, 15) if d != 10]
    result = audit(history, policy, "pbs", "Europe/Berlin", datetime(2024, 6, 15, 0, tzinfo=UTC), rpo=RPO)
    assert result.coverage[0].missing == ["2024-06-11"]


def test_hourly_rule_with_daily_backups_compares_counts_only():
    policy = Policy(keep_hourly=24)
    history = daily(date(2024, 5, 1), date(2024, 6, 14))
    result = audit(pruned(history, "pbs", policy), policy, "pbs", "UTC", now_after(history), rpo=RPO)
    assert result.ok, result.problems
    assert result.coverage[0].expected == result.coverage[0].found == 24


def test_keep_last_shortfall_fails():
    policy = Policy(keep_last=10)
    history = daily(date(2024, 6, 10), date(2024, 6, 14))  # 5 points where 10 days passed
    result = audit(history, policy, "pbs", "UTC", datetime(2024, 6, 14, 3, tzinfo=UTC), rpo=RPO)
    assert result.ok  # a young history: 5 of 10 is what the ideal has too
    late_start = audit(history, policy, "pbs", "UTC", datetime(2024, 6, 14, 3, tzinfo=UTC), rpo=RPO,
                       schedule=timedelta(hours=12))
    assert "keep-last: 5 kept of 9 expected" in late_start.problems


def test_keep_within_counts_with_one_point_of_jitter():
    policy = Policy(keep_within="3d", keep_daily=1)
    now = datetime(2024, 6, 14, 3, tzinfo=UTC)
    history = daily(date(2024, 6, 1), date(2024, 6, 14))
    ok = audit(pruned(history, "borg", policy, now=now), policy, "borg", "UTC", now, rpo=RPO)
    assert ok.ok, ok.problems
    gap = [p for p in pruned(history, "borg", policy, now=now) if p.name not in ("2024-06-12", "2024-06-13")]
    result = audit(gap, policy, "borg", "UTC", now, rpo=RPO)
    assert any(p.startswith("keep-within: 1 kept of 3 expected") for p in result.problems)


def test_pbs_keep_everything_policy_is_noted():
    history = daily(date(2024, 6, 1), date(2024, 6, 14))
    result = audit(history, Policy(), "pbs", "UTC", now_after(history), rpo=RPO)
    assert result.ok
    assert "PBS keeps every snapshot: no keep option is greater than 0" in result.notes


def test_borg_without_keep_option_raises():
    with pytest.raises(RetentionError, match="Borg refuses"):
        audit(daily(date(2024, 6, 1), date(2024, 6, 2)), Policy(), "borg", "UTC", datetime(2024, 6, 3, tzinfo=UTC),
              rpo=RPO)


def test_freshness_ok_and_failing():
    history = pruned(daily(date(2024, 6, 1), date(2024, 6, 14)), "pbs")
    fresh = audit(history, POLICY, "pbs", "UTC", datetime(2024, 6, 15, 3, tzinfo=UTC), rpo=RPO)
    assert fresh.ok, fresh.problems  # today's 02:00 backup is late but not overdue
    assert fresh.newest_age == timedelta(hours=25)
    assert "newest backup is 1d 1h old (RPO 1d 2h)" in fresh.notes
    stale = audit(history, POLICY, "pbs", "UTC", datetime(2024, 6, 15, 5, tzinfo=UTC), rpo=RPO)
    assert "newest backup 2024-06-14 (2024-06-14T02:00:00+00:00) is 1d 3h old, older than the RPO of 1d 2h" \
        in stale.problems


def test_no_point_at_all_fails():
    result = audit([], POLICY, "borg", "UTC", datetime(2024, 6, 15, tzinfo=UTC), rpo=RPO)
    assert result.problems == ["no finished backup at all: nothing to restore"]
    assert result.newest is None and result.newest_age is None


def test_only_unfinished_or_checkpoints_fail_freshness():
    now = datetime(2024, 6, 15, tzinfo=UTC)
    pbs = audit([Point(now - timedelta(hours=1), unfinished=True)], POLICY, "pbs", "UTC", now, rpo=RPO)
    borg = audit([Point(now - timedelta(hours=1), "x.checkpoint")], POLICY, "borg", "UTC", now, rpo=RPO)
    for result in (pbs, borg):
        assert result.problems == ["no finished backup at all (1 unfinished or checkpoint only): nothing to restore"]


def test_to_dict_is_json_and_summary_is_one_line():
    history = daily(date(2024, 1, 1), date(2024, 6, 14))
    result = audit(history, POLICY, "borg", "Europe/Berlin", datetime(2024, 6, 20, tzinfo=UTC), rpo=RPO)
    evidence = json.loads(json.dumps(result.to_dict()))
    assert evidence["ok"] is False
    assert evidence["engine"] == "borg" and evidence["zone"] == "Europe/Berlin"
    assert evidence["policy"] == {"keep-daily": 7, "keep-weekly": 4, "keep-monthly": 12, "keep-yearly": 2}
    assert {c["rule"] for c in evidence["coverage"]} == {"daily", "weekly", "monthly", "yearly"}
    assert evidence["newest"] == "2024-06-14T02:00:00+00:00"
    summary = result.summary()
    assert "\n" not in summary and summary.startswith("borg retention (7 daily, 4 weekly, 12 monthly, 2 yearly): FAIL")


@pytest.mark.parametrize(
    ("engine", "now", "rpo", "message"),
    [
        ("tsm", datetime(2024, 6, 1, tzinfo=UTC), RPO, "Unknown prune engine"),
        ("pbs", datetime(2024, 6, 1), RPO, "naive"),
        ("pbs", datetime(2024, 6, 1, tzinfo=UTC), timedelta(0), "positive"),
    ],
)
def test_invalid_audit_inputs_raise(engine, now, rpo, message):
    with pytest.raises(RetentionError, match=message):
        audit([], POLICY, engine, "UTC", now, rpo=rpo)


def test_oldest_rule_follows_the_borg_version():
    # borg >= 1.2 keeps the oldest archive (monthly[oldest]) when monthly falls short; older borg does not.
    history = pruned(daily(date(2024, 5, 1), date(2024, 6, 14)), "borg")
    assert "2024-05-01" in {p.name for p in history}
    now = now_after(history)
    assert audit(history, POLICY, "borg", "UTC", now, rpo=RPO, prune_grace=timedelta(0)).ok
    old_borg = audit(history, POLICY, "borg", "UTC", now, rpo=RPO, prune_grace=timedelta(0), oldest_rule=False)
    assert old_borg.problems[0].startswith("prune is not running")
    assert old_borg.would_remove == ["2024-05-01 (2024-05-01T02:00:00+00:00)"]
