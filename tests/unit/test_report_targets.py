"""Targets through the real collector (pytester): parameter ids such as ``local:gc`` are never
targets; a case that fails before recording its drill joins its siblings' target; NOT RUN only
for cases that never ran."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import yaml

pytest_plugins = ["pytester"]

# shaped like drills/test_pbs_audit.py: the job objects have no `name`, so the collection guess
# is the parameter id (local:gc), as in the lab's phantom rows
AUDIT_DRILLS = '''
import collections
import pytest

pytestmark = pytest.mark.drill_kind("pbs")
Job = collections.namedtuple("Job", "store kind")
JOBS = [Job("local", "gc"), Job("local", "verify"), Job("offsite", "gc"), Job("offsite", "sync")]

@pytest.fixture
def broken(request):
    if {broken} and request.node.callspec.id == "local:verify":
        pytest.fail("datastore local: listing the verify job: HTTP 500", pytrace=False)

@pytest.mark.parametrize("job", JOBS, ids=[f"{{j.store}}:{{j.kind}}" for j in JOBS])
def test_job_ran(job, broken, record_property):
    record_property("drill", f"pbs:{{job.store}}")
    record_property("check", f"job:{{job.kind}}")

@pytest.mark.parametrize("group", ["local:app-vm", "offsite:app-vm"])
def test_snapshot_fresh(group, record_property):
    record_property("drill", "pbs:" + group.split(":")[0])
    record_property("check", "fresh:app-vm")
    assert not {stop}, "datastore: a failure that stops the run with -x"
'''


@pytest.fixture
def audit(pytester):
    def run(*args: str, broken: bool = False, stop: bool = False):
        pytester.makeini("[pytest]\njunit_family = xunit1\n")
        pytester.makepyfile(test_audit=AUDIT_DRILLS.format(broken=broken, stop=stop))
        inv = pytester.path / "inventory.yaml"
        inv.write_text(yaml.safe_dump({"version": 1, "site": {"name": "demo-site"}}))
        return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly", f"--inventory={inv}",
                                  f"--state-dir={pytester.path / 'state'}", f"--out-dir={pytester.path / 'out'}",
                                  "--no-notify", *args)
    return run


def glance(pytester) -> dict[str, str]:
    page = (pytester.path / "out" / "report.html").read_text()
    table = page.split("<h2>Drills at a glance</h2>")[1].split("</table>")[0]
    return {row.split("<b>", 1)[1].split("</b>", 1)[0]: row for row in table.split("<tr>")[2:]}


def drill_suites(pytester) -> set[str]:
    root = ET.parse(pytester.path / "out" / "drill-report.xml").getroot()
    return {s.get("name") for s in root.iter("testsuite")} - {"history", "restoredrill"}


def test_a_green_run_has_only_the_recorded_targets(audit, pytester):
    audit().assert_outcomes(passed=6)
    rows = glance(pytester)
    assert list(rows) == ["pbs:local", "pbs:offsite"]
    assert "3 / 3" in rows["pbs:offsite"] and "NOT RUN" not in rows["pbs:local"] + rows["pbs:offsite"]
    assert drill_suites(pytester) == {"pbs:local", "pbs:offsite"}


def test_a_setup_failure_counts_under_its_siblings_target(audit, pytester):
    audit(broken=True).assert_outcomes(passed=5, errors=1)
    rows = glance(pytester)
    assert list(rows) == ["pbs:local", "pbs:offsite"]
    assert "FAIL" in rows["pbs:local"] and "1 / 3" not in rows["pbs:local"] and "2 / 3" in rows["pbs:local"]
    assert drill_suites(pytester) == {"pbs:local", "pbs:offsite"}


def test_cases_that_never_ran_are_not_run_under_their_true_target(audit, pytester):
    """-x stops after test_snapshot_fresh[local:app-vm]; offsite's snapshot case never runs, but
    its jobs did: no NOT RUN row. Deselecting offsite's jobs leaves pbs:offsite NOT RUN."""
    audit("-x", stop=True).assert_outcomes(passed=4, failed=1)
    assert "NOT RUN" not in "".join(glance(pytester).values())
    audit("-x", "-k", "local or fresh", stop=True).assert_outcomes(passed=2, failed=1)
    rows = glance(pytester)
    assert list(rows) == ["pbs:local", "pbs:offsite"]
    assert "NOT RUN" in rows["pbs:offsite"] and "0 / 0" in rows["pbs:offsite"]
