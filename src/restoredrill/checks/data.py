"""Checks on data extracted from a backup into a scratch directory.

Each function inspects files under ``root`` (the extract), raises
:class:`CheckFailed` naming the path, and returns a dict of evidence. They only
read: the extract is the drill's own scratch copy and the live source is never
written.

The extract is hostile (see :mod:`restoredrill.checks.safe_paths`): every path is
resolved inside it without following a link, only regular files are opened, and
what a file holds never appears in a message or in evidence, pass or fail; only
its fingerprint, its length and whether it matched (:mod:`restoredrill.checks.redact`),
unless the inventory entry sets ``show_found: true``.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
from pathlib import Path

from restoredrill.checks import redact
from restoredrill.checks.coverage import require_some
from restoredrill.checks.errors import CheckFailed
from restoredrill.checks.safe_paths import (
    Listing,
    Opened,
    PathRefused,
    exists,
    list_regular,
    open_directory,
    open_regular,
    read_prefix,
)
from restoredrill.checks.sqlite_probe import (
    MAX_ROWS,
    SqliteProbeError,
    sqlite_integrity,
)

CANARY_LIMIT = 64 * 1024
NEVER_FOLLOWED = ("restoredrill never follows a link and never opens a device, FIFO or socket inside "
                  "an extract: point the check at the real file")


def refused(exc: PathRefused, expected: str, missing_hint: str = "") -> CheckFailed:
    """A refused or missing path as a failed check (where: the path; found: why)."""
    return CheckFailed(redact.printable(exc.relative, 300), expected, exc.reason,
                       missing_hint if exc.missing else NEVER_FOLLOWED)


def regular_file(root: Path, relative: str, expected: str, missing_hint: str = "") -> Opened:
    """The regular file at root/relative, open for reading, reached without following a link."""
    try:
        return open_regular(root, relative)
    except PathRefused as exc:
        raise refused(exc, expected, missing_hint) from None


def require_free_space(directory: Path, needed: int, reserve: int) -> dict:
    """Refuse to extract when the scratch file system lacks room (nothing is written)."""
    free = shutil.disk_usage(directory).free
    if free - needed < reserve:
        raise CheckFailed(str(directory), f"{needed + reserve:,} bytes free ({needed:,} for the archive, "
                          f"{reserve:,} reserve)", f"{free:,} bytes free",
                          "free space in scratch.work_dir or lower scratch.min_free")
    return {"free_bytes": free, "needed_bytes": needed}


def list_files(root: Path) -> list[str]:
    """Relative POSIX paths of the regular files under root (no link followed)."""
    return listing(root).files


def listing(root: Path | int, relative: str = "") -> Listing:
    """The regular files under root/relative (links, devices, FIFOs and sockets only counted)."""
    try:
        with open_directory(root, relative) as directory:
            return list_regular(directory.fd)
    except PathRefused as exc:
        raise refused(exc, "a directory inside the archive") from None


def check_paths_present(root: Path, paths: list[str]) -> dict:
    """Each path is a member of the archive: any kind, a link too (never followed)."""
    missing, bad = [], []
    for path in paths:
        try:
            if not exists(root, path):
                missing.append(path)
        except PathRefused as exc:
            bad.append(f"{path} ({exc.reason})")
    if missing or bad:
        found = "; ".join(filter(None, [f"missing: {', '.join(missing)}" if missing else "",
                                        f"refused: {', '.join(bad)}" if bad else ""]))
        raise CheckFailed("archive", f"paths present: {', '.join(paths)}", redact.printable(found, 2000))
    return {"paths_checked": len(paths)}


def _unreadable(members: Listing) -> str:
    if not members.unreadable:
        return ""
    return f"; {members.unreadable} directories could not be opened ({members.why_unreadable})"


def check_min_files(root: Path, minimum: int) -> dict:
    members = listing(root)
    count = len(members.files)
    if count < minimum:
        raise CheckFailed("archive", f"at least {minimum} regular files",
                          f"{count} regular files ({members.symlinks} symbolic links and "
                          f"{members.special} special files not counted{_unreadable(members)})")
    return {"files": count, **members.evidence("")}


def sha256_fd(fd: int) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: os.read(fd, 1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _same_file(archive_fd: int, source_fd: int, rel: str) -> bool:
    """Both sides regular files (reached without links) with equal SHA-256."""
    try:
        with open_regular(archive_fd, rel) as left, open_regular(source_fd, rel) as right:
            return sha256_fd(left.fd) == sha256_fd(right.fd)
    except PathRefused:
        return False


UNMOUNTED_CAUSE = ("the archive holds no regular file under {archive_path} (the live source {source_files}): an "
                   "unmounted source mount point, backed up while unmounted, looks exactly like this; check "
                   "checks.spot_check.source and archive_path")
EMPTY_DB_CAUSE = ("the database has no table: a zero-byte file or a freshly created one (the application "
                  "wrote its data elsewhere, or the backup caught it before it was written)")


def spot_check(root: Path, source: Path, archive_path: str, *, sample: int, count_tolerance: float,
               mismatch_tolerance: float, seed: int, empty_ok: bool = False) -> dict:
    """Compare the extract with the live source: file count, then a random sample by SHA-256.
    A sample of 0 files fails (nothing was compared) unless the entry declares ``expect_empty``."""
    if not source.is_dir():
        raise CheckFailed(str(source), "the live source directory to be reachable", "it does not exist",
                          "fix checks.spot_check.source or drop the spot check")
    try:
        extracted = open_directory(root, archive_path)
    except PathRefused as exc:
        raise refused(exc, "the source's directory inside the archive",
                      "set checks.spot_check.archive_path") from None
    source_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)   # the inventory's own path
    try:
        archive, live = list_regular(extracted.fd), list_regular(source_fd)
        source_files = set(live.files)
        count_delta = abs(len(archive.files) - len(source_files)) / max(len(source_files), 1)
        if count_delta > count_tolerance:
            raise CheckFailed(archive_path, f"regular-file count within {count_tolerance:.0%} of the source's "
                              f"{len(source_files)}", f"{len(archive.files)} files ({count_delta:.0%} off)")
        chosen = random.Random(seed).sample(archive.files, min(sample, len(archive.files)))
        mismatched = [rel for rel in chosen
                      if rel not in source_files or not _same_file(extracted.fd, source_fd, rel)]
    finally:
        os.close(source_fd)
        extracted.close()
    cause = UNMOUNTED_CAUSE.format(archive_path=redact.printable(archive_path, 300),
                                   source_files=f"{len(source_files)} files" if source_files else "none either")
    coverage = require_some(len(chosen), "files sampled", str(source), empty_ok=empty_ok, cause=cause)
    allowed = int(mismatch_tolerance * len(chosen))
    if len(mismatched) > allowed:
        shown = redact.printable(", ".join(f"{archive_path}/{rel}" for rel in mismatched[:10]), 2000)
        raise CheckFailed(str(source), f"sampled files identical to the live source (at most {allowed} "
                          f"of {len(chosen)} may differ)", f"{len(mismatched)} differ: {shown}",
                          "a file changed after the backup, or the backup does not hold what the source has")
    return {"files_in_archive": len(archive.files), "files_in_source": len(source_files),
            "sampled": len(chosen), "sample_mismatches": len(mismatched), "sample_seed": seed,
            **archive.evidence("archive_"), **live.evidence("source_"), **coverage}


def check_sqlite(root: Path, relative: str, *, work_dir: Path, show_found: bool = False,
                 empty_ok: bool = False, budgets=None) -> dict:
    """The database passes ``PRAGMA integrity_check``, run in the sandbox on a private copy of
    the safely opened file (:func:`restoredrill.checks.sqlite_probe.sqlite_integrity`), and
    holds at least one table (a zero-byte file passes integrity_check with nothing in it),
    unless the entry declares ``expect_empty``.

    Its problems are counted, not quoted (they can quote database content), unless the entry
    opts in: then the first one, at most 80 printable characters."""
    where = redact.printable(relative, 300)
    with regular_file(root, relative, "an SQLite database") as db:
        show = show_found and db.st.st_nlink == 1
        try:
            report = sqlite_integrity(db.fd, name=where, work_dir=work_dir, budgets=budgets)
        except SqliteProbeError as exc:
            raise CheckFailed(where, "PRAGMA integrity_check = ok", f"the check could not run: "
                              f"{redact.printable(str(exc), 600)}") from None
    if report.error is not None:
        detail = f": {redact.printable(report.error)!r}" if show else f"; {redact.HIDDEN_HINT}"
        raise CheckFailed(where, "PRAGMA integrity_check = ok", f"the database cannot be read{detail}")
    if not report.ok:
        rows = report.integrity
        count = f"{len(rows)}{' or more' if len(rows) >= MAX_ROWS else ''}"
        first = f", first: {redact.printable(rows[0])!r}" if show and rows else f" ({redact.HIDDEN_HINT})"
        raise CheckFailed(where, "PRAGMA integrity_check = ok", f"not ok: {count} problems{first}")
    return {"sqlite_tables": report.tables,
            **require_some(report.tables or 0, "tables", where, empty_ok=empty_ok, cause=EMPTY_DB_CAUSE)}


def check_canary(root: Path, relative: str, equals: str | None, pattern: str | None, *,
                 show_found: bool = False) -> dict:
    """The canary holds the declared value; only its fingerprint is kept, pass or fail."""
    where = redact.printable(relative, 300)
    with regular_file(root, relative, "the canary file", "the canary is written before every backup: "
                      "is the pre-backup hook running?") as canary:
        raw, size = read_prefix(canary.fd, CANARY_LIMIT + 1)
        linked = canary.st.st_nlink > 1
    if size > CANARY_LIMIT:
        raise CheckFailed(where, f"a canary of at most {CANARY_LIMIT} bytes", f"{size} bytes")
    value = raw.rstrip(b"\r\n")
    content = value.decode("utf-8", errors="replace")
    expected = " and ".join(filter(None, [f"canary value {equals!r}" if equals is not None else "",
                                          f"canary matching /{pattern}/" if pattern is not None else ""]))
    matched = (equals is None or content == equals) and (pattern is None or re.search(pattern, content) is not None)
    if not matched:
        raise CheckFailed(where, expected, "canary " + redact.describe(value, matched=False, show=show_found,
                                                                      linked=linked))
    return redact.evidence("canary", value, matched=True, show=show_found, linked=linked)
