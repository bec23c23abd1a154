"""The report collector inside pytest (pytester): outputs, history, naming, and every fault that
must neither lose a report nor change the exit code."""
from __future__ import annotations

import os
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

DEMO_DRILLS = '''
import collections
import pytest

pytestmark = pytest.mark.drill_kind("borg")
Repo = collections.namedtuple("Repo", "name")

@pytest.fixture
def broken_setup():
    pytest.fail("repository demo: preparing the extract: expected 1 GiB free; found 10 bytes in /scratch",
                pytrace=False)

def test_fresh(record_property):
    for key, value in (("drill", "borg:demo"), ("check", "fresh"), ("archive", "app-<b>1</b>"),
                       ("archive_time", "2026-03-01T01:00:00+00:00"), ("rpo_hours", 27.0)):
        record_property(key, value)

def test_extract(record_property):
    for key, value in (("drill", "borg:demo"), ("check", "extract"), ("seconds", 1.25),
                       ("archive_time", "2026-03-01T01:00:00+00:00"), ("archive", "app-1")):
        record_property(key, value)

def test_canary(record_property):
    record_property("drill", "borg:demo")
    record_property("check", "canary")
    if {fail}:
        pytest.fail("repository demo: expected canary 'ok' in app/.canary; found 'gone'", pytrace=False)

@pytest.mark.parametrize("target", [Repo("demo")], ids=["demo"])
def test_prepare(target, broken_setup):
    pass
'''


def inventory(tmp: Path, **sections) -> Path:
    data = {"version": 1, "site": {"name": "demo-site"}, **sections}
    path = tmp / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def demo(pytester):
    """Write the demo drills; run them with an inventory, state and out dir under pytester's folder."""
    def run(*args: str, fail: bool = False, inv: Path | None = None, out: Path | None = None,
            state: Path | None = None):
        pytester.makeini("[pytest]\njunit_family = xunit1\n")
        pytester.makepyfile(test_demo=DEMO_DRILLS.replace("{fail}", str(fail)))
        inv = inv or inventory(pytester.path)
        out = out or pytester.path / "out"
        state = state or pytester.path / "state"
        return pytester.runpytest("-p", "no:cacheprovider", f"--inventory={inv}", f"--state-dir={state}",
                                  f"--out-dir={out}", *args)
    return run


def suites(path: Path) -> dict[str, ET.Element]:
    return {s.get("name"): s for s in ET.parse(path).getroot().iter("testsuite")}


def test_outputs_history_and_names(demo, pytester):
    result = demo("--junitxml=out/junit.xml")
    result.assert_outcomes(passed=3, errors=1)
    out = pytester.path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["drill-report.xml", "junit.xml", "metrics.prom", "report.html",
                                                     "summary.json"]
    found = suites(out / "drill-report.xml")
    assert list(found) == ["borg:demo", "history", "restoredrill"]
    demo_suite = found["borg:demo"]
    # the setup error has no evidence of its own: its drill and check come from the collected item
    error = demo_suite.find("testcase[@name='prepare']/error")
    assert error is not None and "expected 1 GiB free; found 10 bytes" in error.get("message")
    # ... and pytest's junit.xml names them too now
    junit = ET.parse(out / "junit.xml").getroot()
    prepare = next(c for c in junit.iter("testcase") if c.get("name") == "test_prepare[demo]")
    assert {p.get("name"): p.get("value") for p in prepare.iter("property")} == {"drill": "borg:demo",
                                                                                "check": "prepare"}
    result.stdout.fnmatch_lines(["*restoredrill reports*", f"drill report   {out}/drill-report.xml"])
    with sqlite3.connect(pytester.path / "state" / "state.db") as db:
        runs = db.execute("SELECT id, verdict FROM runs").fetchall()
        results = db.execute("SELECT drill, name, outcome FROM results ORDER BY rowid").fetchall()
    assert len(runs) == 1 and runs[0][1] == "fail"
    assert ("borg:demo", "prepare", "error") in results and ("borg:demo", "extract", "passed") in results


def test_the_run_id_fixture_and_the_history_agree(demo, pytester):
    demo("--run-id=fixed-run-1")
    with sqlite3.connect(pytester.path / "state" / "state.db") as db:
        assert db.execute("SELECT id FROM runs").fetchall() == [("fixed-run-1",)]


def test_a_second_run_appends_and_shows_a_trend(demo, pytester):
    demo()
    demo()
    html = (pytester.path / "out" / "report.html").read_text()
    assert "borg:demo: restore (2 runs)" in html
    with sqlite3.connect(pytester.path / "state" / "state.db") as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (2,)


