"""A drill never blocks the nightly backup: real borg, real locks, a real sshd.

A "slow" borg is the real borg with a sleep before each segment file it reads and each
item it extracts (storage that is slow, or a repository that is big): the locking,
the signal handling and ``borg serve`` are borg's own. The backup is a plain
``borg create --lock-wait 1`` from "another host" (``BORG_HOST_ID``), as the nightly
job would run it: borg removes a dead holder's lock only when it holds the same host
id (borg/locking.py ``ExclusiveLock.kill_stale_lock``), so a lock left by a killed
drill blocks it.
"""
from __future__ import annotations

import configparser
import os
import re
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo

import pytest
import yaml

from restoredrill.clients.borg import BorgClient, BorgError, BorgTarget, resolve_binary
from restoredrill.execute import KILL, CommandError, run
from restoredrill.lab.storagebox import StorageBox
from restoredrill.runner import RunRequest, run_drills
from tests.conftest import parse_junit

pytestmark = pytest.mark.integration

PASSPHRASE = "lock test passphrase 7"
BACKUP_HOST = "nightly-backup-host@4242"
SEGMENT_DELAY = 1.0

SLOW_BORG = '''#!{python}
"""borg with a sleep before each segment read and each extracted item."""
import sys, time
import borg.archive, borg.repository
from borg.archiver import main

_iter_objects = borg.repository.LoggedIO.iter_objects
_extract_item = borg.archive.Archive.extract_item

def iter_objects(self, *args, **kwargs):
    time.sleep({delay})
    yield from _iter_objects(self, *args, **kwargs)

def extract_item(self, *args, **kwargs):
    time.sleep({delay})
    return _extract_item(self, *args, **kwargs)

borg.repository.LoggedIO.iter_objects = iter_objects
borg.archive.Archive.extract_item = extract_item
sys.exit(main())
'''


