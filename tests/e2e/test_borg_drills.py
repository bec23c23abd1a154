"""The Borg drills against the session's lab: all pass, and each fault fails the right case.

Real borg, sshd and PostgreSQL; faults are made in copies of the lab's repositories
or undone afterwards, so the shared lab stays valid.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from restoredrill.lab.borg_history import BorgBuilder, LabRepo
from restoredrill.lab.dataset import CANARY_FILE, PG_DUMP_FILE, SQLITE_FILE
from restoredrill.secrets import write_private
from tests.conftest import blocked_by_preflight, only_repo, only_these_failed, parse_junit, run_cli

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def case(run, name: str) -> dict:
    matches = [c for n, c in run.cases.items() if n == name]
    assert matches, f"no case {name}; cases: {sorted(run.cases)}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    return matches[0]




def test_every_borg_drill_passes_on_the_lab_with_evidence(drill, lab_inventory):
    run = drill(lab_inventory)
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert run.failed() == {}
    for repo in ("app-local", "app-offsite"):
        for check in ("reachable", "encrypted", "fresh", "retention", "check"):
            assert case(run, f"test_{check}[{repo}]")["outcome"] == "passed"
        extract = case(run, f"test_restore[{repo}-extract]")["properties"]
        assert extract["repository"] == repo and extract["archive"].startswith("app-")
        assert float(extract["age_hours"]) < 27 and int(extract["bytes_restored"]) > 100_000
        assert float(extract["seconds"]) > 0
        for kind in ("paths", "min_files", "spot_check", "sqlite:app/db/app.sqlite",
                     "postgres:app/db/app.sql", "canary:app/.restoredrill-canary"):
            assert case(run, f"test_restore[{repo}-{kind}]")["outcome"] == "passed"
    assert "restoredrill summary" in run.stdout and "PASS  borg:app-offsite" in run.stdout


def test_plain_pytest_runs_the_same_drills(lab, tmp_path):
    junit = tmp_path / "j.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "drills"), "--inventory",
                           str(lab.inventory_path), "--state-dir", str(tmp_path / "state"),
                           f"--junitxml={junit}", "-q", "-k", "reachable or encrypted"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    cases = parse_junit(junit)
    borg_cases = {name: c for name, c in cases.items() if c["properties"].get("drill", "").startswith("borg:")}
    assert len(borg_cases) == 4 and all(c["outcome"] == "passed" for c in cases.values())
    assert cases["test_reachable[app-local]"]["properties"]["repository"] == "app-local"


def test_wrong_passphrase_fails_naming_the_repository(drill, lab_inventory, tmp_path):
    wrong = tmp_path / "wrong.pass"
    write_private(wrong, "not-the-passphrase")
    inv = only_repo(lab_inventory, "app-local")
    inv["borg"]["repositories"][0]["passphrase"] = f"file:{wrong}"
    run = drill(inv, "-k", "reachable or fresh")
    assert run.code == 1
    only_these_failed(run, "test_reachable[app-local]", "test_fresh[app-local]")   # one shared phase
    message = case(run, "test_reachable[app-local]")["message"]
    assert "repository app-local" in message and "wrong passphrase" in message
    assert "not-the-passphrase" not in run.stdout + run.stderr + message


def test_changed_host_key_is_refused(lab, drill, lab_inventory):
    lab.box.rotate_host_key()
    try:
        run = drill(only_repo(lab_inventory, "app-offsite"), "--no-preflight", "-k", "reachable")
        preflight = drill(only_repo(lab_inventory, "app-offsite"), "-k", "reachable")
    finally:
        lab.box.restore_host_key()
    assert run.code == 1
    only_these_failed(run, "test_reachable[app-offsite]")
    message = case(run, "test_reachable[app-offsite]")["message"]
    assert "app-offsite" in message and "host key" in message
    # with the preflight (the default): one failure naming both keys, the repository's cases blocked
    message = blocked_by_preflight(preflight, "borg:app-offsite", ["test_reachable[app-offsite]"], "host key CHANGED")
    assert "known_hosts pins SHA256:" in message and "the server presents SHA256:" in message


def test_unknown_host_key_is_refused(drill, lab_inventory, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    lab_inventory["offsite"]["storage_boxes"][0]["known_hosts_file"] = str(empty)
    run = drill(only_repo(lab_inventory, "app-offsite"), "--no-preflight", "-k", "reachable")
    assert run.code == 1 and "host key" in case(run, "test_reachable[app-offsite]")["message"]
    only_these_failed(run, "test_reachable[app-offsite]")
    preflight = drill(only_repo(lab_inventory, "app-offsite"), "-k", "reachable")
    blocked_by_preflight(preflight, "borg:app-offsite", ["test_reachable[app-offsite]"], "not in known_hosts")


@pytest.mark.parametrize("where,cause", [("missing", "does not exist"), ("not-a-repo", "not a Borg repository")])
def test_bad_repository_path(drill, lab, lab_inventory, where, cause, tmp_path):
    inv = only_repo(lab_inventory, "app-local")
    inv["borg"]["repositories"][0]["location"] = str(tmp_path / "nope") if where == "missing" \
        else str(lab.root / "source")
    run = drill(inv, "--no-preflight", "-k", "reachable")
    assert run.code == 1
    only_these_failed(run, "test_reachable[app-local]")
    message = case(run, "test_reachable[app-local]")["message"]
    assert "app-local" in message and cause in message
    preflight = drill(inv, "-k", "reachable")     # found without borg, so without taking a lock
    blocked_by_preflight(preflight, "borg:app-local", ["test_reachable[app-local]"], "not a Borg repository")


def test_too_little_disk_refuses_to_extract(drill, lab_inventory, lab):
    inv = only_repo(lab_inventory, "app-local")
    inv["scratch"]["min_free"] = "1PiB"
    run = drill(inv, "-k", "restore and extract")
    assert run.code == 1
    only_these_failed(run, "test_restore[app-local-extract]")
    message = case(run, "test_restore[app-local-extract]")["message"]
    assert "app-local" in message and "bytes free" in message
    assert not list((lab.root / "scratch").glob("restoredrill-extract-*"))


def test_borg_not_installed(drill, lab_inventory):
    inv = only_repo(lab_inventory, "app-local")
    inv["borg"]["repositories"][0]["borg_binary"] = "/nonexistent/borg"
    run = drill(inv, "--no-preflight", "-k", "reachable")
    assert run.code == 1 and "not installed" in case(run, "test_reachable[app-local]")["message"]
    only_these_failed(run, "test_reachable[app-local]")
    blocked_by_preflight(drill(inv, "-k", "reachable"), "borg:app-local", ["test_reachable[app-local]"],
                         "not installed")


def copy_local_repo(lab, tmp_path, inv) -> Path:
    copy = tmp_path / "repo-copy"
    shutil.copytree(lab.root / "repos" / "app-local", copy)
    inv["borg"]["repositories"][0]["location"] = str(copy)
    return copy


def test_corrupted_segment_fails_the_check(drill, lab, lab_inventory, tmp_path):
    inv = only_repo(lab_inventory, "app-local")
    repo = copy_local_repo(lab, tmp_path, inv)
    segment = max((p for p in (repo / "data").rglob("*") if p.is_file() and p.name.isdigit()),
                  key=lambda p: p.stat().st_size)
    data = bytearray(segment.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 64):
        data[offset] ^= 0xFF
    segment.write_bytes(bytes(data))
    run = drill(inv, "-k", "test_check")
    assert run.code == 1
    only_these_failed(run, "test_check[app-local]")
    message = case(run, "test_check[app-local]")["message"]
    assert "app-local" in message and "damaged" in message


def builder_for(lab, location: Path) -> tuple[BorgBuilder, LabRepo]:
    repo = LabRepo("copy", str(location), lab.root / "secrets" / "app-local.pass")
    return BorgBuilder(location.parent / "builder", "Europe/Berlin"), repo


def test_stale_repository_fails_freshness_and_retention(drill, lab, lab_inventory, tmp_path):
    inv = only_repo(lab_inventory, "app-local")
    location = copy_local_repo(lab, tmp_path, inv)
    builder, repo = builder_for(lab, location)
    names = sorted(builder.names(repo))
    for name in names[-3:]:                      # the newest three days are gone
        builder.borg(repo, "delete", f"{location}::{name}")
    run = drill(inv, "-k", "fresh or retention or reachable")
    assert run.code == 1
    only_these_failed(run, "test_fresh[app-local]", "test_retention[app-local]")
    fresh = case(run, "test_fresh[app-local]")["message"]
    assert "app-local" in fresh and names[-4] in fresh and "h old" in fresh
    retention = case(run, "test_retention[app-local]")["message"]
    assert "app-local" in retention and "daily" in retention


def test_source_changed_after_backup_fails_the_spot_check(drill, lab, lab_inventory):
    photo = lab.root / "source" / "app" / "photos" / "IMG_0003.jpg"
    original = photo.read_bytes()
    photo.write_bytes(original[::-1])
    try:
        inv = only_repo(lab_inventory, "app-local")
        inv["borg"]["repositories"][0]["checks"]["spot_check"]["sample"] = 1000
        run = drill(inv, "-k", "spot_check or paths or canary")
    finally:
        photo.write_bytes(original)
    assert run.code == 1
    only_these_failed(run, "test_restore[app-local-spot_check]")
    assert "app/photos/IMG_0003.jpg" in case(run, "test_restore[app-local-spot_check]")["message"]


def test_damaged_data_in_the_newest_archive(drill, lab, lab_inventory, tmp_path):
    """SQLite damaged, PostgreSQL dump broken, canary missing: each its own failing case."""
    inv = only_repo(lab_inventory, "app-local")
    location = copy_local_repo(lab, tmp_path, inv)
    source = tmp_path / "damaged-source"
    shutil.copytree(lab.root / "source", source)
    db = source / SQLITE_FILE
    raw = bytearray(db.read_bytes())
    raw[4096:8192] = b"\x00garbage" * 512
    db.write_bytes(bytes(raw))
    dump = source / PG_DUMP_FILE
    dump.write_text(dump.read_text().replace("CREATE TABLE public.users", "CREATE TABLE public.users oops", 1))
    (source / CANARY_FILE).unlink()
    builder, repo = builder_for(lab, location)
    builder.create(repo, source, datetime.now(timezone.utc) - timedelta(minutes=30))
    inv["borg"]["repositories"][0]["checks"].pop("spot_check")    # the source is not what was backed up
    run = drill(inv, "-k", "restore")
    assert run.code == 1
    only_these_failed(run, "test_restore[app-local-sqlite:app/db/app.sqlite]",
                      "test_restore[app-local-postgres:app/db/app.sql]",
                      "test_restore[app-local-canary:app/.restoredrill-canary]")
    sqlite_msg = case(run, "test_restore[app-local-sqlite:app/db/app.sqlite]")["message"]
    assert "app/db/app.sqlite" in sqlite_msg and "integrity_check" in sqlite_msg
    pg_msg = case(run, "test_restore[app-local-postgres:app/db/app.sql]")["message"]
    assert "app/db/app.sql" in pg_msg and "ERROR:  42601" in pg_msg and "oops" not in pg_msg
    canary_msg = case(run, "test_restore[app-local-canary:app/.restoredrill-canary]")["message"]
    assert "canary" in canary_msg and "missing" in canary_msg
    for green in ("extract", "paths", "min_files"):
        assert case(run, f"test_restore[app-local-{green}]")["outcome"] == "passed"


def test_invalid_inventory_is_a_usage_error(tmp_path):
    bad = tmp_path / "inv.yaml"
    bad.write_text("site: {name: x}\nborg:\n  repositories:\n    - name: a\n      location: /r\n"
                   "      passphrase: hunter2\n")
    for args in (("run", "--inventory", str(bad)), ("check-inventory", str(bad))):
        proc = run_cli(*args)
        assert proc.returncode == 2
        assert "inv.yaml:6 borg.repositories[0].passphrase" in proc.stderr and "hunter2" not in proc.stderr
    proc = run_cli("run", "--inventory", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "file not found" in proc.stderr
    example = str(ROOT / "inventory" / "example-homelab.yaml")
    assert run_cli("check-inventory", "--no-file-checks", example).returncode == 0
    proc = run_cli("check-inventory", example)     # its secret files are not on this host
    assert proc.returncode == 2 and "secret file /etc/restoredrill/pve-token does not exist" in proc.stderr
    assert run_cli("run").returncode == 2
