"""PBS restore drills against the lab's Proxmox double with real guests: all pass with
RTO evidence, and each fault fails the right case naming guest, snapshot and cause,
leaving no scratch guest behind."""
from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from restoredrill.lab.proxmox.seed import SEED_GUESTS, build_rootfs, make_pxar
from restoredrill.lab.proxmox.homelab import GUEST_NODES
from restoredrill.lab.proxmox.testing import pve_api
from tests.conftest import blocked_by_preflight, only_these_failed, run_cli, without_dangling_references

pytestmark = pytest.mark.e2e
SELECT = ("--select", "pbs", "-k", "test_restore or test_health")


def case(run, name):
    assert name in run.cases, f"no case {name}: {sorted(run.cases)}\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}"
    return run.cases[name]


def guest_cases(run, guest: str) -> list[str]:
    """The restore case and every health case of one guest."""
    names = [n for n in run.cases if n == f"test_restore[{guest}]" or n.startswith(f"test_health[{guest}-")]
    assert len(names) > 1, f"no cases for guest {guest}: {sorted(run.cases)}"
    return names




def scratch_guests(lab) -> list[int]:
    admin = pve_api(lab.double, lab.double.admin_token)
    return [r["vmid"] for r in admin.cluster.resources.get(type="vm") if 9900 <= int(r["vmid"]) <= 9999]


def only_guest(inventory: dict, name: str) -> dict:
    inventory["guests"] = [g for g in inventory["guests"] if g["name"] in (name, "opnsense")]
    inventory["borg"]["repositories"] = []
    return inventory


def test_vm_and_ct_restore_and_pass_their_health_checks(drill, lab_inventory, lab):
    run = drill(lab_inventory, *SELECT)
    assert run.code == 0, run.stdout[-4000:]
    for guest in ("app-vm", "app-ct"):
        facts = case(run, f"test_restore[{guest}]")["properties"]
        assert facts["snapshot"].startswith(f"pbs:backup/{'vm/110' if guest == 'app-vm' else 'ct/120'}/")
        assert float(facts["restore_seconds"]) > 0 and float(facts["boot_to_reachable_seconds"]) > 0
        node = GUEST_NODES[110 if guest == "app-vm" else 120]       # not the first node (issue 13 point 4)
        assert facts["restore_node"] == node and node != "pve1"
        assert facts["restore_upid"].startswith(f"UPID:{node}:") and 9900 <= int(facts["scratch_vmid"]) <= 9999
        diff = json.loads(facts["config_diff"])
        assert any(change[0] == "net0" for change in diff["changed"])
    assert case(run, "test_health[app-vm-health-from-runner]")["outcome"] == "passed"
    assert case(run, "test_health[app-ct-webapp-running]")["outcome"] == "passed"
    assert scratch_guests(lab) == []


@pytest.mark.parametrize("fault,cause", [("fail_restore", "Input/output error"), ("fail_start", "start failed")])
def test_failing_restore_or_start_fails_the_drill_and_leaves_nothing(drill, lab_inventory, lab, fault, cause):
    handle = getattr(lab.double.faults, fault)(None)   # any scratch VMID
    try:
        run = drill(only_guest(lab_inventory, "app-vm"), *SELECT)
    finally:
        handle.clear()
    assert run.code == 1
    message = case(run, "test_restore[app-vm]")["message"]
    assert "guest app-vm" in message and cause in message
    left = scratch_guests(lab)
    if fault == "fail_restore":     # upstream leaves a failed VM restore behind, outside the drill pool
        assert left and f"qm destroy {left[0]} --purge" in message
        admin = pve_api(lab.double, lab.double.admin_token)
        node = next(r["node"] for r in admin.cluster.resources.get(type="vm") if r["vmid"] == left[0])
        admin.nodes(node).qemu(left[0]).delete(purge=1)
        deadline = time.monotonic() + 30
        while scratch_guests(lab) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert scratch_guests(lab) == []
    only_these_failed(run, *guest_cases(run, "app-vm"))     # no guest: each of its checks fails with it


def test_access_none_proves_the_restore_and_the_boot_and_still_fails_a_guest_that_does_not_start(
        drill, lab_inventory, lab):
    """A container at access none (what init drafts: a container has no guest agent): no check runs
    inside; PVE's status is the evidence of the boot. A start that fails still fails the case."""
    inventory = only_guest(lab_inventory, "app-ct")
    ct = next(g for g in inventory["guests"] if g["name"] == "app-ct")
    ct["access"], ct["health"] = "none", []
    run = drill(inventory, *SELECT)
    assert run.code == 0, run.stdout[-4000:]
    facts = case(run, "test_restore[app-ct]")["properties"]
    assert facts["access"] == "none" and facts["boot_proven_by"].startswith("PVE status running")
    assert not [n for n in run.cases if n.startswith("test_health[app-ct")]
    assert re.search(r"PASS  guest:app-ct +1/1 checks  \(restore and boot only: access none, no check inside\)",
                     run.stdout), run.stdout[-2000:]
    handle = lab.double.faults.fail_start(None)
    try:
        failed = drill(inventory, *SELECT)
    finally:
        handle.clear()
    assert failed.code == 1 and "start failed" in case(failed, "test_restore[app-ct]")["message"]
    assert scratch_guests(lab) == []


