"""Secret files on the runner host, checked when the inventory loads (never read).

A ``file:`` secret that is missing or that other users can read shows up at load time with
its place in the inventory, not as a failed drill hours later. Only ``stat`` and ``access``
are called: the file's content is never opened. The mode rule is OpenSSH's for private keys
(``sshkey_perm_ok`` in openssh-portable authfile.c: no access for group or others), so one
``chmod 600`` satisfies both.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from restoredrill.secrets import SecretRef

Problem = tuple[tuple[str | int, ...], str]


def secret_refs(value: object, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], SecretRef]]:
    """Every secret reference in the validated inventory, with its key path."""
    if isinstance(value, SecretRef):
        yield loc, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secret_refs(getattr(value, name), (*loc, name))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from secret_refs(item, (*loc, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from secret_refs(item, (*loc, str(key)))


def host_file_errors(inventory: BaseModel, base_dir: Path) -> Iterator[Problem]:
    for loc, ref in secret_refs(inventory):
        if ref.scheme == "file":
            problem = secret_file_problem(ref.path(base_dir))
            if problem:
                yield loc, problem


def secret_file_problem(path: Path) -> str | None:
    """Why the secret file at ``path`` cannot be used, or None. Never opens it."""
    fix = "or correct the file: reference"
    try:
        info = path.stat()
    except FileNotFoundError:
        return (f"secret file {path} does not exist: create it (mode 0600, owned by the user that runs the "
                f"drills) {fix}")
    except PermissionError:
        return (f"secret file {path} cannot be reached by this user (uid {os.getuid()}): a folder on its path "
                f"is closed to it; run the drills as the file's owner {fix}")
    except OSError as exc:
        return f"secret file {path} cannot be checked ({exc.strerror}) {fix}"
    if not stat.S_ISREG(info.st_mode):
        return f"secret file {path} is not a regular file (a folder or a device?) {fix}"
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return (f"secret file {path} has mode {mode:04o}: other users can read or change it; "
                f"run `chmod 600 {path}` (the rule ssh applies to private keys)")
    if not os.access(path, os.R_OK):
        return (f"secret file {path} is not readable by this user (uid {os.getuid()}, file owner uid "
                f"{info.st_uid}): run the drills as its owner or `chown` it to that user")
    return None
