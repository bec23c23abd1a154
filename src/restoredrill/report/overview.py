"""One status per drill, from this run and the history: the figures the HTML page and the
metrics file both show (verdict, proven points and their age, RTO, since when)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from restoredrill.report import history as hist
from restoredrill.report.model import ERROR, FAILED, PASSED, Case, RunReport, drill_label, rto_of, to_float


@dataclass
class DrillStatus:
    drill: str
    label: str
    cases: list[Case]
    verdict: str                                # PASS | FAIL | SKIPPED | NOT RUN
    passing: bool | None                        # from history: state of the current streak
    since: datetime | None                      # ... and its first run
    last_success: datetime | None
    last_restore_test: datetime | None
    points: dict[str, hist.ProvenPoint | None]  # newest | verified | restore_tested
    rpo_hours: float | None                     # the RPO limit the fresh check used
    rto: dict[str, float] = field(default_factory=dict)          # phase -> seconds in this run
    rto_series: dict[str, list] = field(default_factory=dict)    # phase -> [(run id, start, seconds)]

    @property
    def passed(self) -> int:
        return sum(case.outcome == PASSED for case in self.cases)

    def age_seconds(self, which: str, now: datetime) -> float | None:
        point = self.points.get(which)
        return None if point is None else max(0.0, (now - point.time).total_seconds())


def drill_statuses(run: RunReport, history: hist.History) -> list[DrillStatus]:
    drills = run.by_drill()
    names = list(drills) + [d for d in run.expected_drills if d not in drills]
    statuses = []
    for drill in names:
        cases = drills.get(drill, [])
        failed = any(case.outcome in (FAILED, ERROR) for case in cases)
        passing, since = hist.streak(history, drill)
        rto = {}
        for case in cases:
            if case.ok:
                rto.update(rto_of(case.check, case.properties))
        rpo = next((to_float(c.properties.get("rpo_hours")) for c in cases if "rpo_hours" in c.properties), None)
        statuses.append(DrillStatus(
            drill=drill, label=drill_label(drill), cases=cases,
            # every case skipped (e.g. blocked by a failed preflight) passed nothing: SKIPPED, never PASS
            verdict="FAIL" if failed else ("PASS" if any(c.outcome == PASSED for c in cases) else
                                           "SKIPPED" if cases else "NOT RUN"),
            passing=passing, since=since, last_success=hist.last_success(history, drill),
            last_restore_test=hist.last_restore_tested(history, drill),
            points=hist.proven_points(history, drill), rpo_hours=rpo, rto=rto,
            rto_series=dict(hist.rto_series(history, drill))))
    return statuses