def borg_env(base: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BORG_")}
    env.update(BORG_PASSPHRASE=PASSPHRASE, BORG_BASE_DIR=str(base), BORG_EXIT_CODES="legacy", **extra)
    return env


def borg(base: Path, *args, host_id: str | None = None, timeout: float = 120, check: bool = True,
         rsh: str | None = None):
    """The real borg, as a backup job runs it (not through restoredrill's client)."""
    extra = {"BORG_HOST_ID": host_id} if host_id else {}
    if rsh:
        extra["BORG_RSH"] = rsh
    return run([resolve_binary("borg"), *map(str, args)], timeout=timeout, env=borg_env(base, **extra),
               secrets=(PASSPHRASE,), check=check, label="borg (backup job)")


def lock_files(repo: Path) -> list[str]:
    return sorted(p.name for p in repo.iterdir() if p.name.startswith("lock."))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("source")
    for i in range(20):
        (path / f"file-{i:02}").write_bytes(os.urandom(20000))
    return path


@pytest.fixture
def repo(tmp_path, source) -> Path:
    """An encrypted repository with three archives (14 segment files)."""
    path = tmp_path / "repos" / "main"
    path.parent.mkdir()
    borg(tmp_path / "setup", "init", "--encryption=repokey-blake2", path)
    for name in ("a", "b", "c"):
        borg(tmp_path / "setup", "create", f"{path}::{name}", source)
    assert len(list((path / "data" / "0").iterdir())) >= 10
    return path


@pytest.fixture
def slow_borg(tmp_path) -> str:
    script = tmp_path / "slow-borg"
    script.write_text(SLOW_BORG.format(python=sys.executable, delay=SEGMENT_DELAY))
    script.chmod(0o755)
    return str(script)


def client(location: str, base: Path, binary: str, **changes) -> BorgClient:
    settings = {"lock_wait_seconds": 1, "stop_grace_seconds": 10, **changes}
    return BorgClient(BorgTarget(name="main", location=location, base_dir=base, passphrase=lambda: PASSPHRASE,
                                 binary=binary, **settings))


def backup_succeeds_at_once(base: Path, repo: str, source: Path, rsh: str | None = None) -> float:
    started = time.monotonic()
    borg(base, "create", "--lock-wait=1", f"{repo}::nightly", source, host_id=BACKUP_HOST, rsh=rsh)
    return time.monotonic() - started


# --- local repositories --------------------------------------------------------------

def test_check_stopped_at_its_timeout_releases_the_lock_and_the_backup_runs(repo, slow_borg, source, tmp_path):
    drill = client(str(repo), tmp_path / "drill", slow_borg)
    started = time.monotonic()
    with pytest.raises(BorgError) as stopped:
        drill.check(repository_only=True, timeout=3)      # 14 segments x 1 s: far longer
    seconds = time.monotonic() - started

    assert lock_files(repo) == []
    assert backup_succeeds_at_once(tmp_path / "backup", str(repo), source) < 30
    assert "borg check was stopped" in str(stopped.value)
    assert "SIGTERM; it exited with code 143" in str(stopped.value)   # borg's SigTerm exit (128 + 15)
    assert "released its lock" in str(stopped.value)
    assert seconds < 4 + 3, f"stopping took {seconds:.1f} s"           # limit 3 s + lock_wait 1 s, then SIGTERM


def test_sigkill_at_the_timeout_left_the_lock_and_failed_the_backup(repo, slow_borg, source, tmp_path):
    """What the drill did before (subprocess.run's timeout: SIGKILL): the contrast."""
    with pytest.raises(CommandError):
        run([slow_borg, "check", "--repository-only", str(repo)], timeout=4, env=borg_env(tmp_path / "d"),
            stop=KILL)

    assert lock_files(repo) == ["lock.exclusive", "lock.roster"]
    backup = borg(tmp_path / "backup", "create", "--lock-wait=1", f"{repo}::nightly", source,
                  host_id=BACKUP_HOST, check=False)
    assert backup.returncode == 2 and "Failed to create/acquire the lock" in backup.stderr


def test_extract_stopped_at_its_timeout_releases_its_shared_lock(repo, slow_borg, source, tmp_path):
    drill = client(str(repo), tmp_path / "drill", slow_borg)
    target = tmp_path / "extract"
    target.mkdir()
    with pytest.raises(BorgError) as stopped:
        drill.extract("c", target, timeout=3)             # 20 items x 1 s

    assert lock_files(repo) == []
    assert backup_succeeds_at_once(tmp_path / "backup", str(repo), source) < 30
    assert "borg extract was stopped" in str(stopped.value) and "SIGTERM" in str(stopped.value)


def test_sigkilled_extract_left_a_shared_lock_that_blocked_the_backup(repo, slow_borg, source, tmp_path):
    target = tmp_path / "extract"
    target.mkdir()
    with pytest.raises(CommandError):
        run([slow_borg, "extract", f"{repo}::c"], timeout=4, env=borg_env(tmp_path / "d"), cwd=target, stop=KILL)

    assert lock_files(repo) == ["lock.roster"]                        # a shared entry of a dead reader
    backup = borg(tmp_path / "backup", "create", "--lock-wait=1", f"{repo}::nightly", source,
                  host_id=BACKUP_HOST, check=False)
    assert backup.returncode == 2 and "lock" in backup.stderr.lower()


def test_refused_options_never_reach_borg(repo, tmp_path):
    drill = client(str(repo), tmp_path / "drill", resolve_binary("borg"))
    for args in (["--bypass-lock", str(repo)], ["--bypass-lock=yes", str(repo)], ["break-lock"]):
        with pytest.raises(PermissionError, match="never bypasses or breaks"):
            drill._run("list", args, timeout=30)
    assert lock_files(repo) == []


def snapshot(repo: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p.relative_to(repo)): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
            for p in repo.rglob("*") if p.is_file()}


