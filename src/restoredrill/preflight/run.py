"""Which endpoints a run needs, probed together (threads: each probe mostly waits on the network)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from restoredrill.plan import KINDS
from restoredrill.preflight.model import Line
from restoredrill.preflight.services import (probe_borg, probe_kuma, probe_runner_netns, probe_s3, probe_smtp,
                                             probe_ssh)

Probe = Callable[[], Line]


def endpoints_for(loaded, kinds: Iterable[str] = KINDS) -> list[Probe]:
    """The probes of every endpoint the selected drill kinds use, in a stable order."""
    inv, kinds = loaded.model, set(kinds)
    probes: list[Probe] = []
    pbs_needed = bool(kinds & {"pbs", "offsite", "lint"})
    if "pbs" in kinds and inv.proxmox.pve:
        probes.append(lambda: probe_proxmox(loaded, "PVE"))
    if pbs_needed and inv.proxmox.pbs:
        probes.append(lambda: probe_proxmox(loaded, "PBS"))
    if "pbs" in kinds and inv.proxmox.pve and inv.proxmox.pve.node_ssh and any(
            g.access == "pct" for g in inv.guests):
        node_ssh = inv.proxmox.pve.node_ssh
        for node, endpoint in (node_ssh.items() if isinstance(node_ssh, dict) else [("*", node_ssh)]):
            probes.append(lambda node=node, endpoint=endpoint: probe_ssh(
                f"node:{node}", f"SSH to node {node} (pct exec)", endpoint, loaded))
    netns = inv.scratch.runner_netns
    if "pbs" in kinds and netns and any(by_address(guest) for guest in inv.guests):
        probes.append(lambda: probe_runner_netns(netns))
    if kinds & {"borg", "lint"}:
        probes += [lambda repo=repo: probe_borg(loaded, repo) for repo in inv.borg.repositories]
    if "offsite" in kinds:
        probes += [lambda target=target: probe_s3(loaded, target) for target in inv.offsite.s3]
        boxes = {export.storage_box for export in inv.offsite.config_exports}
        probes += [lambda box=box: probe_ssh(f"box:{box.name}", f"storage box {box.name}", box, loaded)
                   for box in inv.offsite.storage_boxes if box.name in boxes]
    if "monitoring" in kinds and inv.monitoring.uptime_kuma:
        probes.append(lambda: probe_kuma(loaded, inv.monitoring.uptime_kuma))
    if inv.notifications.smtp_host and inv.notifications.email_to:
        probes.append(lambda: probe_smtp(loaded, inv.notifications))
    return probes


def probe_proxmox(loaded, service: str) -> Line:
    """The PVE/PBS probe, imported on use: its API client (requests, urllib3) costs a Borg-only
    run about 0.1 s of imports (issue 26)."""
    from restoredrill.preflight.proxmox import probe_proxmox as probe
    return probe(loaded, service)


def by_address(guest) -> bool:
    """Checks that reach the scratch guest by its address, from the runner's namespace."""
    return guest.access == "ssh" or any(check.from_runner for check in guest.health)


def run_preflight(loaded, kinds: Iterable[str] = KINDS) -> list[Line]:
    probes = endpoints_for(loaded, kinds)
    if not probes:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(probes)), thread_name_prefix="preflight") as pool:
        return list(pool.map(lambda run: run(), probes))
