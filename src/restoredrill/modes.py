"""The three ways the harness runs (``restoredrill run --mode scheduled|gate|monthly``).

- ``gate``: fast audits only, for CI: no extract, no restore, no ``borg check``, no chunk sample.
- ``scheduled``: every audit, plus the restore cases of the targets a rotation picks under
  ``scratch.budgets.max_run_time`` (least recently restore-tested first), so each target is
  restore-tested within ``reports.max_untested_days``.
- ``monthly``: the manual disaster-recovery drill: a plan in dependency order, confirmed step
  by step (or ``--yes``), every drill, then ``OUT/runbook.md`` and ``OUT/evidence/``.

The choice of cases is pure (:mod:`restoredrill.plan`); this module is also the small pytest
plugin (``-p restoredrill.modes``: ``--restore-targets``, ``--leave-out``) that deselects the
cases a mode leaves out, passed as arguments so pytest-xdist workers apply it too.
(PYTEST_DONT_REWRITE: the CLI has imported this module before pytest loads it as a plugin.)
"""
from __future__ import annotations

import fnmatch
import json
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from restoredrill.plan import (PlanError, RestoreTarget, Rotation, expected_restore_seconds,
                               plan_restore_rotation)
from restoredrill.runner import EXIT_USAGE, RunRequest, run_drills
from restoredrill.state import DEFAULT_STATE_DIR, StateStore

MODES = ("scheduled", "gate", "monthly")
# file::function patterns of the cases the gate leaves out (they read data or restore)
GATE_LEAVES_OUT = ("test_borg.py::test_restore", "test_borg.py::test_check", "test_pbs_restore*.py::*",
                   "test_offsite.py::test_s3_chunk_sample", "test_offsite_site_loss.py::*")
GATE_K_EXPRESSION = "not test_restore and not test_health and not test_check and not test_s3_chunk_sample"
DEFAULT_RESTORE_SECONDS = 900.0     # a target never restore-tested is budgeted at 15 minutes
ROTATION_SCOPE, ROTATION_KEY = "mode:scheduled", "last_restore_tested"


# --- which case is which ----------------------------------------------------------------

def case_key(file_name: str, function: str) -> str:
    return f"{file_name}::{function}"


def restore_target_of_case(file_name: str, function: str, target: str | None) -> str | None:
    """``borg:REPO`` for ``test_borg.py::test_restore[REPO-...]``, ``guest:NAME`` for every case
    of ``test_pbs_restore.py``; None for an audit."""
    if target is None:
        return None
    if fnmatch.fnmatch(file_name, "test_borg*.py") and function == "test_restore":
        return target
    if fnmatch.fnmatch(file_name, "test_pbs_restore*.py"):
        return target
    return None


def restore_target_of_item(item) -> str | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    name = None
    if params.get("borg_repo") is not None:
        name = f"borg:{params['borg_repo'].name}"
    elif params.get("pbs_guest") is not None:
        name = f"guest:{params['pbs_guest'].name}"
    return restore_target_of_case(item.path.name, getattr(item, "originalname", item.name), name)


def restore_target_of_row(drill: str, nodeid: str) -> str | None:
    """The same question for a row of the state database (drill name and pytest node id)."""
    path, _, function = nodeid.partition("::")
    return restore_target_of_case(Path(path).name, function.split("[")[0], drill)


# --- the pytest side: options, loaded with ``-p restoredrill.modes`` (so xdist workers get them) --

PLUGIN = "restoredrill.modes"


def pytest_addoption(parser) -> None:
    group = parser.getgroup("restoredrill", "restoredrill drills")
    group.addoption("--restore-targets", default=None, metavar="T1,T2",
                    help="run the restore cases of these targets only (borg:REPO, guest:NAME; empty: none); "
                         "audits always run")
    group.addoption("--leave-out", action="append", default=[], metavar="FILE::FUNCTION",
                    help="deselect these drill functions (glob, e.g. test_borg.py::test_check)")


def pytest_collection_modifyitems(config, items) -> None:
    chosen = config.getoption("--restore-targets", None)
    targets = None if chosen is None else {name for name in chosen.split(",") if name}
    leave_out = tuple(config.getoption("--leave-out", None) or ())
    dropped = [item for item in items if not case_wanted(item, leave_out, targets)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if case_wanted(item, leave_out, targets)]


def case_wanted(item, leave_out: tuple[str, ...], targets: set[str] | None) -> bool:
    key = case_key(item.path.name, getattr(item, "originalname", item.name))
    if any(fnmatch.fnmatch(key, pattern) for pattern in leave_out):
        return False
    target = restore_target_of_item(item)
    return target is None or targets is None or target in targets


def selection_args(leave_out: tuple[str, ...] = (), restore_targets: list[str] | None = None) -> list[str]:
    args = ["-p", PLUGIN] + [f"--leave-out={pattern}" for pattern in leave_out]
    return args + ([] if restore_targets is None else [f"--restore-targets={','.join(restore_targets)}"])


class RestoreTracker:
    """Plugin object in the controlling process: which restore targets had a case run
    (xdist's controller sees every report, named by the workers)."""

    def __init__(self) -> None:
        self.ran_targets: set[str] = set()

    def pytest_runtest_logreport(self, report) -> None:
        drill = dict(report.user_properties).get("drill")
        target = restore_target_of_row(str(drill), report.nodeid) if drill else None
        if target and report.when == "call":
            self.ran_targets.add(target)


