"""Worker tasks: UPIDs, logs, exit statuses, run in threads.

PVE UPID (9 fields): ``UPID:<node>:<pid %08X>:<pstart %08X>:<starttime %08X>:<type>:<id>:<user>:``
(a forked worker per task, so each task has its own pid). PBS UPID (10 fields):
``UPID:<node>:<pid %08X>:<pstart %08X>:<task_id %08X>:<starttime %08X>:<type>:<escaped id>:<authid>:``
(one daemon pid, a task counter; the worker id escaped like systemd unit names, so it
holds no ':'). A task ends with status ``stopped`` and exit status ``OK``,
``WARNINGS: N`` (warnings counted by ``Task.warn``, as ``log_warn`` does) or the error
text itself; the log's last line is ``TASK OK`` / ``TASK WARNINGS: N`` / ``TASK ERROR: ...``.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("restoredrill.lab.proxmox.tasks")


class TaskFailed(Exception):
    """Raised by a worker to end its task with exactly this error text."""


@dataclass(frozen=True)
class Upid:
    node: str
    pid: int
    pstart: int
    starttime: int
    worker_type: str
    worker_id: str
    authid: str
    task_id: int | None = None      # PBS only

    @property
    def text(self) -> str:
        if self.task_id is None:
            return (f"UPID:{self.node}:{self.pid:08X}:{self.pstart:08X}:{self.starttime:08X}:"
                    f"{self.worker_type}:{self.worker_id}:{self.authid}:")
        return (f"UPID:{self.node}:{self.pid:08X}:{self.pstart:08X}:{self.task_id:08X}:"
                f"{self.starttime:08X}:{self.worker_type}:{escape_worker_id(self.worker_id)}:"
                f"{self.authid}:")


PVE_UPID_RE = re.compile(r"UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-F]{8}):"
                         r"([0-9A-F]{8,9}):([0-9A-F]{8}):([^:\s]+):([^:\s]*):([^:\s]+):")
PBS_UPID_RE = re.compile(r"UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):"
                         r"([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8,16}):([0-9A-Fa-f]{8}):([^:\s]+):"
                         r"([^:\s]*):([^:\s]+):")


def parse_upid(text: str) -> Upid:
    """Either form; ValueError for anything else (the only way a UPID reaches a lookup)."""
    match = PVE_UPID_RE.fullmatch(text)
    if match:
        node, _, pid, pstart, start, kind, ident, authid = match.groups()
        return Upid(node, int(pid, 16), int(pstart, 16), int(start, 16), kind, ident, authid)
    match = PBS_UPID_RE.fullmatch(text)
    if match:
        node, _, pid, pstart, task_id, start, kind, ident, authid = match.groups()
        return Upid(node, int(pid, 16), int(pstart, 16), int(start, 16), kind,
                    unescape_worker_id(ident), authid, int(task_id, 16))
    raise ValueError(f"unable to parse worker upid '{text}'")


def escape_worker_id(text: str) -> str:
    """proxmox-sys ``escape_unit(_, false)``: '/' -> '-', others outside [A-Za-z0-9_.] -> \\xNN."""
    out = []
    for position, char in enumerate(text.encode()):
        if char == ord("/"):
            out.append("-")
        elif (position == 0 and char == ord(".")) or not (
                chr(char).isascii() and (chr(char).isalnum() or chr(char) in "_.")):
            out.append(f"\\x{char:02x}")
        else:
            out.append(chr(char))
    return "".join(out)


def unescape_worker_id(text: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)),
                  text.replace("-", "/"))


@dataclass
class Task:
    upid: Upid
    lines: list[str] = field(default_factory=list)
    status: str = "running"
    exitstatus: str | None = None
    endtime: int | None = None
    warnings: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def text(self) -> str:
        return self.upid.text

    def log(self, message: str) -> None:
        self.lines.extend(message.rstrip("\n").split("\n"))

    def warn(self, message: str) -> None:
        """``log_warn``: counted; the task then ends ``WARNINGS: N``."""
        self.warnings += 1
        self.log(f"WARN: {message}")

    @property
    def ok(self) -> bool:
        return self.exitstatus is not None and not self.failed

    @property
    def failed(self) -> bool:
        return self.exitstatus is not None and self.exitstatus != "OK" and \
            not self.exitstatus.startswith("WARNINGS: ")


Work = Callable[[Task], None]


@dataclass(frozen=True)
class TaskPrelude:
    """What a task does before its work when a fault asks for it: wait ``seconds``, then log
    ``lines`` (filler such as pbs-restore's ``progress N% ...`` lines: a long log whose real
    error comes at the end). The registry's ``delay`` hook may answer one instead of a number."""

    seconds: float = 0.0
    lines: tuple[str, ...] = ()


