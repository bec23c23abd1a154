"""The drill report (``drill-report.xml``): JUnit XML that validates against the xUnit
plugin's ``junit-10.xsd``, built with the ``junit-xml`` package.

One test suite per drill (``borg:app-local``, a guest's restore, an offsite target)
with its evidence as suite properties (the schema allows properties only there) and
as readable lines in ``system-out``; one case per check, failures carrying the
drill's one-line message (expected / found / where) and the full text. Two more
suites: ``history`` (RTO regressions and coverage gaps, failing when found) and
``restoredrill`` (the run itself; notices such as a failed heartbeat are skipped
cases there: visible in every JUnit viewer, never a failure).
"""
from __future__ import annotations

import socket
import xml.etree.ElementTree as ET

from restoredrill.report.history import Finding
from restoredrill.report.model import ERROR, FAILED, SKIPPED, Case, RunReport

# attributes junit-xml writes that junit-10.xsd does not allow
UNSUPPORTED = {"testsuites": ("disabled", "skipped"), "testsuite": ("disabled", "assertions"),
               "testcase": ("assertions", "status", "class", "file", "line", "log", "url", "timestamp")}
MAX_FACT_IN_TEXT = 300


def build_drill_report(run: RunReport, findings: list[Finding], context: dict[str, str] | None = None) -> str:
    """The whole document as text (UTF-8, with an XML declaration)."""
    from junit_xml import TestSuite, to_xml_report_string
    host = socket.gethostname()
    stamp = run.started.isoformat(timespec="seconds")
    suites = [drill_suite(TestSuite, drill, cases, run, host, stamp, index)
              for index, (drill, cases) in enumerate(run.by_drill().items())]
    suites.append(history_suite(TestSuite, findings, run, host, stamp, len(suites), context or {}))
    suites.append(run_suite(TestSuite, run, host, stamp, len(suites), context or {}))
    return make_schema_valid(to_xml_report_string(suites, prettyprint=False, encoding="utf-8"))


def drill_suite(TestSuite, drill: str, cases: list[Case], run: RunReport, host: str, stamp: str, index: int):
    verdict = "FAIL" if any(case.outcome in (FAILED, ERROR) for case in cases) else "PASS"
    properties = {"drill": drill, "verdict": verdict, "run_id": run.run_id, "site": run.site}
    properties.update(suite_facts(cases))
    text = [f"{drill}: {verdict}, {sum(c.ok for c in cases)} of {len(cases)} checks passed (run {run.run_id})"]
    text += [line for case in cases for line in case_lines(case)]
    return TestSuite(drill, [junit_case(case) for case in cases], hostname=host, id=str(index),
                     package=drill.split(":", 1)[0], timestamp=stamp, properties=properties,
                     stdout="\n".join(text) + "\n")


def suite_facts(cases: list[Case]) -> dict[str, str]:
    """Facts shared by every case that recorded them unprefixed, the others as ``check.key``."""
    values: dict[str, set] = {}
    for case in cases:
        for key, value in case.evidence.items():
            values.setdefault(key, set()).add(str(value))
    facts = {key: next(iter(seen)) for key, seen in values.items() if len(seen) == 1}
    for case in cases:
        for key, value in case.evidence.items():
            if key not in facts:
                facts[f"{case.check}.{key}"] = str(value)
    return facts


def case_lines(case: Case) -> list[str]:
    facts = ", ".join(f"{key}={short(value)}" for key, value in case.evidence.items())
    lines = [f"  {case.check}: {case.outcome}" + (f" ({facts})" if facts else "")]
    if case.outcome != "passed" and case.message:
        lines.append(f"    {case.message}")
    return lines


def short(value) -> str:
    text = str(value)
    return text if len(text) <= MAX_FACT_IN_TEXT else f"{text[:MAX_FACT_IN_TEXT]}... ({len(text)} characters)"


def junit_case(case: Case):
    from junit_xml import TestCase
    facts = "\n".join(f"{key} = {short(value)}" for key, value in case.evidence.items())
    item = TestCase(case.check, classname=case.drill, elapsed_sec=round(case.seconds, 3),
                    stdout=f"{case.nodeid}\n{facts}\n" if facts else f"{case.nodeid}\n")
    if case.outcome == FAILED:
        item.add_failure_info(message=case.message or "failed", output=case.details or case.message,
                              failure_type="drill failure")
    elif case.outcome == ERROR:
        item.add_error_info(message=case.message or "could not run", output=case.details or case.message,
                            error_type="drill could not run")
    elif case.outcome == SKIPPED:
        item.add_skipped_info(message=case.message or "skipped")
    return item


def history_suite(TestSuite, findings: list[Finding], run: RunReport, host: str, stamp: str, index: int,
                  context: dict[str, str]):
    from junit_xml import TestCase
    cases = []
    for finding in findings:
        item = TestCase(finding.name, classname=f"history.{finding.kind}", stdout=finding.message + "\n")
        if not finding.ok:
            item.add_failure_info(message=finding.message, output=finding.message,
                                  failure_type=f"history {finding.kind}")
        elif getattr(finding, "skipped", False):
            item.add_skipped_info(message=finding.message)
        cases.append(item)
    properties = {key: value for key, value in context.items() if key.startswith("history.")}
    failing = [f for f in findings if not f.ok]
    text = (f"{len(findings)} history checks, {len(failing)} failing\n"
            + "".join(f"  {f.name}: {f.message}\n" for f in failing))
    return TestSuite("history", cases, hostname=host, id=str(index), package="restoredrill",
                     timestamp=stamp, properties=properties, stdout=text)


def run_suite(TestSuite, run: RunReport, host: str, stamp: str, index: int, context: dict[str, str]):
    """The run: identity, outputs, deliveries; each notice a skipped case (never a failure)."""
    from junit_xml import TestCase
    properties = {"run_id": run.run_id, "site": run.site, "started": stamp,
                  "finished": (run.finished or run.started).isoformat(timespec="seconds"),
                  "verdict": run.verdict, "pytest_exit_status": str(run.exitstatus),
                  "notices": str(len(run.notices))}
    properties.update({f"output.{key}": value for key, value in run.outputs.items()})
    properties.update({f"delivery.{key}": value for key, value in run.deliveries.items()})
    properties.update({key: value for key, value in context.items() if not key.startswith("history.")})
    cases = []
    for number, notice in enumerate(run.notices, 1):
        item = TestCase(f"notice-{number}:{notice.topic}", classname="restoredrill.notices",
                        stdout=notice.text + "\n")
        item.add_skipped_info(message=notice.text)
        cases.append(item)
    if not cases:
        cases.append(TestCase("notices", classname="restoredrill.notices",
                              stdout="no notices: every output written, every notification delivered\n"))
    stderr = "".join(f"NOTE {notice.topic}: {notice.text}\n" for notice in run.notices) or None
    return TestSuite("restoredrill", cases, hostname=host, id=str(index), package="restoredrill",
                     timestamp=stamp, properties=properties, stderr=stderr)


def make_schema_valid(text: str) -> str:
    """Drop the attributes junit-10.xsd does not know and write times as ``123.456``."""
    root = ET.fromstring(text.encode("utf-8"))
    for element in root.iter():
        for name in UNSUPPORTED.get(element.tag, ()):
            element.attrib.pop(name, None)
        if "time" in element.attrib:
            element.set("time", f"{float(element.get('time') or 0):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
