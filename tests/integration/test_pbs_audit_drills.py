"""The PBS audit drills against the Proxmox double: every case passes on the healthy
homelab, and each fault fails the right case naming guest, datastore, snapshot and cause.

One double per module (about 4 s to start); its weekly offsite verify job is run once
so the offsite store is verified as it would be in production. The drills run as a
separate pytest process, as ``restoredrill run --select pbs`` runs them, with an
inventory written for the double; JUnit XML is parsed. Server-side faults are undone
in ``finally`` so the double stays healthy for the next test.
"""
from __future__ import annotations

import copy
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from restoredrill.lab.borg_history import BorgBuilder, LabRepo
from restoredrill.lab.proxmox import ProxmoxDouble, homelab
from restoredrill.lab.proxmox.testing import pbs_api, wait_task
from restoredrill.secrets import write_private
from tests.conftest import DrillRun, parse_junit

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DRILLS = ROOT / "drills" / "test_pbs_audit.py"
INI = ROOT / "src" / "restoredrill" / "pytest-drills.ini"
GROUPS = [f"{store}:{guest}" for store in ("local", "offsite") for guest in ("app-vm", "app-ct")]


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("pbs-audit")) as running:
        task = running.pbs_jobs.run_and_wait("verify", "offsite-verify")   # the weekly job, run once
        assert task.exitstatus == "OK"
        yield running


@pytest.fixture(scope="module")
def audit_token(double):
    """A PBS token for the audits: the drill token's privileges plus Datastore.Modify, which
    PBS requires even for a prune dry-run."""
    return double.pbs_audit


def newest_snapshot(double, store: str, kind: str, ident: str):
    return max((i for i in double.stores[store].snapshot_infos(kind, ident) if i.finished),   # not a running backup
               key=lambda info: info.epoch)


@pytest.fixture(scope="module")
def media_repo(tmp_path_factory, double) -> LabRepo:
    """A Borg repository whose newest archive ends 45 min before app-ct's newest snapshot."""
    base = tmp_path_factory.mktemp("borg")
    secret = base / "passphrase"
    write_private(secret, "media-passphrase")
    repo = LabRepo("media", str(base / "repo"), secret)
    builder = BorgBuilder(base / "borg-home", "UTC")
    source = base / "source"
    (source / "app").mkdir(parents=True)
    (source / "app" / "photo.jpg").write_bytes(b"\xff\xd8 not really a photo")
    builder.init(repo)
    snapshot = newest_snapshot(double, "local", "ct", "120").backup_time
    for when in (snapshot - timedelta(days=1, minutes=45), snapshot - timedelta(minutes=45)):
        builder.create(repo, source, when)
    return repo


@pytest.fixture(scope="module")
def healthy(double, audit_token, media_repo) -> dict:
    """An inventory describing the double's homelab as it is."""
    usage_total = double.stores["local"].backend.usage()[0]
    store = {"quota": usage_total * 10, "max_usage": 0.9, "verify_max_age": "8d", "gc_max_age": "8d",
             "prune_max_age": "26h"}
    return {
        "version": 1,
        "site": {"name": "double", "timezone": "UTC"},
        "policies": {
            "retention": {"pbs-local": {"keep_last": 2},
                          "offsite": {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 2}},
            "rpo": {"daily": {"max_age": "25h", "grace": "1h"}, "offsite-sync": {"max_age": "25h", "grace": "3h"}}},
        "proxmox": {
            "pve": {"url": double.pve_url, "token_id": double.drill_token.token_id,
                    "token_secret": f"file:{double.drill_token.secret_file}", "fingerprint": double.fingerprint,
                    "nodes": [double.node]},
            "pbs": {"url": double.pbs_url, "token_id": audit_token.authid,
                    "token_secret": f"file:{audit_token.secret_file}", "fingerprint": double.pbs_fingerprint,
                    "timezone": double.zone,
                    "datastores": [
                        {"name": "local", "role": "local", "pve_storage": "pbs", "retention": "pbs-local",
                         "rpo": "daily", **store},
                        {"name": "offsite", "role": "offsite", "pve_storage": "pbs-offsite", "retention": "offsite",
                         "namespace": homelab.OFFSITE_NAMESPACE,
                         "rpo": "offsite-sync", "sync_job": "offsite-pull", "sync_max_age": "28h", **store}]}},
        "guests": [
            {"name": "opnsense", "vmid": 100, "type": "qemu", "strategy": "config-export",
             "exception": "a snapshot freezes the firewall and with it the network",
             "config_export": "opnsense-config"},
            {"name": "app-vm", "vmid": 110, "type": "qemu", "strategy": "pbs", "rpo": "daily"},
            {"name": "app-ct", "vmid": 120, "type": "lxc", "strategy": "pbs", "rpo": "daily", "access": "none",
             "pre_backup_borg": "media", "sequencing_window": "2h"}],
        "borg": {"repositories": [{"name": "media", "location": media_repo.location,
                                   "passphrase": f"file:{media_repo.passphrase_file}"}]},
        "offsite": {"storage_boxes": [{"name": "box", "host": "127.0.0.1", "user": "backup",
                                       "key_file": "/nonexistent/key", "known_hosts_file": "/nonexistent/known"}],
                    "config_exports": [{"name": "opnsense-config", "storage_box": "box",
                                        "path_glob": "opnsense/config-*.xml"}]},
        "notifications": {"pve_targets": ["mail-admin"]},
    }


