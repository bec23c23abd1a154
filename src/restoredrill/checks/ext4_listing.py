"""Look paths up in an ext2/3/4 filesystem inside a restored disk image, without mounting it:
e2fsprogs ``debugfs -c`` (catastrophic mode: read-only, bitmaps not read) run in the sandbox
(:mod:`restoredrill.sandbox`: no network, no secrets, the image read-only). One debugfs run per
path (``stat "PATH"``), so a hostile name or attribute in the image cannot fake the answer of
another path. Of debugfs's output only the ``Inode: N   Type: T`` head of ``stat`` and its
"not found" messages (for that very path) are interpreted; nothing else of it (xattrs, names,
times from the image) is ever printed or kept (e2fsprogs ``debugfs/debugfs.c`` ``internal_dump_inode``
writes that head first; ``do_stat`` reports a failed ``ext2fs_namei`` with ``com_err``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from restoredrill import sandbox
from restoredrill.execute import CommandError

DEBUGFS = "/usr/sbin/debugfs"
HEAD = re.compile(r"\AInode: (\d+)\s+Type: ([A-Za-z ]{3,20}?)\s+Mode:")
# ext2fs_namei's answers for a path that is not there (lib/ext2fs/ext2_err.et.in, ELOOP)
NOT_THERE = (("File not found by ext2_lookup", ""), ("Ext2 inode is not a directory", "a parent is not a directory"),
             ("Too many symbolic links", "a symlink loop"), ("Too many levels of symbolic links", "a symlink loop"))
MAX_PATHS = 64
LIMITS = sandbox.Limits(cpu_seconds=60, address_space_bytes=2 * sandbox.GiB, file_size_bytes=1 << 20,
                        processes=8, open_files=64)
STDOUT_LIMIT = 1 << 20


class ListingError(RuntimeError):
    """debugfs could not read the filesystem (or could not run): the check cannot conclude."""


@dataclass(frozen=True)
class PathResult:
    path: str
    found: bool
    kind: str = ""          # regular, directory, symlink, ... (debugfs's word)
    note: str = ""


def path_problem(path: str) -> str | None:
    """Why an inventory path cannot be handed to debugfs (its command parser splits on blanks
    and quotes); None when it can."""
    if not path.startswith("/"):
        return "not an absolute path"
    if any(ch in path for ch in '"\\') or any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        return "holds a quote, a backslash or a control character"
    if len(path.encode()) > 4096:
        return "longer than 4096 bytes"
    return None


def debugfs_argv(image: Path, offset: int, path: str) -> list[str]:
    """``NAME?offset=N``: ext2fs_open2 hands what follows ``?`` to the I/O manager as options
    (lib/ext2fs/openfs.c), unix_io's ``unix_set_option`` takes ``offset`` (lib/ext2fs/unix_io.c)."""
    if "?" in str(image):
        raise ListingError(f"the work folder {image.parent} holds a '?', which ext2fs reads as the start of "
                           "I/O options: choose a scratch.work_dir without one")
    source = f"{image}?offset={offset}" if offset else str(image)
    return [DEBUGFS, "-c", "-R", f'stat "{path}"', source]


def interpret(path: str, stdout: str, stderr: str) -> PathResult:
    head = HEAD.match(stdout)
    if head:
        return PathResult(path, True, head.group(2).strip())
    for message, note in NOT_THERE:
        if f"{path}: {message}" in stderr:
            return PathResult(path, False, note=note)
    raise ListingError("debugfs could not read the filesystem (a damaged superblock or inode table, or not "
                       "ext2/3/4)")


def look_up(image: Path, offset: int, paths: list[str], *, timeout: float = 120.0) -> list[PathResult]:
    """Each path found or missing in the filesystem at ``offset`` of ``image``. The root
    directory is looked up first: a filesystem debugfs cannot open raises ListingError."""
    root = run_stat(image, offset, "/", timeout)
    if not root.found or root.kind != "directory":
        raise ListingError("the filesystem's root directory is not readable")
    results = []
    for path in paths[:MAX_PATHS]:
        problem = path_problem(path)
        results.append(PathResult(path, False, note=f"not looked up: {problem}") if problem
                       else run_stat(image, offset, path, timeout))
    return results


def run_stat(image: Path, offset: int, path: str, timeout: float) -> PathResult:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBUGFS_PAGER": "__none__", "PAGER": "__none__",
           "LANG": "C", "LC_ALL": "C"}
    try:
        result = sandbox.run_sandboxed(debugfs_argv(image, offset, path), readable=[image.parent], env=env,
                                       limits=LIMITS, timeout=timeout, check=False, stdout_limit=STDOUT_LIMIT,
                                       label="debugfs")
    except sandbox.BudgetExceeded as exc:
        raise ListingError(f"debugfs went past the sandbox's {exc.budget} budget and was stopped "
                           "(a hostile or damaged filesystem)") from None
    except sandbox.SandboxError as exc:
        raise ListingError(str(exc)) from None
    except CommandError:
        raise ListingError(f"debugfs did not finish within {timeout:g} s and was stopped") from None
    if result.returncode != 0:
        raise ListingError(f"debugfs exited with code {result.returncode}{sandbox.signal_note(result.returncode)}")
    return interpret(path, result.stdout, result.stderr)
