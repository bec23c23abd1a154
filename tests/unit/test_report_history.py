"""What the history shows: trends, since when, proven points, regressions, coverage gaps (pure)."""
from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta, timezone

import pytest

from restoredrill.report import history as hist
from restoredrill.report.history import History, Row, Thresholds

T0 = datetime(2026, 3, 1, 3, 0, tzinfo=timezone.utc)
DRILL = "borg:app"


def run_rows(day: int, *, extract: float | None = 10.0, passed: bool = True, archive_day: int | None = None,
             check_ok: bool = True, drill: str = DRILL) -> list[Row]:
    started = T0 + timedelta(days=day)
    run_id = f"run-{day:03d}"
    point = (T0 + timedelta(days=archive_day if archive_day is not None else day, hours=-1)).isoformat()
    rows = [Row(run_id, started, drill, "fresh", "passed", 0.1, {"archive": f"app-{day}", "archive_time": point}),
            Row(run_id, started, drill, "check", "passed" if check_ok else "failed", 1.0, {})]
    if extract is not None:
        rows.append(Row(run_id, started, drill, "extract", "passed" if passed else "failed", extract,
                        {"seconds": extract, "archive": f"app-{day}", "archive_time": point}))
    return rows


def history_of(*runs: list[Row]) -> History:
    rows = [row for run in runs for row in run]
    return History(rows, OrderedDict((r.run_id, r.run_started) for r in rows))


def test_rto_series_keeps_passing_restores_oldest_first():
    history = history_of(run_rows(0, extract=10), run_rows(1, extract=12, passed=False), run_rows(2, extract=11))
    series = hist.rto_series(history, DRILL)
    assert [(rid, s) for rid, _, s in series["restore"]] == [("run-000", 10), ("run-002", 11)]


def test_regression_needs_enough_history_then_flags_a_slow_restore():
    limits = Thresholds(rto_share=0.5, rto_window=5, rto_min_points=3, rto_min_seconds=5)
    early = history_of(run_rows(0, extract=10), run_rows(1, extract=40))
    [finding] = hist.regressions(early, "run-001", limits)
    assert finding.ok and "1 earlier run(s), 3 needed" in finding.message

    runs = [run_rows(d, extract=s) for d, s in enumerate([10, 11, 9, 10, 30])]
    [slow] = hist.regressions(history_of(*runs), "run-004", limits)
    assert not slow.ok and slow.kind == "regression" and slow.name == "rto:borg:app:restore"
    assert "median of the last 4 runs (10.0 s, so at most 15.0 s)" in slow.message
    assert "found 30.0 s in run run-004" in slow.message

    runs[-1] = run_rows(4, extract=14.9)
    [fine] = hist.regressions(history_of(*runs), "run-004", limits)
    assert fine.ok


def test_a_small_restore_that_doubles_is_noise_not_a_regression():
    runs = [run_rows(d, extract=s) for d, s in enumerate([0.4, 0.5, 0.4, 1.2])]
    [finding] = hist.regressions(history_of(*runs), "run-003", Thresholds())
    assert finding.ok


def test_coverage_gap_after_the_configured_days():
    history = history_of(run_rows(0), run_rows(10, extract=None), run_rows(40, extract=None))
    now = T0 + timedelta(days=40, hours=1)
    [gap] = hist.coverage_gaps(history, [DRILL], now, Thresholds(max_untested_days=35))
    assert not gap.ok and gap.name == "coverage:borg:app"
    assert "at least every 35 days; found the last one on 2026-03-01 03:00 UTC, 40 days ago" in gap.message
    [fine] = hist.coverage_gaps(history, [DRILL], now, Thresholds(max_untested_days=45))
    assert fine.ok


def test_a_drill_never_restore_tested_is_a_gap_once_history_is_long_enough():
    history = history_of(run_rows(0, extract=None, drill="borg:other"), run_rows(36, extract=None))
    now = T0 + timedelta(days=36)
    found = {f.drill: f for f in hist.coverage_gaps(history, [DRILL, "borg:new"], now, Thresholds())}
    assert not found["borg:new"].ok and "found none since 2026-03-01" in found["borg:new"].message
    assert found[DRILL].ok            # first seen 0 days ago
    ignored = {f.drill for f in hist.coverage_gaps(history, ["lint:x", "collection"], now, Thresholds())}
    assert not ignored & {"lint:x", "collection"}


def test_streak_and_last_success():
    history = history_of(run_rows(0), run_rows(1, passed=False), run_rows(2), run_rows(3))
    assert hist.streak(history, DRILL) == (True, T0 + timedelta(days=2))
    assert hist.last_success(history, DRILL) == T0 + timedelta(days=3)
    failing = history_of(run_rows(0), run_rows(1, passed=False), run_rows(2, passed=False))
    assert hist.streak(failing, DRILL) == (False, T0 + timedelta(days=1))
    assert hist.last_success(failing, DRILL) == T0
    assert hist.streak(failing, "borg:none") == (None, None)


def test_proven_points_newest_verified_restore_tested():
    history = history_of(run_rows(0), run_rows(1, check_ok=True, passed=False), run_rows(2, check_ok=False,
                                                                                         passed=False))
    points = hist.proven_points(history, DRILL)
    assert points["newest"].name == "app-2"
    assert points["verified"].name == "app-1"           # run 2's check failed
    assert points["restore_tested"].name == "app-0"     # runs 1 and 2 did not restore
    assert points["restore_tested"].time == T0 - timedelta(hours=1)


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]"])
def test_unreadable_evidence_is_empty(text):
    assert hist.parse_evidence(text) == {}


def test_an_auditing_drill_is_covered_by_a_fully_passing_run():
    def audit(day: int, ok: bool) -> list[Row]:
        return [Row(f"run-{day:03d}", T0 + timedelta(days=day), "offsite:s3", "manifests",
                    "passed" if ok else "failed", 1.0, {})]
    history = history_of(audit(0, True), audit(20, False), audit(40, False))
    [gap] = hist.coverage_gaps(history, ["offsite:s3"], T0 + timedelta(days=40), Thresholds())
    assert not gap.ok and "expected a run with every check passing at least every 35 days" in gap.message
    history = history_of(audit(0, True), audit(20, True), audit(40, False))
    [fine] = hist.coverage_gaps(history, ["offsite:s3"], T0 + timedelta(days=40), Thresholds())
    assert fine.ok and "last run with every check passing 2026-03-21" in fine.message


def test_a_pbs_datastore_has_a_newest_and_verified_point_from_its_per_guest_cases():
    """pbs:local records fresh:GUEST and verified:GUEST: the newest of its guests' points is the
    datastore's (it said "none proven" before)."""
    started = datetime(2026, 12, 7, 19, 20, tzinfo=timezone.utc)
    rows = [hist.Row("r1", started, "pbs:local", f"fresh:{guest}", "passed", 0.1,
                     {"snapshot": snap, "snapshot_time": when})
            for guest, snap, when in (("app-vm", "vm/110/2026-12-07T01:00:03Z", "2026-12-07T01:00:03+00:00"),
                                      ("app-ct", "ct/120/2026-12-07T01:01:03Z", "2026-12-07T01:01:03+00:00"))]
    rows += [hist.Row("r1", started, "pbs:local", f"verified:{g}", "passed", 0.1, {}) for g in ("app-vm", "app-ct")]
    points = hist.proven_points(hist.History(rows, OrderedDict(r1=started)), "pbs:local")
    assert points["newest"].name == "ct/120/2026-12-07T01:01:03Z" and points["verified"] == points["newest"]
