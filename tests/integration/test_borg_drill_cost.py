"""Issue 26: the fixed cost of a Borg extract drill, with real borg.

- A ``run --select borg`` starts borg twice (``list``, ``extract``): no ``borg info
  REPO::ARCHIVE`` for the free-space check (one more start, and a read of every item chunk of
  the archive), and it imports none of the other kinds' clients (boto3, paramiko, testinfra,
  requests), which cost every run about 0.4 s.
- The free-space check still protects the scratch file system without the archive's size: on
  the first extract borg is stopped once less than ``scratch.min_free`` stays free, and the next
  run refuses up front by what the last extract wrote.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from restoredrill.clients.borg import resolve_binary
from restoredrill.lab.borg_history import BorgBuilder, LabRepo, one_archive_repo
from restoredrill.lab.dataset import build_dataset
from tests.conftest import parse_junit

pytestmark = pytest.mark.integration

CASE = "test_restore[site-repo-extract]"
OTHER_CLIENTS = ("boto3", "botocore", "paramiko", "testinfra", "requests", "urllib3", "proxmoxer")
# what a one-process run without a heartbeat never needs (issue 26): pytest-xdist and its
# execnet, pdb (pytest's debugging plugin), unittest, the heartbeat's HTTP modules
NOT_NEEDED = ("execnet", "xdist", "pdb", "unittest", "http.client", "urllib.request")
PADDING_MIB = 96


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder with a Borg repository holding one archive (the lab's dataset and PADDING_MIB
    MiB of incompressible files), its passphrase, and a borg that logs its subcommands."""
    root = tmp_path_factory.mktemp("cost")
    repo = one_archive_repo(root, PADDING_MIB, datetime.now(timezone.utc) - timedelta(minutes=5), "drill-cost-test")
    assert Path(repo.location) == root / "repo" and repo.passphrase_file == root / "repo.pass"
    shim = root / "borg-logged"
    shim.write_text(f'#!/bin/sh\necho "$1" >> "{root / "borg-calls.log"}"\nexec "{resolve_binary("borg")}" "$@"\n')
    shim.chmod(0o755)
    return root


def inventory(site: Path, name: str, min_free: int) -> Path:
    data = {
        "version": 1,
        "site": {"name": "cost", "timezone": "UTC"},
        "policies": {"retention": {"daily": {"keep_daily": 7}}},
        "scratch": {"work_dir": str(site / "scratch"), "min_free": str(min_free)},
        "borg": {"repositories": [{"name": "site-repo", "location": str(site / "repo"),
                                   "passphrase": f"file:{site / 'repo.pass'}", "retention": "daily",
                                   "encryption_required": True, "borg_binary": str(site / "borg-logged")}]},
    }
    path = site / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# the command as `restoredrill run`, in a Python that says at exit which modules it imported
PROBE = """
import atexit, json, sys
atexit.register(lambda: open(sys.argv[1], "w").write(json.dumps(sorted(sys.modules))))
from restoredrill.cli import main
sys.exit(main(sys.argv[2:]))
"""


# the scratch folder as a file system of its own (a tmpfs in a private mount namespace): the
# machine's disk is shared with other work, whose writes would move a reserve measured on it
ON_TMPFS = 'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"'


def drill(site: Path, inv: Path, state: Path, out: Path, tmpfs: str = "") -> tuple[dict, list[str], list[str]]:
    """(the extract case, borg's subcommands, the modules imported)."""
    calls = site / "borg-calls.log"
    calls.unlink(missing_ok=True)
    modules = out.with_suffix(".modules.json")
    argv = [sys.executable, "-c", PROBE, str(modules), "run", "--inventory", str(inv), "--select", "borg", "-k",
            "extract", "--state-dir", str(state), "--out", str(out)]
    if tmpfs:
        (site / "scratch").mkdir(exist_ok=True)
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", ON_TMPFS.format(size=tmpfs),
                str(site / "scratch"), *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    cases = parse_junit(out / "junit.xml") if (out / "junit.xml").exists() else {}
    assert CASE in cases, f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    started = calls.read_text().split() if calls.exists() else []
    return cases[CASE], started, json.loads(modules.read_text())


def test_extract_drill_starts_borg_twice_and_loads_no_other_client(site, tmp_path):
    case, started, modules = drill(site, inventory(site, "plain", 1 << 20), tmp_path / "state", tmp_path / "out")
    assert case["outcome"] == "passed", case
    assert started == ["list", "extract"], started
    loaded = [name for name in OTHER_CLIENTS if name in modules]
    assert not loaded, f"a Borg-only run imported {loaded}"
    unused = [name for name in NOT_NEEDED if name in modules]
    assert not unused, f"a one-process run without a heartbeat imported {unused}"


