"""Every public function of ``checks/data.py`` on real trees in tmp_path: what passes, what
fails, and what the failure names (the place) and keeps out (the content).

The hostile-data cases (links to secrets, FIFOs, hard links, opt-in display) are in
test_data_checks.py; the empty cases (a zero-byte database, nothing sampled) belong to the
zero-items rule and are tested with it.
"""
from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import stat
import tarfile
from pathlib import Path

import pytest

from restoredrill.checks import data
from restoredrill.checks.errors import CheckFailed
from restoredrill.checks.safe_paths import PathRefused

SPOT = {"sample": 50, "count_tolerance": 0.0, "mismatch_tolerance": 0.0, "seed": 7}


def write(root: Path, relative: str, content: bytes | str = b"x") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


@pytest.fixture
def tree(tmp_path) -> Path:
    """A small extract: documents, photos, a database and a canary (the lab's layout)."""
    root = tmp_path / "extract"
    for i in range(6):
        write(root, f"app/photos/IMG_{i:04}.jpg", os.urandom(2048))
    write(root, "app/docs/readme.txt", "hello\n")
    write(root, "app/docs/deep/nested/notes.md", "# notes\n")
    write(root, "app/.restoredrill-canary", "lab-canary-20261205\n")
    return root


def source_copy(tree: Path, tmp_path: Path) -> Path:
    """The live source: an exact copy of the archive's ``app`` directory, made through tar."""
    bundle = tmp_path / "app.tar"
    with tarfile.open(bundle, "w") as tar:
        tar.add(tree / "app", arcname="app")
    live = tmp_path / "live"
    live.mkdir()
    with tarfile.open(bundle) as tar:
        tar.extractall(live, filter="data")
    return live / "app"


def fails(call, *args, **kwargs) -> CheckFailed:
    with pytest.raises(CheckFailed) as info:
        call(*args, **kwargs)
    return info.value


# --- refused, regular_file, sha256_fd -----------------------------------------------------

def test_refused_names_the_path_and_hints_by_cause():
    missing = data.refused(PathRefused("app/db/app.sqlite", "missing", missing=True), "a database", "run a backup")
    assert (missing.where, missing.expected, missing.found, missing.hint) == \
        ("app/db/app.sqlite", "a database", "missing", "run a backup")
    link = data.refused(PathRefused("app/\x1b[31mlink", "a symbolic link"), "a database", "run a backup")
    assert link.where == "app/?[31mlink" and link.hint == data.NEVER_FOLLOWED


def test_regular_file_opens_a_file_and_refuses_a_directory_a_link_and_a_missing_path(tree):
    with data.regular_file(tree, "app/docs/readme.txt", "a text") as opened:
        assert os.read(opened.fd, 100) == b"hello\n" and stat.S_ISREG(opened.st.st_mode)
    os.symlink("readme.txt", tree / "app/docs/link.txt")
    for relative, found in (("app/docs", "a directory"), ("app/docs/link.txt", "a symbolic link"),
                            ("app/docs/gone.txt", "missing")):
        failure = fails(data.regular_file, tree, relative, "a text", "is it backed up?")
        assert failure.where == relative and found in failure.found and failure.expected == "a text"
    assert fails(data.regular_file, tree, "app/docs/gone.txt", "a text", "is it backed up?").hint == "is it backed up?"


def test_sha256_fd_hashes_the_whole_file_past_one_read_block(tmp_path):
    content = os.urandom((1 << 20) * 2 + 17)
    path = write(tmp_path, "big.bin", content)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert data.sha256_fd(fd) == hashlib.sha256(content).hexdigest()
    finally:
        os.close(fd)


# --- require_free_space ---------------------------------------------------------------------

def test_free_space_passes_with_room_and_refuses_without_it(tmp_path):
    facts = data.require_free_space(tmp_path, 1024, 0)
    assert facts["needed_bytes"] == 1024 and facts["free_bytes"] > 1024
    failure = fails(data.require_free_space, tmp_path, 1024, 1 << 60)
    assert failure.where == str(tmp_path) and "bytes free" in failure.found
    assert "scratch.min_free" in failure.hint and f"{1024 + (1 << 60):,} bytes free" in failure.expected


