"""PBS audits that need no restore: one case per guest, datastore, group, job and target.

inventory complete -> every guest backed up (or excepted, with its proof) -> newest
snapshot within the RPO -> verified, recently and ok -> retention holds (restoredrill's
PBS engine, and PBS's own prune answer agrees) -> datastore not full -> GC, verify,
prune and sync jobs ran OK -> notification targets exist -> Borg ran before PBS.
The logic is in ``restoredrill.checks.pbs_audit`` and ``.sequencing``; this file only
fetches, records evidence and fails.
"""
from __future__ import annotations

import fnmatch
import json
import re
from datetime import datetime, timezone

import pytest

from restoredrill import retention
from restoredrill.checks import pbs_audit as checks
from restoredrill.checks.sequencing import BorgRun, archive_before, check_sequencing
from restoredrill.clients.borg import BorgClient, parse_borg_time
from restoredrill.clients.proxmox_api import ApiError
from restoredrill.fixtures.borg import build_target
from restoredrill.fixtures.pbs import audit_step, rpo_for, server_zone

pytestmark = pytest.mark.drill_kind("pbs")


def conclude(verdict, evidence) -> None:
    """Record the verdict's facts; fail with its problems (expected / found / where)."""
    evidence(**{key: value for key, value in verdict.facts.items() if value is not None})
    if not verdict.ok:
        pytest.fail(verdict.message(), pytrace=False)


def group_name(store, guest) -> str:
    where = f"datastore {store.name}" + (f" (namespace {store.namespace})" if store.namespace else "")
    return f"{where}, guest {guest.name} ({checks.group_type(guest.type)}/{guest.vmid})"


def test_cluster_guests_inventoried(audit, audit_cluster, inventory, evidence):
    """Every guest in ``/cluster/resources`` is in the inventory (scratch guests excepted)."""
    evidence(drill="pve:cluster", check="inventoried")
    with audit_step("cluster"):
        resources = audit.resources()
    inv = inventory.model
    conclude(checks.check_cluster_inventoried(resources.values(), {g.vmid for g in inv.guests},
                                              inv.scratch.vmid_range,
                                              empty_ok=getattr(inv.proxmox.pve, "expect_empty", False)), evidence)


def test_guest_backed_up(audit, audit_guest, evidence):
    """A snapshot on a PBS storage and a backup job covering it, or an exception with its proof."""
    guest = audit_guest
    evidence(drill=f"guest:{guest.name}", check="backed-up", guest=guest.name)
    storages, backups, not_backed_up = [], [], set()
    with audit_step(f"guest {guest.name} (VMID {guest.vmid})"):
        resource = audit.resources().get(guest.vmid)
        if resource is not None and guest.strategy == "pbs":
            storages = audit.pbs_storages(resource["node"])
            backups = [b for storage in storages for b in audit.backups(resource["node"], storage)
                       if int(b.get("vmid", -1)) == guest.vmid]
            not_backed_up = audit.not_backed_up()
    conclude(checks.check_guest_coverage(guest, resource, backups, storages, not_backed_up), evidence)


def test_snapshot_fresh(audit, audit_group, inventory, evidence):
    """The group's newest snapshot is within the RPO (local: the guest's, offsite: the datastore's)."""
    store, guest = audit_group
    rpo_name, limit = rpo_for(inventory.model, store, guest)
    evidence(drill=f"pbs:{store.name}", check=f"fresh:{guest.name}", guest=guest.name, datastore=store.name)
    with audit_step(group_name(store, guest)):
        snapshots = audit.group(store.name, guest)
    conclude(checks.check_fresh(snapshots, now=datetime.now(timezone.utc), limit=limit,
                                where=group_name(store, guest), rpo_name=rpo_name), evidence)


