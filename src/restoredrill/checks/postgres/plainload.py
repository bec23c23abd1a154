"""Loading a plain (SQL) dump: the harness's side of :mod:`loader`.

Decision (issue 20): a plain dump is NOT read by psql any more. psql runs backslash
meta-commands wherever its lexer sees a backslash, and its lexer follows the server's
client encoding, so no scanner of ours can promise that psql sees what we checked. The
statements go to the server through :mod:`wire`, a protocol client that has no
meta-commands at all (a ``\\!`` line is SQL text the server rejects), one statement per
Parse message, with the client encoding fixed for the whole load. Both the lexing and the
client run inside the sandbox (another uid, no network, no secrets in view, CPU and
address-space limits from the inventory's budgets), as ``python3 -I -S`` on a private
copy of the five pure modules it needs: nothing of the harness's environment or
site-packages is imported there, and the harness only reads one bounded JSON line back.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from restoredrill import sandbox
from restoredrill.checks.postgres.errors import PostgresError, UnsafeDumpError

KIT_MODULES = ("psqllex.py", "dumppolicy.py", "wire.py", "loader.py")
_HERE = Path(__file__).resolve().parent
_PRINTABLE = re.compile(r"[ -~]{0,400}")
INSUFFICIENT_PRIVILEGE = "42501"     # PostgreSQL's SQLSTATE (src/backend/utils/errcodes.txt)
RESULT_LIMIT = 64 << 10


@dataclass(frozen=True)
class LoadBudgets:
    """What one plain-dump load may use (scratch.budgets in the inventory)."""

    parse_memory_bytes: int = 1 << 30       # address space of the loader (lexing in Python)
    statement_seconds: float = 600.0        # wall time of one statement
    check_seconds: float = 3600.0           # wall time of the whole load


def write_kit(holder: Path) -> Path:
    """A private package tree with only the loader's pure modules; the directory for sys.path."""
    kit = holder / "kit"
    package = kit / "restoredrill" / "checks" / "postgres"
    package.mkdir(parents=True)
    for folder in (kit / "restoredrill", kit / "restoredrill" / "checks", package):
        (folder / "__init__.py").write_bytes(b"")
    for name in KIT_MODULES:
        shutil.copyfile(_HERE / name, package / name)
    return kit


def interpreter() -> tuple[str, list[Path]]:
    """A Python 3 the sandbox can run, and what it must see besides /usr: this one when its
    prefix is reachable by the sandbox user, else the system's /usr/bin/python3."""
    executable = Path(sys.executable).resolve()
    prefix = Path(sys.base_prefix).resolve()
    if Path("/usr") in executable.parents:
        return str(executable), []
    if sandbox.world_traversable(prefix) and _world_readable(prefix):
        return str(executable), [prefix]
    for candidate in (Path("/usr/bin/python3"), Path("/usr/local/bin/python3")):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate), []
    raise PostgresError("cannot load a plain dump: no Python 3 interpreter the sandbox user can run "
                        f"({executable} is under a private directory and /usr/bin/python3 is "
                        "missing): install python3 (apt-get install python3-minimal)")


def _world_readable(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o005 == 0o005)


def loader_argv(kit: Path, python: str, dump: Path, socket_path: Path, role: str, database: str,
                budgets: LoadBudgets) -> list[str]:
    code = ("import sys; sys.path[:0] = [sys.argv[1]]; "
            "from restoredrill.checks.postgres.loader import main; sys.exit(main(sys.argv[2:]))")
    return [python, "-I", "-S", "-B", "-c", code, str(kit), str(dump), str(socket_path), role,
            database, f"{budgets.statement_seconds:g}"]


def interpret(output: str, *, dump_path: Path, budgets: LoadBudgets) -> int:
    """The loader's JSON line -> the number of statements left out, or the right error.
    The line comes from a process that read hostile data: every field is checked."""
    try:
        result = json.loads(output.strip().splitlines()[-1][:RESULT_LIMIT])
        kind = result["result"]
    except (ValueError, IndexError, KeyError, TypeError):
        raise PostgresError(f"dump {dump_path} (plain format) did not restore: the loader gave no "
                            f"result (it was killed or crashed)") from None
    line = result.get("line") if isinstance(result.get("line"), int) else 0
    where = f"line {line}" if line else "the start"
    if kind == "ok" and isinstance(result.get("skipped"), int):
        return result["skipped"]
    if kind == "refused":
        raise UnsafeDumpError(f"refusing to load {dump_path}: line {line} {_text(result.get('problem'))}; "
                              f"a plain dump may only contain what pg_dump writes (make one with "
                              f"pg_dump, or use pg_dump -Fc)")
    if kind == "failed":
        state, severity = _text(result.get("sqlstate"))[:5], _text(result.get("severity"))[:5]
        # the form psql printed (FILE:LINE: SEVERITY:  SQLSTATE), with the statement's first line
        message = (f"dump {dump_path} (plain format) did not restore; the statement at {where} failed "
                   f"(severity and SQLSTATE; the server's text is not shown as it quotes the dump):\n"
                   f"{dump_path}:{line}: {severity}:  {state}")
        if state == INSUFFICIENT_PRIVILEGE:
            message += ("\nhint: the dump is loaded as an unprivileged role; make plain dumps with "
                        "pg_dump --no-owner --no-privileges, or use pg_dump -Fc")
        raise PostgresError(message)
    if kind == "budget":
        name = _text(result.get("budget"))
        limit = {"statement_timeout": f"{budgets.statement_seconds:g} s",
                 "parse_memory": f"{budgets.parse_memory_bytes} bytes"}.get(name, "?")
        raise PostgresError(f"dump {dump_path} (plain format) exceeded the budget scratch.budgets."
                            f"{name} ({limit}) at {where}; the check stopped there (raise it in the "
                            f"inventory if the dump is genuine)")
    raise PostgresError(f"dump {dump_path} (plain format) did not restore: the load was stopped at "
                        f"{where}: {_text(result.get('reason'))}")


def _text(value) -> str:
    """Only short printable ASCII from the loader (else a placeholder)."""
    return value if isinstance(value, str) and _PRINTABLE.fullmatch(value) else "(unreadable)"