def test_free_space_counts_the_archive_and_the_reserve_together(tmp_path):
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    data.require_free_space(tmp_path, free // 4, free // 4)          # both together fit
    fails(data.require_free_space, tmp_path, free * 5 // 8, free * 5 // 8)   # each alone fits, not both


# --- list_files, listing --------------------------------------------------------------------

def test_list_files_walks_every_level_and_skips_links(tree, tmp_path):
    os.symlink(tmp_path, tree / "app/escape")
    os.symlink("readme.txt", tree / "app/docs/again.txt")
    files = data.list_files(tree)
    assert sorted(files) == sorted([f"app/photos/IMG_{i:04}.jpg" for i in range(6)]
                                   + ["app/docs/readme.txt", "app/docs/deep/nested/notes.md",
                                      "app/.restoredrill-canary"])
    found = data.listing(tree, "app/docs")
    assert sorted(found.files) == ["deep/nested/notes.md", "readme.txt"] and found.symlinks == 1


def test_listing_refuses_a_file_a_link_or_a_missing_directory(tree, tmp_path):
    os.symlink(tmp_path, tree / "app/escape")
    for relative, found in (("app/docs/readme.txt", "a regular file"), ("app/escape", "a symbolic link"),
                            ("app/nothing", "missing")):
        failure = fails(data.listing, tree, relative)
        assert failure.where == relative and found in failure.found
        assert failure.expected == "a directory inside the archive"


# --- check_paths_present --------------------------------------------------------------------

def test_paths_present_passes_for_files_directories_and_counts_them(tree):
    assert data.check_paths_present(tree, ["app/photos", "app/docs/readme.txt", "app/.restoredrill-canary"]) \
        == {"paths_checked": 3}


def test_paths_present_names_every_missing_path(tree):
    failure = fails(data.check_paths_present, tree, ["app/photos", "app/db/app.sqlite", "etc/passwd"])
    assert failure.found == "missing: app/db/app.sqlite, etc/passwd"
    assert "app/photos" not in failure.found and failure.expected.startswith("paths present: app/photos")


def test_paths_present_refuses_a_path_below_a_link_and_says_why(tree, tmp_path):
    write(tmp_path, "outside/secret.txt", "top secret")
    os.symlink(tmp_path / "outside", tree / "app/linked")
    failure = fails(data.check_paths_present, tree, ["app/linked/secret.txt", "app/docs"])
    assert failure.found.startswith("refused: app/linked/secret.txt (") and "missing" not in failure.found
    assert "top secret" not in str(failure)


# --- check_min_files ------------------------------------------------------------------------

def test_min_files_passes_at_the_minimum_and_fails_one_below(tree):
    facts = data.check_min_files(tree, 9)
    assert facts["files"] == 9 and facts["symlinks_skipped"] == 0 and facts["special_files_skipped"] == 0
    failure = fails(data.check_min_files, tree, 10)
    assert failure.expected == "at least 10 regular files" and failure.found.startswith("9 regular files")


def test_min_files_does_not_count_links_toward_the_minimum(tree):
    for i in range(5):
        os.symlink("IMG_0000.jpg", tree / f"app/photos/alias{i}.jpg")
    failure = fails(data.check_min_files, tree, 10)
    assert "9 regular files (5 symbolic links" in failure.found


# --- spot_check -----------------------------------------------------------------------------

def test_spot_check_passes_when_the_archive_matches_the_source(tree, tmp_path):
    live = source_copy(tree, tmp_path)
    facts = data.spot_check(tree, live, "app", **SPOT)
    assert facts["files_in_archive"] == facts["files_in_source"] == 9
    assert facts["sampled"] == 9 and facts["sample_mismatches"] == 0 and facts["sample_seed"] == 7


def test_spot_check_names_a_changed_file_and_not_its_content(tree, tmp_path):
    live = source_copy(tree, tmp_path)
    (live / "docs/readme.txt").write_text("changed after the backup: hunter2\n")
    failure = fails(data.spot_check, tree, live, "app", **SPOT)
    assert failure.where == str(live) and failure.found == "1 differ: app/docs/readme.txt"
    assert "hunter2" not in str(failure) and "changed after the backup" in failure.hint


def test_spot_check_mismatch_tolerance_allows_that_many_and_not_one_more(tree, tmp_path):
    live = source_copy(tree, tmp_path)
    for i in range(2):
        (live / f"photos/IMG_{i:04}.jpg").write_bytes(b"other")
    loose = dict(SPOT, mismatch_tolerance=2 / 9 + 0.001)       # int(0.223 * 9) = 2 may differ
    assert data.spot_check(tree, live, "app", **loose)["sample_mismatches"] == 2
    failure = fails(data.spot_check, tree, live, "app", **dict(SPOT, mismatch_tolerance=1 / 9 + 0.001))
    assert "at most 1 of 9 may differ" in failure.expected and failure.found.startswith("2 differ: ")


def test_spot_check_file_count_tolerance(tree, tmp_path):
    live = source_copy(tree, tmp_path)
    write(live, "docs/new-since-backup.txt", "new")          # 9 archived, 10 live: 10% off
    failure = fails(data.spot_check, tree, live, "app", **SPOT)
    assert failure.where == "app" and failure.found == "9 files (10% off)"
    assert "within 0% of the source's 10" in failure.expected
    facts = data.spot_check(tree, live, "app", **dict(SPOT, count_tolerance=0.1))
    assert (facts["files_in_archive"], facts["files_in_source"]) == (9, 10)


def test_spot_check_a_file_missing_from_the_source_is_a_mismatch(tree, tmp_path):
    live = source_copy(tree, tmp_path)
    (live / "docs/readme.txt").rename(live / "docs/renamed.txt")
    failure = fails(data.spot_check, tree, live, "app", **SPOT)
    assert "app/docs/readme.txt" in failure.found


def test_spot_check_the_seed_decides_the_sample(tree, tmp_path):
    live = source_copy(tree, tmp_path)
    (live / "photos/IMG_0003.jpg").write_bytes(b"other")
    files = data.listing(tree, "app").files
    seen = set()
    for seed in range(30):
        picked = random.Random(seed).sample(files, 1) == ["photos/IMG_0003.jpg"]
        try:
            data.spot_check(tree, live, "app", **dict(SPOT, sample=1, seed=seed))
            seen.add((picked, "passed"))
        except CheckFailed as failure:
            seen.add((picked, failure.found))
    assert seen == {(True, "1 differ: app/photos/IMG_0003.jpg"), (False, "passed")}


def test_spot_check_source_missing_or_archive_path_wrong(tree, tmp_path):
    failure = fails(data.spot_check, tree, tmp_path / "not-mounted", "app", **SPOT)
    assert "does not exist" in failure.found and "checks.spot_check.source" in failure.hint
    live = source_copy(tree, tmp_path)
    failure = fails(data.spot_check, tree, live, "srv/app", **SPOT)
    assert failure.where == "srv/app" and failure.found.startswith("missing") and "archive_path" in failure.hint


# --- check_sqlite ---------------------------------------------------------------------------

def make_db(path: Path, rows: int = 400) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("CREATE INDEX users_name ON users(name)")
        conn.execute("CREATE TABLE canary(value TEXT)")
        conn.executemany("INSERT INTO users(name) VALUES (?)", [(f"user-{i:05}-" + "x" * 200,) for i in range(rows)])
    conn.close()
    return path


def test_sqlite_sound_database_passes_and_counts_its_tables(tmp_path):
    make_db(tmp_path / "extract/app/db/app.sqlite")
    facts = data.check_sqlite(tmp_path / "extract", "app/db/app.sqlite", work_dir=tmp_path / "work")
    assert facts["sqlite_tables"] == 2


def test_sqlite_not_a_database_fails_naming_the_path(tmp_path):
    write(tmp_path, "extract/app/db/app.sqlite", b"this is a text file, not a database\n" * 200)
    failure = fails(data.check_sqlite, tmp_path / "extract", "app/db/app.sqlite", work_dir=tmp_path / "work")
    assert failure.where == "app/db/app.sqlite" and failure.expected == "PRAGMA integrity_check = ok"
    assert "cannot be read" in failure.found or "not ok" in failure.found
    assert "this is a text file" not in str(failure)


def test_sqlite_damaged_pages_fail_the_integrity_check(tmp_path):
    db = make_db(tmp_path / "extract/app/db/app.sqlite")
    raw = bytearray(db.read_bytes())
    page = 4096
    raw[page * 3:page * 5] = b"\x00garbage" * (page * 2 // 8)      # index and table pages, header intact
    db.write_bytes(bytes(raw))
    failure = fails(data.check_sqlite, tmp_path / "extract", "app/db/app.sqlite", work_dir=tmp_path / "work")
    assert failure.where == "app/db/app.sqlite"
    assert failure.found.startswith(("not ok: ", "the database cannot be read"))


def test_sqlite_missing_or_a_directory_is_refused(tmp_path):
    (tmp_path / "extract/app/db/app.sqlite").mkdir(parents=True)
    for relative, found in (("app/db/app.sqlite", "a directory"), ("app/db/other.sqlite", "missing")):
        failure = fails(data.check_sqlite, tmp_path / "extract", relative, work_dir=tmp_path / "work")
        assert failure.where == relative and found in failure.found


def test_sqlite_leaves_the_extracted_file_untouched(tmp_path):
    db = make_db(tmp_path / "extract/app.sqlite")
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    data.check_sqlite(tmp_path / "extract", "app.sqlite", work_dir=tmp_path / "work")
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before
    assert sorted(p.name for p in (tmp_path / "extract").iterdir()) == ["app.sqlite"]     # no -journal, -wal


# --- check_canary ---------------------------------------------------------------------------

def test_canary_equals_and_pattern_pass_and_fail(tree):
    where = "app/.restoredrill-canary"
    facts = data.check_canary(tree, where, "lab-canary-20261205", None)
    assert facts["canary_matched"] is True and facts["canary_bytes"] == len("lab-canary-20261205")
    assert data.check_canary(tree, where, None, r"^lab-canary-\d{8}$")["canary_matched"] is True
    assert data.check_canary(tree, where, "lab-canary-20261205", r"^lab-")["canary_matched"] is True
    for equals, pattern, expected in (("lab-canary-20261204", None, "canary value 'lab-canary-20261204'"),
                                      (None, r"^prod-", "canary matching /^prod-/"),
                                      ("lab-canary-20261205", r"^prod-",
                                       "canary value 'lab-canary-20261205' and canary matching /^prod-/")):
        failure = fails(data.check_canary, tree, where, equals, pattern)
        assert failure.where == where and failure.expected == expected
        assert "did not match" in failure.found and "20261205" not in failure.found


def test_canary_strips_only_the_line_end(tree):
    write(tree, "c1", "v1\r\n")
    write(tree, "c2", " v1\n")
    assert data.check_canary(tree, "c1", "v1", None)["canary_bytes"] == 2
    fails(data.check_canary, tree, "c2", "v1", None)


def test_canary_missing_names_the_pre_backup_hook(tree):
    failure = fails(data.check_canary, tree, "app/.gone", "v", None)
    assert failure.where == "app/.gone" and failure.found.startswith("missing") and "pre-backup hook" in failure.hint


def test_canary_over_the_size_limit_is_refused_unread(tree):
    write(tree, "big", b"v" * (data.CANARY_LIMIT + 1))
    failure = fails(data.check_canary, tree, "big", None, "v")
    assert failure.found == f"{data.CANARY_LIMIT + 1} bytes"
    assert data.check_canary(tree, "app/.restoredrill-canary", None, ".")["canary_bytes"] < data.CANARY_LIMIT
    write(tree, "edge", b"v" * data.CANARY_LIMIT)
    assert data.check_canary(tree, "edge", None, "^v+$")["canary_bytes"] == data.CANARY_LIMIT