def test_verified(audit, audit_group, evidence):
    """No failed verification; the newest one ok and within ``verify_max_age``."""
    store, guest = audit_group
    evidence(drill=f"pbs:{store.name}", check=f"verified:{guest.name}", guest=guest.name, datastore=store.name,
             verify_max_age_hours=store.verify_max_age.total_seconds() / 3600)
    with audit_step(group_name(store, guest)):
        snapshots = audit.group(store.name, guest)
    conclude(checks.check_verification(snapshots, now=datetime.now(timezone.utc), max_age=store.verify_max_age,
                                       where=group_name(store, guest)), evidence)


def retention_inputs(audit, inventory, store, guest):
    policy = retention.Policy.from_mapping(inventory.model.policies.retention[store.retention].options())
    snapshots = audit.group(store.name, guest)
    points = [retention.Point(time=s.time, name=s.name, protected=s.protected, unfinished=not s.finished)
              for s in snapshots]
    return policy, snapshots, points


def test_retention(audit, audit_group, inventory, evidence):
    """The snapshots present are what the policy promises, decided by the PBS engine in the
    server's zone (prune running, no missing periods)."""
    store, guest = audit_group
    zone = server_zone(inventory.model)
    _, limit = rpo_for(inventory.model, store, guest)
    evidence(drill=f"pbs:{store.name}", check=f"retention:{guest.name}", guest=guest.name, datastore=store.name,
             timezone=zone)
    now = datetime.now(timezone.utc)
    with audit_step(group_name(store, guest)):
        policy, _, points = retention_inputs(audit, inventory, store, guest)
        result = retention.audit(points, policy, "pbs", zone, now, rpo=limit, prune_grace=store.prune_max_age)
        decisions = retention.simulate("pbs", points, policy, zone)
    evidence(policy=policy.describe(), retention=result.summary(),
             points=json.dumps([{"time": d.point.time.isoformat(), "name": d.point.name, "keep": d.keep,
                                 "rule": d.rule, "rank": d.rank} for d in decisions]))
    if not result.ok:
        pytest.fail(f"{group_name(store, guest)}: retention {store.retention} ({policy.describe()}) does not "
                    f"hold: " + "; ".join(result.problems), pytrace=False)


def test_retention_matches_server(audit, audit_group, inventory, evidence):
    """PBS's own prune dry-run (with the policy of the server's prune jobs) keeps exactly what
    restoredrill's engine keeps with the inventory's policy: a policy or zone that differs
    from the server's fails here, naming the snapshots."""
    store, guest = audit_group
    zone = server_zone(inventory.model)
    where = group_name(store, guest)
    evidence(drill=f"pbs:{store.name}", check=f"retention-server:{guest.name}", guest=guest.name,
             datastore=store.name, timezone=zone)
    with audit_step(where):
        policy, snapshots, points = retention_inputs(audit, inventory, store, guest)
        decisions = retention.simulate("pbs", points, policy, zone)
        jobs = checks.server_prune_policies(audit.jobs("prune"), store.name, store.namespace)
        answers = dry_runs(audit, store, guest, jobs or [("inventory", policy.given())])
    inventory_keep = {k: v for k, v in policy.given().items() if k in checks.KEEP_OPTIONS}
    verdict = checks.compare_keep_sets({s.epoch: d.keep for s, d in zip(snapshots, decisions)}, answers,
                                       {s.epoch: s.name for s in snapshots}, where=where,
                                       empty_ok=getattr(store, "expect_empty", False))
    verdict.facts.update(inventory_policy=policy.describe(),
                         server_policy="; ".join(f"{job} {keep}" for job, keep in jobs) or "no prune job")
    if len(jobs) == 1:
        differences = checks.policy_differences(inventory_keep, jobs[0][1])
        if differences:
            verdict.problems.insert(0, f"{where}: expected the inventory's retention {store.retention} to be the "
                                       f"server's; found prune job {jobs[0][0]} differs: {', '.join(differences)}")
    conclude(verdict, evidence)


