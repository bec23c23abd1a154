"""PBS restore drills: a chosen snapshot of each guest restored into an isolated scratch
guest, started, its services proven healthy, its restore and boot times measured (RTO),
then destroyed. One case for the restore, one per declared health check."""
from __future__ import annotations

import json

import pytest

from restoredrill.checks.health import run_check
from restoredrill.fixtures.common import drill_step

pytestmark = pytest.mark.drill_kind("pbs")


def test_restore(pbs_guest, scratch_guest, evidence):
    """Restore, isolate, start, reach: the evidence is the copy (local/offsite, its PVE storage,
    datastore and namespace), the snapshot, the UPIDs and the RTO of that copy."""
    if scratch_guest.not_run:
        evidence(drill=f"guest:{pbs_guest.name}", check="restore", guest=pbs_guest.name, **scratch_guest.evidence)
        pytest.skip(scratch_guest.not_run)
    if scratch_guest.failure:
        evidence(drill=f"guest:{pbs_guest.name}", check="restore", guest=pbs_guest.name,
                 **{k: v for k, v in scratch_guest.evidence.items() if k != "config_diff"})
        pytest.fail(scratch_guest.failure, pytrace=False)
    facts = dict(scratch_guest.evidence)
    facts["config_diff"] = json.dumps(facts.get("config_diff", {}))
    evidence(drill=f"guest:{pbs_guest.name}", check="restore", guest=pbs_guest.name, access=pbs_guest.access,
             upids=" ".join(scratch_guest.upids), **facts)


def test_health(pbs_guest, health_check, scratch_guest, inventory, evidence):
    evidence(drill=f"guest:{pbs_guest.name}", check=health_check.name, guest=pbs_guest.name,
             snapshot=scratch_guest.evidence.get("snapshot"), scratch_vmid=scratch_guest.vmid,
             copy=scratch_guest.copy.copy)
    if scratch_guest.not_run:
        pytest.skip(f"not checked: {scratch_guest.not_run}")
    if scratch_guest.failure:
        pytest.fail(f"not checked, the restore failed (see test_restore[{pbs_guest.name}]): "
                    f"{scratch_guest.failure}", pytrace=False)
    where = f"guest {pbs_guest.name} (scratch {scratch_guest.vmid}, snapshot {scratch_guest.evidence.get('snapshot')})"
    with drill_step(where):
        facts = run_check(scratch_guest.host, health_check, where=where,
                          runner_netns=inventory.model.scratch.runner_netns)
    evidence(**facts)
