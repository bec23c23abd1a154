"""Manual and partial runs never touch production signals (issue 21, section 2), without the lab:
`restoredrill run --select lint` on the example homelab's inventory (the lint drills read the
inventory; its key proofs fail, which is a run like any other) with the heartbeat pointed at a
local receiver and reports.metrics_file in a folder of the test. The lab runs, with the
scheduled run first, are in tests/e2e/test_run_by_hand.py."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.test_notify_heartbeat import TOKEN, Receiver

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "example-homelab.yaml"


def with_secret_files_in(data, folder: Path):
    """The example's `file:` secrets live in /etc/restoredrill on a real runner; check-inventory
    refuses missing ones (issue 22). Point each at a stand-in file of mode 0600 in ``folder``."""
    folder.mkdir(exist_ok=True)

    def visit(value):
        if isinstance(value, dict):
            return {key: visit(item) for key, item in value.items()}
        if isinstance(value, list):
            return [visit(item) for item in value]
        if isinstance(value, str) and value.startswith("file:"):
            stand_in = folder / f"secret-{len(list(folder.iterdir()))}"
            stand_in.write_text("not-a-real-secret\n")
            stand_in.chmod(0o600)
            return f"file:{stand_in}"
        return value
    return visit(data)

@pytest.fixture
def site(tmp_path):
    with Receiver() as receiver:
        data = with_secret_files_in(yaml.safe_load(EXAMPLE.read_text()), tmp_path / "secrets")
        data["notifications"] = {"heartbeat_url": "env:RESTOREDRILL_TEST_HEARTBEAT"}
        data["reports"] = {"out_dir": str(tmp_path / "default-reports"),
                           "metrics_file": str(tmp_path / "textfile" / "restoredrill.prom")}
        (tmp_path / "textfile").mkdir()
        (tmp_path / "textfile" / "restoredrill.prom").write_text("# the scheduled run's metrics\n")
        path = tmp_path / "inventory.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        yield path, receiver, tmp_path


def run(site, *extra: str) -> subprocess.CompletedProcess:
    path, receiver, folder = site
    env = {**os.environ, "RESTOREDRILL_TEST_HEARTBEAT": f"{receiver.base}/ping/{TOKEN}"}
    return subprocess.run([sys.executable, "-m", "restoredrill.cli", "run", "--inventory", str(path),
                           "--state-dir", str(folder / "state"), *extra], capture_output=True, text=True,
                          env=env, timeout=300)


def untouched(folder: Path) -> bool:
    return (folder / "textfile" / "restoredrill.prom").read_text() == "# the scheduled run's metrics\n"


def test_a_partial_run_pings_nothing_and_leaves_the_metrics_file(site):
    _, receiver, folder = site
    done = run(site, "--select", "lint", "--out", str(folder / "out"))
    assert done.returncode == 1, done.stdout[-3000:]           # the example's key proofs fail: still a run
    assert receiver.pings == [] and untouched(folder)
    assert ("signals        none sent, partial run (--select lint): heartbeat, mail and metrics file untouched; "
            "--notify sends them") in done.stdout
    assert "\nheartbeat " not in done.stdout            # once, on the signals line, not again per channel
    report = (folder / "out" / "drill-report.xml").read_text()
    assert "not sent, partial run (--select lint); --notify sends it" in report     # the report keeps each
    assert "restoredrill_drill_success" in (folder / "out" / "metrics.prom").read_text()
    summary = (folder / "out" / "summary.json").read_text()
    assert '"scope": "partial run (--select lint)"' in summary and '"production_signals": false' in summary


def test_without_out_a_partial_run_writes_no_metrics_at_all(site):
    _, receiver, folder = site
    done = run(site, "--select", "lint")
    assert done.returncode == 1 and receiver.pings == [] and untouched(folder)
    assert not (folder / "default-reports" / "metrics.prom").exists()
    assert "metrics        not written, partial run (--select lint)" in done.stdout


@pytest.mark.parametrize("selection, said", [
    (["-k", "app-locl"], "no drill matched -k 'app-locl'"),
    (["--select", "lint", "-k", "nothing_like_this"], "no drill matched --select lint, -k 'nothing_like_this'"),
    (["-m", "borg and ("], "Wrong expression passed to '-m'"),
])
def test_a_selection_matching_nothing_is_a_usage_error_that_touches_nothing(site, selection, said):
    _, receiver, folder = site
    out = folder / "out"
    out.mkdir()
    (out / "junit.xml").write_text("<the last run's junit/>")
    done = run(site, *selection, "--out", str(out), "--workers", "1")
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr
    assert said in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert receiver.pings == [] and untouched(folder)
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml"]
    assert (out / "junit.xml").read_text() == "<the last run's junit/>"
    database = folder / "state" / "state.db"
    if database.exists():                            # opened, but no run recorded as started
        with sqlite3.connect(database) as conn:
            assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_notify_opts_a_partial_run_in(site):
    _, receiver, folder = site
    done = run(site, "--select", "lint", "--notify", "--out", str(folder / "out"))
    assert done.returncode == 1
    assert [ping.path for ping in receiver.pings] == [f"/ping/{TOKEN}/start", f"/ping/{TOKEN}/fail"]
    assert not untouched(folder) and "restoredrill_drill_success" in (folder / "textfile" / "restoredrill.prom").read_text()


def test_the_plan_lists_cases_and_sends_nothing(site):
    _, receiver, folder = site
    done = run(site, "--select", "lint", "--plan", "--out", str(folder / "out"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "drills/test_lint.py::test_strategies" in done.stdout and "nothing is restored, sent or written" in done.stdout
    assert receiver.pings == [] and untouched(folder) and not (folder / "out").exists()
