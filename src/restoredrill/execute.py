"""The one place restoredrill starts other programs.

Every outside program (borg, ssh, initdb, psql, ...) is run through :func:`run`:
argument lists only (never a shell string), a timeout, secrets masked before
anything is logged or raised, and the tail of the output in the error.

At the timeout a program is stopped as its :class:`Stop` policy says. The default
kills it at once (SIGKILL, as ``subprocess.run(timeout=)`` does). Programs that hold
a lock pass ``stop=Stop(signal.SIGTERM, grace)``: SIGTERM goes to the process itself
(not its group, so an ``ssh`` child it started can close the connection after it),
and SIGKILL follows only when it is still running after ``grace`` seconds.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
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
                 tail: str = "", stopped: str = "", watched: str = ""):
        super().__init__(message)
        self.argv = list(argv)
        self.returncode = returncode
        self.tail = tail
        self.stopped = stopped          # set when the timeout stopped it: how ("SIGTERM, exited after 0.1 s")
        self.watched = watched          # set when ``watch`` stopped it: the watch's reason

    @property
    def timed_out(self) -> bool:
        return bool(self.stopped)


@dataclass(frozen=True)
class Stop:
    """How a program is stopped at its timeout: ``signal`` to the process, then SIGKILL
    after ``grace`` seconds if it is still running."""
    signal: int = signal.SIGKILL
    grace: float = 0.0


KILL = Stop()


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        """The output is the program's (a secret it echoed, a restored file's content): a
        repr says how much there is, never what; ``tail`` shows it with secrets masked."""
        return (f"Result(argv={printable_argv(self.argv, self.secrets)!r}, returncode={self.returncode}, "
                f"stdout=<{len(self.stdout)} chars>, stderr=<{len(self.stderr)} chars>, seconds={self.seconds:g})")

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


_TRACEBACK_START = ("Traceback (most recent call last):", "Exception ignored in")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(:|$)")


def without_tracebacks(text: str) -> str:
    """``text`` without the Python tracebacks a program prints while we stop it (borg's
    ``Repository.__del__`` on SIGTERM): noise, never the cause, which our message names. A
    line says how many lines were left out."""
    lines, out, removed, i = text.splitlines(), [], 0, 0
    while i < len(lines):
        if not lines[i].startswith(_TRACEBACK_START):
            out.append(lines[i])
            i += 1
            continue
        j = i + 1
        while j < len(lines) and (lines[j].startswith((" ", "\t")) or lines[j].startswith(_TRACEBACK_START)):
            j += 1
        if j < len(lines) and _EXCEPTION_LINE.match(lines[j]):
            j += 1                  # the exception line that ends the traceback ("AssertionError: ...")
        removed, i = removed + j - i, j
    if removed:
        out.append(f"({removed} line(s) of the program's own Python traceback while it was stopped, left out)")
    return "\n".join(out)


def run(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
        input: str | bytes | None = None, pass_fds: Sequence[int] = (),
        secrets: Iterable[str] = (), ok_codes: Iterable[int] = (0,), check: bool = True,
        binary: bool = False, user: str | None = None, label: str = "", stop: Stop = KILL,
        watch: Callable[[], str | None] | None = None, watch_every: float = 0.05) -> Result:
    """Run argv and return its :class:`Result`.

    Raises :class:`CommandError` when the program is missing, runs past
    ``timeout`` seconds, or (with ``check``) exits with a code not in ``ok_codes``.
    ``secrets`` are masked in every log line and error message; they must never be
    in argv in the first place, this is a second line of defence. ``stop`` says how
    the program is stopped at the timeout (default: SIGKILL at once). ``watch``, called every
    ``watch_every`` seconds while the program runs, stops it the same way when it returns a
    reason (e.g. the disk it writes to is nearly full): a :class:`CommandError` with ``watched``.
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
        proc = subprocess.Popen(
            argv, env=full_env, cwd=cwd, stdin=subprocess.PIPE if input is not None else None,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=tuple(pass_fds), text=not binary,
            user=user, errors=None if binary else "replace",
        )
    except FileNotFoundError as exc:
        raise CommandError(f"{prefix}cannot run {argv[0]!r}: it is not installed or not on PATH "
                           f"(install it, or set its path in the inventory)", argv=argv) from exc
    try:
        out, err = _communicate(proc, input, timeout, watch, watch_every)
    except _Watched as watched:
        how, out, err = _stop(proc, stop)
        tail = without_tracebacks(output_tail(_text(out), _text(err), secrets))
        raise CommandError(f"{prefix}{shown} was stopped ({how}): {watched.reason}; last output:\n{tail}",
                           argv=argv, returncode=proc.returncode, tail=tail, watched=watched.reason) from None
    except subprocess.TimeoutExpired:
        how, out, err = _stop(proc, stop)
        tail = without_tracebacks(output_tail(_text(out), _text(err), secrets))
        raise CommandError(f"{prefix}{shown} did not finish within {timeout:g} s and was stopped ({how}); "
                           f"last output:\n{tail}", argv=argv, returncode=proc.returncode, tail=tail,
                           stopped=how) from None
    except BaseException:
        proc.kill()               # KeyboardInterrupt and the like: never leave it running
        proc.wait()
        raise
    seconds = time.monotonic() - started
    stdout = out
    result = Result(argv, proc.returncode, stdout, err if not binary else _text(err), seconds, secrets)
    log.debug("%s%s exited %d after %.2f s", prefix, shown, proc.returncode, seconds)
    if check and proc.returncode not in tuple(ok_codes):
        tail = output_tail(_text(stdout), result.stderr, secrets)
        raise CommandError(f"{prefix}{shown} exited with code {proc.returncode}; last output:\n{tail}",
                           argv=argv, returncode=proc.returncode, tail=tail)
    return result


