"""``restoredrill reap``: remove what killed runs left behind.

Borg extract folders whose run is gone (in scratch.work_dir), and scratch guests that
carry the drill tag, lie in the scratch range, sit in the drill pool and whose expiry
(written into their description at restore) has passed — never a live run's guests.
Only things the harness made are touched; the PVE client's guard checks each call.
"""
from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path


def reap_scratch_guests(pve, node: str, now: datetime | None = None) -> list[int]:
    """Destroy expired scratch guests; returns their VMIDs. Each guest is handled on the node
    /cluster/resources names for it (its config, status, stop and destroy exist only there);
    ``node`` is used only for an item without one."""
    from restoredrill.checks.isolation import expiry_of
    from restoredrill.clients.pve import GuardError
    now = now or datetime.now(timezone.utc)
    guard = pve.guard
    removed, default_node = [], node
    for resource in pve.resources("vm"):
        vmid = int(resource.get("vmid", 0))
        if not guard.first <= vmid <= guard.last or resource.get("pool") != guard.pool:
            continue
        kind = resource.get("type", "qemu")
        node = str(resource.get("node") or default_node)
        config = pve.config(node, kind, vmid)
        expires = expiry_of(config.get("description"))
        if expires is None or expires > now:
            continue
        try:
            if pve.status(node, kind, vmid).get("status") == "running":
                pve.wait_task(node, pve.power(node, kind, vmid, "stop"), deadline=120, what=f"stop of {vmid}")
            pve.wait_task(node, pve.destroy(node, kind, vmid), deadline=300, what=f"destroy of {vmid}")
        except GuardError:
            continue          # not ours after all (no drill tag): never touched
        removed.append(vmid)
    return removed


def reap(loaded, state_dir: Path | None) -> int:
    from restoredrill.fixtures.borg import sweep_stale_extracts
    from restoredrill.fixtures.site_loss import WORK_PREFIX
    scratch = loaded.model.scratch
    work_dir = loaded.resolve_path(scratch.work_dir) if scratch.work_dir else Path(tempfile.gettempdir())
    removed = [*sweep_stale_extracts(work_dir), *sweep_stale_extracts(work_dir, prefix=WORK_PREFIX)] \
        if work_dir.is_dir() else []
    for path in removed:
        print(f"removed stale extract {path}")
    print(f"reap: {len(removed)} stale extract folder(s) removed from {work_dir}")
    if loaded.model.proxmox.pve is None:
        return 0
    from restoredrill.fixtures.pbs_restore import pve_client_for, pve_node
    pve = pve_client_for(loaded)
    guests = reap_scratch_guests(pve, pve_node(loaded.model))
    print(f"reap: {len(guests)} expired scratch guest(s) destroyed: {', '.join(map(str, guests)) or 'none'}")
    return 0
