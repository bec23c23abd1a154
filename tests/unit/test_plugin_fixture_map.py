"""Issue 26: the plugin registers each drill suite's fixture modules when the suite is collected
(``DRILL_FIXTURES``), not every module at start. Every fixture every drill asks for must still be
found: collect all suites on the example inventory and look for names pytest could not resolve."""
from __future__ import annotations

import subprocess
import sys

from restoredrill import drills_dir, example_inventory

PROBE = """
import sys
import pytest
import restoredrill.plugin as plugin
load = plugin.load_inventory
plugin.load_inventory = lambda path: load(path, check_files=False)   # the example's secret files are not here
class Resolved:
    def pytest_collection_modifyitems(self, items):
        suites = set()
        for item in items:
            info = item._fixtureinfo
            missing = [n for n in info.names_closure if n not in info.name2fixturedefs and n != "request"]
            if missing:
                print("MISSING", item.nodeid, missing)
            suites.add(item.path.name)
        print("SUITES", sorted(suites))
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "--site-loss", "--inventory", sys.argv[1],
                      sys.argv[2]],
                     plugins=[Resolved()]))
"""


def test_every_drill_fixture_resolves_with_per_suite_registration():
    proc = subprocess.run([sys.executable, "-c", PROBE, str(example_inventory()), str(drills_dir())],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "MISSING" not in proc.stdout, [line for line in proc.stdout.splitlines() if "MISSING" in line]
    suites = next(line for line in proc.stdout.splitlines() if line.startswith("SUITES"))
    for name in ("test_borg.py", "test_lint.py", "test_monitoring.py", "test_offsite.py", "test_offsite_site_loss.py",
                 "test_pbs_audit.py", "test_pbs_restore.py"):
        assert name in suites, suites
