"""The report of a green lab run, built from JUnit XML shaped like the one `restoredrill lab` writes
(same classnames, parameter ids and recorded properties, values from a real run of 2026-12-05):
a row per real target and no NOT RUN row, guest RTOs in the row, the trend and metrics.prom, the
restored snapshot as the restore-tested point, pve:cluster not labelled guest."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from xml.sax.saxutils import quoteattr

from restoredrill.report import history as hist
from restoredrill.report.collector import names_from_nodeid
from restoredrill.report.html import render_html
from restoredrill.report.metrics import render_metrics
from restoredrill.report.model import Case, RunReport
from restoredrill.report.overview import drill_statuses
from restoredrill.report.targets import Collected, settle_drills, sibling_keys
from restoredrill.report.text import body
from restoredrill.state import StateStore
from tests.unit.test_report_metrics import check_exposition

STARTED = datetime(2026, 12, 5, 8, 39, 57, tzinfo=timezone.utc)
VM_SNAPSHOT = "pbs:backup/vm/110/2026-12-05T01:00:03Z"
CT_SNAPSHOT = "pbs:backup/ct/120/2026-12-05T01:01:03Z"


def guest_restore(guest: str, snapshot: str, when: str, restore: float, boot: float) -> dict:
    return {"drill": f"guest:{guest}", "check": "restore", "guest": guest, "access": "agent",
            "upids": "UPID:pve2:0002DF06:002583FA:6B13CDFF:qmrestore:9900:restoredrill@pve!drill:",
            "restore_node": "pve2", "snapshot": snapshot, "snapshot_time": when, "backup_bytes": "16778197",
            "scratch_vmid": "9900", "snapshot_choice": "latest-verified", "restore_seconds": str(restore),
            "config_diff": '{"changed": [["onboot", "1", "0"]]}', "boot_to_reachable_seconds": str(boot)}


def lab_cases(vm_restore: float = 0.163, vm_boot: float = 0.516) -> list[tuple[str, str, dict]]:
    """(classname, name, properties) of the cases whose ids made phantom targets, and their neighbours."""
    audit, restore, borg = "drills.test_pbs_audit", "drills.test_pbs_restore", "drills.test_borg"
    cases = [
        (borg, "test_restore[app-local-extract]",
         {"drill": "borg:app-local", "check": "extract", "repository": "app-local", "archive": "app-2026-12-05T06:38",
          "archive_time": "2026-12-05T06:38:00+00:00", "bytes_restored": "514591", "seconds": "0.96"}),
        (audit, "test_cluster_guests_inventoried[cluster]",
         {"drill": "pve:cluster", "check": "inventoried", "cluster_guests": "3", "unlisted": "0"}),
    ]
    for guest in ("opnsense", "app-vm", "app-ct"):
        cases.append((audit, f"test_guest_backed_up[{guest}]",
                      {"drill": f"guest:{guest}", "check": "backed-up", "guest": guest, "strategy": "pbs"}))
    for store in ("local", "offsite"):
        cases.append((audit, f"test_usage[{store}]", {"drill": f"pbs:{store}", "check": "usage", "datastore": store}))
        for guest in ("app-ct", "app-vm"):
            cases.append((audit, f"test_snapshot_fresh[{store}:{guest}]",
                          {"drill": f"pbs:{store}", "check": f"fresh:{guest}", "guest": guest, "datastore": store,
                           "rpo_hours": "27.0", "snapshot": "vm/110/2026-12-05T01:00:03Z",
                           "snapshot_time": "2026-12-05T01:00:03+00:00"}))
        for job in ("gc", "prune", "verify") + (("sync",) if store == "offsite" else ()):
            cases.append((audit, f"test_job_ran[{store}:{job}]",
                          {"drill": f"pbs:{store}", "check": f"job:{job}", "datastore": store, "state": "OK"}))
    cases += [
        (restore, "test_restore[app-ct]", guest_restore("app-ct", CT_SNAPSHOT, "2026-12-05T01:01:03+00:00", 0.128, 1.304)),
        (restore, "test_health[app-ct-web-port]",
         {"drill": "guest:app-ct", "check": "web-port", "guest": "app-ct", "snapshot": CT_SNAPSHOT}),
        (restore, "test_restore[app-vm]",
         guest_restore("app-vm", VM_SNAPSHOT, "2026-12-05T01:00:03+00:00", vm_restore, vm_boot)),
        (restore, "test_health[app-vm-canary]",
         {"drill": "guest:app-vm", "check": "canary", "guest": "app-vm", "snapshot": VM_SNAPSHOT,
          "canary_matched": "True"}),
    ]
    return cases


def junit_xml(cases) -> str:
    """pytest's junit.xml (junit_family xunit1 as the lab writes it): properties per testcase."""
    rows = []
    for classname, name, props in cases:
        path = classname.replace(".", "/") + ".py"
        properties = "".join(f"<property name={quoteattr(k)} value={quoteattr(v)} />" for k, v in props.items())
        rows.append(f'<testcase classname="{classname}" name={quoteattr(name)} file="{path}" line="1" '
                    f'time="0.050"><properties>{properties}</properties></testcase>')
    return ('<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" '
            f'errors="0" failures="0" skipped="0" tests="{len(rows)}" time="48.448" '
            f'timestamp="{STARTED.isoformat()}" hostname="vm">{"".join(rows)}</testsuite></testsuites>')


