"""Runs by hand are safe (issue 21), against the lab:

- ``--workers N`` (1, 2, 4): every case of a guest on one worker, each guest restored exactly
  once: counted as restore tasks per source snapshot in the Proxmox double.
- Production signals: the scheduled run (``--mode scheduled``, every kind) pushes the heartbeat
  and writes ``reports.metrics_file``; a ``-k`` typo (exit 2), ``--select lint`` and a gate run
  leave both exactly as it left them; ``--notify`` opts a manual run in.
- pytest habits: a marker per kind (``-m``), ``--lf`` with its cache in the state folder.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
import urllib.request
from urllib.parse import urlencode, urlsplit

import pytest
import yaml

from restoredrill.clients.proxmox_api import ApiChokePoint
from restoredrill.fixtures.pbs_restore import pve_endpoint
from restoredrill.inventory import load_inventory
from tests.conftest import parse_junit
from tests.integration.test_notify_heartbeat import Receiver

pytestmark = pytest.mark.e2e
SNAPSHOT = re.compile(r"(vm|ct)/\d+/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def restores_per_snapshot(inventory: Path, since: int) -> Counter:
    """Restore tasks (qmrestore, vzrestore) started since ``since`` on every node, by the
    snapshot their log names (read through the PVE API, as a held-out check would)."""
    loaded = load_inventory(inventory)
    api = ApiChokePoint(pve_endpoint(loaded))
    counts: Counter = Counter()
    for node in loaded.model.proxmox.pve.nodes:
        for task in api.call("get", f"nodes/{node}/tasks", limit=0, since=since):
            if task.get("type") not in ("qmrestore", "vzrestore"):
                continue
            log = api.call("get", f"nodes/{node}/tasks/{task['upid']}/log", limit=0)
            found = SNAPSHOT.search("\n".join(str(line.get("t", "")) for line in log))
            counts[found.group(0) if found else f"unknown:{task['upid']}"] += 1
    return counts


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    out: Path

    @property
    def cases(self) -> dict:
        junit = self.out / "junit.xml"
        return parse_junit(junit) if junit.exists() else {}


def run(inventory: Path, folder: Path, *extra: str, env: dict | None = None, out: str = "out") -> Run:
    target = folder / out
    proc = subprocess.run([sys.executable, "-m", "restoredrill.cli", "run", "--inventory", str(inventory),
                           "--out", str(target), "--state-dir", str(folder / "state"), "--debug", *extra],
                          capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})})
    return Run(proc.returncode, proc.stdout, proc.stderr, target)


def write(data: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_each_guest_is_restored_once_whatever_the_workers(lab, lab_inventory, tmp_path, workers):
    lab_inventory["scratch"]["budgets"] = {"max_parallel": 4, "max_memory": "16GiB", "max_disk": "64GiB"}
    inventory = write(lab_inventory, tmp_path / "inventory.yaml")
    guests = [g["name"] for g in lab_inventory["guests"] if g.get("strategy") == "pbs"]
    since = int(time.time()) - 1
    done = run(inventory, tmp_path, "--select", "pbs", "--workers", str(workers), "--no-notify")
    assert done.code == 0, done.stdout[-4000:] + done.stderr[-2000:]
    if workers > 1:
        assert f"{workers} workers" in done.stdout, done.stdout[-2000:]
    restored = restores_per_snapshot(inventory, since)
    assert sum(restored.values()) == len(guests) and set(restored.values()) == {1}, restored
    restore_cases = {name for name in done.cases if name.startswith("test_restore[")}
    assert restore_cases == {f"test_restore[{guest}]" for guest in guests}
    assert all(case["outcome"] == "passed" for case in done.cases.values())


@pytest.fixture
def signalled(lab_inventory, tmp_path):
    """The lab's inventory with a metrics_file and its heartbeat sent to a local receiver under
    the path of the lab Kuma's push monitor (same token: the monitoring drill still finds it)."""
    kuma_url = Path(lab_inventory["notifications"]["heartbeat_url"].removeprefix("file:")).read_text().strip()
    with Receiver() as receiver:
        lab_inventory["notifications"] = {"heartbeat_url": "env:RESTOREDRILL_TEST_HEARTBEAT"}
        lab_inventory["reports"] = {**lab_inventory.get("reports", {}),
                                    "metrics_file": str(tmp_path / "textfile" / "restoredrill.prom")}
        (tmp_path / "textfile").mkdir()
        env = {"RESTOREDRILL_TEST_HEARTBEAT": receiver.base + urlsplit(kuma_url).path}
        yield (write(lab_inventory, tmp_path / "inventory.yaml"), receiver, env,
               tmp_path / "textfile" / "restoredrill.prom", kuma_url)


