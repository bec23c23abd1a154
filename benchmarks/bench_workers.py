"""What ``restoredrill run --workers N`` buys on the lab: wall time of N = 1, 2, 4 for a full
run (every kind) and for ``--select pbs``, and how often each guest was restored.

    python benchmarks/bench_workers.py --lab DIR [--repeat 2] [--workers 1,2,4] [--scope full,pbs]

``--lab DIR``: a served lab (``restoredrill lab serve --dir DIR``); without it a lab is built in
this process first (about a minute; its servers then share this process). Each run is a real
``restoredrill run`` subprocess with its own fresh state folder and ``--no-notify``; the
inventory is a copy with ``scratch.budgets`` widened to 4 scratch guests, so N = 4 is not
capped. Restores are counted as restore tasks per snapshot in the double (through its API),
so a run that restored a guest twice shows it. Every run must exit 0. Not a timed test:
figures are printed (median of ``--repeat``).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.test_run_by_hand import restores_per_snapshot  # noqa: E402 - the test's own counter

SCOPES = {"full": [], "pbs": ["--select", "pbs"]}


@contextlib.contextmanager
def lab_inventory(lab_dir: str | None):
    if lab_dir:
        yield Path(lab_dir) / "inventory.yaml"
        return
    from restoredrill.lab.site import Lab
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
        with Lab(Path(folder) / "site") as lab:
            yield lab.inventory_path
        lab.remove()


def widened(inventory: Path, folder: Path) -> Path:
    data = yaml.safe_load(inventory.read_text())
    data["scratch"]["budgets"] = {"max_parallel": 4, "max_memory": "16GiB", "max_disk": "64GiB"}
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def one_run(inventory: Path, folder: Path, workers: int, scope: str) -> tuple[float, dict, int]:
    since = int(time.time()) - 1
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "restoredrill.cli", "run", "--inventory", str(inventory),
                           "--state-dir", str(folder / "state"), "--out", str(folder / "out"), "--no-notify",
                           "--workers", str(workers), *SCOPES[scope]], capture_output=True, text=True, timeout=1800)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-2000:], file=sys.stderr)
    return seconds, dict(restores_per_snapshot(inventory, since)), proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", help="folder of a served lab (restoredrill lab serve --dir DIR)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--scope", default="full,pbs")
    args = parser.parse_args()
    failed = False
    with lab_inventory(args.lab) as served, tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        inventory = widened(served, Path(tmp))
        for scope in args.scope.split(","):
            for workers in (int(n) for n in args.workers.split(",")):
                times, most = [], 0
                for attempt in range(args.repeat):
                    folder = Path(tmp) / f"{scope}-{workers}-{attempt}"
                    seconds, restores, code = one_run(inventory, folder, workers, scope)
                    times.append(seconds)
                    most = max([most, *restores.values()])
                    failed = failed or code != 0 or most > 1
                print(f"{scope:>4} --workers {workers}: {statistics.median(times):6.1f} s median of {len(times)} "
                      f"({', '.join(f'{t:.1f}' for t in times)}); most restores of one snapshot in a run: {most}",
                      flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
