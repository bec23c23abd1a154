"""Reach files inside an extract without ever leaving it.

An extract is restored data and so hostile: whoever could write the backed-up tree
could plant a symbolic link (to a token on the runner), a FIFO (an ``open`` for
reading blocks forever) or a device node. Every path is therefore walked one
component at a time from the extract root with ``openat`` semantics (``dir_fd=``)
and ``O_PATH | O_NOFOLLOW``: a component that is a symbolic link is refused, never
followed, and the final component must be of the kind the caller asks for. Files
are read only through the descriptor the walk produced, so no other file can be
swapped in between the check and the read (no time-of-check/time-of-use gap).

A regular file is reopened for reading through ``/proc/self/fd/N`` of its
``O_PATH`` descriptor (the same inode, see proc(5)); a device or FIFO is never
opened for reading at all.

Hard links: Borg recreates a hard link only between members of the same archive
(borg ``archive.py`` ``extract_item``: the link source is a path of the archive
joined to the extract directory), so a hard-linked file in an extract is another
archive member, not a way out. It is still a regular file of possibly shared
content: callers show no content of a file with more than one link.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

O_PATH_NOFOLLOW = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class PathRefused(Exception):
    """The path is missing or leads somewhere a check never goes; ``reason`` says which."""

    def __init__(self, relative: str, reason: str, *, missing: bool = False):
        self.relative = relative
        self.reason = reason
        self.missing = missing
        super().__init__(f"{relative}: {reason}")


def kind_of(mode: int) -> str:
    """Human name of a file type (from ``st_mode``)."""
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def split_relative(relative: str) -> list[str]:
    """The components of an archive-relative path; absolute paths and '..' are refused."""
    if relative.startswith("/"):
        raise PathRefused(relative, "an absolute path (write it relative to the archive root, as "
                          "`borg list` shows it, without the leading /)")
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise PathRefused(relative, "a path with '..' (it could leave the extract)")
    return parts


@dataclass
class Opened:
    """An open descriptor of a file or directory inside the extract, and its ``fstat``."""
    relative: str
    fd: int
    st: os.stat_result

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _open_nofollow(name: str, dir_fd: int, relative: str) -> tuple[int, os.stat_result]:
    """``openat(dir_fd, name, O_PATH|O_NOFOLLOW)`` and its ``fstat``: a link is opened as the link."""
    try:
        fd = os.open(name, O_PATH_NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        raise PathRefused(relative, "missing from the archive", missing=True) from None
    except NotADirectoryError:
        raise PathRefused(relative, "missing from the archive (a parent is not a directory)",
                          missing=True) from None
    return fd, os.fstat(fd)


def _walk_parents(root_fd: int, parts: list[str], relative: str) -> int:
    """Descend through every directory component; returns a new ``O_PATH`` fd of the last one."""
    current = os.dup(root_fd)
    try:
        for depth, name in enumerate(parts):
            fd, st = _open_nofollow(name, current, relative)
            if not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                where = "/".join(parts[:depth + 1])
                if stat.S_ISLNK(st.st_mode):
                    raise PathRefused(relative, f"{where} is a symbolic link (never followed)")
                raise PathRefused(relative, f"missing from the archive ({where} is {kind_of(st.st_mode)})",
                                  missing=True)
            os.close(current)
            current = fd
    except BaseException:
        os.close(current)
        raise
    return current


def open_entry(root: Path | int, relative: str) -> Opened:
    """Any member (file, directory, link, device...) without following it: an ``O_PATH`` fd.

    ``root`` is the extract directory (the drill's own, so it is trusted) or an open fd of it.
    """
    parts = split_relative(relative)
    root_fd = os.dup(root) if isinstance(root, int) else os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not parts:
            return Opened(relative, os.dup(root_fd), os.fstat(root_fd))
        parent = _walk_parents(root_fd, parts[:-1], relative)
        try:
            fd, st = _open_nofollow(parts[-1], parent, relative)
        finally:
            os.close(parent)
        return Opened(relative, fd, st)
    finally:
        os.close(root_fd)


def _reopen(entry: Opened, flags: int) -> Opened:
    """Upgrade an ``O_PATH`` fd to a readable one on the very same inode (proc(5))."""
    fd = os.open(f"/proc/self/fd/{entry.fd}", flags | os.O_CLOEXEC)
    entry.close()
    return Opened(entry.relative, fd, os.fstat(fd))


def open_regular(root: Path | int, relative: str) -> Opened:
    """A regular file inside root, open for reading; anything else is refused unopened."""
    entry = open_entry(root, relative)
    if not stat.S_ISREG(entry.st.st_mode):
        entry.close()
        raise PathRefused(relative, f"{kind_of(entry.st.st_mode)}, not a regular file (never opened)",
                          missing=False)
    return _reopen(entry, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)


def open_directory(root: Path | int, relative: str) -> Opened:
    """A directory inside root, open for listing (``os.scandir(fd)``)."""
    entry = open_entry(root, relative)
    if not stat.S_ISDIR(entry.st.st_mode):
        entry.close()
        raise PathRefused(relative, f"{kind_of(entry.st.st_mode)}, not a directory", missing=False)
    return _reopen(entry, os.O_RDONLY | os.O_DIRECTORY)


def exists(root: Path | int, relative: str) -> bool:
    """``lexists`` inside root: any kind of member counts (a link too), no component is followed."""
    try:
        open_entry(root, relative).close()
    except PathRefused as refused:
        if refused.missing:
            return False
        raise
    return True


def read_prefix(fd: int, limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` bytes from the start of fd, and the file's full size (from ``fstat``)."""
    chunks, left = [], limit
    while left > 0:
        block = os.pread(fd, min(left, 1 << 20), limit - left)
        if not block:
            break
        chunks.append(block)
        left -= len(block)
    return b"".join(chunks), os.fstat(fd).st_size


@dataclass
class Listing:
    """The regular files under a directory, and what was skipped rather than followed."""
    files: list[str] = field(default_factory=list)
    symlinks: int = 0
    special: int = 0      # devices, FIFOs, sockets
    unreadable: int = 0   # directories that could not be opened (permissions, a limit): not sampled
    why_unreadable: str = ""

    def evidence(self, prefix: str) -> dict:
        facts = {f"{prefix}symlinks_skipped": self.symlinks, f"{prefix}special_files_skipped": self.special}
        if self.unreadable:
            facts[f"{prefix}directories_unreadable"] = self.unreadable
            facts[f"{prefix}directories_unreadable_why"] = self.why_unreadable
        return facts


_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def list_regular(directory_fd: int) -> Listing:
    """Walk a directory fd without following links: regular files by relative POSIX path.

    Directories still to visit are kept as names, not descriptors: each is reopened from
    the top one component at a time (``O_NOFOLLOW``), at most two descriptors open at once
    whatever the breadth or depth (with 1500 subdirectories and the limit at 1024, one
    descriptor per pending directory made 484 of them "symbolic links" never sampled).
    A component replaced by a link since the scan is a skipped link; a directory that
    cannot be opened otherwise is counted as unreadable, with the reason."""
    listing = Listing()
    pending: list[tuple[str, ...]] = [()]
    while pending:
        parts = pending.pop()
        fd = _reopen_dir(directory_fd, parts, listing)
        if fd is None:
            continue
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    _classify(entry, parts, listing, pending)
        finally:
            os.close(fd)
    listing.files.sort()
    return listing


def _reopen_dir(top_fd: int, parts: tuple[str, ...], listing: Listing) -> int | None:
    fd = os.dup(top_fd)
    for part in parts:
        try:
            child = os.open(part, _DIR_OPEN, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                listing.symlinks += 1       # replaced by a link (or removed) since the scan: never followed
            else:
                listing.unreadable += 1
                listing.why_unreadable = listing.why_unreadable or (exc.strerror or str(exc))
            os.close(fd)
            return None
        os.close(fd)
        fd = child
    return fd


def _classify(entry: os.DirEntry, parts: tuple[str, ...], listing: Listing,
              pending: list[tuple[str, ...]]) -> None:
    mode = entry.stat(follow_symlinks=False).st_mode
    if stat.S_ISREG(mode):
        listing.files.append("/".join((*parts, entry.name)))
    elif stat.S_ISDIR(mode):
        pending.append((*parts, entry.name))
    elif stat.S_ISLNK(mode):
        listing.symlinks += 1
    else:
        listing.special += 1
