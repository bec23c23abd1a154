"""Prometheus metrics for node_exporter's textfile collector (``metrics.prom``).

Text exposition format 0.0.4: a ``# HELP`` and ``# TYPE`` line per metric family,
label values escaped (backslash, double quote, newline). Written atomically: a
temporary file in the same folder (its name does not end in ``.prom``, so the
collector never reads half a file), then ``os.replace``.

Alert on ``time() - restoredrill_run_finished_timestamp_seconds > 26*3600`` (drills
stopped running), ``restoredrill_drill_success == 0`` and
``restoredrill_rpo_seconds{point="restore_tested"} > ...``.
"""
from __future__ import annotations

import math
from datetime import datetime

from restoredrill.report.history import Finding
from restoredrill.report.model import RunReport
from restoredrill.report.overview import DrillStatus

HELP = {
    "restoredrill_run_finished_timestamp_seconds": "When the last drill run finished (Unix time).",
    "restoredrill_run_success": "1 if every drill of the last run passed, 0 otherwise.",
    "restoredrill_run_duration_seconds": "Wall-clock time of the last drill run.",
    "restoredrill_drill_success": "1 if every check of the drill passed in the last run, 0 otherwise.",
    "restoredrill_drill_last_success_timestamp_seconds": "Start of the newest run in which every check of "
                                                         "the drill passed (Unix time).",
    "restoredrill_drill_last_restore_test_timestamp_seconds": "Start of the newest run with a passing "
                                                              "restore of the drill (Unix time).",
    "restoredrill_check_success": "1 if the check passed in the last run, 0 otherwise.",
    "restoredrill_check_duration_seconds": "Time the check took in the last run.",
    "restoredrill_rpo_seconds": "Age of the newest backup point, by how far it is proven "
                                "(newest listed, verified, restore-tested).",
    "restoredrill_rto_seconds": "Restore time measured in the last run, by phase: restore (Borg extract, "
                                "PBS restore of a guest), boot (restored guest started until reachable).",
    "restoredrill_history_findings": "Failing history checks of the last run (RTO regressions, coverage gaps).",
    "restoredrill_notices": "Notices of the last run (failed deliveries, reset history, fallback folder).",
}


def render_metrics(run: RunReport, statuses: list[DrillStatus], findings: list[Finding], now: datetime) -> str:
    families: dict[str, list[tuple[dict, float]]] = {name: [] for name in HELP}
    site = {"site": run.site}
    families["restoredrill_run_finished_timestamp_seconds"].append((site, now.timestamp()))
    families["restoredrill_run_success"].append((site, 1.0 if run.verdict == "pass" else 0.0))
    families["restoredrill_run_duration_seconds"].append((site, run.seconds))
    for status in statuses:
        labels = {**site, "drill": status.drill}
        if status.cases:
            families["restoredrill_drill_success"].append((labels, 1.0 if status.verdict == "PASS" else 0.0))
        if status.last_success:
            families["restoredrill_drill_last_success_timestamp_seconds"].append(
                (labels, status.last_success.timestamp()))
        if status.last_restore_test:
            families["restoredrill_drill_last_restore_test_timestamp_seconds"].append(
                (labels, status.last_restore_test.timestamp()))
        for case in status.cases:
            check = {**labels, "check": case.check}
            families["restoredrill_check_success"].append((check, 1.0 if case.ok else 0.0))
            seconds = case.measured_seconds()
            families["restoredrill_check_duration_seconds"].append(
                (check, round(seconds if seconds is not None else case.seconds, 3)))
        for which in ("newest", "verified", "restore_tested"):
            age = status.age_seconds(which, now)
            if age is not None:
                families["restoredrill_rpo_seconds"].append(({**labels, "point": which}, age))
        copy = next((str(c.properties["copy"]) for c in status.cases if c.properties.get("copy")), None)
        for phase, seconds in status.rto.items():     # a guest's RTO names the copy it came from (issue 23)
            families["restoredrill_rto_seconds"].append(({**labels, "phase": phase, **({"copy": copy} if copy else {})},
                                                          seconds))
    for kind in ("regression", "coverage"):
        count = sum(1 for f in findings if f.kind == kind and not f.ok)
        families["restoredrill_history_findings"].append(({**site, "kind": kind}, float(count)))
    families["restoredrill_notices"].append((site, float(len(run.notices))))
    lines = []
    for name, samples in families.items():
        if not samples:
            continue
        lines.append(f"# HELP {name} {escape_help(HELP[name])}")
        lines.append(f"# TYPE {name} gauge")
        lines += [f"{name}{format_labels(labels)} {format_value(value)}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


CONTROL = dict.fromkeys([*range(0x00, 0x0A), *range(0x0B, 0x20), 0x7F])


def escape_label(value: str) -> str:
    """Backslash, double quote and newline escaped; other control characters dropped."""
    text = str(value).translate(CONTROL)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_labels(labels: dict) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{escape_label(value)}"' for key, value in labels.items()) + "}"


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if value != int(value) else str(int(value))