class _Watched(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _communicate(proc: subprocess.Popen, input, timeout: float, watch, every: float):
    """``proc.communicate`` in slices of ``every`` seconds with ``watch`` between them (a retried
    communicate loses no output: Python's subprocess documentation)."""
    if watch is None:
        return proc.communicate(input, timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return proc.communicate(input, timeout=max(0.0, min(every, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            input = None            # sent with the first slice; a second one would be refused
            if time.monotonic() >= deadline:
                raise
            reason = watch()
            if reason:
                raise _Watched(reason) from None


def _stop(proc: subprocess.Popen, stop: Stop) -> tuple[str, object, object]:
    """Stop a program that ran past its timeout; returns (how, stdout, stderr).

    ``stop.signal`` goes to the process itself, never to its process group: a borg
    client's ``ssh`` child must stay to close the connection after borg exits (see
    clients/borg.py). SIGKILL follows only when the process is still there after
    ``stop.grace`` seconds. Output read so far is kept: ``communicate`` may be called
    again after its TimeoutExpired (Python's subprocess documentation).
    """
    if stop.signal == signal.SIGKILL or stop.grace <= 0:
        how = "SIGKILL"
    else:
        name = signal.Signals(stop.signal).name
        sent = time.monotonic()
        proc.send_signal(stop.signal)
        out, err = _drain(proc, stop.grace)
        try:
            proc.wait(max(0.0, sent + stop.grace - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        if proc.returncode is not None:
            _close_pipes(proc)
            how = f"{name}; it exited with code {proc.returncode} {time.monotonic() - sent:.1f} s later"
            return how, out, err
        how = f"{name}; still running {stop.grace:g} s later, then SIGKILL"
    proc.kill()
    out, err = _drain(proc, 5.0)
    proc.wait()
    _close_pipes(proc)
    return how, out, err


def _drain(proc: subprocess.Popen, seconds: float) -> tuple[object, object]:
    """Everything the program wrote until its pipes close, or what came within ``seconds``
    (a grandchild may hold the pipes open after the program itself has exited)."""
    try:
        return proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired as exc:
        return exc.output, exc.stderr


def _close_pipes(proc: subprocess.Popen) -> None:
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass


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