class TaskRegistry:
    """Starts workers in threads and keeps every task of one server."""

    def __init__(self, api: str, node: str, *,
                 delay: Callable[[str], float | TaskPrelude] = lambda _t: 0.0):
        self.api = api
        self.node = node
        self.delay = delay
        self.stopping = threading.Event()
        self.tasks: dict[str, Task] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._pids = itertools.count(self._pid * 7 % 0x3FFFFF + 1000)
        self._task_ids = itertools.count(1)
        self._pstart = process_start_ticks()

    def start(self, worker_type: str, worker_id: str, authid: str, work: Work) -> Task:
        now = int(time.time())
        with self._lock:
            if self.api == "pve":
                upid = Upid(self.node, next(self._pids), self._pstart + 1, now, worker_type,
                            worker_id, authid)
            else:
                upid = Upid(self.node, self._pid, self._pstart, now, worker_type, worker_id,
                            authid, next(self._task_ids))
            task = Task(upid)
            self.tasks[task.text] = task
            thread = threading.Thread(target=self._run, args=(task, work),
                                      name=f"task-{worker_type}-{worker_id}", daemon=True)
            self._threads.append(thread)
        thread.start()
        return task

    def record(self, worker_type: str, worker_id: str, authid: str, starttime: int,
               endtime: int, lines: list[str], exitstatus: str = "OK") -> Task:
        """A task that ran before the double started (the night's vzdump), already finished."""
        with self._lock:
            pid = next(self._pids)
            upid = Upid(self.node, pid, self._pstart + 1, starttime, worker_type, worker_id,
                        authid) if self.api == "pve" else Upid(
                self.node, self._pid, self._pstart, starttime, worker_type, worker_id, authid,
                next(self._task_ids))
            task = Task(upid, list(lines), "stopped", exitstatus, endtime)
            task.done.set()
            self.tasks[task.text] = task
        return task

    def _run(self, task: Task, work: Work) -> None:
        before = self.delay(task.upid.worker_type)
        prelude = before if isinstance(before, TaskPrelude) else TaskPrelude(float(before or 0.0))
        try:
            if prelude.seconds and self.stopping.wait(prelude.seconds):
                raise TaskFailed("interrupted by signal")
            task.lines.extend(prelude.lines)
            work(task)
        except Exception as exc:  # the task's error is data: its exit status
            message = " ".join(str(exc).strip().splitlines()) or type(exc).__name__
            if not isinstance(exc, (TaskFailed, OSError, ValueError, LookupError)):
                log.debug("task %s failed", task.text, exc_info=True)
            task.log(f"TASK ERROR: {message}")
            self._finish(task, message)
            return
        if task.warnings:
            task.log(f"TASK WARNINGS: {task.warnings}")
            self._finish(task, f"WARNINGS: {task.warnings}")
        else:
            task.log("TASK OK")
            self._finish(task, "OK")

    @staticmethod
    def _finish(task: Task, exitstatus: str) -> None:
        task.exitstatus = exitstatus
        task.endtime = int(time.time())
        task.status = "stopped"
        task.done.set()

    def get(self, upid_text: str) -> Task | None:
        return self.tasks.get(upid_text)

    def listing(self) -> list[Task]:
        return sorted(self.tasks.values(), key=lambda t: (t.upid.starttime, t.text),
                      reverse=True)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask running workers to stop, then wait for every task thread."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))


def process_start_ticks() -> int:
    """This process's start time in clock ticks since boot (``/proc/self/stat`` field 22)."""
    try:
        fields = open("/proc/self/stat", encoding="ascii").read().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return 0x100000
