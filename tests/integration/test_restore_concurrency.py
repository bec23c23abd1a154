"""Restore drills at once under the scratch budgets: the claim ledger in ``state.db``
never hands out one VMID twice and makes a drill wait (bounded) for budget; two
pytest-xdist workers restore two guests at the same time against one double (real
guests), each into its own scratch VMID; a VMID taken meanwhile by someone else is
retried on the next one."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from restoredrill.fixtures.pbs_restore import ScratchClaims, ScratchGuest, pve_client_for
from restoredrill.inventory import load_inventory
from restoredrill.lab.proxmox import ProxmoxDouble
from restoredrill.lab.proxmox.testing import pve_api, wait_task
from restoredrill.lab.proxmox_inventory import proxmox_inventory
from restoredrill.plan import PlanError
from restoredrill.runner import RunRequest, pytest_args
from restoredrill.scheduling import Budget, Demand
from restoredrill.state import StateStore
from tests.conftest import parse_junit

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
GIB = 1024 ** 3
SCRATCH = range(9900, 10000)


# --- the claim ledger alone (SQLite; threads stand in for xdist processes) ------------------
def ledger(tmp_path: Path, *, parallel: int = 8, memory_gib: int = 64, wait: float = 5.0) -> ScratchClaims:
    store = StateStore(tmp_path / "state")
    return ScratchClaims(store.path, Budget(parallel, memory_gib * GIB, 1000 * GIB), (9900, 9999),
                         stale_after=3600, wait=wait, poll=0.05)


def test_concurrent_claims_never_share_a_vmid(tmp_path):
    first = ledger(tmp_path)
    claimants = [first] + [ledger(tmp_path) for _ in range(7)]    # one connection each, one database
    barrier, got = threading.Barrier(8), []

    def claim(claims: ScratchClaims, number: int) -> None:
        barrier.wait()
        got.append(claims.claim(Demand(f"g{number}", GIB, GIB), lambda: {9900}, "run"))

    threads = [threading.Thread(target=claim, args=(c, n)) for n, c in enumerate(claimants)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(got) == list(range(9901, 9909))     # 9900 is in PVE already
    for vmid in got:
        first.release(vmid)
    assert first.held() == []


def test_a_claim_waits_for_memory_budget_until_released(tmp_path):
    claims = ledger(tmp_path, memory_gib=4)
    held = claims.claim(Demand("big", 3 * GIB, GIB), set, "run")
    threading.Timer(0.4, claims.release, args=(held,)).start()
    started = time.monotonic()
    second = claims.claim(Demand("small", 2 * GIB, GIB), set, "run")
    assert time.monotonic() - started >= 0.35
    assert second == 9900           # the released VMID is free again


def test_waiting_is_bounded_and_names_the_budget(tmp_path):
    claims = ledger(tmp_path, parallel=1, wait=0.3)
    claims.claim(Demand("first", GIB, GIB), set, "run")
    with pytest.raises(PlanError, match="second waited 0.3 s for the scratch budget: 1 scratch guest.*max_parallel"):
        claims.claim(Demand("second", GIB, GIB), set, "run")


def test_a_guest_bigger_than_the_whole_budget_fails_at_once(tmp_path):
    claims = ledger(tmp_path, memory_gib=2, wait=30)
    started = time.monotonic()
    with pytest.raises(PlanError, match="huge needs 3.0 GiB of memory.*max_memory"):
        claims.claim(Demand("huge", 3 * GIB, GIB), set, "run")
    assert time.monotonic() - started < 1


def test_claims_of_dead_processes_do_not_count(tmp_path):
    claims = ledger(tmp_path, parallel=1, wait=0.3)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import sqlite3
    with sqlite3.connect(claims.db_path) as conn:
        conn.execute("INSERT INTO scratch_claims VALUES (9900, 'killed', 1, 1, 'old', ?, ?, ?)",
                     (claims.host, dead.pid, time.time()))
    assert claims.claim(Demand("next", GIB, GIB), set, "run") == 9900
    assert claims.held() == [(9900, "next")]


# --- against one double with real guests -------------------------------------------------
@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("concurrency"), real_guests=True) as running:
        yield running


@pytest.fixture(scope="module")
def inventory_file(double, tmp_path_factory) -> Path:
    data = {"version": 1, "site": {"name": "concurrency", "timezone": "UTC"}, **proxmox_inventory(double)}
    data.pop("datasets")
    data["policies"]["rpo"]["daily"] = {"max_age": "25h", "grace": "1h"}
    data["guests"] = [g for g in data["guests"] if g["strategy"] == "pbs"]
    data["scratch"]["budgets"] = {"max_parallel": 2, "max_memory": "4GiB", "max_disk": "20GiB"}
    path = tmp_path_factory.mktemp("inventory") / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def scratch_vmids(double) -> list[int]:
    return sorted(vmid for vmid in double.pve_state.guests if vmid in SCRATCH)


class PeakScratchGuests:
    """Samples the double every 20 ms: the most scratch guests that existed at once."""

    def __init__(self, double):
        self.double, self.peak, self.stop = double, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, len(scratch_vmids(self.double)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def test_two_xdist_workers_restore_two_guests_at_once(double, inventory_file, tmp_path):
    state_dir = tmp_path / "state"
    junit = tmp_path / "junit.xml"
    args = pytest_args(RunRequest(inventory=inventory_file, kinds=["pbs"], junit=junit, state_dir=state_dir,
                                  workers=2, extra_args=["-k", "test_restore", "-p", "no:cacheprovider"]))
    assert args[args.index("-n"):args.index("-n") + 4] == ["-n", "2", "--dist", "loadgroup"]
    slow = [double.faults.slow_tasks(1.0, kind) for kind in ("qmrestore", "vzrestore")]   # restores overlap
    try:
        with PeakScratchGuests(double) as sampled:
            proc = subprocess.run([sys.executable, "-m", "pytest", *args], capture_output=True, text=True,
                                  cwd=ROOT, timeout=240, check=False)
    finally:
        for fault in slow:
            fault.clear()
    cases = parse_junit(junit) if junit.exists() else {}
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 workers" in proc.stdout or "gw1" in proc.stdout, proc.stdout[-2000:]
    restores = {name: case["properties"] for name, case in cases.items() if name.startswith("test_restore[")}
    assert sorted(restores) == ["test_restore[app-ct]", "test_restore[app-vm]"], (sorted(cases), proc.stdout[-3000:])
    vmids = {int(facts["scratch_vmid"]) for facts in restores.values()}
    assert len(vmids) == 2 and vmids <= set(SCRATCH)
    assert sampled.peak == 2, "the two restores did not overlap"
    assert scratch_vmids(double) == []
    claims = ScratchClaims(StateStore(state_dir).path, Budget(2, GIB, GIB), (9900, 9999), stale_after=3600, wait=0)
    assert claims.held() == []


def test_a_vmid_taken_meanwhile_is_retried_on_the_next(double, inventory_file, tmp_path):
    loaded = load_inventory(inventory_file)
    guest = next(g for g in loaded.model.guests if g.name == "app-ct")
    scratch = loaded.model.scratch
    claims = ScratchClaims(StateStore(tmp_path / "state").path, Budget.from_inventory(scratch.budgets),
                           tuple(scratch.vmid_range), stale_after=3600, wait=5)
    said: list[str] = []
    lifecycle = ScratchGuest(guest, loaded.model, pve_client_for(loaded), "retry-test", said.append, claims)
    admin = pve_api(double, double.admin_token)
    facts = lifecycle.preflight()
    planned = lifecycle.vmid
    try:
        # another runner (its own state folder) restores the VM into the same VMID first
        vm_backup = max((item for item in admin.nodes("pve1").storage("pbs").content.get(
            content="backup", vmid=110) if item.get("subtype") == "qemu" and item.get("size", 0) > 1),
            key=lambda item: item["ctime"])["volid"]        # ct/110 is listed too (issue 13 point 7)
        upid = admin.nodes("pve1").qemu.post(vmid=planned, archive=vm_backup, storage="local-zfs",
                                             pool=scratch.pool, tags=scratch.tag)
        assert wait_task(admin, "pve1", upid, timeout=60)["exitstatus"] == "OK"
        lifecycle.restore(facts["snapshot"], facts["config"])
        assert lifecycle.vmid != planned and lifecycle.evidence["scratch_vmid"] == lifecycle.vmid
        assert claims.held() == [(lifecycle.vmid, "app-ct")]
        assert any(f"{planned} was taken meanwhile" in line for line in said)
    finally:
        lifecycle.destroy()
        if planned in double.pve_state.guests:
            wait_task(admin, "pve1", admin.nodes("pve1").qemu(planned).delete(purge=1), timeout=60)
    assert claims.held() == []
    assert scratch_vmids(double) == []