def relay(pings, kuma_url: str) -> None:
    """Hand the receiver's pushes on to the lab's Kuma, so its push monitor holds them as if the
    run had pushed there (the next run's monitoring drill checks that)."""
    origin = urlsplit(kuma_url)
    for ping in pings:
        query = urlencode(ping.query, doseq=True)
        with urllib.request.urlopen(f"{origin.scheme}://{origin.netloc}{ping.path}?{query}", timeout=30) as answer:
            assert answer.status == 200


def test_only_the_scheduled_run_touches_the_heartbeat_and_the_metrics_file(signalled, tmp_path):
    inventory, receiver, env, metrics, kuma_url = signalled
    nightly = run(inventory, tmp_path, "--mode", "scheduled", env=env, out="nightly")
    assert nightly.code == 0, nightly.stdout[-4000:] + nightly.stderr[-2000:]
    assert [(ping.path, ping.query["status"]) for ping in receiver.pings] == [(urlsplit(kuma_url).path, ["up"])]
    relay(receiver.pings, kuma_url)
    assert "restoredrill_drill_success" in metrics.read_text()
    left = (metrics.read_bytes(), metrics.stat().st_mtime_ns, len(receiver.pings))

    typo = run(inventory, tmp_path, "-k", "app-locl", env=env, out="nightly")      # the nightly's own folder
    assert typo.code == 2, typo.stdout[-2000:] + typo.stderr
    assert "no drill matched -k 'app-locl'" in typo.stderr and "Traceback" not in typo.stderr
    assert (tmp_path / "nightly" / "drill-report.xml").exists()
    assert parse_junit(tmp_path / "nightly" / "junit.xml") == nightly.cases   # not overwritten

    lint = run(inventory, tmp_path, "--select", "lint", env=env, out="lint")
    assert lint.code in (0, 1), lint.stderr
    assert "signals        none sent, partial run (--select lint)" in lint.stdout and "\nheartbeat " not in lint.stdout
    assert "restoredrill_drill_success" in (tmp_path / "lint" / "metrics.prom").read_text()   # under --out only

    gate = run(inventory, tmp_path, "--mode", "gate", env=env, out="gate")
    assert gate.code == 0, gate.stdout[-3000:]
    assert "none sent, gate run (not --mode scheduled)" in gate.stdout

    assert (metrics.read_bytes(), metrics.stat().st_mtime_ns, len(receiver.pings)) == left

    opted_in = run(inventory, tmp_path, "--select", "lint", "--notify", env=env, out="lint")
    assert opted_in.code in (0, 1)
    assert len(receiver.pings) == left[2] + 1 and metrics.read_bytes() != left[0]


def test_a_marker_per_kind_and_last_failed_with_the_cache_in_the_state_folder(lab_inventory, tmp_path):
    inventory = write(lab_inventory, tmp_path / "inventory.yaml")
    by_marker = run(inventory, tmp_path, "-m", "lint", "--no-notify")
    by_select = run(inventory, tmp_path, "--select", "lint", "--no-notify", out="select")
    assert by_marker.code == by_select.code and set(by_marker.cases) == set(by_select.cases) != set()

    repos = lab_inventory["borg"]["repositories"]
    broken = dict(lab_inventory, borg={**lab_inventory["borg"], "repositories": [
        dict(repos[0], passphrase="env:RESTOREDRILL_NO_SUCH_VARIABLE"), *repos[1:]]})
    inventory = write(broken, tmp_path / "broken.yaml")
    # --no-preflight: the failing cases are the drills' own (with the preflight, the dead
    # passphrase would be one preflight case and the repository's cases blocked, not failed)
    first = run(inventory, tmp_path, "--select", "borg", "--no-notify", "--no-preflight")
    failed = {name for name, case in first.cases.items() if case["outcome"] in ("failure", "error")}
    assert first.code == 1 and failed and failed != set(first.cases)
    assert (tmp_path / "state" / "pytest-cache").is_dir()
    again = run(inventory, tmp_path, "--select", "borg", "--lf", "--no-notify", "--no-preflight")
    assert again.code == 1 and set(again.cases) == failed
