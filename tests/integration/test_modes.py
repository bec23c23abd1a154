"""The run modes through the CLI against one served lab (real borg, sshd, PostgreSQL, the
Proxmox double, SeaweedFS): gate runs audits only; scheduled restore-tests what its rotation
picks under a small budget, the next run another target; monthly --yes runs every drill and
writes runbook.md and an evidence bundle whose manifest verifies."""
from __future__ import annotations

import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from restoredrill.bundle import MANIFEST, verify_manifest
from restoredrill.lab.site import Lab
from restoredrill.modes import restore_target_of_row
from tests.conftest import parse_junit

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp_path_factory.mktemp("modes") / "lab") as built:
        yield built


def run_cli(inventory: Path, mode: str, out: Path, state: Path, *extra: str, stdin: str | None = None):
    done = subprocess.run([sys.executable, "-m", "restoredrill.cli", "run", "--inventory", str(inventory),
                           "--mode", mode, "--out", str(out), "--state-dir", str(state), *extra],
                          input=stdin if stdin is not None else "", capture_output=True, text=True, timeout=300)
    return done


def cases(out: Path) -> list[tuple[str, str]]:
    """(pytest file stem, test case name) of every case in junit.xml."""
    root = ET.parse(out / "junit.xml").getroot()
    return [(case.get("classname", "").rsplit(".", 1)[-1], case.get("name", "")) for case in root.iter("testcase")]


def junit_cases(out: Path) -> dict:
    return parse_junit(out / "junit.xml")


def restore_targets(out: Path) -> set[str]:
    found = set()
    for case in ET.parse(out / "junit.xml").getroot().iter("testcase"):
        drill = next((p.get("value") for p in case.iter("property") if p.get("name") == "drill"), "")
        nodeid = f"drills/{case.get('classname', '').rsplit('.', 1)[-1]}.py::{case.get('name')}"
        target = restore_target_of_row(drill, nodeid)
        if target:
            found.add(target)
    return found


def test_gate_runs_fast_audits_only(lab, tmp_path):
    done = run_cli(lab.inventory_path, "gate", tmp_path / "gate", tmp_path / "state")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    ran = cases(tmp_path / "gate")
    names = {name.split("[")[0] for _, name in ran}
    assert not names & {"test_restore", "test_health", "test_check", "test_s3_chunk_sample"}, names
    assert {"test_fresh", "test_verified", "test_retention", "test_s3_chunks_present", "test_export_fresh"} <= names
    assert not any(stem == "test_pbs_restore" for stem, _ in ran)
    assert "test_site_loss" not in names                 # the monthly drill's (issue 23)


def test_scheduled_rotates_restore_targets_under_the_budget(lab, tmp_path):
    data = yaml.safe_load(lab.inventory_path.read_text())
    data.setdefault("scratch", {}).setdefault("budgets", {})["max_run_time"] = "10m"   # < one unknown target
    budgeted = tmp_path / "budgeted.yaml"
    budgeted.write_text(yaml.safe_dump(data, sort_keys=False))
    state = tmp_path / "state"
    first = run_cli(budgeted, "scheduled", tmp_path / "first", state)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert "restore-testing 1 target(s)" in first.stdout
    tested_first = restore_targets(tmp_path / "first")
    assert tested_first == {"borg:app-local"}          # never tested: inventory order, the first one
    audits = {name for _, name in cases(tmp_path / "first")}
    assert {"test_check[app-offsite]", "test_fresh[app-offsite]", "test_s3_chunk_sample[lab-s3]"} <= audits
    assert not any(name.startswith("test_site_loss") for name in audits)
    second = run_cli(budgeted, "scheduled", tmp_path / "second", state)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-2000:]
    assert restore_targets(tmp_path / "second") == {"borg:app-offsite"}


def test_monthly_yes_runs_everything_and_writes_runbook_and_bundle(lab, tmp_path):
    refused = run_cli(lab.inventory_path, "monthly", tmp_path / "refused", tmp_path / "state")
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    out = tmp_path / "monthly"
    done = run_cli(lab.inventory_path, "monthly", out, tmp_path / "state", "--yes")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    # fixtures/site_loss.py imports fixtures/lint.py: registered in that order, no rewrite warning
    assert "PytestAssertRewriteWarning" not in done.stdout + done.stderr, done.stdout[-3000:]
    plan = done.stdout[:done.stdout.index("--yes given")]
    assert plan.index("firewall opnsense") < plan.index("application app-vm") < plan.index("data borg:app-local")
    assert restore_targets(out) == {"borg:app-local", "borg:app-offsite", "guest:app-vm", "guest:app-ct"}
    site_loss = {name: case for name, case in junit_cases(out).items() if name.startswith("test_site_loss[")}
    assert set(site_loss) == {"test_site_loss[app-vm]", "test_site_loss[app-ct]"}
    for case in site_loss.values():          # rebuilt from the bucket and the escrowed key alone
        assert case["outcome"] == "passed" and case["properties"]["copy"] == "offsite"
        assert int(case["properties"]["unique_chunks"]) > 0 and int(case["properties"]["bytes_read"]) > 0
    assert site_loss["test_site_loss[app-vm]"]["properties"]["files_found"] == "/srv/app/canary.txt,/srv/app/app.sqlite"
    runbook = (out / "runbook.md").read_text()
    vm_row = next(line for line in runbook.splitlines() if line.startswith("| ") and "app-vm" in line)
    restore, boot = (float(cell) for cell in vm_row.split(" | ")[3:5])
    assert restore > 0 and boot > 0 and "passed" in vm_row
    bundle = out / "evidence"
    assert {"junit.xml", "drill-report.xml", "report.html", "runbook.md", MANIFEST} <= {p.name for p in bundle.iterdir()}
    assert (bundle / "config-diffs" / "guest_app-vm.json").is_file()
    assert list((bundle / "task-logs").glob("guest_app-vm-restore.txt"))
    assert verify_manifest(bundle) == []
    listed = (bundle / MANIFEST).read_text().splitlines()
    assert len(listed) == sum(1 for p in bundle.rglob("*") if p.is_file()) - 1
    check = subprocess.run(["sha256sum", "--check", "--quiet", MANIFEST], cwd=bundle, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    with tarfile.open(out / "evidence.tar.gz") as tar:
        assert f"evidence/{MANIFEST}" in tar.getnames()

