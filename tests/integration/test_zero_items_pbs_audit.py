"""The zero rule on the PBS audit drills, against the Proxmox double (issue 14, section 1):
a token that sees no guest fails the cluster inventory case, and a group whose snapshots
PBS's prune dry-run does not answer for (the offsite namespace left out) fails the server
retention comparison with ``compared`` 0, each saying that nothing was checked; a target
that declares ``expect_empty`` passes and says so in its evidence."""
from __future__ import annotations

import copy

import pytest

from restoredrill.lab.proxmox.permissions import acl
from tests.integration import test_pbs_audit_drills as audit_drills

pytestmark = pytest.mark.integration

# the fixtures of the PBS audit drill tests (one double for this module)
double, audit_token, media_repo, healthy = (audit_drills.double, audit_drills.audit_token,
                                            audit_drills.media_repo, audit_drills.healthy)
run_audit, case, failure = audit_drills.run_audit, audit_drills.case, audit_drills.failure

CLUSTER = "test_cluster_guests_inventoried[cluster]"
SERVER = "test_retention_matches_server[offsite:app-vm]"


def test_a_token_that_sees_no_guest_fails_the_cluster_case(double, healthy, tmp_path):
    token = double.pve_drill
    saved = list(token.acl)
    token.acl[:] = [acl("/", "Sys.Audit")]          # no VM.Audit: /cluster/resources lists no guest
    try:
        run = run_audit(healthy, tmp_path)
    finally:
        token.acl[:] = saved
    message = failure(run, CLUSTER)
    assert "cluster: expected something to check; found 0 guests." in message
    assert "Nothing was checked" in message and "VM.Audit" in message
    assert case(run, CLUSTER)["properties"]["checked_guests"] == "0"
    declared = copy.deepcopy(healthy)
    declared["proxmox"]["pve"]["expect_empty"] = True
    token.acl[:] = [acl("/", "Sys.Audit")]
    try:
        run = run_audit(declared, tmp_path)
    finally:
        token.acl[:] = saved
    properties = case(run, CLUSTER)["properties"]
    assert case(run, CLUSTER)["outcome"] == "passed"
    assert properties["expect_empty"] == "True" and properties["checked_guests"] == "0"


def test_a_server_retention_comparison_of_nothing_fails(healthy, tmp_path):
    inventory = copy.deepcopy(healthy)
    offsite = next(s for s in inventory["proxmox"]["pbs"]["datastores"] if s["name"] == "offsite")
    del offsite["namespace"]                        # the root namespace: no snapshot there
    run = run_audit(inventory, tmp_path)
    message = failure(run, SERVER)
    assert "found 0 snapshots compared." in message and "Nothing was checked" in message
    properties = case(run, SERVER)["properties"]
    assert properties["compared"] == "0" and properties["checked_snapshots_compared"] == "0"
    assert int(case(run, "test_retention_matches_server[local:app-vm]")["properties"]["compared"]) > 0
    offsite["expect_empty"] = True
    run = run_audit(inventory, tmp_path)
    assert case(run, SERVER)["outcome"] == "passed" and case(run, SERVER)["properties"]["expect_empty"] == "True"
