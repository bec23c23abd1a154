"""Checks on data extracted from a backup into a scratch directory.

Each function inspects files under ``root`` (the extract), raises
:class:`CheckFailed` naming the path, and returns a dict of evidence. They only
read: the extract is the drill's own scratch copy and the live source is never
written.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import sqlite3
from pathlib import Path, PurePosixPath

from restoredrill.checks.errors import CheckFailed


def inside(root: Path, relative: str) -> Path:
    """root/relative, refusing paths that leave root."""
    rel = PurePosixPath(relative.lstrip("/"))
    if ".." in rel.parts:
        raise CheckFailed(relative, "a path inside the archive", "a path with '..'")
    return root.joinpath(*rel.parts)


def require_free_space(directory: Path, needed: int, reserve: int) -> dict:
    """Refuse to extract when the scratch file system lacks room (nothing is written)."""
    free = shutil.disk_usage(directory).free
    if free - needed < reserve:
        raise CheckFailed(str(directory), f"{needed + reserve:,} bytes free ({needed:,} for the archive, "
                          f"{reserve:,} reserve)", f"{free:,} bytes free",
                          "free space in scratch.work_dir or lower scratch.min_free")
    return {"free_bytes": free, "needed_bytes": needed}


def list_files(root: Path) -> list[str]:
    """Relative POSIX paths of the regular files under root."""
    files = []
    for dirpath, _dirs, names in os.walk(root):
        base = Path(dirpath)
        for name in names:
            path = base / name
            if path.is_file() and not path.is_symlink():
                files.append(path.relative_to(root).as_posix())
    return sorted(files)


def check_paths_present(root: Path, paths: list[str]) -> dict:
    missing = [p for p in paths if not os.path.lexists(inside(root, p))]
    if missing:
        raise CheckFailed("archive", f"paths present: {', '.join(paths)}", f"missing: {', '.join(missing)}")
    return {"paths_checked": len(paths)}


def check_min_files(root: Path, minimum: int) -> dict:
    count = len(list_files(root))
    if count < minimum:
        raise CheckFailed("archive", f"at least {minimum} files", f"{count} files")
    return {"files": count}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def spot_check(root: Path, source: Path, archive_path: str, *, sample: int, count_tolerance: float,
               mismatch_tolerance: float, seed: int) -> dict:
    """Compare the extract with the live source: file count, then a random sample by SHA-256."""
    if not source.is_dir():
        raise CheckFailed(str(source), "the live source directory to be reachable", "it does not exist",
                          "fix checks.spot_check.source or drop the spot check")
    extracted = inside(root, archive_path)
    if not extracted.is_dir():
        raise CheckFailed(archive_path, "the source's directory inside the archive", "not in the archive",
                          "set checks.spot_check.archive_path")
    archive_files = list_files(extracted)
    source_files = set(list_files(source))
    count_delta = abs(len(archive_files) - len(source_files)) / max(len(source_files), 1)
    if count_delta > count_tolerance:
        raise CheckFailed(archive_path, f"file count within {count_tolerance:.0%} of the source's "
                          f"{len(source_files)}", f"{len(archive_files)} files ({count_delta:.0%} off)")
    chosen = random.Random(seed).sample(archive_files, min(sample, len(archive_files)))
    mismatched = [rel for rel in chosen
                  if rel not in source_files or sha256_file(extracted / rel) != sha256_file(source / rel)]
    allowed = int(mismatch_tolerance * len(chosen))
    if len(mismatched) > allowed:
        shown = ", ".join(f"{archive_path}/{rel}" for rel in mismatched[:10])
        raise CheckFailed(str(source), f"sampled files identical to the live source (at most {allowed} "
                          f"of {len(chosen)} may differ)", f"{len(mismatched)} differ: {shown}",
                          "a file changed after the backup, or the backup does not hold what the source has")
    return {"files_in_archive": len(archive_files), "files_in_source": len(source_files),
            "sampled": len(chosen), "sample_mismatches": len(mismatched), "sample_seed": seed}


def check_sqlite(root: Path, relative: str) -> dict:
    path = inside(root, relative)
    if not path.is_file():
        raise CheckFailed(relative, "an SQLite database", "no such file in the archive")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
            tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise CheckFailed(relative, "PRAGMA integrity_check = ok", f"the database cannot be read: {exc}") from None
    if rows != ["ok"]:
        raise CheckFailed(relative, "PRAGMA integrity_check = ok", "; ".join(rows[:5]))
    return {"sqlite_tables": tables}


def check_canary(root: Path, relative: str, equals: str | None, pattern: str | None) -> dict:
    path = inside(root, relative)
    if not path.is_file():
        raise CheckFailed(relative, "the canary file", "missing from the archive",
                          "the canary is written before every backup: is the pre-backup hook running?")
    content = path.read_text(encoding="utf-8", errors="replace").rstrip("\r\n")
    if equals is not None and content != equals:
        raise CheckFailed(relative, f"canary value {equals!r}", f"{content[:200]!r}")
    if pattern is not None and not re.search(pattern, content):
        raise CheckFailed(relative, f"canary matching /{pattern}/", f"{content[:200]!r}")
    return {"canary": content[:200]}