def test_keep_runs_forgets_old_runs(demo, pytester):
    inv = inventory(pytester.path, reports={"keep_runs": 2})
    for _ in range(3):
        demo(inv=inv)
    with sqlite3.connect(pytester.path / "state" / "state.db") as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (2,)
        assert db.execute("SELECT count(DISTINCT run_id) FROM results").fetchone() == (2,)


def test_unwritable_reports_folder_falls_back_and_says_where(demo, pytester):
    blocker = pytester.path / "not-a-folder"
    blocker.write_text("a file where the reports folder should be")
    result = demo(out=blocker / "out")
    assert result.ret == 1                             # the drill verdict: the setup error
    line = next(line for line in result.errlines if "NOTE reports:" in line)
    fallback = Path(line.split("were written to ")[1].split(" instead")[0])
    try:
        assert (fallback / "drill-report.xml").is_file() and (fallback / "report.html").is_file()
        assert (fallback / "metrics.prom").is_file()
        notice = suites(fallback / "drill-report.xml")["restoredrill"].find("testcase/skipped")
        assert "cannot be written" in notice.get("message") and str(fallback) in notice.get("message")
    finally:
        for child in fallback.iterdir():
            child.unlink()
        fallback.rmdir()


def test_unwritable_metrics_file_goes_to_the_reports_folder(demo, pytester):
    blocker = pytester.path / "blocker"
    blocker.write_text("")
    inv = inventory(pytester.path, reports={"metrics_file": str(blocker / "textfile" / "restoredrill.prom")})
    result = demo("--notify", inv=inv)           # metrics_file: the scheduled run's, or one given --notify
    assert (pytester.path / "out" / "metrics.prom").is_file()
    assert any("NOTE metrics: the metrics file" in line for line in result.errlines)


def test_corrupt_history_is_kept_aside_and_the_report_says_so(demo, pytester):
    state = pytester.path / "state"
    state.mkdir()
    (state / "state.db").write_bytes(b"this is not a database" * 100)
    result = demo()
    assert result.ret == 1
    kept = list(state.glob("state.db.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not a database")
    notices = suites(pytester.path / "out" / "drill-report.xml")["restoredrill"].findall("testcase/skipped")
    assert any("unreadable" in n.get("message") and str(kept[0]) in n.get("message") for n in notices)
    assert "was unreadable" in (pytester.path / "out" / "report.html").read_text()
    assert any("NOTE history:" in line for line in result.errlines)
    with sqlite3.connect(state / "state.db") as db:          # a new database holds this run
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,)


def test_an_unusable_state_folder_still_gives_reports(demo, pytester):
    blocker = pytester.path / "state-file"
    blocker.write_text("")
    result = demo(state=blocker / "state")
    # the plugin's state store is also needed by drills that keep rotations; ours do not
    assert result.ret == 1
    report = pytester.path / "out" / "drill-report.xml"
    notices = suites(report)["restoredrill"].findall("testcase/skipped")
    assert any("state database cannot be used" in n.get("message") for n in notices)
    assert "history: this run only" in (pytester.path / "out" / "report.html").read_text()


def test_delivery_failure_does_not_change_the_exit_code(demo, pytester, monkeypatch):
    from tests.integration.test_notify_heartbeat import TOKEN, free_port
    monkeypatch.setenv("HB_URL", f"http://127.0.0.1:{free_port()}/ping/{TOKEN}")
    inv = inventory(pytester.path, notifications={"heartbeat_url": "env:HB_URL"})
    pytester.makepyfile(test_ok="def test_ok(record_property):\n    record_property('drill', 'borg:x')\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "test_ok.py", f"--inventory={inv}", "--notify",
                                f"--state-dir={pytester.path / 'state'}", f"--out-dir={pytester.path / 'out'}")
    assert result.ret == 0
    output = result.stdout.str() + result.stderr.str()
    assert TOKEN not in output and "NOTE heartbeat: heartbeat start ping" in output
    report = (pytester.path / "out" / "drill-report.xml").read_text()
    assert TOKEN not in report and "heartbeat success ping" in report


def test_no_notify_and_collect_only(demo, pytester, monkeypatch):
    from tests.integration.test_notify_heartbeat import Receiver
    with Receiver() as receiver:
        monkeypatch.setenv("HB_URL", f"{receiver.base}/ping/abc")
        inv = inventory(pytester.path, notifications={"heartbeat_url": "env:HB_URL"})
        demo("--no-notify", inv=inv)
        assert receiver.pings == []
        shutil_out = pytester.path / "out-collect"
        demo("--collect-only", inv=inv, out=shutil_out)
        assert receiver.pings == [] and not shutil_out.exists()