def run_audit(inventory: dict, tmp_path: Path) -> DrillRun:
    """``pytest drills/test_pbs_audit.py --inventory X`` in its own process, as the runner does."""
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    junit = tmp_path / "junit.xml"
    junit.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pytest", str(DRILLS), "-c", str(INI), f"--rootdir={ROOT}",
                           f"--inventory={path}", f"--state-dir={tmp_path / 'state'}", f"--junitxml={junit}",
                           "-p", "no:cacheprovider", "-p", "restoredrill.fixtures.pbs",
                           "-W", "ignore::pytest.PytestAssertRewriteWarning", "-q", "-rfE"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    cases = parse_junit(junit) if junit.exists() else {}
    return DrillRun(proc.returncode, proc.stdout, proc.stderr, cases)


def case(run: DrillRun, name: str) -> dict:
    assert name in run.cases, f"no case {name}; cases: {sorted(run.cases)}\n{run.stdout[-3000:]}{run.stderr[-2000:]}"
    return run.cases[name]


def failure(run: DrillRun, name: str) -> str:
    found = case(run, name)
    assert found["outcome"] == "failure", f"{name} {found['outcome']}: {found['message'][:500]}"
    assert found["message"].startswith("Failed: "), f"{name} crashed instead of failing: {found['message'][:800]}"
    return found["message"]


def passed(run: DrillRun, *names: str) -> None:
    for name in names:
        found = case(run, name)
        assert found["outcome"] == "passed", f"{name}: {found['message'][:800]}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the healthy homelab --------------------------------------------------------------

def test_every_audit_passes_on_the_healthy_double_with_evidence(healthy, tmp_path):
    started = time.monotonic()
    run = run_audit(healthy, tmp_path)
    seconds = time.monotonic() - started
    assert run.code == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert run.failed() == {}
    expected = ["test_cluster_guests_inventoried[cluster]", "test_notification_target[mail-admin]",
                "test_borg_before_pbs[app-ct]", "test_usage[local]", "test_usage[offsite]",
                *[f"test_guest_backed_up[{g}]" for g in ("opnsense", "app-vm", "app-ct")],
                *[f"test_{c}[{g}]" for c in ("snapshot_fresh", "verified", "retention", "retention_matches_server")
                  for g in GROUPS],
                *[f"test_job_ran[{s}:{k}]" for s in ("local", "offsite") for k in ("gc", "verify", "prune")],
                "test_job_ran[offsite:sync]"]
    assert sorted(run.cases) == sorted(expected)
    firewall = case(run, "test_guest_backed_up[opnsense]")["properties"]
    assert firewall["drill"] == "guest:opnsense" and firewall["proof"].startswith("offsite:opnsense-config")
    assert "freezes the firewall" in firewall["exception"]
    fresh = case(run, "test_snapshot_fresh[offsite:app-ct]")["properties"]
    assert fresh["drill"] == "pbs:offsite" and fresh["snapshot"].startswith("ct/120/")
    assert fresh["rpo"] == "offsite-sync"
    verified = case(run, "test_verified[offsite:app-vm]")["properties"]
    assert verified["last_verify_state"] == "ok" and "verificationjob" in verified["last_verify_upid"]
    server = case(run, "test_retention_matches_server[offsite:app-vm]")["properties"]
    assert "offsite-retention" in server["server_policy"] and int(server["compared"]) > 0
    assert server["compared"] == server["engine_keeps"]
    assert case(run, "test_retention[local:app-ct]")["properties"]["timezone"] == "Europe/Berlin"
    sequencing = case(run, "test_borg_before_pbs[app-ct]")["properties"]
    assert sequencing["drill"] == "guest:app-ct" and float(sequencing["gap_minutes"]) == 45.0
    assert case(run, "test_job_ran[offsite:sync]")["properties"]["job"] == "offsite-pull"
    calls = sum(int(c["properties"]["api_calls"]) for c in run.cases.values())
    api_seconds = sum(float(c["properties"]["api_seconds"]) for c in run.cases.values())
    print(f"\naudit run: {len(run.cases)} cases, {calls} API calls, {api_seconds:.2f} s in the API, "
          f"{seconds:.2f} s wall (pytest process)")
    # once per answer: the backup listing once per node that holds an inventoried guest (3 in
    # the lab), /version once per API (PBS endpoints by release), the prune dry-runs
    assert calls <= 24, "each answer is fetched once per module"
    assert seconds < 30


