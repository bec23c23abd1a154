"""The run modes as pure functions: the restore rotation over a simulated month, the gate's
deselection, the monthly recovery order (a cycle named), the runbook and the bundle manifest."""
from __future__ import annotations

import hashlib
import io
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from restoredrill.bundle import MANIFEST, render_manifest, verify_manifest
from restoredrill.modes import (GATE_LEAVES_OUT, case_wanted, restore_target_of_row, selection_args)
from restoredrill.plan import (PlanError, PlanGuest, RestoreTarget, expected_restore_seconds, guest_tier,
                               plan_recovery_order, plan_restore_rotation)
from restoredrill.runbook import JunitCase, RunbookStep, confirm_steps, render_runbook, step_measures

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)


# --- scheduled: the rotation ---------------------------------------------------------------

def simulate(durations: dict[str, float], budget: float, days: int, cover_days: int):
    """One run a day; a target's measured time varies by +-20 %. Returns when each was tested."""
    rng = random.Random(7)
    last: dict[str, datetime] = {}
    past: dict[str, list[float]] = {name: [] for name in durations}
    tested: dict[str, list[datetime]] = {name: [] for name in durations}
    for day in range(days):
        now = NOW + timedelta(days=day)
        targets = [RestoreTarget(name, last.get(name), expected_restore_seconds(past[name], 900.0))
                   for name in durations]
        rotation = plan_restore_rotation(targets, budget_seconds=budget, now=now, cover_days=cover_days)
        assert set(rotation.chosen) | set(rotation.left_out) == set(durations)
        assert rotation.chosen, "every run restore-tests at least one target"
        if len(rotation.chosen) > 1:
            assert rotation.planned_seconds <= budget
        for name in rotation.chosen:
            last[name] = now
            past[name].append(durations[name] * rng.uniform(0.8, 1.2))
            tested[name].append(now)
    return tested


def test_rotation_covers_every_target_within_n_days_over_a_month():
    durations = {f"borg:repo{i}": 60.0 * (i + 1) for i in range(5)}
    durations |= {f"guest:vm{i}": 400.0 + 150 * i for i in range(7)}      # 12 targets, about 2.4 h in all
    tested = simulate(durations, budget=1800.0, days=31, cover_days=7)
    for name, times in tested.items():
        gaps = [b - a for a, b in zip([NOW - timedelta(days=1)] + times, times + [NOW + timedelta(days=31)])]
        assert max(gaps) <= timedelta(days=7), (name, times)


def test_a_target_longer_than_the_budget_still_runs_alone_with_a_note():
    targets = [RestoreTarget("guest:big", NOW - timedelta(days=3), 5000.0),
               RestoreTarget("borg:small", NOW - timedelta(days=1), 10.0)]
    rotation = plan_restore_rotation(targets, budget_seconds=600.0, now=NOW, cover_days=7)
    assert rotation.chosen == ("guest:big",) and rotation.left_out == ("borg:small",)
    assert any("over the restore budget" in note for note in rotation.notes)


def test_never_tested_first_then_least_recent_and_a_budget_too_small_is_named():
    targets = [RestoreTarget("a", NOW - timedelta(days=2), 100), RestoreTarget("b", None, 100),
               RestoreTarget("c", NOW - timedelta(days=9), 100), RestoreTarget("d", NOW, 100)]
    rotation = plan_restore_rotation(targets, budget_seconds=200.0, now=NOW, cover_days=1)
    assert rotation.chosen == ("b", "c")
    assert any("raise scratch.budgets.max_run_time" in note for note in rotation.notes)


def test_expected_seconds_is_the_longest_of_the_last_three_or_the_default():
    assert expected_restore_seconds([], 900.0) == 900.0
    assert expected_restore_seconds([500, 10, 20, 30], 900.0) == 30


def test_state_rows_are_classified_by_drill_and_node_id():
    assert restore_target_of_row("borg:r", "drills/test_borg.py::test_restore[r-extract]") == "borg:r"
    assert restore_target_of_row("borg:r", "drills/test_borg.py::test_check[r]") is None
    assert restore_target_of_row("guest:vm", "drills/test_pbs_restore.py::test_health[vm-web]") == "guest:vm"
    assert restore_target_of_row("pbs:local", "drills/test_pbs_audit.py::test_verified[local:vm]") is None


