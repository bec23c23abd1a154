"""The drills' API calls, in order, through the real clients (for the privileges table test).

``restore``: what ``fixtures/pbs_restore.py`` sends for one VM (preflight, restore with
the isolation plan, delete of host devices, start, status, agent, stop, destroy);
``pve-audit`` and ``pbs-audit``: what ``fixtures/pbs.py`` reads; ``offsite``: the PBS
download of ``fixtures/offsite.py``. A listing a privilege filters is checked for what
the drill needs in it, so a filtered answer fails here with the drill's own question.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from restoredrill.checks.isolation import parse_config_text, plan_isolation
from restoredrill.clients.pbs import PbsClient
from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint
from restoredrill.clients.pve import PveClient, ScratchGuard
from restoredrill.lab.proxmox import homelab

NODE, SCRATCH_VMID, VM, SCRATCH_CT, CT = homelab.PVE_NODE, 9950, 110, 9951, 120
GUARD = ScratchGuard(9900, 9999, "restoredrill", homelab.DRILL_POOL)


class FilteredOut(AssertionError):
    """A listing lacked what the drill needs from it."""


def pve_client(double, token) -> PveClient:
    return PveClient(ApiChokePoint(Endpoint(double.pve_url, token.authid, token.secret,
                                            double.fingerprint)), GUARD)


def pbs_client(double, token) -> PbsClient:
    return PbsClient(ApiChokePoint(Endpoint(double.pbs_url, token.authid, token.secret,
                                            double.pbs_fingerprint, service="PBS")),
                     namespaces={"offsite": homelab.OFFSITE_NAMESPACE})


def need(found, wanted, what: str) -> None:
    missing = set(wanted) - set(found)
    if missing:
        raise FilteredOut(f"{what}: {sorted(missing)} not listed")


def pve_audit(double, token) -> None:
    pve = pve_client(double, token)
    need({r["vmid"] for r in pve.resources("vm")}, {100, 110, 120}, "/cluster/resources guests")
    pve.not_backed_up()
    need({s["storage"] for s in pve.storages(NODE, "backup")}, {"pbs", "pbs-offsite"},
         "backup storages")
    for storage in ("pbs", "pbs-offsite"):
        need({b["vmid"] for b in pve.backups(NODE, storage)}, {110, 120}, f"backups on {storage}")
    pve.notification_targets()


def restore(double, token) -> None:
    pve = pve_client(double, token)
    pve.network_interface(NODE, homelab.ISOLATED_BRIDGE)
    backups = [b for b in pve.backups(NODE, "pbs", VM) if b.get("format") == "pbs-vm"]
    need({b["vmid"] for b in backups}, {VM}, "backups of the VM")
    newest = max((b for b in backups if b.get("size", 1) > 1), key=lambda b: b["ctime"])
    config = parse_config_text(pve.extract_config(NODE, newest["volid"]))
    plan = plan_isolation("qemu", config, bridge=homelab.ISOLATED_BRIDGE,
                          storage=homelab.SCRATCH_STORAGE, pool=homelab.DRILL_POOL,
                          tag="restoredrill", run_id="privileges", name="app-vm",
                          expires=datetime.now(timezone.utc) + timedelta(hours=1))
    deadline = time.monotonic() + 120
    upid = pve.restore(NODE, "qemu", SCRATCH_VMID, newest["volid"], homelab.SCRATCH_STORAGE,
                       plan.create)
    pve.wait_task(NODE, upid, deadline=deadline, what="restore")
    if plan.delete:
        pve.update_config(NODE, "qemu", SCRATCH_VMID, delete=",".join(plan.delete))
    pve.config(NODE, "qemu", SCRATCH_VMID)
    pve.wait_task(NODE, pve.power(NODE, "qemu", SCRATCH_VMID, "start"), deadline=deadline,
                  what="start")
    pve.status(NODE, "qemu", SCRATCH_VMID)
    agent(lambda: pve.agent_exec(NODE, SCRATCH_VMID, ["true"]))
    pve.wait_task(NODE, pve.power(NODE, "qemu", SCRATCH_VMID, "stop"), deadline=deadline,
                  what="stop")
    pve.wait_task(NODE, pve.destroy(NODE, "qemu", SCRATCH_VMID), deadline=deadline,
                  what="destroy")
    restore_container(pve, "pbs")
    restore_container(pve, "pbs-offsite")      # restore_from offsite (issue 23): the offsite copy's storage


def restore_container(pve: PveClient, storage: str) -> None:
    """The container drill's restore and destroy (a rootfs on the scratch storage), from the
    backups on ``storage``."""
    backups = [b for b in pve.backups(NODE, storage, CT) if b.get("format") == "pbs-ct"]
    need({b["vmid"] for b in backups}, {CT}, "backups of the container")
    newest = max((b for b in backups if b.get("size", 1) > 1), key=lambda b: b["ctime"])
    config = parse_config_text(pve.extract_config(NODE, newest["volid"]))
    plan = plan_isolation("lxc", config, bridge=homelab.ISOLATED_BRIDGE,
                          storage=homelab.SCRATCH_STORAGE, pool=homelab.DRILL_POOL,
                          tag="restoredrill", run_id="privileges", name="app-ct",
                          expires=datetime.now(timezone.utc) + timedelta(hours=1))
    deadline = time.monotonic() + 120
    pve.wait_task(NODE, pve.restore(NODE, "lxc", SCRATCH_CT, newest["volid"],
                                    homelab.SCRATCH_STORAGE, plan.create),
                  deadline=deadline, what="restore")
    pve.wait_task(NODE, pve.destroy(NODE, "lxc", SCRATCH_CT), deadline=deadline, what="destroy")


def agent(send) -> None:
    """An agent call: the lab's state-only guests have no agent (500 after the privilege
    check passed); a 403 is what the table is about."""
    try:
        send()
    except ApiError as exc:
        if exc.status != 500:
            raise


def pbs_audit(double, token) -> None:
    """The prune dry-run only for a token that may (the audit token; Datastore.Modify)."""
    pbs = pbs_client(double, token)
    for store in ("local", "offsite"):
        pbs.datastore_status(store)
        need({s["backup-id"] for s in pbs.snapshots(store)}, {"110", "120"}, f"snapshots of {store}")
    if token.authid == homelab.PBS_AUDIT_TOKEN:
        pbs.prune_dry_run("local", "vm", "110", {"keep-last": 2})
    for kind in ("verify", "prune", "gc"):
        need({j.get("store") for j in pbs.jobs(kind)}, {"local", "offsite"}, f"{kind} jobs")
    need({j.get("id") for j in pbs.jobs("sync")}, {"offsite-pull"}, "sync jobs")
    pbs.notification_targets()


def offsite(double, token) -> None:
    pbs = pbs_client(double, token)
    newest = max(pbs.snapshots("local", backup_type="vm", backup_id="110"),
                 key=lambda s: s["backup-time"])
    pbs.download("local", "vm", "110", newest["backup-time"], "index.json.blob")


WALKS = {("pve", "restore"): restore, ("pve", "audit"): pve_audit, ("pbs", "audit"): pbs_audit,
         ("pbs", "offsite"): offsite}


def clean_up(double) -> None:
    """Remove the scratch guest a failed walk left (admin token)."""
    admin = pve_client(double, double.pve_admin)
    if admin.exists(SCRATCH_CT):
        admin.wait_task(NODE, admin.api.call("delete", f"/nodes/{NODE}/lxc/{SCRATCH_CT}",
                                             purge=1, force=1), deadline=60, what="cleanup")
    if admin.exists(SCRATCH_VMID):
        status = admin.status(NODE, "qemu", SCRATCH_VMID).get("status")
        if status == "running":
            admin.wait_task(NODE, admin.api.call(
                "post", f"/nodes/{NODE}/qemu/{SCRATCH_VMID}/status/stop"), deadline=60, what="x")
        admin.wait_task(NODE, admin.api.call("delete", f"/nodes/{NODE}/qemu/{SCRATCH_VMID}",
                                             purge=1), deadline=60, what="cleanup")