def nodeid_of(testcase: ET.Element) -> str:
    return f"{testcase.get('file')}::{testcase.get('name')}"


def lab_guess(nodeid: str) -> str:
    """What collection guessed before the case ran, as in the real lab (the phantoms of issue 14)."""
    function = nodeid.split("::")[-1]
    param = function.split("[", 1)[1].rstrip("]")
    if function.startswith("test_guest_backed_up"):
        return f"pbs:{param}"                       # the guest object's name under the pbs marker
    if function.startswith(("test_restore[app-vm", "test_restore[app-ct", "test_health")):
        return f"guest:{param[:6]}"
    if function.startswith("test_restore[app-local"):
        return "borg:app-local"
    return names_from_nodeid(nodeid)[0]              # local:gc, local:app, offsite:sync, cluster ...


def run_from_junit(text: str, run_id: str = "run-2", started: datetime = STARTED,
                   collected_extra: tuple[str, ...] = ()) -> RunReport:
    """Cases as the collector makes them (drill/check from the properties), NOT RUN settled like it."""
    cases, collected = [], {}
    for testcase in ET.fromstring(text).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in testcase.iter("property")}
        nodeid = nodeid_of(testcase)
        cases.append(Case(nodeid, props["drill"], props["check"], "passed", seconds=float(testcase.get("time")),
                          properties=props))
        collected[nodeid] = Collected(lab_guess(nodeid), sibling_keys(nodeid))
    for nodeid in collected_extra:
        collected[nodeid] = Collected(lab_guess(nodeid), sibling_keys(nodeid))
    run = RunReport(run_id, "restoredrill-lab", started, started + timedelta(seconds=50), 0, cases)
    run.expected_drills = settle_drills(run.cases, collected)
    return run


def glance_rows(page: str) -> dict[str, str]:
    table = page.split("<h2>Drills at a glance</h2>")[1].split("</table>")[0]
    return {re.search(r"<b>(.*?)</b>", row).group(1): row for row in table.split("<tr>")[2:]}


def report(run: RunReport, history: hist.History | None = None):
    history = history or hist.History.from_run(run)
    statuses = drill_statuses(run, history)
    return statuses, render_html(run, statuses, [], [], run.finished), render_metrics(run, statuses, [], run.finished)


TARGETS = ["borg:app-local", "pve:cluster", "guest:opnsense", "guest:app-vm", "guest:app-ct", "pbs:local",
           "pbs:offsite"]


def test_a_green_lab_run_has_one_row_per_real_target_and_no_not_run_row():
    run = run_from_junit(junit_xml(lab_cases()))
    statuses, page, _ = report(run)
    assert [s.drill for s in statuses] == TARGETS
    rows = glance_rows(page)
    assert list(rows) == TARGETS
    assert all("NOT RUN" not in row and "0 / 0" not in row for row in rows.values())
    for phantom in ("local:app", "local:gc", "local:verify", "local:prune", "offsite:gc", "offsite:sync",
                    "pbs:app-vm", "pbs:opnsense", "offsite:app"):
        assert phantom not in rows
    assert "NOT RUN" not in body(run, [])


def test_a_case_that_really_did_not_run_is_one_not_run_row_under_its_true_target():
    """An interrupted run: a job check and a whole guest were collected but never reported."""
    cases = [c for c in lab_cases() if c[1] not in ("test_job_ran[offsite:sync]",) and "app-ct" not in c[1]]
    run = run_from_junit(junit_xml(cases), collected_extra=("drills/test_pbs_audit.py::test_job_ran[offsite:sync]",
                                                            "drills/test_pbs_restore.py::test_restore[app-ct]"))
    assert run.expected_drills == ["guest:app-ct"]            # offsite:sync belongs to pbs:offsite, which ran
    rows = glance_rows(report(run)[1])
    assert "NOT RUN" in rows["guest:app-ct"] and "0 / 0" in rows["guest:app-ct"]
    assert "offsite:sync" not in rows and "NOT RUN" not in rows["pbs:offsite"]
    assert "NOT RUN  guest:app-ct" in body(run, [])