def changed_by(repo: Path, action) -> list[str]:
    before = snapshot(repo)
    action()
    after = snapshot(repo)
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


def test_what_borg_check_writes(repo, slow_borg, tmp_path):
    """What the README says: the repository check replaces the repository's ``config``
    (borg/repository.py ``Repository.check`` -> ``save_config``), the archives check the
    ``nonce`` file (AES-CTR modes: ``rebuild_refcounts`` re-encrypts archive metadata ->
    ``commit_nonce_reservation``); nothing else, no segment, index or hints file. A partial
    check that runs out of ``--max-duration`` records ``last_segment_checked`` in ``config``."""
    drill = client(str(repo), tmp_path / "drill", resolve_binary("borg"))
    assert changed_by(repo, lambda: drill.check(repository_only=True, timeout=120)) == ["config"]
    assert changed_by(repo, lambda: drill.check(archives_only=True, timeout=120)) == ["nonce"]
    assert changed_by(repo, lambda: drill.check(verify_data=True, timeout=120)) == ["config", "nonce"]
    assert changed_by(repo, lambda: drill.list_archives()) == []

    slow = client(str(repo), tmp_path / "drill", slow_borg)
    result = slow.check(repository_only=True, max_duration=1, timeout=120)
    config = configparser.ConfigParser()
    config.read(repo / "config")
    assert "finished partial segment check" in result.stderr
    assert config.getint("repository", "last_segment_checked") >= 0
    assert lock_files(repo) == [] and not (repo / "config.old").exists()


# --- a repository on the SSH storage box ------------------------------------------------

@pytest.fixture
def box_repo(tmp_path, repo, slow_borg):
    """The repository behind a real sshd whose forced command is the slow ``borg serve``."""
    with StorageBox(tmp_path / "box") as box:
        box.authorize_command(box.borg_key_file.with_suffix(".pub"),
                              [slow_borg, "serve", "--restrict-to-path", str(repo.parent)])
        yield box, box.repo_url(repo)


