"""The PBS client's prune can only be a dry run: ``dry-run=1`` is set last and nothing in
the keep options may reach the call but keep options.

Against the Proxmox double with the audit token, which (like the real one) holds
Datastore.Modify because PBS demands it even for a dry run: a ``dry-run: 0`` that got
through would really remove snapshots.
"""
from __future__ import annotations

import pytest

from restoredrill.clients.pbs import PbsClient, prune_dry_run_params
from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint
from restoredrill.lab.proxmox import ProxmoxDouble, homelab

pytestmark = pytest.mark.integration
STORE, GROUP = "offsite", ("vm", "110")


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("prune")) as running:
        yield running


@pytest.fixture(scope="module")
def client(double) -> PbsClient:
    token = double.pbs_audit_token
    return PbsClient(ApiChokePoint(Endpoint(double.pbs_url, token.token_id, token.secret(),
                                            double.pbs_fingerprint, service="PBS")),
                     namespaces={STORE: homelab.OFFSITE_NAMESPACE})     # where the lab's offsite copies are


def snapshot_count(client: PbsClient) -> int:
    return len(client.snapshots(STORE, backup_type=GROUP[0], backup_id=GROUP[1]))


@pytest.mark.parametrize("sneaked", [{"dry-run": 0}, {"dry_run": "no"}, {"use-task": 1}, {"backup-id": "120"},
                                     {"ns": "other"}])
def test_the_builder_refuses_anything_but_keep_options(sneaked):
    with pytest.raises(ApiError, match="not a PBS keep option"):
        prune_dry_run_params("vm", "110", {"keep-daily": 1, **sneaked})


def test_the_builder_sets_dry_run_last():
    params = prune_dry_run_params("vm", "110", {"keep_daily": 3, "keep-monthly": 2, "keep-yearly": 0}, ns="site")
    assert params == {"backup-type": "vm", "backup-id": "110", "keep-daily": 3, "keep-monthly": 2, "ns": "site",
                      "dry-run": 1}
    assert list(params)[-1] == "dry-run"


@pytest.mark.parametrize("sneaked", [{"dry-run": "0"}, {"dry_run": "false"}])   # PVE booleans: 0/false/no/off
def test_a_keep_option_cannot_turn_the_dry_run_into_a_prune(client, sneaked):
    before = snapshot_count(client)
    assert before > 1
    with pytest.raises(ApiError, match="refusing to send it"):
        client.prune_dry_run(STORE, *GROUP, {"keep-last": 1, **sneaked})
    assert snapshot_count(client) == before, "the prune removed snapshots"


def test_the_dry_run_answers_and_removes_nothing(client):
    before = snapshot_count(client)
    answer = client.prune_dry_run(STORE, *GROUP, {"keep_last": 1})
    assert len(answer) == before and sum(1 for item in answer if item["keep"]) == 1
    assert snapshot_count(client) == before
