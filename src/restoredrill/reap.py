"""``restoredrill reap``: remove what killed runs left behind.

Today: Borg extract folders whose run is gone (in scratch.work_dir). Scratch guests
join when the Proxmox drills exist. Only things the harness made are touched.
"""
from __future__ import annotations

import tempfile
from pathlib import Path


def reap(loaded, state_dir: Path | None) -> int:
    from restoredrill.fixtures.borg import sweep_stale_extracts
    scratch = loaded.model.scratch
    work_dir = loaded.resolve_path(scratch.work_dir) if scratch.work_dir else Path(tempfile.gettempdir())
    removed = sweep_stale_extracts(work_dir) if work_dir.is_dir() else []
    for path in removed:
        print(f"removed stale extract {path}")
    print(f"reap: {len(removed)} stale extract folder(s) removed from {work_dir}; "
          f"scratch guests are not reaped by this version (no Proxmox drills yet)")
    return 0
