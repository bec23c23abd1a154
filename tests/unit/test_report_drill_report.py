"""The drill report: one suite per drill, evidence as suite properties, valid against junit-10.xsd."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

from restoredrill.report.drill_report import build_drill_report
from restoredrill.report.history import Finding
from restoredrill.report.model import Case, RunReport
from tests.shared_files import SHARED, require_shared_file

XSD = SHARED / "junit" / "junit-10.xsd"
HOSTILE = "<script>alert('x')</script>&\"quotes\"\x00\x1b[31m"
STARTED = datetime(2026, 3, 1, 3, 0, tzinfo=timezone.utc)


def sample_run(hostile: str = HOSTILE) -> RunReport:
    """Two drills (one failing with a hostile archive name and message), a setup error, a skip."""
    ok = "borg:app-local"
    bad = "borg:app-offsite"
    point = (STARTED - timedelta(hours=2)).isoformat()
    points = json.dumps([{"time": (STARTED - timedelta(days=d)).isoformat(), "name": f"app-{d}", "keep": True,
                          "rule": "daily", "rank": d + 1} for d in range(7)])
    cases = [
        Case("drills/test_borg.py::test_fresh[app-local]", ok, "fresh", "passed", seconds=0.2,
             properties={"drill": ok, "check": "fresh", "repository": "app-local", "archive": "app-1",
                         "archive_time": point, "age_hours": 2.0, "rpo_hours": 27.0}),
        Case("drills/test_borg.py::test_retention[app-local]", ok, "retention", "passed", seconds=0.1,
             properties={"drill": ok, "check": "retention", "repository": "app-local", "points": points,
                         "timezone": "Europe/Berlin"}),
        Case("drills/test_borg.py::test_check[app-local]", ok, "check", "passed", seconds=1.5,
             properties={"drill": ok, "check": "check", "seconds": 1.4}),
        Case("drills/test_borg.py::test_restore[app-local-extract]", ok, "extract", "passed", seconds=3.0,
             properties={"drill": ok, "check": "extract", "archive": "app-1", "archive_time": point,
                         "bytes_restored": 514591, "seconds": 2.9}),
        Case("drills/test_borg.py::test_fresh[app-offsite]", bad, "fresh", "failed",
             message=f"repository app-offsite: expected an archive younger than 1 day; found {hostile}",
             details=f"full text {hostile}", seconds=0.3,
             properties={"drill": bad, "check": "fresh", "archive": f"app-{hostile}", "archive_time": point}),
        Case("drills/test_borg.py::test_restore[app-offsite-extract]", bad, "extract", "error",
             message="repository app-offsite: preparing the extract: 10 bytes free, 1 GiB needed",
             details="setup failed", seconds=0.1, properties={}),
        Case("drills/test_borg.py::test_encrypted[app-offsite]", bad, "encrypted", "skipped",
             message="not today", properties={"drill": bad, "check": "encrypted"}),
    ]
    run = RunReport("run-1", f"site {hostile}", STARTED, STARTED + timedelta(seconds=42), 1, cases)
    run.note("heartbeat", f"heartbeat failure ping to https://hc.example/*** failed: {hostile}")
    return run


FINDINGS = [Finding("regression", "borg:app-local", "rto:borg:app-local:restore", True, "took 2.9 s"),
            Finding("coverage", "borg:app-offsite", "coverage:borg:app-offsite", False,
                    "borg:app-offsite: expected a passing restore test at least every 35 days; found none")]


@pytest.fixture(scope="module")
def schema():
    require_shared_file(XSD, "the drill report was not validated against the JUnit schema")
    import xmlschema
    return xmlschema.XMLSchema(str(XSD))


def test_report_validates_against_the_xsd(schema):
    text = build_drill_report(sample_run(), FINDINGS, {"inventory": "/x/inventory.yaml"})
    schema.validate(text)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')


def test_one_suite_per_drill_with_evidence_as_suite_properties():
    root = ET.fromstring(build_drill_report(sample_run(), FINDINGS).encode())
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == ["borg:app-local", "borg:app-offsite", "history", "restoredrill"]
    local = suites["borg:app-local"]
    props = {p.get("name"): p.get("value") for p in local.iter("property")}
    assert props["drill"] == "borg:app-local" and props["verdict"] == "PASS" and props["run_id"] == "run-1"
    assert props["repository"] == "app-local"                     # shared by every case: unprefixed
    assert props["extract.seconds"] == "2.9" and props["bytes_restored"] == "514591"
    assert [c.get("name") for c in local.iter("testcase")] == ["fresh", "retention", "check", "extract"]
    assert all(c.get("classname") == "borg:app-local" for c in local.iter("testcase"))
    assert "extract: passed (" in local.find("system-out").text
    assert not any(case.find("properties") is not None for case in root.iter("testcase"))


def test_failures_errors_and_skips_carry_the_drill_message():
    root = ET.fromstring(build_drill_report(sample_run(), FINDINGS).encode())
    offsite = next(s for s in root.iter("testsuite") if s.get("name") == "borg:app-offsite")
    assert (offsite.get("failures"), offsite.get("errors"), offsite.get("skipped")) == ("1", "1", "1")
    failure = offsite.find("testcase[@name='fresh']/failure")
    assert failure.get("message").startswith("repository app-offsite: expected an archive younger than 1 day; "
                                             "found <script>")
    assert failure.get("type") == "drill failure"
    error = offsite.find("testcase[@name='extract']/error")
    assert "10 bytes free" in error.get("message")
    assert offsite.find("testcase[@name='encrypted']/skipped").get("message") == "not today"


def test_history_findings_fail_and_notices_are_skipped_cases():
    root = ET.fromstring(build_drill_report(sample_run(), FINDINGS).encode())
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    history = suites["history"]
    assert history.get("failures") == "1" and history.get("tests") == "2"
    gap = history.find("testcase[@name='coverage:borg:app-offsite']/failure")
    assert "at least every 35 days" in gap.get("message")
    run = suites["restoredrill"]
    assert run.get("failures") == "0" and run.get("skipped") == "1"
    notice = run.find("testcase/skipped")
    assert notice.get("message").startswith("heartbeat failure ping to https://hc.example/*** failed")
    assert "NOTE heartbeat:" in run.find("system-err").text


def test_control_characters_are_dropped_and_markup_escaped():
    text = build_drill_report(sample_run(), FINDINGS)
    assert "\x00" not in text and "\x1b" not in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    root = ET.fromstring(text.encode())                 # still well-formed XML after the escaping
    fresh = root.find(".//testsuite[@name='borg:app-offsite']/testcase[@name='fresh']/failure")
    assert "<script>alert('x')</script>" in fresh.get("message") and "\x1b" not in fresh.get("message")


def test_the_escaped_report_validates_against_the_xsd(schema):
    schema.validate(build_drill_report(sample_run(), FINDINGS))


def empty_run() -> RunReport:
    return RunReport("run-2", "site", STARTED, STARTED, 5, [])


def test_a_run_without_cases_still_has_its_history_and_run_suites():
    root = ET.fromstring(build_drill_report(empty_run(), []).encode())
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == ["history", "restoredrill"]
    assert all(s.get("failures") == "0" for s in suites.values())


def test_a_run_without_cases_still_validates(schema):
    schema.validate(build_drill_report(empty_run(), []))
