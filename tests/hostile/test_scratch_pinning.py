"""Issue 20 §3: restored data built to stay in scratch, through the real drill.

Two repositories made with the real ``borg create`` (which stores the immutable and
append-only flags of what it reads): one holding 1100 nested directories (shutil.rmtree
raised RecursionError on it and every later run died in the sweep), one holding
``chattr +i`` / ``+a`` members (borg restored the flags, the removal failed silently and
the drill passed leaving a copy of the data). Beside them, a stale extract of a dead run
that no one can remove (a mount point inside): the sweep reports it once and goes on.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from restoredrill.clients.borg import resolve_binary
from tests.conftest import parse_junit, run_cli
from tests.hostile.conftest import HostileRepo, Member, Secrets, borg_env, build_repo, file

pytestmark = pytest.mark.integration
DEAD_PID = 999999999         # above any pid_max: that run is gone
STUCK = f"restoredrill-extract-{DEAD_PID}-old-stuck"


def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


def _deep_members() -> list[Member]:
    """1100 nested directories as tar members (borg create itself recurses per level and
    cannot archive them; borg import-tar, as the issue's attacker used, can)."""
    names = ["/".join(["d"] * level) for level in range(1, 1101)]
    return [file("canary", "expected-canary\n"), *(Member(name, "dir") for name in names),
            file(names[-1] + "/leaf", "x")]


def _create(name: str, source: Path, work: Path, passphrase: str) -> Path:
    borg, location = resolve_binary("borg"), work / "repos" / name
    env = borg_env(work / "borg" / name, passphrase)
    location.parent.mkdir(exist_ok=True)
    for argv in (["init", "--encryption=repokey-blake2", str(location)],
                 ["create", f"{location}::pinned-archive", "."]):
        proc = subprocess.run([borg, *argv], cwd=source, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"borg {argv[0]} for {name}: {proc.stderr[-2000:]}")
    return location


@pytest.fixture(scope="module")
def pinning_run(tmp_path_factory, hostile_secrets: Secrets):
    work = tmp_path_factory.mktemp("pinning")
    scratch = work / "scratch"
    (scratch / STUCK / "mnt").mkdir(parents=True)
    source = work / "src" / "pinned"
    source.mkdir(parents=True)
    (source / "canary").write_text("expected-canary\n")
    locked = source / "locked"
    locked.mkdir()
    (locked / "data.txt").write_text("restored data that must not stay\n")
    (source / "append.log").write_text("log\n")
    flagged = [locked / "data.txt", locked]
    _chattr("+i", *flagged)
    _chattr("+a", source / "append.log")
    try:
        repos = {"pinned": _create("pinned", source, work, hostile_secrets.marker)}
    finally:
        _chattr("-i", *flagged)
        _chattr("-a", source / "append.log")
    (work / "repos" / "deep").parent.mkdir(exist_ok=True)
    repos["deep"] = work / "repos" / "deep"
    build_repo(HostileRepo("deep", repos["deep"], _deep_members()), work / "borg", hostile_secrets.marker)
    inventory = {"version": 1, "site": {"name": "pinning", "timezone": "UTC"},
                 "scratch": {"work_dir": str(scratch), "min_free": "1MiB"},
                 "borg": {"repositories": [
                     {"name": name, "location": str(location), "passphrase": f"file:{hostile_secrets.passphrase_file}",
                      "encryption_required": True, "lock_wait": "1m",
                      "checks": {"paths": ["canary"], "canary": {"path": "canary", "equals": "expected-canary"}}}
                     for name, location in repos.items()]}}
    path = work / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    out = work / "out"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(scratch / STUCK / "mnt")],
                   check=True, capture_output=True)
    try:
        proc = run_cli("run", "--inventory", str(path), "--out", str(out), "--state-dir", str(work / "state"),
                       "--select", "borg", "-k", "restore", timeout=900)
        yield proc, parse_junit(out / "junit.xml") if (out / "junit.xml").exists() else {}, scratch
    finally:
        subprocess.run(["umount", "-l", str(scratch / STUCK / "mnt")], capture_output=True)
    for leftover in scratch.glob("restoredrill-extract-*"):      # a failed run may leave pinned files
        subprocess.run(["chattr", "-R", "-ia", str(leftover)], capture_output=True)


def test_deep_and_pinned_extracts_are_removed_and_the_drill_passes(pinning_run):
    proc, cases, scratch = pinning_run
    shown = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, shown
    for repo in ("deep", "pinned"):
        for check in ("extract", "paths", "canary:canary"):
            assert cases[f"test_restore[{repo}-{check}]"]["outcome"] == "passed", (repo, check, shown)
    assert sorted(p.name for p in scratch.iterdir()) == [STUCK], "an extract was left in scratch"


def test_a_stale_extract_that_cannot_go_is_reported_once_and_the_sweep_goes_on(pinning_run):
    proc, cases, scratch = pinning_run
    output = proc.stdout + proc.stderr
    assert output.count(f"scratch folder {scratch / STUCK} could not be removed") == 1, output[-3000:]
    assert "Traceback" not in output
    assert len(cases) == 6          # the sweep went on: both repositories ran all their cases
