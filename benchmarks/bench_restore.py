"""Harness overhead of the PBS restore drills, measured against the Proxmox double.

    python benchmarks/bench_restore.py [--drills 6] [--slow 2.0]

Against ``ProxmoxDouble(real_guests=False)`` (tasks without injected delay; guests are
state only, so "reachable" is the status call) it runs the scratch-guest lifecycle
(preflight with a VMID claim in a state database -> restore -> start -> destroy) and prints:

- overhead per drill: drill wall time minus the time the double's tasks ran (each task's
  start to end, taken from the double's task registry), target < 1 s;
- notice latency: from a task's end (the double marks it stopped) to ``wait_task``
  returning, median and p90, and GET .../status calls per task (target < 0.5 s median
  without hammering the API); once more with restores slowed to ``--slow`` seconds, where
  the polling interval has grown;
- wall time of 1, 4 and 8 drills run together (threads calling the lifecycle, one PVE
  client each, budgets allowing 8) against the same drills one after another.

The double runs in this process (its HTTPS servers are threads), so every figure includes
the double's own share of the two cores. ``--nodelay`` turns Nagle's algorithm off in the
double's HTTP handler (as shipped, a GET costs ~45 ms there: headers and body go out in two
writes and meet the 40 ms delayed ACK), so the figures show the harness, not the double.
Not a timed test: figures are printed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from restoredrill.clients.pve import PveClient
from restoredrill.fixtures.pbs_restore import ScratchClaims, ScratchGuest, pve_client_for
from restoredrill.inventory import load_inventory
from restoredrill.lab.proxmox import ProxmoxDouble
from restoredrill.lab.proxmox.tasks import TaskRegistry
from restoredrill.lab.proxmox_inventory import proxmox_inventory
from restoredrill.scheduling import Budget
from restoredrill.state import StateStore


class TaskClock:
    """Start and end (monotonic) of every task of the double, and when the harness noticed each end."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.noticed: dict[str, float] = {}
        self.lock = threading.Lock()

    def install(self) -> None:
        original_start, original_finish = TaskRegistry.start, TaskRegistry._finish
        original_wait = PveClient.wait_task
        clock = self

        def start(registry, worker_type, worker_id, authid, work):
            before = time.monotonic()
            task = original_start(registry, worker_type, worker_id, authid, work)
            with clock.lock:
                clock.started.setdefault(task.text, before)
            return task

        def finish(task, exitstatus):
            with clock.lock:
                clock.ended[task.text] = time.monotonic()
            original_finish(task, exitstatus)

        def wait_task(client, node, upid, **kwargs):
            try:
                return original_wait(client, node, upid, **kwargs)
            finally:
                with clock.lock:
                    clock.noticed[upid] = time.monotonic()

        TaskRegistry.start = start
        TaskRegistry._finish = staticmethod(finish)
        PveClient.wait_task = wait_task

    def task_seconds(self, upids) -> float:
        return sum(self.ended[u] - self.started[u] for u in upids if u in self.ended and u in self.started)

    def latencies(self, upids) -> list[float]:
        return [self.noticed[u] - self.ended[u] for u in upids if u in self.noticed and u in self.ended]


