"""Issue 20 §4: walking restored data does not depend on one descriptor per directory."""
from __future__ import annotations

import os
import resource

from restoredrill.checks.data import check_min_files
from restoredrill.checks.safe_paths import list_regular


def _low_fd_limit(limit: int):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_1500_subdirectories_with_a_low_descriptor_limit_are_all_sampled(tmp_path):
    """Issue 20: with the limit at 1024 and 1500 subdirectories, 484 were counted as links."""
    for index in range(1500):
        (tmp_path / f"d{index}").mkdir()
        (tmp_path / f"d{index}" / "f").write_text("x")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    restore = _low_fd_limit(64)
    try:
        found = list_regular(fd)
        facts = check_min_files(tmp_path, 1500)
    finally:
        restore()
        os.close(fd)
    assert len(found.files) == 1500 and found.symlinks == 0 and found.unreadable == 0
    assert facts == {"files": 1500, "symlinks_skipped": 0, "special_files_skipped": 0}


def test_deep_trees_need_no_descriptor_per_level(tmp_path):
    parts = ["level"] * 300
    deep = tmp_path.joinpath(*parts)
    deep.mkdir(parents=True)
    (deep / "leaf").write_text("x")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    restore = _low_fd_limit(64)
    try:
        found = list_regular(fd)
    finally:
        restore()
        os.close(fd)
    assert found.files == ["/".join([*parts, "leaf"])]


def test_a_directory_that_cannot_be_opened_is_said_with_the_reason(tmp_path, monkeypatch):
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "f").write_text("x")
    (tmp_path / "closed").mkdir()
    (tmp_path / "closed" / "g").write_text("x")
    real_open = os.open

    def refusing(path, flags, mode=0o777, *, dir_fd=None):
        if path == "closed":
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, mode, dir_fd=dir_fd)
    monkeypatch.setattr(os, "open", refusing)

    facts = check_min_files(tmp_path, 1)

    assert facts["directories_unreadable"] == 1 and facts["directories_unreadable_why"] == "Permission denied"
    assert facts["symlinks_skipped"] == 0
