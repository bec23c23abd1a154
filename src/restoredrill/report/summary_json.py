"""``OUT/summary.json``: the run in a form a wrapper script or a CI job reads instead of
scraping text. One object per target: verdict, checks (passed / failed / skipped, the failed
ones with their one-line message), the newest, newest verified and newest restore-tested
points, RTO per phase; plus the run: id, verdict, scope (scheduled or why not) and what was
delivered. Versioned by ``format``; keys are only ever added. No restored content and no
secret is in it (messages are the drills' own, which show neither)."""
from __future__ import annotations

import json
from datetime import datetime

from restoredrill.report.model import FAILED, ERROR, PASSED, SKIPPED

SUMMARY_FILE = "summary.json"
FORMAT = 1


def point(value) -> dict | None:
    return None if value is None else {"time": stamp(value.time), "name": value.name, "run_id": value.run_id}


def stamp(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def target_entry(status) -> dict:
    cases = status.cases
    return {
        "target": status.drill,
        "verdict": status.verdict,
        "checks": {"total": len(cases), "passed": sum(c.outcome == PASSED for c in cases),
                   "failed": sum(c.outcome in (FAILED, ERROR) for c in cases),
                   "skipped": sum(c.outcome == SKIPPED for c in cases)},
        "failed": [{"check": c.check, "case": c.nodeid, "message": c.message}
                   for c in cases if c.outcome in (FAILED, ERROR)],
        "skipped": [{"check": c.check, "case": c.nodeid, "reason": c.message} for c in cases if c.outcome == SKIPPED],
        "points": {which: point(value) for which, value in status.points.items()},
        "rpo_hours": status.rpo_hours,
        "rto_seconds": {phase: round(seconds, 3) for phase, seconds in status.rto.items()},
        "last_restore_test": stamp(status.last_restore_test),
    }


def render_summary(run, statuses, findings, scope: str, signals: bool) -> str:
    data = {
        "format": FORMAT,
        "run_id": run.run_id,
        "site": run.site,
        "started": stamp(run.started),
        "finished": stamp(run.finished),
        "verdict": run.verdict,
        "pytest_exit_status": run.exitstatus,
        "scope": scope,                    # "scheduled", or why this run is not the scheduled one
        "production_signals": signals,     # heartbeat, mail and reports.metrics_file were this run's
        "targets": [target_entry(status) for status in statuses],
        "history": [{"name": f.name, "ok": f.ok, "message": f.message} for f in findings],
        "deliveries": dict(run.deliveries),
        "notices": [{"topic": n.topic, "text": n.text} for n in run.notices],
    }
    return json.dumps(data, indent=2, sort_keys=False) + "\n"
