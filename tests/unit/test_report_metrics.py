"""metrics.prom: valid text exposition format (HELP/TYPE, escaped labels), the figures monitoring needs."""
from __future__ import annotations

import re

from restoredrill.report import history as hist
from restoredrill.report.metrics import escape_label, format_value, render_metrics
from restoredrill.report.overview import drill_statuses
from tests.unit.test_report_drill_report import FINDINGS, sample_run

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(\{{{NAME[:-1]}*={LABEL_VALUE}(?:,{NAME}={LABEL_VALUE})*\}})? "
                    r"(-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$")


def check_exposition(text: str) -> dict[str, list[str]]:
    """A strict reader of the text format: returns family -> sample lines; asserts on any problem."""
    assert text.endswith("\n") and "\r" not in text
    families: dict[str, list[str]] = {}
    helped, typed, series = set(), set(), set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert re.fullmatch(NAME, name) and name not in helped, line
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helped and name not in typed and kind == "gauge", line
            typed.add(name)
            families[name] = []
        else:
            match = SAMPLE.match(line)
            assert match, f"not a valid sample line: {line!r}"
            assert match.group(1) in typed, f"sample before its TYPE line: {line!r}"
            assert (match.group(1), match.group(2)) not in series, f"duplicate series: {line!r}"
            series.add((match.group(1), match.group(2)))
            families[match.group(1)].append(line)
    return families


def metrics_text(hostile: str | None = None):
    run = sample_run(hostile) if hostile else sample_run()
    statuses = drill_statuses(run, hist.History.from_run(run))
    return render_metrics(run, statuses, FINDINGS, run.finished)


def test_exposition_is_valid_even_with_hostile_label_values():
    families = check_exposition(metrics_text('a"b\\c\nd'))
    assert 'site="site a\\"b\\\\c\\nd"' in families["restoredrill_run_success"][0]


def test_the_figures_monitoring_needs():
    families = check_exposition(metrics_text())
    joined = "\n".join(line for lines in families.values() for line in lines)
    assert re.search(r'^restoredrill_run_success\{site="[^\n]*"\} 0$', joined, re.M)
    assert 'restoredrill_drill_success{site="site <script>' in joined
    assert re.search(r'restoredrill_drill_success\{[^}]*drill="borg:app-local"\} 1$', joined, re.M)
    assert re.search(r'restoredrill_drill_success\{[^}]*drill="borg:app-offsite"\} 0$', joined, re.M)
    assert re.search(r'restoredrill_rto_seconds\{[^}]*drill="borg:app-local",phase="restore"\} 2.9$', joined, re.M)
    assert re.search(r'restoredrill_rpo_seconds\{[^}]*drill="borg:app-local",point="restore_tested"\} 7242$',
                     joined, re.M)
    assert re.search(r'restoredrill_drill_last_success_timestamp_seconds\{[^}]*drill="borg:app-local"\} \d+',
                     joined)
    assert re.search(r'restoredrill_history_findings\{[^}]*kind="coverage"\} 1$', joined, re.M)
    assert re.search(r"^restoredrill_notices\{[^}]*\} 1$", joined, re.M)
    assert re.search(r"^restoredrill_run_finished_timestamp_seconds\{[^}]*\} 17\d{8}", joined, re.M)


def test_value_and_label_formatting():
    assert escape_label("a\x00b\x1bc\td") == "abcd"
    assert [format_value(v) for v in (1.0, 0.25, float("nan"), float("inf"), -float("inf"))] == \
        ["1", "0.25", "NaN", "+Inf", "-Inf"]
    assert escape_label('x"\\\n') == 'x\\"\\\\\\n'


def test_a_guest_restore_time_names_the_copy_it_came_from():
    """Issue 23: rotate restores from the local or the offsite copy; the RTO sample says which."""
    from restoredrill.report.model import Case
    run = sample_run()
    run.cases.append(Case("drills/test_pbs_restore.py::test_restore[app-vm]", "guest:app-vm", "restore",
                          seconds=20.0, properties={"drill": "guest:app-vm", "check": "restore", "copy": "offsite",
                                                    "restore_seconds": 12.5, "boot_to_reachable_seconds": 3.0}))
    statuses = drill_statuses(run, hist.History.from_run(run))
    joined = "\n".join(line for lines in check_exposition(render_metrics(run, statuses, FINDINGS, run.finished))
                       .values() for line in lines)
    assert re.search(r'restoredrill_rto_seconds\{[^}]*drill="guest:app-vm",phase="restore",copy="offsite"\} 12.5$',
                     joined, re.M)
    assert re.search(r'restoredrill_rto_seconds\{[^}]*drill="guest:app-vm",phase="boot",copy="offsite"\} 3$',
                     joined, re.M)
    assert re.search(r'restoredrill_rto_seconds\{[^}]*drill="borg:app-local",phase="restore"\} 2.9$', joined, re.M)


def test_a_failed_restores_seconds_stay_out_of_the_rto_row_the_trend_and_the_metrics():
    """Issue 20 §5: a restore that failed measured nothing a recovery could count on: its
    seconds are no RTO (this run's row, the trend, metrics.prom, summary.json)."""
    import json

    from restoredrill.report.html import render_html
    from restoredrill.report.model import Case
    from restoredrill.report.summary_json import target_entry
    run = sample_run()
    run.cases.append(Case("drills/test_pbs_restore.py::test_restore[app-ct]", "guest:app-ct", "restore", "failed",
                          message="guest app-ct: expected an answer on 10.0.0.5:22; found none", seconds=999.0,
                          properties={"drill": "guest:app-ct", "check": "restore", "restore_seconds": 987.5,
                                      "boot_to_reachable_seconds": 654.25}))
    statuses = drill_statuses(run, hist.History.from_run(run))
    status = next(s for s in statuses if s.drill == "guest:app-ct")
    assert status.verdict == "FAIL" and status.rto == {} and status.rto_series == {}
    assert json.loads(json.dumps(target_entry(status)))["rto_seconds"] == {}
    joined = "\n".join(line for lines in check_exposition(render_metrics(run, statuses, FINDINGS, run.finished))
                       .values() for line in lines)
    assert not re.search(r'rto_seconds\{[^}]*drill="guest:app-ct"', joined) and "987.5" not in joined
    assert re.search(r'restoredrill_rto_seconds\{[^}]*drill="borg:app-local",phase="restore"\} 2.9$', joined, re.M)
    page = render_html(run, statuses, [], [], run.finished)
    row = page.split(">guest:app-ct<", 1)[1].split("</tr>", 1)[0]
    assert "not measured" in row and "restore 987.5 s" not in page and "boot 654.2 s" not in page
    assert "guest:app-ct: restore" not in page                       # no trend of failed restores
