"""Secret references: ``env:NAME``, ``file:PATH`` and ``command:ARGV``, resolved late.

The inventory never holds a secret itself, only where to get it. A reference is
resolved at the moment a client needs the value; the value is kept out of argv,
URLs, logs, reports and exception messages (callers pass it to
:func:`restoredrill.execute.run` as a ``secrets=`` item so it is masked even if a
program echoes it).
"""
from __future__ import annotations

import os
import shlex
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCHEMES = ("env", "file", "command")


class SecretError(RuntimeError):
    """A secret reference could not be resolved; the message never holds the value."""


@dataclass(frozen=True)
class SecretRef:
    scheme: str
    target: str

    @classmethod
    def parse(cls, text: str) -> "SecretRef":
        scheme, sep, target = str(text).partition(":")
        if not sep or scheme not in SCHEMES or not target.strip():
            raise ValueError(
                "must be a secret reference (env:NAME, file:PATH or command:PROGRAM ARGS); "
                "inline secrets are refused so that they never land in an inventory file")
        return cls(scheme, target.strip())

    def __str__(self) -> str:
        return f"{self.scheme}:{self.target}"

    def describe(self) -> str:
        return {"env": "environment variable", "file": "file", "command": "command"}[self.scheme] + \
            f" {self.target!r}"

    def resolve(self, *, base_dir: Path | None = None, timeout: float = 30) -> str:
        """Return the secret's value (trailing newline stripped)."""
        if self.scheme == "env":
            value = os.environ.get(self.target)
            if value is None:
                raise SecretError(f"secret {self}: environment variable {self.target} is not set; "
                                  f"export it before the run or use a file: reference")
            return value
        if self.scheme == "file":
            return _read_secret_file(self.path(base_dir))
        return _run_secret_command(self, timeout)

    def path(self, base_dir: Path | None = None) -> Path:
        path = Path(self.target).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return path


def _read_secret_file(path: Path) -> str:
    try:
        data = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretError(f"secret file {path} does not exist; create it (mode 0600) "
                          f"or fix the file: reference in the inventory") from None
    except OSError as exc:
        raise SecretError(f"secret file {path} cannot be read ({exc.strerror}); "
                          f"check its owner and mode") from None
    return data.rstrip("\r\n")


def _run_secret_command(ref: SecretRef, timeout: float) -> str:
    argv = shlex.split(ref.target)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SecretError(f"secret command {argv[0]!r} is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise SecretError(f"secret command {argv[0]!r} did not answer within {timeout:g} s") from None
    if proc.returncode != 0:
        # stderr only: stdout could be a partial secret
        raise SecretError(f"secret command {argv[0]!r} exited with code {proc.returncode}: "
                          f"{proc.stderr.strip()[-300:]}")
    return proc.stdout.rstrip("\r\n")


def file_is_private(path: Path) -> bool:
    """True when no one but the owner can read the file (mode 0600 or stricter)."""
    return not (path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def write_private(path: Path, value: str) -> None:
    """Write a secret file with mode 0600 from the start (no window where it is readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    os.chmod(path, 0o600)