# --- cannot reach or authenticate -----------------------------------------------------

def test_unreachable_servers_fail_every_case_naming_the_url(healthy, tmp_path):
    inventory = copy.deepcopy(healthy)
    pve_url, pbs_url = f"https://127.0.0.1:{closed_port()}", f"https://127.0.0.1:{closed_port()}"
    inventory["proxmox"]["pve"]["url"], inventory["proxmox"]["pbs"]["url"] = pve_url, pbs_url
    run = run_audit(inventory, tmp_path)
    assert run.code == 1 and run.cases
    assert all(c["outcome"] == "failure" for c in run.cases.values()), run.failed()
    message = failure(run, "test_guest_backed_up[app-vm]")
    assert "guest app-vm (VMID 110)" in message and f"{pve_url} is unreachable" in message
    message = failure(run, "test_snapshot_fresh[local:app-ct]")
    assert "datastore local, guest app-ct" in message and "PBS GET /admin/datastore/local/snapshots" in message
    assert f"{pbs_url} is unreachable" in message


def test_a_wrong_token_fails_saying_so(healthy, tmp_path):
    inventory = copy.deepcopy(healthy)
    wrong = tmp_path / "wrong-secret"
    write_private(wrong, "00000000-0000-4000-8000-000000000000")
    inventory["proxmox"]["pve"]["token_secret"] = inventory["proxmox"]["pbs"]["token_secret"] = f"file:{wrong}"
    run = run_audit(inventory, tmp_path)
    for name in ("test_cluster_guests_inventoried[cluster]", "test_job_ran[local:gc]"):
        message = failure(run, name)
        assert "HTTP 401" in message and "the API token is wrong" in message
    assert "00000000-0000-4000" not in run.stdout + run.stderr


def test_a_fingerprint_mismatch_fails_naming_the_url_and_never_sends_the_token(double, healthy, tmp_path,
                                                                                monkeypatch):
    seen: list[str] = []
    for registry in (double.pve_tokens, double.pbs_tokens):
        real = registry.authenticate
        monkeypatch.setattr(registry, "authenticate", lambda header, real=real: seen.append("token") or real(header))
    inventory = copy.deepcopy(healthy)
    inventory["proxmox"]["pve"]["fingerprint"] = double.pbs_fingerprint       # the other server's certificate
    inventory["proxmox"]["pbs"]["fingerprint"] = "ab:" * 31 + "ab"
    run = run_audit(inventory, tmp_path)
    assert seen == [], "a token reached a server that failed the pin"
    message = failure(run, "test_guest_backed_up[app-ct]")
    assert double.pve_url in message and "fingerprint" in message and "the token was not sent" in message
    message = failure(run, "test_usage[offsite]")
    assert double.pbs_url in message and "fingerprint" in message


# --- what the inventory and the cluster disagree on -------------------------------------

def test_inventory_and_cluster_mismatches_fail_naming_the_guests(healthy, double, tmp_path):
    inventory = copy.deepcopy(healthy)
    guests = inventory["guests"]
    guests[0] = {"name": "opnsense", "vmid": 100, "type": "qemu", "strategy": "pbs"}   # exception dropped
    guests[:] = [g for g in guests if g["vmid"] != 120]                                  # app-ct forgotten
    guests.append({"name": "old-nas", "vmid": 130, "type": "lxc", "strategy": "pbs", "access": "none"})  # gone from the cluster
    pbs = inventory["proxmox"]["pbs"]
    pbs["token_id"], pbs["token_secret"] = double.pbs_drill_token.token_id, f"file:{double.pbs_drill_token.secret_file}"
    run = run_audit(inventory, tmp_path)
    message = failure(run, "test_guest_backed_up[opnsense]")
    assert "guest opnsense (VMID 100)" in message and "found no snapshot at all" in message
    assert "not-backed-up" in message
    assert "lxc 120 (app-ct on pve3)" in failure(run, "test_cluster_guests_inventoried[cluster]")
    message = failure(run, "test_guest_backed_up[old-nas]")
    assert "guest old-nas (VMID 130)" in message and "found no such guest" in message
    assert "found no finished snapshot" in failure(run, "test_snapshot_fresh[local:old-nas]")
    message = failure(run, "test_retention_matches_server[local:app-vm]")          # read-only PBS token
    assert "HTTP 403" in message and "Datastore.Modify on /datastore/local" in message
    passed(run, "test_guest_backed_up[app-vm]", "test_snapshot_fresh[local:app-vm]", "test_verified[offsite:app-vm]",
           "test_notification_target[mail-admin]", "test_job_ran[offsite:sync]")


