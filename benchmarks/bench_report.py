"""Time the recovery matrix, report.html and metrics.prom of a large site.

Run: python benchmarks/bench_report.py [--guests 200] [--runs 400] [--repeat 2]

Site: GUESTS guests with strategy pbs in two PBS datastores (local, offsite in S3), one
dataset per guest (production, pbs:local, pbs:offsite), 20 Borg repositories; a run has
every PBS audit case (fresh, verified, retention per guest and datastore), a restore and
3 health checks per guest, 7 Borg cases per repository and 6 S3 cases. The history holds
RUNS such runs (reports.keep_runs defaults to 400). Columns: build the matrix; render
report.html with it; render metrics.prom with it. Each time is the best of --repeat runs.
Target: all three together under 5 s for 200 guests and 400 runs of history.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from restoredrill.inventory.model import Inventory  # noqa: E402
from restoredrill.report import history as hist  # noqa: E402
from restoredrill.report.html import render_html  # noqa: E402
from restoredrill.report.matrix import build_matrix  # noqa: E402
from restoredrill.report.metrics import render_metrics  # noqa: E402
from restoredrill.report.model import Case, RunReport  # noqa: E402
from restoredrill.report.overview import drill_statuses  # noqa: E402
from tests.unit.test_report_matrix import borg_cases, guest_cases, lab_inventory, pbs_cases, s3_cases  # noqa: E402

TARGET_SECONDS = 5.0


def site(guests: int) -> Inventory:
    base = lab_inventory().model_dump(mode="json", exclude_none=True)
    base["guests"] = [{"name": f"g{i}", "vmid": 1000 + i, "type": "qemu" if i % 2 else "lxc", "strategy": "pbs",
                       "rpo": "daily", "access": "agent" if i % 2 else "pct"} for i in range(guests)]
    base["datasets"] = [{"name": f"g{i}", "copies": [
        {"where": "production", "media": "zfs"}, {"where": "pbs:local", "media": "zfs"},
        {"where": "pbs:offsite", "media": "object-storage", "offsite": True}]} for i in range(guests)]
    repo = base["borg"]["repositories"][0]
    base["borg"]["repositories"] = [{**repo, "name": f"r{i}"} for i in range(20)]
    base["monitoring"]["uptime_kuma"]["data"]["borg"] = "r0"
    return Inventory.model_validate(base)


def run_cases(inv: Inventory) -> list[Case]:
    cases = []
    for g in inv.guests:
        snap = f"{'vm' if g.type == 'qemu' else 'ct'}/{g.vmid}/2026-12-07T01:00:03Z"
        cases += pbs_cases("local", g.name, snap, 27.0) + pbs_cases("offsite", g.name, snap, 28.0)
        cases += guest_cases(g.name, snap) + [guest_cases(g.name, snap)[-1]] * 2
    for repo in inv.borg.repositories:
        cases += borg_cases(repo.name)
    return cases + s3_cases()


def best(repeat: int, work) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guests", type=int, default=200)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    inv = site(args.guests)
    cases = run_cases(inv)
    started = datetime(2026, 12, 7, 19, 20, tzinfo=timezone.utc)
    runs = OrderedDict((f"run-{n}", started - timedelta(days=args.runs - 1 - n)) for n in range(args.runs))
    rows = [hist.row_of_case(run_id, when, case) for run_id, when in runs.items() for case in cases]
    history = hist.History(rows, runs)
    run = RunReport(f"run-{args.runs - 1}", inv.site.name, started, started + timedelta(minutes=30), cases=cases)
    now = run.finished
    matrix_s, matrix = best(args.repeat, lambda: build_matrix(inv, cases, history, now, 35, started))
    statuses = drill_statuses(run, history)
    html_s, page = best(args.repeat, lambda: render_html(run, statuses, [], [], now, "", matrix))
    prom_s, text = best(args.repeat, lambda: render_metrics(run, statuses, [], now, matrix))
    total = matrix_s + html_s + prom_s
    print(f"{args.guests} guests, {len(cases)} cases a run, {args.runs} runs of history ({len(rows):,} rows)")
    print(f"matrix {matrix_s:.3f} s   report.html {html_s:.3f} s ({len(page):,} bytes)   "
          f"metrics.prom {prom_s:.3f} s ({text.count(chr(10)):,} lines)   together {total:.3f} s")
    ok = total <= TARGET_SECONDS or (args.guests, args.runs) != (200, 400)
    print(f"target: under {TARGET_SECONDS:g} s for 200 guests and 400 runs: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
