"""Short plain-text descriptions of a run: the heartbeat message and the failure mail."""
from __future__ import annotations

from restoredrill.report.history import Finding
from restoredrill.report.model import RunReport


def headline(run: RunReport, findings: list[Finding]) -> str:
    """One line: ``FAIL site: 2 of 26 checks failed (borg:app-local extract: ...)``."""
    failed = run.failed_cases()
    bad = [f for f in findings if not f.ok]
    if run.verdict not in ("pass", "fail"):
        return f"{run.verdict.upper()} {run.site}: the drill run did not complete (pytest exit {run.exitstatus})"
    if failed:
        first = failed[0]
        return (f"FAIL {run.site}: {len(failed)} of {len(run.cases)} checks failed "
                f"({first.drill} {first.check}: {first.message})")
    if bad:
        return f"PASS {run.site}: {len(run.cases)} checks passed; {len(bad)} history finding(s): {bad[0].message}"
    return f"PASS {run.site}: {len(run.cases)} checks of {len(run.by_drill())} drills passed"


def body(run: RunReport, findings: list[Finding]) -> str:
    lines = [headline(run, findings), "", f"run {run.run_id}, started {run.started:%Y-%m-%d %H:%M} UTC, "
             f"{run.seconds:.0f} s, verdict {run.verdict}", ""]
    for drill, cases in run.by_drill().items():
        failed = [c for c in cases if c.outcome in ("failed", "error")]
        lines.append(f"{'FAIL' if failed else 'PASS'}  {drill}  {len(cases) - len(failed)}/{len(cases)} checks")
        lines += [f"    {c.outcome.upper()} {c.check}: {c.message}" for c in failed]
    lines += [f"NOT RUN  {drill}" for drill in run.expected_drills if drill not in run.by_drill()]
    bad = [f for f in findings if not f.ok]
    if bad:
        lines += ["", "History:"] + [f"    FAILED {f.name}: {f.message}" for f in bad]
    if run.notices:
        lines += ["", "Notices:"] + [f"    {n.topic}: {n.text}" for n in run.notices]
    if run.outputs:
        lines += ["", "Reports:"] + [f"    {k}: {v}" for k, v in run.outputs.items()]
    return "\n".join(lines) + "\n"
