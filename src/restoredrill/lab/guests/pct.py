"""The lab node's ``pct``: what the forced command of the node's SSH runs after the
guard (contrib/restoredrill-pct-guard) let a request through.

    python -m restoredrill.lab.guests.pct --work DIR exec VMID -- CMD [ARGS...]
    python -m restoredrill.lab.guests.pct --work DIR status VMID
    python -m restoredrill.lab.guests.pct --work DIR stop VMID

It reads the running guest's ``state.json`` (written by ``NamespaceRuntime``) and
enters the guest's namespaces with ``nsenter``, as ``pct exec`` enters a container.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from restoredrill.lab.guests.sandbox import GUEST_ENV


def load_state(work: Path, vmid: str) -> dict | None:
    try:
        state = json.loads((work / vmid / "state.json").read_text())
    except (OSError, ValueError):
        return None
    pid = state.get("init_pid")
    return state if pid and Path(f"/proc/{pid}").exists() else None


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] != "--work":
        print("usage: pct --work DIR exec|status|stop VMID [-- CMD...]", file=sys.stderr)
        return 2
    work, action, vmid, rest = Path(argv[1]), argv[2], argv[3], argv[4:]
    state = load_state(work, vmid)
    if action == "status":
        print(f"status: {'running' if state else 'stopped'}")
        return 0
    if state is None or state.get("kind") != "lxc":
        print(f"CT {vmid} not running" if state is None else f"{vmid} is not a container", file=sys.stderr)
        return 1
    if action == "stop":
        os.kill(int(state["init_pid"]), signal.SIGTERM)
        return 0
    if action == "exec" and rest[:1] == ["--"] and len(rest) > 1:
        os.execvpe("nsenter", ["nsenter", "-t", str(state["init_pid"]), "-m", "-u", "-i", "-n", "-p", "-r",
                               "-w", "--", *rest[1:]], GUEST_ENV)
    print(f"pct: unsupported request {action}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
