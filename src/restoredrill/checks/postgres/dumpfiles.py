"""Copy a restored dump for the sandbox without ever following its links.

A dump found in a backup is hostile: whoever could write the backed-up tree could
put a symbolic link there (to a secret of the harness), a FIFO (an ``open`` for
reading blocks forever) or a device. Files are opened with ``O_NOFOLLOW |
O_NONBLOCK`` and checked with ``fstat`` on the descriptor that is then read, so
nothing can be swapped in between the check and the read.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

from restoredrill.checks.postgres.errors import PostgresError
from restoredrill.checks.safe_paths import kind_of


def refuse_special(dump_path: Path) -> None:
    """Refuse a dump that is a symbolic link, FIFO, device or socket, before anything opens it."""
    try:
        mode = os.lstat(dump_path).st_mode
    except OSError as exc:
        raise PostgresError(f"cannot read dump {dump_path}: {exc.strerror}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise PostgresError(f"refusing to load dump {dump_path}: it is {kind_of(mode)}, not a regular "
                            f"file or a pg_dump -Fd directory (restored data is never followed or "
                            f"opened as a device)")


def open_regular_file(path: Path, *, dir_fd: int | None = None, shown: Path | None = None):
    """Open a regular file for reading without following a symbolic link (O_NOFOLLOW)
    and without blocking on a FIFO (O_NONBLOCK); anything but a regular file is refused."""
    shown = shown or path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise PostgresError(f"refusing to load dump {shown}: {reason}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise PostgresError(f"refusing to load dump {shown}: it is {kind_of(mode)}, not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def copy_dump_directory(source: Path, target: Path) -> None:
    """Copy a pg_dump -Fd directory, which holds only regular files (toc.dat, NNNN.dat[.gz]):
    a link, subdirectory, device or FIFO in it is refused, never followed or opened."""
    try:
        dir_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise PostgresError(f"refusing to load dump {source}: {exc.strerror}") from None
    try:
        target.mkdir(mode=0o700)
        for name in sorted(os.listdir(dir_fd)):
            with open_regular_file(Path(name), dir_fd=dir_fd, shown=source / name) as entry, \
                    open(target / name, "xb") as out:
                shutil.copyfileobj(entry, out, 1 << 20)
    finally:
        os.close(dir_fd)
