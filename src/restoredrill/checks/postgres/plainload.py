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
import re
import shutil
from pathlib import Path

from restoredrill.checks.budgets import InterpretBudgets
from restoredrill.checks.postgres.errors import PostgresError, UnsafeDumpError

KIT_MODULES = ("psqllex.py", "dumppolicy.py", "wire.py", "loader.py")
_HERE = Path(__file__).resolve().parent
_PRINTABLE = re.compile(r"[ -~]{0,400}")
INSUFFICIENT_PRIVILEGE = "42501"     # PostgreSQL's SQLSTATE (src/backend/utils/errcodes.txt)
RESULT_LIMIT = 64 << 10


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


def loader_argv(kit: Path, python: str, dump: Path, socket_path: Path, role: str, database: str,
                budgets: InterpretBudgets) -> list[str]:
    code = ("import sys; sys.path[:0] = [sys.argv[1]]; "
            "from restoredrill.checks.postgres.loader import main; sys.exit(main(sys.argv[2:]))")
    return [python, "-I", "-S", "-B", "-c", code, str(kit), str(dump), str(socket_path), role,
            database, f"{budgets.statement_seconds:g}"]


def interpret(output: str, *, dump_path: Path, budgets: InterpretBudgets) -> int:
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
        raise budget_error(dump_path, budgets, _text(result.get("budget")), where)
    raise PostgresError(f"dump {dump_path} (plain format) did not restore: the load was stopped at "
                        f"{where}: {_text(result.get('reason'))}")


def budget_error(dump_path: Path, budgets: InterpretBudgets, budget: str, where: str = "") -> PostgresError:
    at = f" at {where}" if where else ""
    return PostgresError(f"dump {dump_path} exceeded the budget {budgets.describe(budget)}{at}; the check "
                         f"stopped there (raise it in the inventory if the dump is genuine)")


def _text(value) -> str:
    """Only short printable ASCII from the loader (else a placeholder)."""
    return value if isinstance(value, str) and _PRINTABLE.fullmatch(value) else "(unreadable)"