def dry_runs(audit, store, guest, policies) -> list[list[dict]]:
    answers = []
    for job, keep in policies:
        try:
            answers.append(audit.pbs.prune_dry_run(store.name, checks.group_type(guest.type), str(guest.vmid), keep))
        except ApiError as exc:
            if exc.status != 403:
                raise
            pytest.fail(f"{group_name(store, guest)}: PBS refused the prune dry-run ({exc}). PBS requires "
                        f"Datastore.Modify on /datastore/{store.name} (or Datastore.Prune and owning the group) "
                        f"even for --dry-run: grant it to the audit token to compare with the server", pytrace=False)
    return answers


def test_usage(audit, audit_datastore, evidence):
    """Used space against the quota (or the datastore's size) and ``max_usage``."""
    store = audit_datastore
    evidence(drill=f"pbs:{store.name}", check="usage", datastore=store.name)
    with audit_step(f"datastore {store.name}"):
        status = audit.status(store.name)
    conclude(checks.check_usage(status, store=store.name, quota=store.quota, max_usage=store.max_usage), evidence)


def test_job_ran(audit, audit_job, evidence):
    """GC, verify, prune and sync jobs of the datastore last ran OK within their period."""
    job = audit_job
    evidence(drill=f"pbs:{job.store.name}", check=f"job:{job.kind}", datastore=job.store.name,
             max_age_hours=job.max_age.total_seconds() / 3600)
    with audit_step(f"datastore {job.store.name}, {job.kind} jobs"):
        jobs = audit.jobs(job.kind)
    conclude(checks.check_jobs(jobs, kind=job.kind, store=job.store.name, max_age=job.max_age,
                               now=datetime.now(timezone.utc), wanted_id=job.job_id, ns=job.store.namespace),
             evidence)


def test_notification_target(audit, audit_target, inventory, evidence):
    """The target job failures are sent to exists (and is enabled) on PVE and on PBS."""
    name = audit_target
    inv = inventory.model
    evidence(drill="proxmox:notifications", check=f"target:{name}", target=name)
    answers = {}
    with audit_step(f"notification target {name}"):
        answers["PVE"] = audit.pve_targets() if inv.proxmox.pve else None
        answers["PBS"] = audit.pbs_targets() if inv.proxmox.pbs else None
    conclude(checks.check_notification_target(name, answers), evidence)


def test_borg_before_pbs(audit, audit_sequenced, inventory, state, evidence):
    """The guest's Borg archive ends before its newest PBS snapshot starts, within the window."""
    guest = audit_sequenced
    inv = inventory.model
    repo = next(r for r in inv.borg.repositories if r.name == guest.pre_backup_borg)
    where = f"guest {guest.name} (VMID {guest.vmid})"
    evidence(drill=f"guest:{guest.name}", check="sequencing", guest=guest.name, repository=repo.name)
    with audit_step(where):
        snapshots = [s for store in inv.proxmox.pbs.datastores for s in audit.group(store.name, guest) if s.finished]
    if not snapshots:
        pytest.fail(f"{where}: expected a PBS snapshot to compare with Borg repository {repo.name}; found none",
                    pytrace=False)
    newest = max(snapshots, key=lambda s: s.time)
    with audit_step(f"{where}, Borg repository {repo.name}"):
        client = BorgClient(build_target(inventory, repo, state.dir))
        archives = [BorgRun(a.name, a.start) for a in client.list_archives()
                    if not re.search(r"\.checkpoint(\.\d+)?$", a.name)
                    and (not repo.retention_glob or fnmatch.fnmatchcase(a.name, repo.retention_glob))]
        chosen = archive_before(archives, newest.time)
        if chosen is not None:
            end = parse_borg_time(client.archive_info(chosen.name)["end"])
            chosen = BorgRun(chosen.name, chosen.start, end)
    conclude(check_sequencing(chosen, snapshot=newest.name, snapshot_start=newest.time,
                              window=guest.sequencing_window, where=where, repository=repo.name), evidence)