# --- the pytest side: gate and rotation deselection ----------------------------------------

def item(file: str, function: str, **params):
    values = {key: SimpleNamespace(name=value) for key, value in params.items()}
    return SimpleNamespace(path=Path("drills") / file, originalname=function, name=function,
                           callspec=SimpleNamespace(params=values))


CASES = [item("test_borg.py", "test_fresh", borg_repo="r1"), item("test_borg.py", "test_check", borg_repo="r1"),
         item("test_borg.py", "test_restore", borg_repo="r1"), item("test_borg.py", "test_restore", borg_repo="r2"),
         item("test_pbs_restore.py", "test_restore", pbs_guest="vm"),
         item("test_pbs_restore.py", "test_health", pbs_guest="vm"),
         item("test_pbs_audit.py", "test_verified"), item("test_offsite.py", "test_s3_chunk_sample"),
         item("test_offsite.py", "test_s3_chunks_present"), item("test_lint.py", "test_strategies")]


def kept(leave_out=(), targets=None) -> list[str]:
    return [f"{c.path.name}::{c.originalname}[{','.join(p.name for p in c.callspec.params.values())}]"
            for c in CASES if case_wanted(c, tuple(leave_out), targets)]


def test_gate_keeps_only_fast_audits():
    assert kept(GATE_LEAVES_OUT) == ["test_borg.py::test_fresh[r1]", "test_pbs_audit.py::test_verified[]",
                                     "test_offsite.py::test_s3_chunks_present[]", "test_lint.py::test_strategies[]"]


def test_rotation_deselects_restore_cases_of_targets_not_chosen_and_keeps_every_audit():
    assert kept(targets={"borg:r2"}) == [
        "test_borg.py::test_fresh[r1]", "test_borg.py::test_check[r1]", "test_borg.py::test_restore[r2]",
        "test_pbs_audit.py::test_verified[]", "test_offsite.py::test_s3_chunk_sample[]",
        "test_offsite.py::test_s3_chunks_present[]", "test_lint.py::test_strategies[]"]
    assert len(kept(targets=None)) == len(CASES)


def test_selection_arguments_load_the_plugin_for_xdist_workers_too():
    assert selection_args(("a::b",), []) == ["-p", "restoredrill.modes", "--leave-out=a::b", "--restore-targets="]
    assert selection_args(restore_targets=["borg:x", "guest:y"])[-1] == "--restore-targets=borg:x,guest:y"


# --- monthly: the order --------------------------------------------------------------------

def test_tiers_from_strategy_names_and_ports():
    assert guest_tier("opnsense", "config-export") == "firewall"
    assert guest_tier("dns", "pbs") == "dns" and guest_tier("ns1", "pbs", ("53",)) == "dns"
    assert guest_tier("pbs", "none") == "pbs" and guest_tier("backup1", "none", pbs_host="backup1") == "pbs"
    assert guest_tier("photos", "pbs") == "application"


def test_order_is_firewall_dns_pbs_then_applications_by_dependency():
    guests = [PlanGuest("cloud", "pbs", ("opnsense", "dns", "db"), "application"),
              PlanGuest("photos", "pbs", (), "application"), PlanGuest("db", "pbs", ("dns",), "application"),
              PlanGuest("pbs", "none", ("opnsense",), "pbs"), PlanGuest("dns", "pbs", ("opnsense",), "dns"),
              PlanGuest("opnsense", "config-export", (), "firewall")]
    plan = plan_recovery_order(guests)
    assert [g.name for g in plan.order] == ["opnsense", "dns", "pbs", "photos", "db", "cloud"]
    assert plan.cycles == () and plan.notes == ()