def test_a_case_that_failed_before_recording_its_drill_joins_its_siblings_target():
    text = junit_xml(lab_cases())
    run = run_from_junit(text)
    broken = next(c for c in run.cases if c.nodeid.endswith("test_job_ran[local:prune]"))
    broken.drill = broken.properties["drill"] = "local:prune"    # only the guess: setup failed
    broken.outcome, broken.properties = "error", {"drill": "local:prune", "check": "job_ran"}
    collected = {c.nodeid: Collected(lab_guess(c.nodeid), sibling_keys(c.nodeid)) for c in run.cases}
    assert settle_drills(run.cases, collected) == []
    assert broken.drill == broken.properties["drill"] == "pbs:local"
    statuses, page, _ = report(run)
    assert [s.drill for s in statuses] == TARGETS
    assert "FAIL" in glance_rows(page)["pbs:local"]


def test_guest_restores_give_their_rto_and_restore_tested_snapshot():
    statuses, page, metrics = report(run_from_junit(junit_xml(lab_cases())))
    vm = next(s for s in statuses if s.drill == "guest:app-vm")
    assert vm.rto == {"restore": 0.163, "boot": 0.516}
    point = vm.points["restore_tested"]
    assert point.name == VM_SNAPSHOT and point.time == datetime(2026, 12, 5, 1, 0, 3, tzinfo=timezone.utc)
    row = glance_rows(page)["guest:app-vm"]
    assert "restore 0.2 s, boot 0.5 s" in row and "not measured" not in row
    assert "none proven" not in row          # points per copy are the recovery matrix's (test_report_matrix)
    assert "restore 0.1 s, boot 1.3 s" in glance_rows(page)["guest:app-ct"]
    assert "Borg: the extract; a guest: the PBS restore" in page
    joined = "\n".join(sum(check_exposition(metrics).values(), []))
    for guest, restore, boot in (("app-vm", 0.163, 0.516), ("app-ct", 0.128, 1.304)):
        labels = f'site="restoredrill-lab",drill="guest:{guest}"'
        assert f'restoredrill_rto_seconds{{{labels},phase="restore"}} {restore}' in joined
        assert f'restoredrill_rto_seconds{{{labels},phase="boot"}} {boot}' in joined
        assert f'restoredrill_rpo_seconds{{{labels},point="restore_tested"}}' in joined
        assert f"restoredrill_drill_last_restore_test_timestamp_seconds{{{labels}}}" in joined
    assert 'restoredrill_rto_seconds{site="restoredrill-lab",drill="borg:app-local",phase="restore"} 0.96' in joined


def test_guest_rto_is_kept_in_the_history_and_drawn_in_the_trend(tmp_path):
    store = StateStore(tmp_path / "state")
    for n, (restore, boot) in enumerate(((0.2, 0.6), (0.163, 0.516))):
        run = run_from_junit(junit_xml(lab_cases(restore, boot)), f"run-{n}", STARTED + timedelta(days=n))
        hist.record_run(store, run, "drills", "inventory.yaml")
    history = hist.load_history(store.path)
    series = hist.rto_series(history, "guest:app-vm")
    assert [s for _, _, s in series["restore"]] == [0.2, 0.163] and [s for _, _, s in series["boot"]] == [0.6, 0.516]
    assert {f.name for f in hist.regressions(history, "run-1")} >= {"rto:guest:app-vm:restore",
                                                                     "rto:guest:app-vm:boot"}
    _, page, _ = report(run, history)
    for phase in ("restore", "boot"):
        section = page.split(f"guest:app-vm: {phase} (2 runs)")[1].split("</svg>")[0]
        assert section.count("<circle") == 2


def test_pve_cluster_is_a_cluster_not_a_guest_and_needs_no_restore():
    run = run_from_junit(junit_xml(lab_cases()))
    statuses, page, _ = report(run)
    cluster = next(s for s in statuses if s.drill == "pve:cluster")
    assert cluster.label == "Proxmox VE cluster"
    assert '<span class="meta">Proxmox VE cluster</span>' in glance_rows(page)["pve:cluster"]
    assert '<span class="meta">guest</span>' in glance_rows(page)["guest:app-vm"]
    history = hist.History.from_run(run)
    late = run.finished + timedelta(days=40)
    gaps = {f.drill: f for f in hist.coverage_gaps(history, [s.drill for s in statuses], late)}
    assert gaps["pve:cluster"].ok is False and "run with every check passing" in gaps["pve:cluster"].message
    assert "passing restore test" in gaps["guest:app-vm"].message
