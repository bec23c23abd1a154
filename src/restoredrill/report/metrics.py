"""Prometheus metrics for node_exporter's textfile collector (``metrics.prom``).

Text exposition format 0.0.4: a ``# HELP`` and ``# TYPE`` line per metric family,
label values escaped (backslash, double quote, newline). Written atomically: a
temporary file in the same folder (its name does not end in ``.prom``, so the
collector never reads half a file), then ``os.replace``.

Times are exported as Unix timestamps (the textfile convention: an age frozen at run time
goes stale the moment the run ends), per target (a row of the recovery matrix) and copy:
the newest point with the proof it reached, the newest verified and restore-tested points,
the last restore test and its RTO by phase, the RPO and restore-test limits to compare them
with; per PBS guest and datastore the newest snapshot and its verify state (what
pbs-exporter's ``pbs_snapshot_vm_last_timestamp`` gives). ``contrib/prometheus/
restoredrill.rules.yml`` alerts on them. ``restoredrill_rpo_seconds`` (an age) is kept for
existing dashboards and is deprecated.
"""
from __future__ import annotations

import math
from datetime import datetime

from restoredrill.report import cells as C
from restoredrill.report.history import Finding
from restoredrill.report.model import RunReport, parse_time
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
    "restoredrill_rpo_seconds": "Deprecated (an age frozen at run time): age of the newest backup point, by how "
                                "far it is proven (newest listed, verified, restore-tested).",
    "restoredrill_rto_seconds": "Restore time measured in the last run, by phase: restore (Borg extract, "
                                "PBS restore of a guest), boot (restored guest started until reachable).",
    "restoredrill_history_findings": "Failing history checks of the last run (RTO regressions, coverage gaps).",
    "restoredrill_notices": "Notices of the last run (failed deliveries, reset history, fallback folder).",
    "restoredrill_rto_regression": "1 if the restore time of the drill's phase regressed in the last run.",
    "restoredrill_max_untested_seconds": "The restore-test limit (reports.max_untested_days) in seconds.",
}
MATRIX_HELP = {
    "restoredrill_newest_point_timestamp_seconds": "Time of the newest backup point the last run saw in this copy "
                                                   "of the target, labelled with the strongest proof it reached "
                                                   "(listed, verified, read_offsite, extracted, restored).",
    "restoredrill_newest_verified_point_timestamp_seconds": "Time of the newest point of this copy proven "
                                                            "verified or better.",
    "restoredrill_newest_restore_tested_point_timestamp_seconds": "Time of the newest point of this copy that "
                                                                  "was extracted and checked or restored.",
    "restoredrill_last_restore_test_timestamp_seconds": "Start of the newest run that restore-tested this copy.",
    "restoredrill_last_rto_seconds": "Restore time of the newest restore test from this copy, by phase.",
    "restoredrill_copy_rpo_seconds": "The RPO the copy's freshness is judged against (max age plus grace).",
    "restoredrill_copy_ok": "1 if every check of this copy of the target passed in the last run and its newest "
                            "point is within the RPO, 0 otherwise.",
    "restoredrill_pbs_snapshot_last_timestamp_seconds": "Time of the newest snapshot of the guest in the "
                                                        "PBS datastore (as pbs-exporter's "
                                                        "pbs_snapshot_vm_last_timestamp).",
    "restoredrill_pbs_snapshot_verify_ok": "1 if the guest's snapshots in the datastore have no failed "
                                           "verification and the newest verify is ok, 0 otherwise.",
    "restoredrill_pbs_snapshot_last_verify_timestamp_seconds": "Time of the newest verification of the "
                                                               "guest's snapshots in the datastore.",
}
HELP.update(MATRIX_HELP)


def render_metrics(run: RunReport, statuses: list[DrillStatus], findings: list[Finding], now: datetime,
                   matrix=None) -> str:
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
        for phase, seconds in status.rto.items():
            families["restoredrill_rto_seconds"].append(({**labels, "phase": phase}, seconds))
    for kind in ("regression", "coverage"):
        count = sum(1 for f in findings if f.kind == kind and not f.ok)
        families["restoredrill_history_findings"].append(({**site, "kind": kind}, float(count)))
    families["restoredrill_notices"].append((site, float(len(run.notices))))
    for f in findings:
        if f.kind == "regression" and f.name.count(":") >= 3:
            phase = f.name.rsplit(":", 1)[1]
            families["restoredrill_rto_regression"].append(({**site, "drill": f.drill, "phase": phase},
                                                            0.0 if f.ok else 1.0))
    if matrix is not None:
        families["restoredrill_max_untested_seconds"].append((site, matrix.max_untested_days * 86400))
        matrix_samples(families, site, matrix)
    pbs_guest_samples(families, site, run)
    lines = []
    for name, samples in families.items():
        if not samples:
            continue
        lines.append(f"# HELP {name} {escape_help(HELP[name])}")
        lines.append(f"# TYPE {name} gauge")
        lines += [f"{name}{format_labels(labels)} {format_value(value)}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def matrix_samples(families: dict, site: dict, matrix) -> None:
    for row in matrix.rows():
        for ref, cell in row.cells.items():
            if cell.state in ("live", "none") and cell.point_time is None:
                continue
            labels = {**site, "target": row.target, "copy": ref}
            if cell.point_time is not None:
                families["restoredrill_newest_point_timestamp_seconds"].append(
                    ({**labels, "proof": C.PROOF_LABELS[cell.proof]}, cell.point_time.timestamp()))
            for name, when in (("restoredrill_newest_verified_point_timestamp_seconds", cell.verified_time),
                               ("restoredrill_newest_restore_tested_point_timestamp_seconds", cell.restored_point),
                               ("restoredrill_last_restore_test_timestamp_seconds", cell.last_restore)):
                if when is not None:
                    families[name].append((labels, when.timestamp()))
            for phase, seconds in cell.rto.items():
                families["restoredrill_last_rto_seconds"].append(({**labels, "phase": phase}, seconds))
            if cell.rpo_hours is not None:
                families["restoredrill_copy_rpo_seconds"].append((labels, cell.rpo_hours * 3600))
            families["restoredrill_copy_ok"].append((labels, 0.0 if cell.state == "fail" else 1.0))


def pbs_guest_samples(families: dict, site: dict, run: RunReport) -> None:
    """From the PBS audit's fresh:GUEST and verified:GUEST cases of each datastore."""
    for case in run.cases:
        facts = case.properties
        if not case.drill.startswith("pbs:") or ":" not in case.check or "guest" not in facts:
            continue
        # labels as pbs-exporter's (natrontech/pbs-exporter README.md: datastore, vm_id, vm_name)
        found = C.GROUP.search(str(facts.get("snapshot") or facts.get("last_verified") or ""))
        labels = {**site, "datastore": str(facts.get("datastore") or case.drill[4:]),
                  "vm_id": found.group(2) if found else "", "vm_name": str(facts["guest"])}
        if case.check.startswith("fresh:"):
            when = parse_time(facts.get("snapshot_time"))
            if when is not None:
                families["restoredrill_pbs_snapshot_last_timestamp_seconds"].append((labels, when.timestamp()))
        elif case.check.startswith("verified:"):
            ok = case.ok and str(facts.get("last_verify_state", "ok")) == "ok"
            families["restoredrill_pbs_snapshot_verify_ok"].append((labels, 1.0 if ok else 0.0))
            when = parse_time(facts.get("last_verify_time"))
            if when is not None:
                families["restoredrill_pbs_snapshot_last_verify_timestamp_seconds"].append(
                    (labels, when.timestamp()))


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
