"""``restoredrill lab`` and ``restoredrill lab serve``."""
from __future__ import annotations

import signal
import sys
import tempfile
import threading
from pathlib import Path

from restoredrill.runner import EXIT_FAILED, RunRequest, run_drills


def _build(root: Path):
    from restoredrill.lab.site import Lab, LabError
    try:
        return Lab(root).__enter__()
    except LabError as exc:
        print(f"restoredrill lab: {exc}", file=sys.stderr)
        return None


def run_lab(out: Path, kinds: list[str], keep: bool = False, versions: dict[str, str] | None = None) -> int:
    """Build a throwaway lab, run the drills against it, write reports to out, tear it down."""
    from restoredrill.lab.site import Lab
    root = Path(tempfile.mkdtemp(prefix="restoredrill-lab-"))
    print(f"restoredrill lab: building the lab in {root} ...", flush=True)
    lab = Lab(root, versions)
    try:
        with lab:
            print(f"restoredrill lab: ready in {lab.timings['total']:.1f} s "
                  f"({lab.facts.get('archives_kept')} archives per repository after prune); running drills",
                  flush=True)
            out.mkdir(parents=True, exist_ok=True)
            # the lab's own state folder beside its reports: a second `restoredrill lab` shows trends
            code = run_drills(RunRequest(inventory=lab.inventory_path, kinds=kinds, out_dir=out,
                                         state_dir=out / "state"))
    finally:
        if keep:
            print(f"restoredrill lab: kept {root}", file=sys.stderr)
        else:
            lab.remove()
            root.rmdir() if root.exists() and not any(root.iterdir()) else None
    print(f"restoredrill lab: reports in {out} (junit.xml); exit {code}")
    return code


def serve(directory: Path, versions: dict[str, str] | None = None) -> int:
    """Build the lab in directory, print READY, keep it up until SIGINT/SIGTERM."""
    from restoredrill.lab.site import Lab, LabError
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        lab = Lab(directory, versions)
    except LabError as exc:
        print(f"restoredrill lab serve: {exc}", file=sys.stderr)
        return 2
    try:
        with lab:
            print(f"READY {lab.endpoints_path}", flush=True)
            while not stop.wait(0.5):
                pass
    except Exception as exc:  # noqa: BLE001 - report, clean up, exit 1
        print(f"restoredrill lab serve: the lab could not be built: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        lab.remove()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
