"""Runs by hand are safe (issue 21): which worker runs which case, which run carries the
production signals, and the options `restoredrill run` accepts. Pure parts only; the lab
runs are in tests/e2e/test_run_by_hand.py."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from restoredrill.cli import build_parser
from restoredrill.grouping import param_id, scope_of, target_of_nodeid
from restoredrill.report.signals import production_signals
from restoredrill.runner import SCHEDULED, run_scope, selection_text

TARGETS = {"borg": {"app-local": {"extract", "paths", "sqlite:data/app.db"}, "app": {"extract"}},
           "guest": {"app-vm": {"http", "canary"}, "app": {"vm-http"}, "app-ct": {"web-port"}}}


@pytest.mark.parametrize("nodeid, target", [
    ("drills/test_pbs_restore.py::test_restore[app-vm]", "guest:app-vm"),
    ("drills/test_pbs_restore.py::test_health[app-vm-http]", "guest:app-vm"),
    ("drills/test_pbs_restore.py::test_health[app-vm-canary]", "guest:app-vm"),
    ("drills/test_pbs_restore.py::test_health[app-ct-web-port]", "guest:app-ct"),
    ("drills/test_pbs_restore.py::test_restore[app]", "guest:app"),
    ("drills/test_borg.py::test_reachable[app-local]", "borg:app-local"),
    ("drills/test_borg.py::test_check[app-local]", "borg:app-local"),
    ("drills/test_borg.py::test_restore[app-local-sqlite:data/app.db]", "borg:app-local"),
    ("drills/test_borg.py::test_restore[app-extract]", "borg:app"),
    ("drills/test_pbs_restore.py::test_health[app-vm-http]@pbs_guest:app-vm", "guest:app-vm"),   # older xdist
])
def test_every_case_of_a_restore_target_is_in_its_targets_group(nodeid, target):
    assert target_of_nodeid(nodeid, TARGETS) == target
    assert scope_of(nodeid, TARGETS) == target


def test_a_guest_whose_name_prefixes_another_is_told_apart_by_its_checks():
    # guest "app" has a check "vm-http"; guest "app-vm" one called "http": the ids are equal
    # in shape, the inventory's exact NAME-CHECK pairs decide
    assert target_of_nodeid("drills/test_pbs_restore.py::test_health[app-vm-canary]", TARGETS) == "guest:app-vm"
    assert target_of_nodeid("drills/test_pbs_restore.py::test_health[app-ct-web-port]", TARGETS) == "guest:app-ct"


@pytest.mark.parametrize("nodeid", [
    "drills/test_pbs_audit.py::test_guest_backed_up[app-vm]",       # audits spread over workers
    "drills/test_lint.py::test_strategies",
    "drills/test_pbs_restore.py::test_restore[unknown-guest]",
    "drills/test_offsite.py::test_s3_manifests[lab-s3]",
])
def test_other_cases_are_units_of_their_own(nodeid):
    assert scope_of(nodeid, TARGETS) == nodeid


def test_param_id():
    assert param_id("drills/test_borg.py::test_restore[r-canary:a[1].txt]") == "r-canary:a[1].txt"
    assert param_id("drills/test_lint.py::test_strategies") is None


@pytest.mark.parametrize("select, keyword, mark, lf, mode, scope", [
    (None, None, None, False, "scheduled", SCHEDULED),
    (["borg", "pbs", "offsite", "lint", "monitoring"], None, None, False, "scheduled", SCHEDULED),
    (["lint"], None, None, False, "scheduled", "partial run (--select lint)"),
    (None, "app-locl", None, False, "scheduled", "partial run (-k 'app-locl')"),
    (None, None, "borg", False, "scheduled", "partial run (-m 'borg')"),
    (None, None, None, True, "scheduled", "partial run (--lf)"),
    (None, None, None, False, None, "manual run (not --mode scheduled)"),
    (None, None, None, False, "gate", "gate run (not --mode scheduled)"),
    (["pbs"], None, None, False, None, "partial run (--select pbs)"),
])
def test_only_the_full_scheduled_run_is_the_scheduled_one(select, keyword, mark, lf, mode, scope):
    assert run_scope(mode, selection_text(select, keyword, mark, lf)) == scope


class Options(SimpleNamespace):
    def getoption(self, name, default=None):
        return getattr(self, name.lstrip("-").replace("-", "_"), default)


def config(**given):
    values = {"no_notify": False, "notify": False, "run_scope": None, "keyword": "", "markexpr": "", "lf": False}
    return Options(**{**values, **given})


@pytest.mark.parametrize("given, signals, why", [
    ({"run_scope": SCHEDULED}, True, ""),
    ({"run_scope": SCHEDULED, "keyword": "app"}, False, "partial run (-k)"),
    ({"run_scope": SCHEDULED, "markexpr": "borg"}, False, "partial run (-m)"),
    ({"run_scope": SCHEDULED, "lf": True}, False, "partial run (--lf)"),
    ({"run_scope": SCHEDULED, "no_notify": True}, False, "--no-notify"),
    ({"run_scope": "partial run (--select lint)"}, False, "partial run (--select lint)"),
    ({"run_scope": "partial run (--select lint)", "notify": True}, True, ""),
    ({}, False, "manual run (not restoredrill run --mode scheduled)"),
    ({"keyword": "x"}, False, "partial run (-k)"),
    ({"notify": True}, True, ""),
])
def test_production_signals_only_for_the_scheduled_run_or_notify(given, signals, why):
    assert production_signals(config(**given)) == (signals, why)


@pytest.mark.parametrize("flags", [["--no-notify"], ["--notify"], ["--keep-on-failure"], ["-m", "borg"], ["--lf"],
                                   ["--ff"], ["--plan"], ["--collect-only"], ["--debug"]])
def test_restoredrill_run_accepts_the_options_the_readme_shows(flags):
    args = build_parser().parse_args(["run", "--inventory", "x.yaml", *flags])
    assert args.command == "run"


def test_notify_and_no_notify_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["run", "--inventory", "x.yaml", "--notify", "--no-notify"])
    assert stopped.value.code == 2


@pytest.mark.parametrize("argv", [["--debug", "reap", "--inventory", "x"], ["reap", "--inventory", "x", "--debug"]])
def test_debug_before_or_after_the_command(argv):
    assert build_parser().parse_args(argv).debug is True
    assert build_parser().parse_args(argv[1:] if argv[0] == "--debug" else argv[:-1]).debug is False


# --- stable case counts: the restore-time regression cases exist in every run -------------

def test_restore_time_cases_are_skipped_with_a_reason_not_left_out():
    from restoredrill.report import history as hist
    from tests.unit.test_report_history import DRILL, history_of, run_rows
    expected = [DRILL, "guest:app-vm", "offsite:s3"]
    first = hist.regressions(history_of(run_rows(0, extract=None)), "run-000", expected_drills=expected)
    measured = hist.regressions(history_of(run_rows(0, extract=10), run_rows(1, extract=11)), "run-001",
                                expected_drills=expected)
    failed = hist.regressions(history_of(run_rows(0), run_rows(1), run_rows(2, passed=False)), "run-002",
                              expected_drills=expected)
    names = {f"rto:{DRILL}:restore", "rto:guest:app-vm:restore", "rto:guest:app-vm:boot"}
    for findings in (first, measured, failed):
        assert {f.name for f in findings} == names
    assert all(f.skipped and f.ok and ("no restore time measured" in f.message or "no boot time measured" in f.message)
               for f in first)
    assert not next(f for f in measured if f.drill == DRILL).skipped
    assert next(f for f in failed if f.drill == DRILL).skipped


def test_a_skipped_regression_case_is_a_junit_skip_in_the_drill_report():
    import xml.etree.ElementTree as ET
    from datetime import datetime, timezone
    from restoredrill.report import history as hist
    from restoredrill.report.drill_report import build_drill_report
    from restoredrill.report.model import RunReport
    run = RunReport("run-1", "site", datetime(2026, 3, 1, tzinfo=timezone.utc))
    finding = hist.Finding("regression", "guest:app-vm", "rto:guest:app-vm:boot", True, "no boot time measured",
                           skipped=True)
    root = ET.fromstring(build_drill_report(run, [finding]).encode())
    case = next(c for c in root.iter("testcase") if c.get("name") == "rto:guest:app-vm:boot")
    assert case.find("skipped") is not None and case.find("failure") is None


def test_the_run_summary_shows_the_failure_not_the_xdist_worker_header():
    from restoredrill.report.summary import _first_line
    report = SimpleNamespace(longreprtext="[gw1] linux -- Python 3.11.7 /venv/bin/python3\n"
                                          "guest app-ct: restore into a scratch guest: HTTP 500")
    assert _first_line(report) == "guest app-ct: restore into a scratch guest: HTTP 500"


def test_a_one_process_run_leaves_xdist_out_and_a_run_with_workers_keeps_it(tmp_path):
    """pytest-xdist's plugin imports execnet (0.07 s a run, issue 26): only runs with workers load it."""
    from restoredrill.runner import RunRequest, pytest_args
    one = pytest_args(RunRequest(inventory=tmp_path / "inventory.yaml", kinds=["borg"]))
    two = pytest_args(RunRequest(inventory=tmp_path / "inventory.yaml", kinds=["borg"], workers=2))
    assert "no:xdist" in one and "no:debugging" in one
    assert "no:xdist" not in two and two[two.index("-n"):two.index("-n") + 4] == ["-n", "2", "--dist", "loadgroup"]