def test_silent_agent_fails_within_the_boot_timeout(drill, lab_inventory, lab):
    inventory = only_guest(lab_inventory, "app-vm")
    inventory["scratch"]["boot_timeout"] = "4s"
    handle = lab.double.faults.silent_agent()
    try:
        run = drill(inventory, *SELECT)
    finally:
        handle.clear()
    assert run.code == 1
    only_these_failed(run, *guest_cases(run, "app-vm"))
    message = case(run, "test_restore[app-vm]")["message"]
    assert "did not answer via agent" in message and "QEMU guest agent is not running" in message
    assert scratch_guests(lab) == []


def test_service_broken_in_the_restored_data(drill, lab_inventory, lab, tmp_path):
    """A newer CT backup whose app database lost its canary: it restores, but is not healthy."""
    guest = SEED_GUESTS[1]
    root = tmp_path / "root"
    build_rootfs(root, guest, lab.double.guest_access)
    conn = sqlite3.connect(root / "srv/app/app.sqlite")
    with conn:
        conn.execute("UPDATE canary SET value = 'lost'")
    conn.close()
    when = datetime.now(timezone.utc).replace(microsecond=0)
    store = lab.double.stores["local"]
    ref = store.writer("root@pam").write_snapshot(None, "ct", "120", when,
                                                  {guest.conf_blob: guest.config.encode(), **make_pxar(root, when)},
                                                  dynamic_avg_size=16 << 20)
    try:
        run = drill(only_guest(lab_inventory, "app-ct"), *SELECT)
    finally:
        import shutil
        shutil.rmtree(Path(lab.double.datastores["local"]) / ref.path, ignore_errors=True)
    assert run.code == 1
    only_these_failed(run, "test_health[app-ct-health-from-runner]")   # restore and the other checks green
    message = case(run, "test_health[app-ct-health-from-runner]")["message"]
    assert "guest app-ct" in message and "HTTP 500" in message and "damaged" in message
    assert f"ct/120/{when:%Y-%m-%dT%H:%M:%SZ}" in message
    assert scratch_guests(lab) == []


def test_no_snapshot_and_exhausted_range(drill, lab_inventory, lab):
    inventory = only_guest(lab_inventory, "app-vm")
    opnsense = next(g for g in inventory["guests"] if g["name"] == "opnsense")
    opnsense.update(strategy="pbs", exception=None, health=[], access="agent")
    run = drill(inventory, *SELECT)
    assert "no snapshot to restore" in case(run, "test_restore[opnsense]")["message"]
    only_these_failed(run, "test_restore[opnsense]")                  # app-vm in the same run stays green
    inventory = only_guest(lab_inventory, "app-vm")
    inventory["scratch"]["vmid_range"] = [110, 110]
    inventory["guests"] = [g for g in inventory["guests"] if g["vmid"] != 110] + \
        [dict(g, vmid=120, name="app-vm2") for g in inventory["guests"] if g["vmid"] == 110]
    run = drill(inventory, *SELECT)
    assert run.code in (1, 2)


@pytest.mark.parametrize("what", ["token", "fingerprint", "unreachable"])
def test_wrong_token_fingerprint_or_unreachable_pve(drill, lab_inventory, lab, tmp_path, what):
    inventory = only_guest(lab_inventory, "app-vm")
    pve = inventory["proxmox"]["pve"]
    if what == "token":
        wrong = tmp_path / "wrong-token"
        wrong.write_text("00000000-0000-0000-0000-000000000000\n")
        wrong.chmod(0o600)      # check-inventory refuses a secret others can read
        pve["token_secret"] = f"file:{wrong}"
        expected = "API token is wrong"
    elif what == "fingerprint":
        pve["fingerprint"] = ":".join(["AB"] * 32)
        expected = "fingerprint"
    else:
        pve["url"] = "https://127.0.0.1:1"
        expected = "unreachable"
    run = drill(inventory, "--no-preflight", *SELECT)
    assert run.code == 1
    only_these_failed(run, *guest_cases(run, "app-vm"))
    message = case(run, "test_restore[app-vm]")["message"]
    assert expected in message and "00000000-0000" not in message
    # with the preflight (the default): one failure naming the cause, every case of the guest blocked
    preflight = drill(inventory, *SELECT)
    cause = {"token": "rejected (HTTP 401)", "fingerprint": "the inventory pins " + pve["fingerprint"],
             "unreachable": "connection refused"}[what]
    message = blocked_by_preflight(preflight, "pve", guest_cases(preflight, "app-vm"), cause)
    assert "00000000-0000" not in message + preflight.stdout
    if what == "fingerprint":      # what the server presents, next to the pin and its expected form
        assert lab.double.fingerprint in message and "32 hex pairs joined by colons" in message
    assert scratch_guests(lab) == []


def test_killed_run_leaves_a_guest_that_the_next_reap_removes(lab_inventory, lab, tmp_path):
    import yaml
    inventory = only_guest(lab_inventory, "app-vm")
    inventory["scratch"]["expiry"] = "2s"
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(without_dangling_references(inventory)))
    proc = subprocess.Popen([sys.executable, "-m", "restoredrill.cli", "run", "--inventory", str(path), *SELECT,
                             "--state-dir", str(tmp_path / "state")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not scratch_guests(lab) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = scratch_guests(lab)
    assert left, f"the run ended (exit {proc.returncode}) or was killed before it restored anything"
    time.sleep(2.5)
    reap = run_cli("reap", "--inventory", str(path))
    assert reap.returncode == 0, reap.stderr
    assert f"{left[0]}" in reap.stdout and scratch_guests(lab) == []
