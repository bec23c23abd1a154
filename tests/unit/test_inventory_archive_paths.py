"""Archive-relative paths in the Borg checks and the config-export glob: what the schema refuses
(one error per bad path, at its file:line) and what it keeps accepting."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from restoredrill.inventory import InventoryError, parse_inventory

BASE = {
    "version": 1,
    "site": {"name": "paths", "timezone": "UTC"},
    "scratch": {"work_dir": "/tmp/paths-scratch", "min_free": "1MiB"},
    "borg": {"repositories": [{"name": "r", "location": "/tmp/paths-repo", "passphrase": "file:/tmp/p",
                               "checks": {}}]},
    "offsite": {"storage_boxes": [{"name": "box", "host": "127.0.0.1", "port": 22, "user": "u",
                                   "key_file": "/tmp/k", "known_hosts_file": "/tmp/kh"}]},
}


def inventory(checks: dict | None = None, path_glob: str | None = None) -> str:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["borg"]["repositories"][0]["checks"] = checks or {}
    if path_glob is not None:
        data["offsite"]["config_exports"] = [{"name": "fw", "storage_box": "box", "path_glob": path_glob}]
    return yaml.safe_dump(data, sort_keys=False)


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, Path("inventory.yaml"))
    return info.value.problems


def test_a_bad_sqlite_path_in_the_long_form_is_one_problem_at_its_line():
    found = problems(inventory({"sqlite": ["ok/db.sqlite", {"path": "db/../../x.sqlite", "show_found": True}]}))
    assert len(found) == 1, found
    assert found[0].startswith("inventory.yaml:") and "checks.sqlite[1]" in found[0] and "'..'" in found[0]


def test_an_absolute_paths_entry_names_the_fix():
    found = problems(inventory({"paths": ["ok", "/etc/shadow"]}))
    assert len(found) == 1 and "checks.paths[1]" in found[0] and "remove the leading /" in found[0], found


@pytest.mark.parametrize("glob", ["", ".", "./", "opnsense/../../etc/*.xml"])
def test_a_glob_that_names_no_file_or_climbs_is_refused(glob):
    found = problems(inventory(path_glob=glob))
    assert len(found) == 1 and "config_exports[0].path_glob" in found[0], found


def test_ordinary_paths_and_an_absolute_box_glob_are_kept():
    checks = {"paths": ["./srv/app", "srv/a..b/c", "srv/.hidden"], "sqlite": ["db/x.sqlite", {"path": "y.sqlite"}],
              "canary": {"path": "srv/app/.canary", "equals": "x"},
              "spot_check": {"source": "/srv/app", "archive_path": "srv/app"},
              "postgres_dumps": [{"path": "srv/db.sql"}]}
    model = parse_inventory(inventory(checks, "/home/opnsense/config-*.xml"), Path("inventory.yaml")).model
    assert model.borg.repositories[0].checks.paths == ["./srv/app", "srv/a..b/c", "srv/.hidden"]
    assert str(model.borg.repositories[0].checks.sqlite[1]) == "y.sqlite"
    assert model.offsite.config_exports[0].path_glob == "/home/opnsense/config-*.xml"