# --- gate ---------------------------------------------------------------------------------

def run_gate(request: RunRequest) -> int:
    print(f"restoredrill: gate: audits only (left out: {', '.join(GATE_LEAVES_OUT)})")
    return run_drills(replace(request, extra_args=selection_args(GATE_LEAVES_OUT) + request.extra_args))


# --- scheduled ----------------------------------------------------------------------------

def restore_target_names(inventory) -> list[str]:
    """Every restore target of the inventory, in inventory order (as the drills parametrize)."""
    names = [f"borg:{repo.name}" for repo in inventory.borg.repositories]
    if inventory.proxmox.pve:
        names += [f"guest:{guest.name}" for guest in inventory.guests if guest.strategy == "pbs"]
    return names


@dataclass
class PastRuns:
    last_tested: dict[str, datetime]
    totals: dict[str, list[float]]      # target -> restore seconds per run, oldest first
    audit_seconds: float                # audits of the newest recorded run


def read_past_runs(store: StateStore) -> PastRuns:
    """When each target was last restore-tested (the rotation's own record, else the results
    history) and how long its restore cases took per run (wall time of its cases)."""
    last = {name: parse_time(text) for name, text in store.get_json(ROTATION_SCOPE, ROTATION_KEY, {}).items()}
    per_run: dict[str, dict[str, float]] = {}
    audits: dict[str, float] = {}
    newest_run = None
    for row in store.results():
        evidence = json.loads(row["evidence"] or "{}")
        seconds = float(evidence.get("duration") or row["seconds"] or 0.0)
        target = restore_target_of_row(row["drill"], str(evidence.get("nodeid", "")))
        newest_run = row["run_id"]
        if target is None:
            audits[row["run_id"]] = audits.get(row["run_id"], 0.0) + seconds
            continue
        per_run.setdefault(target, {})
        per_run[target][row["run_id"]] = per_run[target].get(row["run_id"], 0.0) + seconds
        at = parse_time(row["recorded_at"])
        if target not in last or at > last[target]:
            last[target] = at
    totals = {target: list(runs.values()) for target, runs in per_run.items()}
    return PastRuns(last, totals, audits.get(newest_run, 0.0) if newest_run else 0.0)


def parse_time(text: str) -> datetime:
    stamp = datetime.fromisoformat(text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def plan_scheduled(inventory, past: PastRuns, now: datetime) -> Rotation:
    budget = inventory.scratch.budgets.max_run_time.total_seconds() - past.audit_seconds
    targets = [RestoreTarget(name, past.last_tested.get(name),
                             expected_restore_seconds(past.totals.get(name, []), DEFAULT_RESTORE_SECONDS))
               for name in restore_target_names(inventory)]
    return plan_restore_rotation(targets, budget_seconds=max(budget, 0.0), now=now,
                                 cover_days=inventory.reports.max_untested_days)


def rotation_lines(rotation: Rotation) -> list[str]:
    lines = [f"restoredrill: scheduled: every audit; restore-testing {len(rotation.chosen)} target(s) "
             f"(about {rotation.planned_seconds:.0f} s of a {rotation.budget_seconds:.0f} s restore budget): "
             f"{', '.join(rotation.chosen) or 'none'}"]
    if rotation.left_out:
        lines.append(f"restoredrill: scheduled: not this run (rotation): {', '.join(rotation.left_out)}")
    return lines + [f"restoredrill: NOTE {note}" for note in rotation.notes]


def run_scheduled(request: RunRequest, inventory) -> int:
    store = StateStore(request.state_dir or DEFAULT_STATE_DIR)
    now = datetime.now(timezone.utc)
    rotation = plan_scheduled(inventory, read_past_runs(store), now)
    for line in rotation_lines(rotation):
        print(line)
    tracker = RestoreTracker()
    code = run_drills(replace(request, extra_args=selection_args(restore_targets=list(rotation.chosen))
                              + request.extra_args, plugins=[*request.plugins, tracker]))
    if code != EXIT_USAGE and tracker.ran_targets:
        record = store.get_json(ROTATION_SCOPE, ROTATION_KEY, {})
        record.update({name: now.isoformat(timespec="seconds") for name in sorted(tracker.ran_targets)})
        store.put_json(ROTATION_SCOPE, ROTATION_KEY, record)
    return code


# --- dispatch -----------------------------------------------------------------------------

def run_in_mode(mode: str, request: RunRequest, loaded, *, yes: bool = False, stdin=None, stdout=None) -> int:
    """Entry point of ``restoredrill run --mode MODE`` (the inventory is already validated)."""
    if mode == "gate":
        return run_gate(request)
    if mode == "scheduled":
        return run_scheduled(request, loaded.model)
    if mode == "monthly":
        from restoredrill.runbook import run_monthly
        return run_monthly(request, loaded, yes=yes, stdin=stdin or sys.stdin, stdout=stdout or sys.stdout)
    raise PlanError(f"unknown mode {mode}; choose from {', '.join(MODES)}")