def test_a_cycle_is_named_and_its_guests_follow_the_rest():
    guests = [PlanGuest("opnsense", "config-export", (), "firewall"),
              PlanGuest("app", "pbs", ("auth",), "application"), PlanGuest("auth", "pbs", ("ldap",), "application"),
              PlanGuest("ldap", "pbs", ("app",), "application"), PlanGuest("web", "pbs", ("ghost",), "application")]
    plan = plan_recovery_order(guests)
    assert plan.cycles == (("app", "auth", "ldap", "app"),)
    assert [g.name for g in plan.order] == ["opnsense", "web", "app", "auth", "ldap"]
    assert "dependency cycle: app -> auth -> ldap -> app" in "\n".join(plan.notes)
    assert "web depends on ghost, which is not in the inventory" in plan.notes


# --- runbook and bundle --------------------------------------------------------------------

def test_runbook_lists_the_steps_with_measured_times_and_failures():
    steps = [RunbookStep(1, "firewall", "firewall opnsense", "import the export", ("offsite:fw",)),
             RunbookStep(2, "application", "application app|vm", "restore 110", ("guest:app-vm",)),
             RunbookStep(3, "data", "data borg:r", "extract", ("borg:r",)),
             RunbookStep(4, "pbs", "pbs server", "reinstall", ("pbs:none",))]
    cases = [JunitCase("t", "offsite:fw", "parses", "passed", 0.5),
             JunitCase("t", "guest:app-vm", "restore", "passed", 3.0,
                       {"restore_seconds": "12.5", "boot_to_reachable_seconds": "20.25"}),
             JunitCase("t", "guest:app-vm", "web", "failed", 1.0),
             JunitCase("t", "borg:r", "extract", "passed", 2.0, {"seconds": "1.75"})]
    assert step_measures(steps[1], cases)["failed"] == ["guest:app-vm web"]
    text = render_runbook(steps, ["dependency cycle: a -> b -> a"], cases, site="home", started=NOW, verdict="fail")
    assert "| 2 | application app\\|vm | restore 110 | 12.5 | 20.2 | 4.0 | FAILED: guest:app-vm web |" in text
    assert "| 3 | data borg:r | extract | 1.8 | - | 2.0 | passed (1 checks) |" in text
    assert "| 4 | pbs server | reinstall | - | - | - | not drilled |" in text
    assert "- dependency cycle: a -> b -> a" in text and "(verdict: fail)" in text


def test_manifest_hashes_every_file_and_finds_changes(tmp_path):
    (tmp_path / "junit.xml").write_text("<testsuites/>")
    (tmp_path / "config-diffs").mkdir()
    (tmp_path / "config-diffs" / "guest_vm.json").write_text("{}\n")
    manifest = render_manifest(tmp_path)
    assert manifest.splitlines() == [
        "ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356  config-diffs/guest_vm.json",  # sha256sum
        f"{hashlib.sha256(b'<testsuites/>').hexdigest()}  junit.xml"]
    (tmp_path / MANIFEST).write_text(manifest)
    assert verify_manifest(tmp_path) == []
    (tmp_path / "junit.xml").write_text("<testsuites>changed</testsuites>")
    (tmp_path / "extra.txt").write_text("x")
    assert verify_manifest(tmp_path) == ["junit.xml: hash differs", "extra.txt: not in the manifest"]


@pytest.mark.parametrize("answers,expected", [("y\ny\n", True), ("a\n", True), ("y\nn\n", False), ("", False)])
def test_monthly_confirms_step_by_step_on_a_terminal(answers, expected):

    class Tty(io.StringIO):
        def isatty(self):
            return True
    steps = [RunbookStep(1, "firewall", "fw", "x", ()), RunbookStep(2, "data", "d", "y", ())]
    assert confirm_steps(steps, yes=False, stdin=Tty(answers), stdout=io.StringIO()) is expected


def test_monthly_without_a_terminal_and_without_yes_is_a_usage_error():
    with pytest.raises(PlanError, match="pass --yes"):
        confirm_steps([], yes=False, stdin=io.StringIO(""), stdout=io.StringIO())
    assert confirm_steps([], yes=True, stdin=io.StringIO(""), stdout=io.StringIO())