# --- thresholds: stale, sequencing, usage, policy, notification target --------------------

def test_thresholds_fail_the_right_cases(healthy, tmp_path):
    inventory = copy.deepcopy(healthy)
    policies = inventory["policies"]
    policies["rpo"]["minutes"] = {"max_age": "1m"}                   # every backup is older than that
    inventory["guests"][1]["rpo"] = "minutes"                       # app-vm (local uses the guest's RPO)
    inventory["guests"][2]["sequencing_window"] = "30m"             # Borg ended 45 min before
    offsite = inventory["proxmox"]["pbs"]["datastores"][1]
    offsite["sync_max_age"] = "1s"
    offsite["quota"] = 1024
    policies["retention"]["offsite"]["keep_monthly"] = 11           # the server prunes with 12
    inventory["notifications"]["pve_targets"] = ["mail-admin", "mail-ops"]
    run = run_audit(inventory, tmp_path)

    message = failure(run, "test_snapshot_fresh[local:app-vm]")
    assert "datastore local, guest app-vm (vm/110)" in message and "vm/110/" in message and "RPO minutes" in message
    assert "backups (or the sync feeding this datastore) have stopped" in message
    message = failure(run, "test_job_ran[offsite:sync]")
    assert "sync job offsite-pull (datastore offsite)" in message and "state OK" in message
    assert "last run ended" in message and "syncjob" in message
    message = failure(run, "test_borg_before_pbs[app-ct]")
    assert "guest app-ct (VMID 120)" in message and "at most 30 min" in message and "ct/120/" in message
    message = failure(run, "test_usage[offsite]")
    assert "datastore offsite" in message and "quota 1,024 bytes" in message
    message = failure(run, "test_retention_matches_server[offsite:app-ct]")
    assert "prune job offsite-retention differs: keep-monthly: inventory 11, server 12" in message
    assert "the server's prune keeps 1 snapshot(s) restoredrill's engine removes: ct/120/" in message
    message = failure(run, "test_notification_target[mail-ops]")
    assert "PVE: expected notification target mail-ops" in message and "PBS: expected" in message
    assert "mail-admin, mail-to-root" in message
    passed(run, "test_snapshot_fresh[offsite:app-vm]", "test_snapshot_fresh[local:app-ct]", "test_usage[local]",
           "test_retention_matches_server[local:app-ct]", "test_notification_target[mail-admin]",
           "test_job_ran[local:prune]")


# --- a damaged chunk found by verification ------------------------------------------------

def test_a_failed_verification_fails_naming_the_snapshot(double, healthy, tmp_path):
    snapshot = newest_snapshot(double, "local", "vm", "110")
    admin = pbs_api(double, double.pbs_admin_token)
    store = admin.admin.datastore("local")

    def verify() -> dict:
        upid = store.verify.post(**{"backup-type": "vm", "backup-id": "110", "backup-time": snapshot.epoch,
                                    "ignore-verified": 0})
        return wait_task(admin, "localhost", upid)

    fault = double.faults.damage_chunk("local", snapshot.ref)
    try:
        assert verify()["exitstatus"] != "OK"
        run = run_audit(healthy, tmp_path)
    finally:
        fault.clear()
        assert verify()["exitstatus"] == "OK"
    message = failure(run, "test_verified[local:app-vm]")
    assert f"snapshot vm/110/{snapshot.backup_time:%Y-%m-%dT%H:%M:%SZ} failed verification" in message
    assert "failed verification" in message and "datastore local, guest app-vm" in message
    passed(run, "test_verified[local:app-ct]", "test_verified[offsite:app-vm]", "test_snapshot_fresh[local:app-vm]")


def test_an_offsite_datastore_without_its_namespace_fails_not_passes(healthy, tmp_path):
    """The lab's offsite copies sit in namespace homelab (the sync job's ns): an inventory that
    leaves it out reads the empty root namespace, and every offsite case must say so."""
    inventory = copy.deepcopy(healthy)
    offsite = next(s for s in inventory["proxmox"]["pbs"]["datastores"] if s["name"] == "offsite")
    del offsite["namespace"]
    run = run_audit(inventory, tmp_path)
    assert "found no finished snapshot" in failure(run, "test_snapshot_fresh[offsite:app-vm]")
    assert "namespace root" in failure(run, "test_job_ran[offsite:prune]")
    assert case(run, "test_snapshot_fresh[local:app-vm]")["outcome"] == "passed"
