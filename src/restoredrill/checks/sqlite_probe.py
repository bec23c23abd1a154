"""PRAGMA integrity_check of a restored SQLite file, run in the sandbox.

SQLite parses the whole file; a crafted database is hostile input to a large C
library. The caller opens the restored file safely (``O_NOFOLLOW``, a regular
file) and hands over the descriptor; we copy it into a private directory and
let the system ``python3`` open the copy in :mod:`restoredrill.sandbox` with
``mode=ro&immutable=1`` (no journal, no WAL, no locks: nothing is written next
to it; see https://www.sqlite.org/uri.html). Only the integrity_check rows and
the number of tables come back, never database content.

``immutable=1`` means a ``-wal`` file next to the database is not read: the
check covers what was checkpointed into the main file.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from restoredrill import sandbox
from restoredrill.checks.budgets import InterpretBudgets
from restoredrill.execute import CommandError

MAX_ROWS = 20
TIMEOUT_SECONDS = 900.0
LIMITS = sandbox.Limits(cpu_seconds=int(TIMEOUT_SECONDS), address_space_bytes=2 * sandbox.GiB,
                        file_size_bytes=64 << 20, processes=16)
PROBE = f"""\
import json, sqlite3, sys
try:
    c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro&immutable=1', uri=True)
    rows = [r[0] for r in c.execute('PRAGMA integrity_check({MAX_ROWS})')]
    tables = c.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
    print(json.dumps({{'integrity': [str(r)[:300] for r in rows], 'tables': tables}}))
except sqlite3.DatabaseError as exc:
    print(json.dumps({{'error': str(exc)[:300]}}))
"""


class SqliteProbeError(RuntimeError):
    """The probe could not run (no sandbox, a limit, a crash): the check fails."""


@dataclass(frozen=True)
class SqliteReport:
    """What PRAGMA integrity_check said; ``error`` when SQLite cannot read the file at all."""

    integrity: tuple[str, ...] = ()
    tables: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.integrity == ("ok",)


system_python = sandbox.system_python      # moved to sandbox.py (the plain-dump loader uses it too)


def sqlite_integrity(source_fd: int, *, name: str, work_dir: Path,
                     budgets: InterpretBudgets | None = None) -> SqliteReport:
    """Copy the open regular file ``source_fd`` privately and integrity-check it in the sandbox.

    ``name`` is how errors name the file. Raises :class:`SqliteProbeError` when
    the check cannot run; reading continues from the descriptor's offset 0.
    """
    if not stat.S_ISREG(os.fstat(source_fd).st_mode):
        raise SqliteProbeError(f"{name}: not a regular file, refusing to open it as an SQLite database")
    holder = sandbox.private_dir(work_dir, "sqlite-")
    try:
        copy = holder / "database.sqlite"
        _copy_fd(source_fd, copy)
        sandbox.give_to_sandbox(holder)
        return _probe(copy, holder, name, budgets or InterpretBudgets(check_seconds=TIMEOUT_SECONDS))
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _copy_fd(source_fd: int, target: Path) -> None:
    """Copy from offset 0 with pread, leaving the caller's file offset alone."""
    offset = 0
    with open(target, "xb") as out:
        while chunk := os.pread(source_fd, 1 << 20, offset):
            out.write(chunk)
            offset += len(chunk)
    target.chmod(0o400)


def _probe(copy: Path, holder: Path, name: str, budgets: InterpretBudgets) -> SqliteReport:
    """In the sandbox, within scratch.budgets.check_timeout (wall and CPU) and the output budget."""
    python, readable = system_python()
    limits = dataclasses.replace(LIMITS, cpu_seconds=int(budgets.check_seconds) + 1,
                                 tmpfs_bytes=budgets.tmpfs_bytes)
    try:
        result = sandbox.run_sandboxed([python, "-I", "-S", "-c", PROBE, str(copy)],
                                       readable=[*readable, holder], limits=limits,
                                       env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
                                       timeout=budgets.check_seconds, label=f"sqlite {name}",
                                       stdout_limit=1 << 20)
    except CommandError as exc:
        budget = exc.budget if isinstance(exc, sandbox.BudgetExceeded) else (
            "check_timeout" if exc.returncode is None else "")
        if budget:
            raise SqliteProbeError(f"{name}: PRAGMA integrity_check exceeded the budget "
                                   f"{budgets.describe(budget)} and was stopped") from None
        raise SqliteProbeError(f"{name}: PRAGMA integrity_check could not run in the sandbox: "
                               f"{exc}") from None
    except sandbox.SandboxError as exc:
        raise SqliteProbeError(f"{name}: PRAGMA integrity_check could not run in the sandbox: "
                               f"{exc}") from None
    return parse_probe_output(result.stdout, name)


def parse_probe_output(stdout: str, name: str) -> SqliteReport:
    """The probe prints one JSON line: integrity rows and table count, or an error."""
    try:
        answer = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise SqliteProbeError(f"{name}: the SQLite probe gave no answer") from None
    if "error" in answer:
        return SqliteReport(error=str(answer["error"]))
    return SqliteReport(integrity=tuple(str(r) for r in answer.get("integrity", [])),
                        tables=int(answer.get("tables", 0)))
