"""Hostile Borg archives through the real drill: ``restoredrill run --select borg`` on real repositories.

All inputs (tests/hostile/archive_inputs.py) live in ONE inventory and are drilled in ONE
CLI run: one repository per input, built with the real ``borg import-tar`` from a crafted
tar stream, plus a benign control repository. Scratch is a 64 MiB tmpfs so the
"larger than the free space" inputs cost nothing. Per input: the named cases FAIL with a
clear message, nothing appears outside scratch, no marker file (executed content) appears,
and the control repository's cases still pass.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from restoredrill.clients.borg import resolve_binary
from tests.conftest import parse_junit, run_cli
from tests.hostile.archive_inputs import ArchiveInput, Places, inputs, merge_checks
from tests.hostile.conftest import HostileRepo, Secrets, build_repo, file, leaks_in

pytestmark = pytest.mark.integration
SCRATCH_SIZE = 64 << 20
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\.py:\d+: in |^E   ", re.MULTILINE)


@dataclass
class ArchiveRun:
    code: int
    stdout: str
    stderr: str
    cases: dict[str, dict]
    places: Places
    inputs: list[ArchiveInput]
    out: Path
    state: Path
    scratch: Path
    outside_before: dict


def _mount_tmpfs(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SCRATCH_SIZE},mode=0755", "tmpfs", str(path)],
                   check=True, capture_output=True)


def _sparse_tar(work: Path, size: int) -> Path:
    """GNU tar -S around a sparse file of ``size`` bytes (a few KiB on disk)."""
    folder = work / "sparse-src"
    folder.mkdir()
    (folder / "ok.txt").write_text("a harmless regular file\n")
    with open(folder / "sparse.img", "wb") as handle:
        handle.seek(size - 1)
        handle.write(b"\x01")
    target = work / "sparse.tar"
    subprocess.run(["tar", "-S", "-cf", str(target), "-C", str(folder), "ok.txt", "sparse.img"], check=True)
    return target


def _repo_entry(name: str, items: list[ArchiveInput], location: Path, secrets_: Secrets, old_borg: Path) -> dict:
    checks = merge_checks(items)
    if not any(i.extract_refused for i in items):
        checks["paths"] = ["ok.txt", *checks.get("paths", [])]     # a benign check beside the hostile ones
    entry = {"name": name, "location": str(location), "passphrase": f"file:{secrets_.passphrase_file}",
             "encryption_required": True, "lock_wait": "1m", "checks": checks}
    if any(i.old_borg for i in items):
        entry["borg_binary"] = str(old_borg)
    return entry


def _old_borg(work: Path) -> Path:
    """A borg that says it is 1.2.4 (Debian 12's) and otherwise is the real one: 1.2.4 writes
    through a symlinked parent directory created earlier in the same archive, as root."""
    script = work / "borg-1.2.4"
    # it says so to --version and in the line every call logs with --show-version
    script.write_text(f"#!/bin/bash\nif [ \"$1\" = --version ]; then echo 'borg 1.2.4'; exit 0; fi\n"
                      f"set -o pipefail\n"
                      f"{{ {resolve_binary('borg')} \"$@\" 2>&1 1>&3 3>&- | "
                      f"sed -u 's/^borgbackup version .*/borgbackup version 1.2.4/' >&2; }} 3>&1\n")
    script.chmod(0o755)
    return script


def _groups(items: list[ArchiveInput]) -> dict[str, list[ArchiveInput]]:
    groups: dict[str, list[ArchiveInput]] = {}
    for item in items:
        groups.setdefault(item.repo, []).append(item)
    return groups


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_mode, p.stat().st_nlink, p.stat().st_mtime_ns, p.stat().st_uid)
            for p in folder.iterdir()}


CONTROL = ArchiveInput("control-benign", "control-benign",
                       [file("ok.txt", "a harmless regular file\n"), file("canary", "expected-canary\n")],
                       {"canary": {"path": "canary", "equals": "expected-canary"}}, {})


@pytest.fixture(scope="module")
def outside():
    """A folder outside scratch that write-through, hard links or executed content would touch;
    world-writable (sticky) so that a program run by ANY uid (the sandbox's too) could leave its marker."""
    folder = Path(f"/tmp/hostile-outside-{secrets.token_hex(6)}")
    folder.mkdir()
    folder.chmod(0o1777)
    (folder / "target").write_text("a runner file a hard link must never reach\n")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile-scratch")
    _mount_tmpfs(path)
    yield path
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _build_repos(work: Path, state: Path, groups: dict[str, list[ArchiveInput]], passphrase: str
                 ) -> list[HostileRepo]:
    """One repository per group, built with the drill's own BORG_BASE_DIR (STATE/borg/NAME): its
    cache is then warm, which only saves time."""
    (work / "repos").mkdir()
    repos = []
    for name, members in groups.items():
        sparse = max(i.sparse_size for i in members)
        content = [file("ok.txt", "a harmless regular file\n")] + [m for i in members for m in i.members
                                                                     if m.name != "ok.txt"]
        repos.append(HostileRepo(name, work / "repos" / name, content, _sparse_tar(work, sparse) if sparse else None))
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda r: build_repo(r, state / "borg", passphrase), repos))
    return repos


