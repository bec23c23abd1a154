"""The one place restoredrill starts other programs.

Every outside program (borg, ssh, initdb, psql, ...) is run through :func:`run`:
argument lists only (never a shell string), a timeout, secrets masked before
anything is logged or raised, and the tail of the output in the error.
"""
from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

log = logging.getLogger("restoredrill.execute")

TAIL_LINES = 20
MASK = "***"


class CommandError(RuntimeError):
    """A program failed, timed out or could not be started.

    The message names the command (secrets masked), the exit code and the last
    lines of its output, so that it can be shown to an operator as it is.
    """

    def __init__(self, message: str, *, argv: Sequence[str] = (), returncode: int | None = None,
                 tail: str = ""):
        super().__init__(message)
        self.argv = list(argv)
        self.returncode = returncode
        self.tail = tail


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def tail(self) -> str:
        return output_tail(self.stdout, self.stderr, self.secrets)


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (longest first) in text by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def printable_argv(argv: Sequence[str], secrets: Iterable[str] = ()) -> str:
    secrets = tuple(secrets)
    return " ".join(mask(str(a), secrets) for a in argv)


def output_tail(stdout: str, stderr: str, secrets: Iterable[str] = (), lines: int = TAIL_LINES) -> str:
    combined = "\n".join(part for part in (stdout.strip(), stderr.strip()) if part)
    return mask("\n".join(combined.splitlines()[-lines:]), secrets)


def run(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
        input: str | bytes | None = None, pass_fds: Sequence[int] = (),
        secrets: Iterable[str] = (), ok_codes: Iterable[int] = (0,), check: bool = True,
        binary: bool = False, user: str | None = None, label: str = "") -> Result:
    """Run argv and return its :class:`Result`.

    Raises :class:`CommandError` when the program is missing, runs past
    ``timeout`` seconds, or (with ``check``) exits with a code not in ``ok_codes``.
    ``secrets`` are masked in every log line and error message; they must never be
    in argv in the first place, this is a second line of defence.
    """
    argv = [str(a) for a in argv]
    secrets = tuple(s for s in secrets if s)
    shown = printable_argv(argv, secrets)
    prefix = f"{label}: " if label else ""
    full_env = dict(os.environ if env is None else env)
    if extra_env:
        full_env.update(extra_env)
    log.debug("%srunning %s", prefix, shown)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv, env=full_env, cwd=cwd, input=input, capture_output=True, timeout=timeout,
            pass_fds=tuple(pass_fds), text=not binary, user=user,
            errors=None if binary else "replace",
        )
    except FileNotFoundError as exc:
        raise CommandError(f"{prefix}cannot run {argv[0]!r}: it is not installed or not on PATH "
                           f"(install it, or set its path in the inventory)", argv=argv) from exc
    except subprocess.TimeoutExpired as exc:
        out = _text(exc.stdout)
        err = _text(exc.stderr)
        tail = output_tail(out, err, secrets)
        raise CommandError(f"{prefix}{shown} did not finish within {timeout:g} s; last output:\n{tail}",
                           argv=argv, tail=tail) from None
    seconds = time.monotonic() - started
    stdout = proc.stdout if binary else proc.stdout
    result = Result(argv, proc.returncode, stdout, proc.stderr if not binary else _text(proc.stderr),
                    seconds, secrets)
    log.debug("%s%s exited %d after %.2f s", prefix, shown, proc.returncode, seconds)
    if check and proc.returncode not in tuple(ok_codes):
        tail = output_tail(_text(stdout), result.stderr, secrets)
        raise CommandError(f"{prefix}{shown} exited with code {proc.returncode}; last output:\n{tail}",
                           argv=argv, returncode=proc.returncode, tail=tail)
    return result


def pid_alive(pid: int) -> bool:
    """True while a process with this id exists (it may belong to someone else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data