def test_first_extract_stopped_when_scratch_fills_then_refused_up_front(site, tmp_path):
    """Scratch is a 256 MiB file system (root and unshare, like the lab's namespaces); the archive
    holds about 97 MiB."""
    state, reserve = tmp_path / "state", 200 << 20
    case, started, _ = drill(site, inventory(site, "tight", reserve), state, tmp_path / "out", tmpfs="256m")
    assert case["outcome"] == "failure", case
    assert "borg extract was stopped: the scratch file system" in case["message"], case["message"]
    assert f"below scratch.min_free ({reserve:,} bytes must stay free)" in case["message"], case["message"]
    assert started == ["list", "extract"], started

    case, _, _ = drill(site, inventory(site, "roomy", 1 << 20), state, tmp_path / "out2", tmpfs="256m")
    assert case["outcome"] == "passed", case
    written = int(case["properties"]["bytes_restored"])
    assert written > PADDING_MIB << 20

    case, started, _ = drill(site, inventory(site, "tight", reserve), state, tmp_path / "out3", tmpfs="256m")
    assert case["outcome"] == "failure", case
    assert f"({written:,} for the archive, {reserve:,} reserve)" in case["message"], case["message"]
    assert started == ["list"], started          # refused before borg extract started

    # a newer, small archive: the size of the big one does not refuse it (else it would be
    # refused for ever: a refused extract records no new size)
    build_dataset(tmp_path / "small")
    BorgBuilder(site / "builder-base", "UTC").create(LabRepo("bench", str(site / "repo"), site / "repo.pass"),
                                                     tmp_path / "small", datetime.now(timezone.utc))
    case, started, _ = drill(site, inventory(site, "tight", reserve), state, tmp_path / "out4", tmpfs="256m")
    assert case["outcome"] == "passed", case
    assert started == ["list", "extract"], started


def test_listing_ahead_is_taken_once_for_its_own_target_and_fresh(site, tmp_path, monkeypatch):
    """clients/borg_ahead.py: the drill takes the listing `restoredrill run` started, with the
    version borg logged (no `borg --version` later); a stale one or another target lists again."""
    from restoredrill.clients import borg_ahead
    from restoredrill.clients.borg import BorgClient, BorgError
    from restoredrill.clients.borg_target import build_target
    from restoredrill.inventory import load_inventory

    loaded = load_inventory(inventory(site, "ahead", 1 << 20))
    target = lambda: build_target(loaded, loaded.model.borg.repositories[0], tmp_path / "state")  # noqa: E731
    calls = site / "borg-calls.log"
    calls.unlink(missing_ok=True)
    finish = borg_ahead.start([target()])
    client = BorgClient(target())
    found = borg_ahead.listing(client)
    finish()
    assert [a.name for a in found.archives] and client.seen_version is not None
    assert calls.read_text().split() == ["list"]
    assert borg_ahead.listing(BorgClient(target())).archives                # taken once: listed again
    assert calls.read_text().split() == ["list", "list"]

    monkeypatch.setattr(borg_ahead, "MAX_AGE", 0.0)
    finish = borg_ahead.start([target()])
    borg_ahead.listing(BorgClient(target()))
    finish()
    assert calls.read_text().split() == ["list"] * 4                         # too old: listed again

    wrong = site / "wrong.pass"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)
    bad = inventory(site, "ahead-bad", 1 << 20)
    bad.write_text(bad.read_text().replace(str(site / "repo.pass"), str(wrong)))
    loaded = load_inventory(bad)
    calls.unlink()
    finish = borg_ahead.start([target()])
    with pytest.raises(BorgError, match="passphrase"):
        borg_ahead.listing(BorgClient(target()))        # failed ahead: the drill's own call, and its error
    finish()
    assert calls.read_text().split() == ["list", "list"]

    # a repository someone holds locked: the listing ahead does not wait (--lock-wait=0), the
    # drill's own call waits as it always did (here: its lock_wait, then the lock error)
    loaded = load_inventory(inventory(site, "ahead", 1 << 20))
    lock = Path(loaded.model.borg.repositories[0].location) / "lock.exclusive"
    lock.mkdir()
    (lock / "otherhost@1234.5678-0").touch()
    try:
        calls.unlink()
        started = time.monotonic()
        finish = borg_ahead.start([target()])
        with pytest.raises(BorgError, match="lock"):
            borg_ahead.listing(BorgClient(replace(target(), lock_wait_seconds=2)))
        finish()
        assert calls.read_text().split() == ["list", "list"]
        assert 2 <= time.monotonic() - started < 30, "the listing ahead waited for the lock, or the drill did not"
    finally:
        shutil.rmtree(lock)
