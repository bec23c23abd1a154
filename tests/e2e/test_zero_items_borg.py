"""The zero rule on the Borg data checks, with the lab's real Borg (issue 14, section 1): an
archive whose spot-check source is an empty directory (an unmounted mount point) and whose
SQLite database is a zero-byte file fails those two cases, each saying nothing was checked
and recording the 0 as evidence; an entry that declares ``expect_empty`` passes and says so."""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import pytest

from restoredrill.lab.borg_history import BorgBuilder, LabRepo
from tests.conftest import only_repo

pytestmark = pytest.mark.e2e


def test_an_empty_source_and_a_zero_byte_database_fail(drill, lab, lab_inventory, tmp_path):
    inv = only_repo(lab_inventory, "app-local")
    location = tmp_path / "repo-copy"
    shutil.copytree(lab.root / "repos" / "app-local", location)
    repo_entry = inv["borg"]["repositories"][0]
    repo_entry["location"] = str(location)
    source = tmp_path / "source"
    shutil.copytree(lab.root / "source", source)
    (source / "app" / "mnt").mkdir()                       # the mount point, nothing mounted
    (source / "app" / "db" / "empty.sqlite").write_bytes(b"")
    (source / "app" / "db" / "declared.sqlite").write_bytes(b"")
    builder = BorgBuilder(tmp_path / "builder", "Europe/Berlin")
    builder.create(LabRepo("copy", str(location), lab.root / "secrets" / "app-local.pass"), source,
                   datetime.now(timezone.utc) - timedelta(minutes=30))
    checks = repo_entry["checks"]
    checks["spot_check"] = {"source": str(source / "app" / "mnt"), "archive_path": "app/mnt", "sample": 20}
    checks["sqlite"] += ["app/db/empty.sqlite", {"path": "app/db/declared.sqlite", "expect_empty": True}]
    run = drill(inv, "-k", "restore")
    assert run.code == 1
    failed = {name for name, case in run.cases.items() if case["outcome"] != "passed"}
    spot, empty = "test_restore[app-local-spot_check]", "test_restore[app-local-sqlite:app/db/empty.sqlite]"
    assert failed == {spot, empty}, run.failed()
    for name, found, key in ((spot, "0 files sampled", "checked_files_sampled"),
                             (empty, "0 tables", "checked_tables")):
        case = run.cases[name]
        assert case["outcome"] == "failure" and f"found {found}." in case["message"], case
        assert "Nothing was checked" in case["message"] and case["properties"][key] == "0"
    assert "unmounted source mount point" in run.cases[spot]["message"]
    declared = run.cases["test_restore[app-local-sqlite:app/db/declared.sqlite]"]["properties"]
    assert declared["expect_empty"] == "True" and declared["checked_tables"] == "0"
    assert run.cases["test_restore[app-local-sqlite:app/db/app.sqlite]"]["properties"]["checked_tables"] != "0"