@pytest.fixture(scope="module")
def archive_run(tmp_path_factory, hostile_secrets: Secrets, outside: Path, scratch: Path):
    work = tmp_path_factory.mktemp("hostile-archives")
    source = work / "source"
    source.mkdir()
    (source / "f.txt").write_text("live\n")
    places = Places(hostile_secrets.passphrase_file, outside, source, outside / "EXECUTED",
                    hostile_secrets.marker.encode())
    items = inputs(places)
    groups = _groups([*items, CONTROL])
    out, state = work / "out", work / "state"
    repos = _build_repos(work, state, groups, hostile_secrets.marker)
    old_borg = _old_borg(work)
    inventory = {"version": 1, "site": {"name": "hostile", "timezone": "UTC"},
                 "scratch": {"work_dir": str(scratch), "min_free": "1MiB"},
                 "borg": {"repositories": [_repo_entry(r.name, groups[r.name], r.location, hostile_secrets,
                                                       old_borg) for r in repos]}}
    inventory_path = work / "inventory.yaml"
    inventory_path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    before = _snapshot(outside)
    proc = run_cli("run", "--inventory", str(inventory_path), "--out", str(out), "--state-dir", str(state),
                   "--select", "borg", "-k", "restore", timeout=900)
    junit = out / "junit.xml"
    yield ArchiveRun(proc.returncode, proc.stdout, proc.stderr, parse_junit(junit) if junit.exists() else {},
                     places, items, out, state, scratch, before)
    shutil.rmtree(work / "repos", ignore_errors=True)


def _case(run: ArchiveRun, repo: str, check: str) -> dict:
    name = f"test_restore[{repo}-{check}]"
    assert name in run.cases, (f"no case {name}; exit {run.code}; cases: {sorted(run.cases)[:40]}\n"
                               f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return run.cases[name]


ITEMS = inputs(Places(Path("/s"), Path("/o"), Path("/src"), Path("/m"), b""))
# Inputs whose handling is a known defect: xfail(strict=True) with the owning file in the reason
# (a fix then shows as XPASS and the entry must go). Empty: every input is handled.
KNOWN_DEFECTS: dict[str, str] = {}


def _params():
    return [pytest.param(index, id=item.id, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_DEFECTS[item.id])]
                         if item.id in KNOWN_DEFECTS else []) for index, item in enumerate(ITEMS)]


@pytest.mark.parametrize("index", _params())
def test_hostile_archive_fails_its_case_clearly(archive_run: ArchiveRun, index: int):
    item = archive_run.inputs[index]
    assert item.expect
    for check, fragments in item.expect.items():
        result = _case(archive_run, item.repo, check)
        assert result["outcome"] == "failure", (check, result)
        message = result["message"]
        assert item.repo in message or check.split(":", 1)[-1] in message, message
        for fragment in fragments:
            assert fragment in message, (check, fragment, message)
        assert not TRACEBACK.search(message), f"a traceback instead of one clear paragraph:\n{message}"
        assert "\x1b" not in message, message
    if not item.extract_refused:       # the benign check in the same archive still ran and passed
        assert _case(archive_run, item.repo, "extract")["outcome"] == "passed"
    for name in item.written_nowhere:
        assert not (archive_run.places.outside / name).exists(), f"{name} was written outside scratch"


def test_run_went_on_and_failed_as_a_whole(archive_run: ArchiveRun):
    assert archive_run.code == 1, archive_run.stdout[-3000:] + archive_run.stderr[-3000:]
    for check in ("extract", "paths", "canary:canary"):
        assert _case(archive_run, "control-benign", check)["outcome"] == "passed"
    extracts = {name for name in archive_run.cases if name.endswith("-extract]")}
    assert len(extracts) == len({item.repo for item in ITEMS}) + 1, sorted(extracts)   # every repository ran


def test_nothing_written_outside_scratch_and_nothing_executed(archive_run: ArchiveRun):
    outside = archive_run.places.outside
    assert _snapshot(outside) == archive_run.outside_before, sorted(os.listdir(outside))
    assert not archive_run.places.marker.exists()
    assert list(archive_run.scratch.iterdir()) == [], "an extract was left in scratch"


def test_no_secret_in_any_output(archive_run: ArchiveRun, hostile_secrets: Secrets):
    leaks = leaks_in(hostile_secrets, [archive_run.stdout, archive_run.stderr],
                     [archive_run.out, archive_run.state])
    assert leaks == []