def write_inventory(double, folder: Path) -> Path:
    data = {"version": 1, "site": {"name": "bench", "timezone": "UTC"}, **proxmox_inventory(double)}
    data.pop("datasets")
    data["policies"]["rpo"]["daily"] = {"max_age": "25h", "grace": "1h"}
    data["guests"] = [g for g in data["guests"] if g["strategy"] == "pbs"]
    data["scratch"]["budgets"] = {"max_parallel": 8, "max_memory": "64GiB", "max_disk": "1TiB"}
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Bench:
    def __init__(self, double, loaded, clock: TaskClock, state_dir: Path):
        self.double, self.loaded, self.clock = double, loaded, clock
        scratch = loaded.model.scratch
        self.claims = ScratchClaims(StateStore(state_dir).path, Budget.from_inventory(scratch.budgets),
                                    tuple(scratch.vmid_range), stale_after=3600, wait=120)
        self.guests = [g for g in loaded.model.guests if g.strategy == "pbs"]

    def drill(self, number: int, pve: PveClient) -> dict:
        """One lifecycle; returns its wall time, its tasks and their API calls."""
        guest = self.guests[number % len(self.guests)]
        calls_before = dict(pve.api.stats.calls)
        started = time.monotonic()
        lifecycle = ScratchGuest(guest, self.loaded.model, pve, f"bench-{number}", lambda _m: None, self.claims)
        facts = lifecycle.preflight()
        try:
            lifecycle.restore(facts["snapshot"], facts["config"])
            lifecycle.start(lambda: None)
        finally:
            vmid = lifecycle.vmid
            lifecycle.destroy()
        seconds = time.monotonic() - started
        upids = [u for u in self.clock.ended if f":{vmid}:" in u and self.clock.started.get(u, 0) >= started]
        calls = {k: v - calls_before.get(k, 0) for k, v in pve.api.stats.calls.items()}
        polls = {u: calls.get(f"GET /nodes/pve1/tasks/{u}/status", 0) for u in upids}
        return {"seconds": seconds, "task_seconds": self.clock.task_seconds(upids), "upids": upids,
                "polls": polls, "calls": sum(calls.values())}

    def run(self, count: int, together: bool) -> tuple[float, list[dict]]:
        clients = [pve_client_for(self.loaded) for _ in range(count)]
        started = time.monotonic()
        if together:
            with ThreadPoolExecutor(count) as pool:
                results = list(pool.map(self.drill, range(count), clients))
        else:
            results = [self.drill(n, client) for n, client in enumerate(clients)]
        return time.monotonic() - started, results


def summarize_serial(bench: Bench, results: list[dict], label: str) -> None:
    overheads = [r["seconds"] - r["task_seconds"] for r in results]
    latencies = bench.clock.latencies([u for r in results for u in r["upids"]])
    polls = [p for r in results for p in r["polls"].values()]
    print(f"{label}: {len(results)} drills, {len(polls)} tasks")
    print(f"  drill wall time     median {statistics.median(r['seconds'] for r in results):.3f} s, "
          f"tasks {statistics.median(r['task_seconds'] for r in results):.3f} s of it")
    print(f"  harness overhead    median {statistics.median(overheads):.3f} s, max {max(overheads):.3f} s "
          f"per drill (target < 1 s); API calls per drill {statistics.median(r['calls'] for r in results):.0f}")
    print(f"  notice latency      median {statistics.median(latencies):.3f} s, p90 "
          f"{quantile(latencies, 0.9):.3f} s, max {max(latencies):.3f} s (target < 0.5 s median)")
    print(f"  status polls/task   median {statistics.median(polls):.0f}, max {max(polls)}")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drills", type=int, default=6, help="serial drills for overhead and latency")
    parser.add_argument("--slow", type=float, default=2.0, help="seconds each restore task is slowed to")
    parser.add_argument("--nodelay", action="store_true", help="TCP_NODELAY in the double's HTTP handler")
    args = parser.parse_args(argv)
    if args.nodelay:
        from restoredrill.lab.proxmox import http
        http._Handler.disable_nagle_algorithm = True
    clock = TaskClock()
    clock.install()
    with tempfile.TemporaryDirectory(prefix="bench-restore-") as tmp:
        folder = Path(tmp)
        started = time.monotonic()
        with ProxmoxDouble(folder / "double", real_guests=False) as double:
            print(f"double started in {time.monotonic() - started:.1f} s "
                  f"(Nagle {'off' if args.nodelay else 'on, as shipped'} in its HTTP handler)")
            bench = Bench(double, load_inventory(write_inventory(double, folder)), clock, folder / "state")
            bench.run(1, together=False)                                  # warm-up (TLS, caches)
            _, results = bench.run(args.drills, together=False)
            summarize_serial(bench, results, "zero-delay tasks")
            stats = double.restore_stats()
            print(f"  double's restores   {len(stats)} images, median "
                  f"{statistics.median(s.seconds for s in stats):.3f} s, "
                  f"{statistics.median(s.bytes for s in stats) / 2**20:.1f} MiB")
            slow = [double.faults.slow_tasks(args.slow, kind) for kind in ("qmrestore", "vzrestore")]
            _, results = bench.run(max(2, args.drills // 2), together=False)
            for fault in slow:
                fault.clear()
            summarize_serial(bench, results, f"restores slowed to {args.slow:g} s")
            print("parallel (threads calling the lifecycle) vs serial, zero-delay tasks:")
            for count in (1, 4, 8):
                serial, _ = bench.run(count, together=False)
                together, _ = bench.run(count, together=True)
                print(f"  {count} drill(s): together {together:.2f} s, serial {serial:.2f} s, "
                      f"speed-up {serial / together:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
