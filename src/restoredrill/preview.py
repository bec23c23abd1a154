"""``restoredrill run --plan`` (or ``--collect-only``): what a run would do, doing none of it.

The cases come from pytest's own collection with the same selection as the run (kinds, -k,
-m, --lf, the mode's deselection), so the list is exactly what would run. For each restore
target it says which point would be restored: the Borg archive (``borg list``, which reads
and takes the repository's shared lock for a moment, never the exclusive one) and the PBS
snapshot (PVE's backup list). Nothing is extracted or restored, no scratch guest is made, no
heartbeat, mail, metrics or report is written, and the history is not touched.
"""
from __future__ import annotations

import sys
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

from restoredrill.grouping import restore_targets, target_of_nodeid

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CollectedCases:
    """pytest plugin object: the node ids collection keeps (after every deselection)."""

    def __init__(self) -> None:
        self.nodeids: list[str] = []

    def pytest_collection_finish(self, session) -> None:
        self.nodeids = [item.nodeid for item in session.items]


def collect(loaded, kinds: list[str], state_dir: Path | None, extra: list[str]) -> tuple[int, list[str]]:
    import contextlib
    import io

    import pytest

    from restoredrill.runner import RunRequest, map_exit_code, pytest_args
    cases = CollectedCases()
    args = pytest_args(RunRequest(inventory=loaded.path, kinds=kinds, state_dir=state_dir, extra_args=extra))
    said = io.StringIO()
    with contextlib.redirect_stdout(said):       # pytest's own listing: the plan below replaces it
        status = int(pytest.main([*args, "--collect-only", "-q", "--no-notify"], plugins=[cases]))
    if status not in (0, 5):
        print(said.getvalue()[-3000:], file=sys.stderr)
        return map_exit_code(status), []
    return EXIT_OK, cases.nodeids


def mode_args(mode: str | None, loaded, state_dir: Path | None) -> list[str]:
    """The deselection the mode would add (gate: audits only; scheduled: its rotation today)."""
    from restoredrill import modes
    if mode == "gate":
        return modes.selection_args(modes.GATE_LEAVES_OUT)
    if mode == "scheduled":
        from restoredrill.state import DEFAULT_STATE_DIR, StateStore
        store = StateStore(state_dir or DEFAULT_STATE_DIR)
        rotation = modes.plan_scheduled(loaded.model, modes.read_past_runs(store), datetime.now(timezone.utc))
        for line in modes.rotation_lines(rotation):
            print(line)
        return modes.selection_args(restore_targets=list(rotation.chosen))
    return []


def borg_choice(loaded, name: str, state_dir: Path) -> str:
    from restoredrill.clients.borg import BorgClient
    from restoredrill.fixtures.borg import RepoDrill, build_target
    repo = next(r for r in loaded.model.borg.repositories if r.name == name)
    drill = RepoDrill(repo, BorgClient(build_target(loaded, repo, state_dir)), run_id="plan")
    chosen = drill.chosen
    how = repo.archive if repo.archive != "random" else "random: another one each run, e.g."
    return f"archive {chosen.name} ({how}, of {len(drill.archives)}, from {chosen.start:%Y-%m-%d %H:%M})"


def guest_choice(loaded, name: str) -> str:
    from restoredrill.fixtures.pbs_restore import backup_storage, pve_client_for, pve_node
    from restoredrill.plan import choose_snapshot
    guest = next(g for g in loaded.model.guests if g.name == name)
    pve = pve_client_for(loaded)
    node = pve.node_of(guest.vmid) or guest.node or pve_node(loaded.model)
    items = pve.backups(node, backup_storage(loaded.model), guest.vmid)
    snapshot = choose_snapshot(items, guest.snapshot, "plan", guest.pinned_snapshot, guest_type=guest.type)
    how = guest.snapshot if guest.snapshot != "random" else "random: another one each run, e.g."
    when = datetime.fromtimestamp(int(snapshot["ctime"]), tz=timezone.utc)
    return f"snapshot {snapshot['volid']} ({how}, from {when:%Y-%m-%d %H:%M} UTC)"


def choice(loaded, target: str, state_dir: Path) -> tuple[str, bool]:
    """What the target's restore would use, or why that cannot be told (then False)."""
    from restoredrill.cli import failure_line
    kind, _, name = target.partition(":")
    try:
        return (borg_choice(loaded, name, state_dir) if kind == "borg" else guest_choice(loaded, name)), True
    except Exception as exc:  # noqa: BLE001 - a plan line, never a traceback
        return f"cannot tell: {failure_line(exc)}", False


def show_plan(loaded, kinds: list[str], args, extra: list[str], out=None) -> int:
    out = out or sys.stdout
    from restoredrill.state import DEFAULT_STATE_DIR
    state_dir = Path(args.state_dir or DEFAULT_STATE_DIR).expanduser()
    code, nodeids = collect(loaded, kinds, args.state_dir, mode_args(args.mode, loaded, args.state_dir) + extra)
    if code != EXIT_OK:
        return code
    if not nodeids:
        print("restoredrill: no drill matched this selection: nothing would run", file=sys.stderr)
        return EXIT_USAGE
    targets = restore_targets(loaded.model)
    grouped: OrderedDict[str, list[str]] = OrderedDict()
    for nodeid in nodeids:
        grouped.setdefault(target_of_nodeid(nodeid, targets) or "", []).append(nodeid)
    print(f"restoredrill plan for {loaded.path}: {len(nodeids)} case(s); nothing is restored, sent or written",
          file=out)
    known = True
    for target, cases in grouped.items():
        if not target:
            continue
        line, ok = choice(loaded, target, state_dir)
        known = known and ok
        print(f"{target}: {len(cases)} case(s); restore: {line}", file=out)
        for nodeid in cases:
            print(f"    {nodeid}", file=out)
    audits = grouped.get("", [])
    if audits:
        print(f"audits: {len(audits)} case(s)", file=out)
        for nodeid in audits:
            print(f"    {nodeid}", file=out)
    return EXIT_OK if known else EXIT_FAILED
