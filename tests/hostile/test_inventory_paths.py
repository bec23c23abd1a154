"""Traversal in inventory paths: ``restoredrill check-inventory`` must refuse each with exit 2 and
a line-numbered message (the drill itself also refuses them at run time: see the
``inventory-traversal`` repository of test_borg_archives.py).

A path inside an archive is relative to the archive root, as ``borg list`` shows it; ``..``
or a leading ``/`` in one can only be a mistake or an attempt to make a check read a
runner file.
"""
from __future__ import annotations

import copy

import pytest
import yaml

from tests.conftest import run_cli
from tests.hostile.conftest import with_known_defects

BASE = {
    "version": 1,
    "site": {"name": "hostile", "timezone": "UTC"},
    "scratch": {"work_dir": "/tmp/hostile-inventory-scratch", "min_free": "1MiB"},
    "borg": {"repositories": [{"name": "r", "location": "/tmp/hostile-inventory-repo",
                               "passphrase": "file:/tmp/hostile-inventory.pass", "checks": {}}]},
    "offsite": {"storage_boxes": [{"name": "box", "host": "127.0.0.1", "port": 22, "user": "u",
                                   "key_file": "/tmp/k", "known_hosts_file": "/tmp/kh"}],
                "config_exports": []},
}

# id -> (where in the checks block / offsite, value, the YAML key the message must name)
VARIANTS = {
    "canary-path-dotdot": ({"canary": {"path": "../../etc/shadow", "equals": "x"}}, "canary"),
    "canary-path-absolute": ({"canary": {"path": "/etc/shadow", "equals": "x"}}, "canary"),
    "sqlite-path-dotdot": ({"sqlite": ["db/../../../../etc/shadow"]}, "sqlite"),
    "sqlite-path-absolute": ({"sqlite": ["/etc/shadow"]}, "sqlite"),
    "dump-path-dotdot": ({"postgres_dumps": [{"path": "../../../etc/passwd"}]}, "postgres_dumps"),
    "paths-entry-dotdot": ({"paths": ["ok.txt", "a/../../.."]}, "paths"),
    "spot-check-archive-path-dotdot": ({"spot_check": {"source": "/tmp", "archive_path": "../.."}}, "archive_path"),
    "export-glob-dotdot": (None, "path_glob"),
}


def inventory_for(name: str) -> dict:
    data = copy.deepcopy(BASE)
    checks, _ = VARIANTS[name]
    if checks is None:
        data["offsite"]["config_exports"] = [{"name": "fw", "storage_box": "box",
                                              "path_glob": "../../../etc/*.xml"}]
    else:
        data["borg"]["repositories"][0]["checks"] = checks
    return data


@pytest.mark.parametrize("name", with_known_defects(VARIANTS, {}))     # fixed: inventory/model.py validators
def test_traversal_in_an_inventory_path_is_a_usage_error(name: str, tmp_path):
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory_for(name), sort_keys=False))
    proc = run_cli("check-inventory", str(path), timeout=120)
    assert proc.returncode == 2, f"{name}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    key = VARIANTS[name][1]
    assert f"{path.name}:" in proc.stderr and key in proc.stderr, proc.stderr
