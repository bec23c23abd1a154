"""The shipped alerting rules (contrib/prometheus/restoredrill.rules.yml) checked and unit-tested
by the real promtool (Debian's `prometheus` package, installed by scripts/install-deps.sh without
starting its service); the rules' test file feeds them the metric names and labels
metrics.prom carries, and tests/integration/test_report_lab.py runs `promtool check metrics` on a
lab run's file."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from restoredrill.report.metrics import HELP

pytestmark = pytest.mark.integration
CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"
RULES, RULE_TESTS = CONTRIB / "restoredrill.rules.yml", CONTRIB / "restoredrill.rules.test.yml"


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is needed for the alerting-rule tests and is not installed: "
                    "apt-get install -y --no-install-recommends prometheus (scripts/install-deps.sh)", pytrace=False)
    return subprocess.run([found, *args], capture_output=True, text=True, input=stdin, timeout=120, cwd=CONTRIB)


def test_promtool_accepts_the_rules():
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 7 rules found" in proc.stdout


def test_promtool_unit_tests_of_the_rules_pass():
    proc = promtool("test", "rules", str(RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_fails_a_rule_test_that_expects_the_wrong_alert(tmp_path):
    """The test file can fail: expecting the stale-copy alert 8 hours too early is caught."""
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = [str(RULES)]
    for case in tests["tests"][0]["alert_rule_test"]:
        if case["alertname"] == "RestoredrillCopyOlderThanRPO" and case["eval_time"] == "20h":
            case["exp_alerts"] = [{"exp_labels": {"severity": "critical", "site": "lab", "target": "guest:app-vm",
                                                  "copy": "pbs:local"}}]
    broken = tmp_path / "broken.test.yml"
    broken.write_text(yaml.safe_dump(tests))
    proc = promtool("test", "rules", str(broken))
    assert proc.returncode != 0 and "RestoredrillCopyOlderThanRPO" in proc.stdout + proc.stderr


def test_every_metric_the_rules_use_is_one_restoredrill_writes():
    text = RULES.read_text()
    used = set(__import__("re").findall(r"\brestoredrill_[a-z_]+\b", text))
    assert used and used <= set(HELP), used - set(HELP)