def test_xdist_workers_leave_the_reports_to_the_controller(demo, pytester):
    pytester.makeini("[pytest]\njunit_family = xunit1\n")
    pytester.makepyfile(test_demo=DEMO_DRILLS.replace("{fail}", "False"))
    inv = inventory(pytester.path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", f"--inventory={inv}",
                                           f"--state-dir={pytester.path / 'state'}",
                                           f"--out-dir={pytester.path / 'out'}")
    assert result.ret == 1, result.stdout.str()
    found = suites(pytester.path / "out" / "drill-report.xml")
    assert len(found["borg:demo"].findall("testcase")) == 4
    with sqlite3.connect(pytester.path / "state" / "state.db") as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM results").fetchone() == (4,)
    assert os.path.getsize(pytester.path / "out" / "report.html") > 1000


def test_history_findings_fail_in_the_drill_report_not_the_exit_code(pytester):
    inv = inventory(pytester.path)
    pytester.makepyfile(test_ok='''
def test_extract(record_property):
    for key, value in (("drill", "borg:x"), ("check", "extract"), ("seconds", 0.5)):
        record_property(key, value)
''')
    result = pytester.runpytest("-p", "no:cacheprovider", f"--inventory={inv}", "--max-untested-days=0",
                                f"--state-dir={pytester.path / 'state'}", f"--out-dir={pytester.path / 'out'}")
    assert result.ret == 0
    history = suites(pytester.path / "out" / "drill-report.xml")["history"]
    gap = history.find("testcase[@name='coverage:borg:x']/failure")
    assert gap is not None and "at least every 0 days" in gap.get("message")
    props = {p.get("name"): p.get("value") for p in history.iter("property")}
    assert props["history.max_untested_days"] == "0"
    result.stdout.fnmatch_lines(["FAILED history coverage:borg:x: *"])
    assert 'restoredrill_history_findings{site="demo-site",kind="coverage"} 1' in \
        (pytester.path / "out" / "metrics.prom").read_text()


SAME_ID_DRILLS = '''
import collections
import pytest

pytestmark = pytest.mark.drill_kind("{kind}")
Target = collections.namedtuple("Target", "name")

@pytest.fixture
def broken():
    pytest.fail("{kind} app: preparing failed", pytrace=False)

@pytest.mark.parametrize("target", [Target("app")], ids=["app"])
def test_fresh(target):
    pass

@pytest.mark.parametrize("target", [Target("app")], ids=["app"])
def test_restore(target, broken):
    pass
'''


def test_the_same_parameter_id_in_two_drills_stays_two_drills(pytester):
    """Issue 20 §5: ``test_restore[app]`` of the Borg drills and of the guest drills (the same
    function name and parameter id, no evidence recorded) are two drills in every output."""
    inv = inventory(pytester.path)
    pytester.makepyfile(test_borg_same=SAME_ID_DRILLS.replace("{kind}", "borg"),
                        test_guest_same=SAME_ID_DRILLS.replace("{kind}", "guest"))
    result = pytester.runpytest("-p", "no:cacheprovider", f"--inventory={inv}",
                                f"--state-dir={pytester.path / 'state'}", f"--out-dir={pytester.path / 'out'}")
    result.assert_outcomes(passed=2, errors=2)
    found = suites(pytester.path / "out" / "drill-report.xml")
    assert [name for name in found if name not in ("history", "restoredrill")] == ["borg:app", "guest:app"]
    for kind in ("borg", "guest"):
        cases = {c.get("name"): c for c in found[f"{kind}:app"].iter("testcase")}
        assert sorted(cases) == ["fresh", "restore"]
        assert f"{kind} app: preparing failed" in cases["restore"].find("error").get("message")
    with sqlite3.connect(pytester.path / "state" / "state.db") as db:
        results = sorted(db.execute("SELECT drill, name, outcome FROM results").fetchall())
    assert results == [("borg:app", "fresh", "passed"), ("borg:app", "restore", "error"),
                       ("guest:app", "fresh", "passed"), ("guest:app", "restore", "error")]
    result.stdout.fnmatch_lines(["FAIL  borg:app *1/2 checks*", "FAIL  guest:app *1/2 checks*"], consecutive=False)
