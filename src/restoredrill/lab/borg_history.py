"""Borg repositories for the lab, with about two years of back-dated daily history.

Only the archives that matter are created: those a 7/4/12/2 prune of an ideal
daily history keeps, plus a few it removes; then the real ``borg prune`` runs (on
the lab's own repositories: the lab is not a drill) and the result is compared
with the retention engine, so every lab build is also a small differential test.
"""
from __future__ import annotations

import os
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from restoredrill import retention
from restoredrill.clients.borg import resolve_binary
from restoredrill.execute import run
from restoredrill.lab.dataset import build_dataset, stamp_backup

LAB_POLICY = {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 2}
PREFIX = "app-"


class LabBuildError(RuntimeError):
    pass


@dataclass
class LabRepo:
    name: str
    location: str           # path or ssh:// URL
    passphrase_file: Path
    rsh: str | None = None


def archive_name(when: datetime) -> str:
    return f"{PREFIX}{when:%Y-%m-%dT%H:%M}"


def plan_history(newest: datetime, zone: str, days: int = 730, removed: int = 4,
                 seed: int = 1) -> tuple[list[datetime], set[datetime]]:
    """Times to create (oldest first) and the subset a 7/4/12/2 prune keeps."""
    times = [newest - timedelta(days=i) for i in range(days, -1, -1)]
    points = [retention.Point(time=t, name=archive_name(t)) for t in times]
    decisions = retention.simulate_borg(points, retention.Policy.from_mapping(LAB_POLICY), zone)
    kept = {d.point.time for d in decisions if d.keep}
    pruned = [t for t in times if t not in kept]
    extra = set(random.Random(seed).sample(pruned, min(removed, len(pruned))))
    return sorted(kept | extra), kept


class BorgBuilder:
    """Runs the write-side borg commands the lab needs (never used by drills)."""

    def __init__(self, base_dir: Path, zone: str):
        self.base_dir = base_dir
        self.zone = zone

    def borg(self, repo: LabRepo, *args: str, cwd: Path | None = None, timeout: float = 300):
        secret = repo.passphrase_file.read_text().strip()
        read_fd, write_fd = os.pipe()
        os.write(write_fd, secret.encode() + b"\n")
        os.close(write_fd)
        env = {"BORG_BASE_DIR": str(self.base_dir), "BORG_PASSPHRASE_FD": str(read_fd), "TZ": self.zone,
               "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes", "LANG": "C.UTF-8"}
        if repo.rsh:
            env["BORG_RSH"] = repo.rsh
        try:
            return run([resolve_binary("borg"), *args], timeout=timeout, extra_env=env, cwd=cwd, pass_fds=(read_fd,),
                       secrets=(secret,), label=f"lab borg {args[0]} [{repo.name}]")
        finally:
            os.close(read_fd)

    def init(self, repo: LabRepo) -> None:
        self.borg(repo, "init", "--encryption=repokey-blake2", repo.location)

    def create(self, repo: LabRepo, source: Path, when: datetime) -> None:
        stamp = when.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")
        self.borg(repo, "create", "--compression=lz4", f"--timestamp={stamp}",
                  f"{repo.location}::{archive_name(when)}", "app", cwd=source)

    def prune(self, repo: LabRepo) -> None:
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in LAB_POLICY.items()]
        self.borg(repo, "prune", *flags, f"--glob-archives={PREFIX}*", repo.location)

    def export_key(self, repo: LabRepo, target: Path) -> Path:
        """``borg key export REPO FILE``: the owner's escrowed copy of the key."""
        self.borg(repo, "key", "export", repo.location, str(target))
        os.chmod(target, 0o600)
        return target

    def names(self, repo: LabRepo) -> set[str]:
        import json
        data = json.loads(self.borg(repo, "list", "--json", repo.location).stdout)
        return {a["name"] for a in data["archives"]}


def build_history(builder: BorgBuilder, repos: list[LabRepo], source: Path, newest: datetime) -> dict:
    """Init each repository, create the planned archives, prune, and check the result."""
    times, kept = plan_history(newest, builder.zone)
    # one thread per repository: the same source state goes into each at the same step
    with ThreadPoolExecutor(max_workers=len(repos)) as pool:
        list(pool.map(builder.init, repos))
        for when in times:
            stamp_backup(source, when)
            list(pool.map(lambda repo: builder.create(repo, source, when), repos))
    expected = {archive_name(t) for t in kept}
    for repo in repos:
        builder.export_key(repo, repo.passphrase_file.with_suffix(".key"))
        builder.prune(repo)
        found = builder.names(repo)
        if found != expected:
            raise LabBuildError(f"lab repository {repo.name}: borg prune kept {sorted(found ^ expected)} "
                                f"differently from the retention engine")
    return {"archives_created": len(times), "archives_kept": len(kept)}


def one_archive_repo(root: Path, mib: int, when: datetime, passphrase: str = "one-archive-not-secret") -> LabRepo:
    """``root/repo`` (repokey-blake2) holding one archive made at ``when``: the lab's dataset
    padded with ``mib`` MiB of incompressible files (benchmarks and tests of a drill's cost)."""
    source = root / "source"
    build_dataset(source)
    padding = source / "app" / "padding"
    padding.mkdir()
    for index in range(mib):
        (padding / f"blob-{index:03d}.bin").write_bytes(os.urandom(1 << 20))
    secret = root / "repo.pass"
    secret.write_text(passphrase + "\n")
    secret.chmod(0o600)
    repo = LabRepo("bench", str(root / "repo"), secret)
    builder = BorgBuilder(root / "builder-base", "UTC")
    builder.init(repo)
    builder.create(repo, source, when)
    shutil.rmtree(source)
    return repo