class LockWatch:
    """Polls the repository's lock files (the server's side) from a thread: when they
    appeared and when they were gone again (monotonic seconds)."""

    def __init__(self, repo: Path):
        self.repo = repo
        self.appeared: float | None = None
        self.gone: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            held = "lock.exclusive" in lock_files(self.repo)
            now = time.monotonic()
            if held and self.appeared is None:
                self.appeared = now
            if not held and self.appeared is not None and self.gone is None:
                self.gone = now
            time.sleep(0.05)

    def wait_gone(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.gone is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.gone is not None

    @property
    def held(self) -> float:
        return self.gone - self.appeared


def test_ssh_stopped_client_does_not_free_the_lock_until_the_rpc_ends(box_repo, repo, tmp_path):
    """borg serve runs the repository check as one RPC: the client's SIGTERM ends the client,
    not the check on the server, which keeps the exclusive lock until it returns."""
    box, url = box_repo
    drill = client(url, tmp_path / "drill", resolve_binary("borg"), rsh=box.borg_rsh(), stop_grace_seconds=2)
    with LockWatch(repo) as watch:
        with pytest.raises(BorgError) as stopped:
            drill.check(repository_only=True, timeout=8)           # the whole check takes 14 s and more
        client_gone = time.monotonic()
        assert watch.appeared is not None, "the server never took the lock: the test proves nothing"
        assert watch.wait_gone(60)
    assert "borg serve keeps the exclusive lock" in str(stopped.value)
    assert watch.gone - client_gone > 3                              # the server held it on its own
    assert watch.held > 14 * SEGMENT_DELAY - 1                       # every segment was still read


def test_ssh_max_duration_bounds_the_lock_even_when_the_client_is_stopped(box_repo, repo, source, tmp_path):
    box, url = box_repo
    drill = client(url, tmp_path / "drill", resolve_binary("borg"), rsh=box.borg_rsh(), stop_grace_seconds=1)
    with LockWatch(repo) as watch:
        with pytest.raises(BorgError):
            drill.check(repository_only=True, max_duration=6, timeout=3)
        assert watch.appeared is not None, "the server never took the lock: the test proves nothing"
        assert watch.wait_gone(60)
    assert watch.held < 6 + SEGMENT_DELAY + 3, f"lock held {watch.held:.1f} s"
    assert backup_succeeds_at_once(tmp_path / "backup", url, source, rsh=box.borg_rsh()) < 30


def test_ssh_bounded_check_ends_and_reports_how_far_it_got(box_repo, repo, tmp_path):
    box, url = box_repo
    drill = client(url, tmp_path / "drill", resolve_binary("borg"), rsh=box.borg_rsh())
    started = time.monotonic()
    result = drill.check(repository_only=True, max_duration=2, timeout=60)
    assert time.monotonic() - started < 2 + SEGMENT_DELAY + 5
    assert "finished partial segment check, last segment checked is" in result.stderr
    assert lock_files(repo) == []


# --- the drill case and the backup window ------------------------------------------------

def drill_inventory(path: Path, repo: Path, window_start: str, margin: str = "15m",
                    zone: str = "Europe/Berlin") -> Path:
    (path.parent / "pass").write_text(PASSPHRASE)
    (path.parent / "pass").chmod(0o600)      # check-inventory refuses a secret others can read
    data = {
        "version": 1, "site": {"name": "lock-test", "timezone": zone},
        "borg": {"repositories": [{
            "name": "main", "location": str(repo), "passphrase": f"file:{path.parent / 'pass'}",
            "lock_wait": "5s", "backup_window": {"start": window_start, "duration": "1h"},
            "window_margin": margin}]},
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def local_start(after: timedelta, zone: str = "Europe/Berlin") -> tuple[str, timedelta]:
    """The next whole minute at least ``after`` from now, as HH:MM in ``zone``, and how far
    away it is."""
    now = datetime.now(UTC)
    start = (now + after + timedelta(minutes=1)).replace(second=0, microsecond=0)
    return start.astimezone(ZoneInfo(zone)).strftime("%H:%M"), start - now


def test_drill_fails_with_the_window_message_when_the_window_is_too_close(repo, tmp_path):
    start, away = local_start(timedelta(minutes=15))
    margin = f"{int(away.total_seconds()) - 30}s"                     # 30 s left before the deadline
    inventory = drill_inventory(tmp_path / "inv.yaml", repo, start, margin)
    code = run_drills(RunRequest(inventory=inventory, kinds=["borg"], junit=tmp_path / "near.xml",
                                 state_dir=tmp_path / "state", extra_args=["-k", "test_check or test_reachable"]))
    cases = parse_junit(tmp_path / "near.xml")

    assert code == 1
    for name, action in (("test_check", "borg check"), ("test_reachable", "borg list")):   # list: issue 26
        case = next(c for n, c in cases.items() if n.startswith(name))
        assert case["outcome"] == "failure", case
        assert re.search(rf"{action} would run into the backup window: only [23]\d s are left", case["message"])
        assert f"backup window {start} Europe/Berlin for 1h" in case["message"]
        assert "Schedule the drill earlier" in case["message"]
    assert lock_files(repo) == []


def test_drill_passes_and_bounds_its_check_when_the_window_is_far(repo, tmp_path):
    inventory = drill_inventory(tmp_path / "inv.yaml", repo, local_start(timedelta(hours=6))[0])
    code = run_drills(RunRequest(inventory=inventory, kinds=["borg"], junit=tmp_path / "far.xml",
                                 state_dir=tmp_path / "state", extra_args=["-k", "test_check"]))
    cases = parse_junit(tmp_path / "far.xml")
    case = next(c for n, c in cases.items() if n.startswith("test_check"))

    assert code == 0, case
    assert case["properties"]["check_mode"] == "verify-data" and case["properties"]["full_check"] == "True"
