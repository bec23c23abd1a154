"""Reading what a sandboxed program prints, within budgets (issue 20 §2).

``communicate()`` keeps everything a program prints: a 693-byte dump printing 1-2 GiB
through ``SELECT repeat(...)`` took 3-6 GiB of the harness's memory. Here stdout is kept
up to a limit (past it the program is stopped: a result cut short is no result), stderr
only as a bounded tail, and a ``watch`` callback is asked about once a second whether a
budget the caller keeps (free space in scratch...) is exceeded.
"""
from __future__ import annotations

import os
import selectors
import subprocess
import threading
import time
from collections.abc import Callable

STDERR_TAIL_BYTES = 64 << 10
WATCH_SECONDS = 1.0


class OverBudget(Exception):
    """A budget was exceeded; ``budget`` names it, the message says by what."""

    def __init__(self, budget: str, message: str):
        super().__init__(message)
        self.budget = budget


class TimedOut(Exception):
    pass


def collect(process: subprocess.Popen, data: bytes | None, *, timeout: float, stdout_limit: int,
            watch: Callable[[], tuple[str, str] | None] | None = None) -> tuple[bytes, bytes]:
    """(stdout, stderr tail) of process; raises :class:`TimedOut` or :class:`OverBudget`
    (the caller stops the process)."""
    if data is not None:
        threading.Thread(target=_feed, args=(process.stdin, data), daemon=True).start()
    buffers = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
    out_fd, err_fd = process.stdout.fileno(), process.stderr.fileno()
    deadline = time.monotonic() + timeout
    next_watch = time.monotonic() + WATCH_SECONDS
    with selectors.DefaultSelector() as selector:
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimedOut()
            for key, _ in selector.select(min(remaining, WATCH_SECONDS)):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                buffer = buffers[key.fd]
                buffer += chunk
                if key.fd == err_fd and len(buffer) > STDERR_TAIL_BYTES:
                    del buffer[:len(buffer) - STDERR_TAIL_BYTES]
                elif key.fd == out_fd and len(buffer) > stdout_limit:
                    raise OverBudget("output", f"printed more than {stdout_limit} bytes")
            if watch is not None and time.monotonic() >= next_watch:
                next_watch = time.monotonic() + WATCH_SECONDS
                if (over := watch()) is not None:
                    raise OverBudget(*over)
    try:
        process.wait(max(deadline - time.monotonic(), 0.01))
    except subprocess.TimeoutExpired:
        raise TimedOut() from None
    return bytes(buffers[out_fd]), bytes(buffers[err_fd])


def _feed(pipe, data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except OSError:
        pass
