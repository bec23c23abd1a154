"""Removing scratch folders that restored data filled (Borg extracts, their leftovers).

Restored data is hostile and may be built to stay: ``shutil.rmtree`` recurses once per
directory level (an archive of 1100 nested directories raised RecursionError, which
``ignore_errors`` does not cover), and a file or directory with the immutable or
append-only flag cannot be removed, silently so with ``ignore_errors``. So:

* the walk is iterative, one directory descriptor open at a time (it climbs back with
  ``..``, which in a directory we opened without following links is its real parent),
  and every name is relative to that descriptor: no recursion, no PATH_MAX, no descriptor
  per level;
* it never follows a symbolic link and never opens anything but regular files and
  directories (opening a device node could act on the device);
* before a directory is emptied, and when a file will not go, the immutable and
  append-only flags are cleared: extracts are made with ``borg extract --noflags`` so
  borg restores none (borg/archive.py Archive.restore_attrs sets ``bsdflags`` last, after
  the data), but a flag is the one thing that would pin a folder the harness made;
* the caller learns what is left (:func:`remove_tree` returns it) and fails the case.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import struct
from pathlib import Path

from restoredrill.checks.redact import printable

log = logging.getLogger("restoredrill.scratch")

# linux/include/uapi/linux/fs.h: FS_IOC_GETFLAGS _IOR('f', 1, long), FS_IOC_SETFLAGS
# _IOW('f', 2, long) on 64-bit; the value passed is an int (e2fsprogs lib/e2p/fgetflags.c)
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x00000010
FS_APPEND_FL = 0x00000020
PINNING_FLAGS = FS_IMMUTABLE_FL | FS_APPEND_FL
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
SHOWN_LEFTOVERS = 5


def clear_pinning_flags(name: str, dir_fd: int) -> bool:
    """Clear immutable/append-only on a regular file or directory (never anything else);
    True when a flag was cleared."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY,
                     dir_fd=dir_fd)
    except OSError:
        return False
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return False
        flags = struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, struct.pack("i", 0)))[0]
        if not flags & PINNING_FLAGS:
            return False
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags & ~PINNING_FLAGS))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _unlink(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EACCES) or not clear_pinning_flags(name, dir_fd):
            raise
        os.unlink(name, dir_fd=dir_fd)


def _open_dir(name: str, dir_fd: int) -> int:
    clear_pinning_flags(name, dir_fd)
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:          # an unprivileged harness: a directory restored without rwx
        os.chmod(name, 0o700, dir_fd=dir_fd)
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def remove_tree(root: Path) -> list[str]:
    """Remove root and everything below it; the paths (relative to root's parent) that are
    still there afterwards, empty when root is gone."""
    root = Path(root)
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        return []
    top = os.open(root.parent, _DIR_FLAGS)
    try:
        if stat.S_ISDIR(st.st_mode):
            problems = _remove_dir(root.name, top)
        else:
            _unlink(root.name, top)
            problems = []
    except OSError as exc:
        problems = [f"{_shown(root.name)} ({exc.strerror})"]
    finally:
        os.close(top)
    if os.path.lexists(root) and not problems:
        problems = [f"{_shown(root.name)} (still there)"]
    return problems


def _remove_dir(name: str, top: int) -> list[str]:
    failed: set[tuple[str, ...]] = set()   # paths (names from the top) that would not go
    problems: list[str] = []
    names = [name]
    fd = _open_dir(name, top)
    while True:
        child = None
        with os.scandir(fd) as entries:
            for entry in entries:
                if (*names, entry.name) in failed:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    child = entry.name
                    break
                try:
                    _unlink(entry.name, fd)
                except OSError as exc:
                    failed.add((*names, entry.name))
                    problems.append(f"{_shown('/'.join((*names, entry.name)))} ({exc.strerror})")
        if child is not None:
            try:
                below = _open_dir(child, fd)
            except OSError as exc:
                failed.add((*names, child))
                problems.append(f"{_shown('/'.join((*names, child)))} ({exc.strerror})")
                continue
            os.close(fd)
            fd, names = below, [*names, child]
            continue
        # this directory holds nothing we can remove any more: climb and remove it
        parent = os.open("..", _DIR_FLAGS, dir_fd=fd) if len(names) > 1 else os.dup(top)
        os.close(fd)
        done = names.pop()
        try:
            os.rmdir(done, dir_fd=parent)
        except OSError as exc:
            failed.add((*names, done))
            if not any(p[:len(names) + 1] == (*names, done) and len(p) > len(names) + 1 for p in failed):
                problems.append(f"{_shown('/'.join((*names, done)))} ({exc.strerror})")
        if not names:
            os.close(parent)
            return problems
        fd = parent


def _shown(path: str) -> str:
    """A path made of restored names, safe for a terminal and a report."""
    return printable(path, 300)


def leftover_message(root: Path, problems: list[str]) -> str:
    """One paragraph: what is left, why, and what a person does about it."""
    shown = "; ".join(problems[:SHOWN_LEFTOVERS])
    more = f" and {len(problems) - SHOWN_LEFTOVERS} more" if len(problems) > SHOWN_LEFTOVERS else ""
    return (f"scratch folder {root} could not be removed: {shown}{more}. It holds restored data: "
            f"remove it by hand (as root: chattr -R -ia {root}; rm -rf {root})")
