"""Scratch removal (restoredrill/scratch.py) on the real filesystem: deep trees, pinning
flags set with the real chattr, links never followed, and what cannot go reported."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from restoredrill import scratch


def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@pytest.fixture
def pinned(tmp_path):
    """Paths the test pinned; unpinned afterwards whatever happened."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        if os.path.lexists(path):
            subprocess.run(["chattr", "-ia", str(path)], capture_output=True)


def _deep(root: Path, levels: int, name: str = "d") -> Path:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir(name, dir_fd=fd)
        below = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = below
    with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as handle:
        handle.write("x")
    os.close(fd)
    return root


def test_1100_nested_directories_go_without_recursion(tmp_path):
    """Issue 20: shutil.rmtree raised RecursionError on this tree (Python 3.11)."""
    root = tmp_path / "extract"
    root.mkdir()
    _deep(root, 1100)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)      # any recursion per level would fail loudly
    try:
        problems = scratch.remove_tree(root)
    finally:
        sys.setrecursionlimit(limit)
    assert problems == [] and not root.exists()


def test_paths_longer_than_path_max_go(tmp_path):
    root = tmp_path / "extract"
    root.mkdir()
    _deep(root, 40, name="n" * 200)          # 8000+ characters: past PATH_MAX (4096)

    assert scratch.remove_tree(root) == [] and not root.exists()


def test_one_descriptor_at_a_time(tmp_path):
    root = tmp_path / "extract"
    root.mkdir()
    _deep(root, 1500)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        problems = scratch.remove_tree(root)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert problems == [] and not root.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chattr +i needs CAP_LINUX_IMMUTABLE (the suite runs as root)")
def test_immutable_and_append_only_files_and_directories_are_cleared_and_removed(tmp_path, pinned):
    root = tmp_path / "extract"
    (root / "locked" / "deeper").mkdir(parents=True)
    (root / "locked" / "deeper" / "f").write_text("x")
    (root / "appendonly.log").write_text("x")
    (root / "immutable.txt").write_text("x")
    pinned += [root / "locked" / "deeper" / "f", root / "locked" / "deeper", root / "locked",
               root / "appendonly.log", root / "immutable.txt"]
    _chattr("+i", root / "locked" / "deeper" / "f", root / "locked" / "deeper", root / "locked",
            root / "immutable.txt")
    _chattr("+a", root / "appendonly.log")
    shutil.rmtree(root, ignore_errors=True)
    assert root.exists(), "the flags did not pin anything: the test proves nothing"

    assert scratch.remove_tree(root) == []
    assert not root.exists()


def test_symbolic_links_are_removed_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("runner file\n")
    root = tmp_path / "extract"
    root.mkdir()
    (root / "to-dir").symlink_to(outside)
    (root / "to-file").symlink_to(outside / "keep.txt")
    (root / "dangling").symlink_to(tmp_path / "nowhere")

    assert scratch.remove_tree(root) == []
    assert not root.exists() and (outside / "keep.txt").read_text() == "runner file\n"


def test_special_files_are_removed_unopened(tmp_path):
    root = tmp_path / "extract"
    root.mkdir()
    os.mkfifo(root / "fifo")                  # opening it for reading would block
    if os.geteuid() == 0:
        os.mknod(root / "null", 0o600 | 0o020000, os.makedev(1, 3))

    assert scratch.remove_tree(root) == [] and not root.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a file no one can remove")
def test_what_cannot_go_is_reported_by_name_and_the_rest_goes(tmp_path, monkeypatch, pinned):
    root = tmp_path / "extract"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "stuck\x1b[31m").write_text("x")
    (root / "other").mkdir()
    (root / "other" / "f").write_text("x")
    pinned.append(root / "a" / "b" / "stuck\x1b[31m")
    _chattr("+i", root / "a" / "b" / "stuck\x1b[31m")
    monkeypatch.setattr(scratch, "clear_pinning_flags", lambda name, dir_fd: False)   # a flag we cannot clear

    problems = scratch.remove_tree(root)

    assert problems == ["extract/a/b/stuck?[31m (Operation not permitted)"]
    assert not (root / "other").exists()
    message = scratch.leftover_message(root, problems)
    assert str(root) in message and "chattr -R -ia" in message and "\x1b" not in message


def test_a_missing_folder_is_nothing_to_do(tmp_path):
    assert scratch.remove_tree(tmp_path / "gone") == []
