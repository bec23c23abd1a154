"""Shared test fixtures: ONE lab per test session (real borg, sshd, PostgreSQL).

Fault tests mutate copies or restore what they change, so the lab stays valid for
every test that comes after.
"""
from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml


def device_state() -> dict[str, str]:
    """Mode and kind of the host's shared device nodes: the lab's guests bind-mount them, and
    the tests run as root, so a bug that changed one would break every later process."""
    import os
    import stat as st
    state = {}
    for name in ("null", "zero", "urandom"):
        info = os.stat(f"/dev/{name}")
        state[name] = (f"{'char device' if st.S_ISCHR(info.st_mode) else 'not a char device'} "
                       f"mode {st.S_IMODE(info.st_mode):04o}")
    return state


HEALTHY_DEVICES = {name: "char device mode 0666" for name in ("null", "zero", "urandom")}


def pytest_sessionstart(session):
    broken = {k: v for k, v in device_state().items() if v != HEALTHY_DEVICES[k]}
    if broken:      # every sandboxed process would fail with "cannot create /dev/null" instead
        pytest.exit(f"this machine's device nodes are damaged before any test ran: {broken}; every test "
                    f"that starts a process would fail. Fix: `chmod 666 /dev/null /dev/zero /dev/urandom` "
                    f"(as root), then run the tests again", returncode=3)


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):
        return
    broken = {k: v for k, v in device_state().items() if v != HEALTHY_DEVICES[k]}
    if broken:      # the suite itself changed a host device: the worst bug a test can find
        print(f"\nERROR: the test session changed this machine's device nodes: {broken}", file=sys.stderr)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    from restoredrill.lab.site import Lab
    with Lab(tmp_path_factory.mktemp("lab") / "site") as built:
        yield built
    built.remove()


@dataclass
class DrillRun:
    code: int
    stdout: str
    stderr: str
    cases: dict[str, dict]          # test name -> {"outcome", "message", "properties"}

    def failed(self) -> dict[str, str]:
        return {name: case["message"] for name, case in self.cases.items() if not green(name, case)}


# The one skip a green run may hold: the monitoring drill's heartbeat case in a fresh state
# dir (every `drill` run has one) has no earlier push to check yet, and says so.
FIRST_RUN_SKIP = ("test_harness_heartbeat[kuma]", "no earlier run on record")


def green(name: str, case: dict) -> bool:
    return case["outcome"] == "passed" or (
        case["outcome"] == "skipped" and name == FIRST_RUN_SKIP[0] and FIRST_RUN_SKIP[1] in case["message"])


def parse_junit(path: Path) -> dict[str, dict]:
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = tag
                message = (node.get("message") or "") + "\n" + (node.text or "")
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        cases[case.get("name")] = {"outcome": outcome, "message": message, "properties": props}
    return cases


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "restoredrill.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def drill(tmp_path):
    """Run the drills on an inventory (optionally changed) with a fresh state dir; parse junit."""
    def run(inventory: dict | Path, *extra: str) -> DrillRun:
        if isinstance(inventory, dict):
            path = tmp_path / "inventory.yaml"
            path.write_text(yaml.safe_dump(without_dangling_references(inventory), sort_keys=False))
        else:
            path = inventory
        out = tmp_path / "out"
        shutil.rmtree(out, ignore_errors=True)
        proc = run_cli("run", "--inventory", str(path), "--out", str(out), "--state-dir",
                       str(tmp_path / "state"), *extra)
        junit = out / "junit.xml"
        cases = parse_junit(junit) if junit.exists() else {}
        return DrillRun(proc.returncode, proc.stdout, proc.stderr, cases)
    return run


def blocked_by_preflight(run: "DrillRun", key: str, blocked: list[str], cause: str) -> str:
    """The run's preflight failed endpoint ``key`` naming ``cause``: its one failing case is
    ``preflight[KEY]``, the ``blocked`` cases are skipped "blocked by preflight", nothing else
    failed, and the exit code is 1. Returns that failure's message."""
    name = f"preflight[{key}]"
    assert name in run.cases, f"no case {name}: {sorted(run.cases)}\n{run.stdout[-3000:]}"
    assert run.cases[name]["outcome"] == "failure" and cause in run.cases[name]["message"], run.cases[name]
    for case in blocked:
        assert run.cases[case]["outcome"] == "skipped", (case, run.cases[case])
        assert "blocked by preflight" in run.cases[case]["message"] and cause in run.cases[case]["message"]
    others = {n: c["outcome"] for n, c in run.cases.items() if n != name and n not in blocked and not green(n, c)}
    assert others == {} and run.code == 1, (others, run.code)
    assert f"preflight: FAIL  {key}" in run.stdout
    return run.cases[name]["message"]


def only_these_failed(run: "DrillRun", *names: str) -> None:
    """Each named case *failed* (a JUnit failure: the drill judged the backup or the guest, it
    did not crash) and every other case of the run passed."""
    for name in names:
        assert name in run.cases, f"no case {name}: {sorted(run.cases)}\n{run.stdout[-3000:]}"
        assert run.cases[name]["outcome"] == "failure", f"{name}: {run.cases[name]}"
    others = {n: c["outcome"] for n, c in run.cases.items() if n not in names and not green(n, c)}
    assert others == {}, f"other cases not green: {others}"


@pytest.fixture
def lab_inventory(lab):
    """A deep copy of the lab's inventory to change for one test."""
    return copy.deepcopy(lab.inventory_data())


def only_repo(inventory: dict, name: str) -> dict:
    inventory["borg"]["repositories"] = [r for r in inventory["borg"]["repositories"] if r["name"] == name]
    return without_dangling_references(inventory)


def without_dangling_references(inventory: dict) -> dict:
    """A lab inventory cut down to some repositories or guests, with the references to what was
    cut removed too: check-inventory refuses a name that names nothing (issue 22), and the lab
    inventory's datasets and Kuma data name every repository and datastore."""
    repos = {r["name"] for r in inventory.get("borg", {}).get("repositories", [])}
    stores = {s["name"] for s in ((inventory.get("proxmox") or {}).get("pbs") or {}).get("datastores", [])}
    guests = {g["name"] for g in inventory.get("guests", [])}
    known = {"borg": repos, "pbs": stores}
    for dataset in inventory.get("datasets", []):
        dataset["copies"] = [c for c in dataset["copies"] if c["where"].partition(":")[0] not in known
                             or c["where"].partition(":")[2] in known[c["where"].partition(":")[0]]]
    kuma = (inventory.get("monitoring") or {}).get("uptime_kuma") or {}
    if (kuma.get("data") or {}).get("borg") not in repos | {None}:
        kuma.pop("data")
    if kuma.get("runs_in") not in guests | {None}:
        kuma.pop("runs_in")
    for guest in inventory.get("guests", []):
        guest["depends_on"] = [name for name in guest.get("depends_on", []) if name in guests]
        if guest.get("pre_backup_borg") not in repos | {None}:
            guest.pop("pre_backup_borg")
    for section in ("s3", "storage_boxes"):
        for item in (inventory.get("offsite") or {}).get(section, []):
            item["requires"] = [name for name in item.get("requires", []) if name in guests]
    return inventory
