"""A Borg extract drill against a plain ``borg extract`` of the same archive, in one run.

    python benchmarks/bench_borg_extract.py [--rounds 7] [--mib 8]

Builds a throwaway local repository (repokey-blake2, lz4) holding one archive of the lab's
dataset padded with incompressible files to about --mib MiB, and an inventory naming it with
no data check beyond the extract. Then, in alternating rounds (so machine load hits both
alike), times

- the drill: ``restoredrill run --inventory INV --select borg -k extract`` (the whole command:
  Python start, inventory, pytest, ``borg list``, the free-space check, the extract, the file
  count, the report), and
- plain: ``borg extract REPO::ARCHIVE`` into an empty folder (one borg start and the extract),

and prints the medians, the drill's fixed cost (difference of the medians) and the ratio.
The command's cost splits into a part each run pays once (Python, imports, pytest, the
report) and a part each repository's drill pays (its borg starts, the extract, the count):
a third command drills --copies copies of the repository in one run, and the cost of one
more drill is (copies run - one-repository run) / (copies - 1), shown against plain.
Target: a drill at most 1 s over plain, shown for each more drill and for the whole command.
A run lists each local repository while pytest starts (clients/borg_ahead.py) and starts borg
twice per drill (list, extract). Not a timed test: figures are printed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from restoredrill.clients.borg import resolve_binary  # noqa: E402
from restoredrill.lab.borg_history import LabRepo, archive_name, one_archive_repo  # noqa: E402

TARGET_SECONDS = 1.0
# Both commands start as installed: borg from its byte-compiled site-packages, restoredrill with
# its bytecode too (pip compiles a wheel's modules; an editable checkout writes __pycache__ on
# its first run). PYTHONDONTWRITEBYTECODE in the caller's environment would make every drill
# compile about 70 of its modules from source (0.15-0.3 s) while borg does not: it is dropped.
INSTALLED = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def build(root: Path, mib: int) -> tuple[Path, LabRepo, str]:
    when = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    repo = one_archive_repo(root, mib, when, "bench-passphrase-not-secret")
    secret = repo.passphrase_file
    inventory = {
        "version": 1,
        "site": {"name": "bench", "timezone": "UTC"},
        "policies": {"retention": {"daily": {"keep_daily": 7}}},
        "scratch": {"work_dir": str(root / "scratch"), "min_free": "16MiB"},
        "borg": {"repositories": [{"name": "bench", "location": repo.location, "passphrase": f"file:{secret}",
                                   "retention": "daily", "encryption_required": True}]},
    }
    path = root / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path, repo, archive_name(when)


def with_copies(root: Path, inventory: Path, copies: int) -> Path:
    """The inventory with ``copies`` repositories: copies of the one repository (own folders)."""
    data = yaml.safe_load(inventory.read_text())
    entry = data["borg"]["repositories"][0]
    repos = []
    for index in range(copies):
        location = root / f"repo-copy-{index}"
        shutil.copytree(entry["location"], location)
        repos.append({**entry, "name": f"copy-{index}", "location": str(location)})
    data["borg"]["repositories"] = repos
    path = root / "inventory-copies.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def drill(root: Path, inventory: Path) -> float:
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    argv = [str(Path(sys.executable).parent / "restoredrill"), "run", "--inventory", str(inventory),
            "--select", "borg", "-k", "extract", "--state-dir", str(root / "state"), "--out", str(out)]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=INSTALLED)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"the drill failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return seconds


def plain(root: Path, repo: LabRepo, archive: str) -> float:
    target = root / "plain-extract"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    read_fd, write_fd = os.pipe()
    os.write(write_fd, repo.passphrase_file.read_bytes())
    os.close(write_fd)
    env = {**os.environ, "BORG_BASE_DIR": str(root / "plain-base"), "BORG_PASSPHRASE_FD": str(read_fd)}
    try:
        started = time.perf_counter()
        subprocess.run([resolve_binary("borg"), "extract", f"{repo.location}::{archive}"], cwd=target, env=env,
                       pass_fds=(read_fd,), check=True, capture_output=True)
        return time.perf_counter() - started
    finally:
        os.close(read_fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (the medians are shown)")
    parser.add_argument("--mib", type=int, default=8, help="incompressible padding in the archive, MiB")
    parser.add_argument("--copies", type=int, default=3, help="repositories in the many-drills run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-borg-") as tmp:
        root = Path(tmp)
        inventory, repo, archive = build(root, args.mib)
        many = with_copies(root, inventory, args.copies)
        drill(root, inventory), plain(root, repo, archive), drill(root, many)   # warm caches (borg's, the OS's)
        times: dict[str, list[float]] = {"drill": [], "plain": [], "many": []}
        steps = {"drill": lambda: drill(root, inventory), "plain": lambda: plain(root, repo, archive),
                 "many": lambda: drill(root, many)}
        for round_ in range(args.rounds):
            names = ["drill", "plain", "many"]
            for name in (names if round_ % 2 == 0 else names[::-1]):
                times[name].append(steps[name]())
    d, p, m = (statistics.median(times[name]) for name in ("drill", "plain", "many"))
    each = (m - d) / (args.copies - 1)
    print(f"borg extract drill vs plain borg extract, {args.mib} MiB padding, {args.rounds} alternating rounds, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"one drill (the whole command) median {d:.2f} s, plain median {p:.2f} s: {d - p:+.2f} s, ratio {d / p:.2f} "
          f"(<= {TARGET_SECONDS:.1f} s over plain: {'met' if d - p <= TARGET_SECONDS else 'NOT met'})")
    print(f"{args.copies} drills in one run median {m:.2f} s: each more drill {each:.2f} s, {each - p:+.2f} s over "
          f"plain (target <= {TARGET_SECONDS:.1f} s: {'met' if each - p <= TARGET_SECONDS else 'NOT met'}); "
          f"what a run pays once: {d - each:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
