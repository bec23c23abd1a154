"""The program that loads a plain (SQL) dump, run INSIDE the sandbox (see server.py).

``python3 -I -S -c ...`` runs it in a sandbox that sees the dump (read-only), the server's
socket, this package's pure modules and nothing else, with the parse budgets as resource
limits. So the lexing of a hostile dump (memory and CPU) is bounded by the sandbox, and
nothing it does reaches the harness but one short JSON line on stdout.

Two passes over the dump with the psql lexer model (psqllex.py):
1. check: every statement, meta-command and lexer problem against dumppolicy.py; owner
   and privilege statements are left out (as ``pg_restore --no-owner --no-privileges``);
   any refusal stops here, before anything reaches the server;
2. load: the same statements (the lexer is deterministic) go one by one through wire.py,
   a protocol client with no meta-commands; the pg_dump meta-commands ``\\restrict``,
   ``\\unrestrict`` (and ``\\echo``) are not sent, every other one was refused in pass 1.

The client encoding is fixed: the connection starts in UTF8 and only a top-level
``SET client_encoding``/``SET NAMES`` that the policy allowed (an ASCII-safe encoding, as
pg_dump writes at the top of a dump) may change it. Any other change the server reports
(set_config in a function body, a SET clause on a function, ``SET`` from dynamic SQL)
aborts the load before the next statement is sent.
"""
from __future__ import annotations

import json
import sys

from restoredrill.checks.postgres.dumppolicy import (encoding_is_safe, is_owner_or_privilege,
                                                     item_problem)
from restoredrill.checks.postgres.psqllex import Meta, PsqlLexer, Statement
from restoredrill.checks.postgres.wire import Connection, Deadline, ServerError, WireError

# meta-commands pg_dump writes (\restrict/\unrestrict, psql >= 17.6 and the backports) and
# \echo: they do nothing in this loader. \encoding would change the client encoding: refused.
SKIPPED_META_COMMANDS = frozenset({b"restrict", b"unrestrict", b"echo"})


class Stop(Exception):
    def __init__(self, **result):
        super().__init__(result.get("reason", ""))
        self.result = result


def check(data: bytes) -> int:
    """Pass 1: raise Stop(result=refused) at the first refused item; the number of owner and
    privilege statements that will be left out."""
    skipped = 0
    for item in PsqlLexer(data):
        if isinstance(item, Statement) and is_owner_or_privilege(item):
            skipped += 1
            continue
        problem = item_problem(item)
        if problem is None and isinstance(item, Meta) and item.name not in SKIPPED_META_COMMANDS:
            problem = (f"runs the psql meta-command \\{item.name.decode()} (the client encoding "
                       f"cannot change during a load)")
        if problem is None and isinstance(item, Statement) and item.has_meta:
            problem = "has a psql meta-command inside a statement"
        if problem is not None:
            raise Stop(result="refused", line=item.line, problem=problem)
    return skipped


def _sets_client_encoding(statement: Statement) -> bool:
    """A top-level SET [SESSION|LOCAL] client_encoding / NAMES (the policy checked the value)."""
    words = statement.words()
    if words[:1] != [b"set"]:
        return False
    rest = words[1:]
    if rest[:1] in ([b"session"], [b"local"]):
        rest = rest[1:]
    return rest[:1] in ([b"client_encoding"], [b"names"])


def _copy_bytes(data: bytes, statement: Statement):
    """COPY data as psql sends it: the lines after the statement up to the ``\\.`` line,
    which is not sent (copy.c handleCopyIn)."""
    copy = statement.copy_data
    end = copy.end
    for terminator in (b"\\.\r\n", b"\\.\n", b"\\."):
        if data.endswith(terminator, copy.start, end) and (end - len(terminator) == copy.start or
                                                           data[end - len(terminator) - 1] == 0x0A):
            end -= len(terminator)
            break
    return memoryview(data)[copy.start:end]


class Guard:
    """Watches every ParameterStatus: the client encoding changes only by an allowed SET."""

    def __init__(self):
        self.encoding = "UTF8"
        self.may_change_encoding = False
        self.line = 0

    def __call__(self, name: str, value: str) -> None:
        if name == "client_encoding" and value.upper() != self.encoding.upper():
            if not (self.may_change_encoding and encoding_is_safe(value.encode())):
                raise Stop(result="aborted", line=self.line,
                           reason=("the client encoding changed during the load (not by a "
                                   "top-level SET client_encoding to an ASCII-safe encoding); "
                                   "the load was stopped before the next statement"))
            self.encoding = value
        if name == "is_superuser" and value != "off":
            raise Stop(result="aborted", line=self.line, reason="the session became a superuser")


def load(data: bytes, socket_path: str, role: str, database: str, statement_seconds: float) -> dict:
    guard = Guard()
    connection = Connection(socket_path, role, database, on_parameter=guard, timeout=60)
    statements = rows = 0
    try:
        for item in PsqlLexer(data):
            if not isinstance(item, Statement) or is_owner_or_privilege(item):
                continue
            guard.line, guard.may_change_encoding = item.line, _sets_client_encoding(item)
            copy = _copy_bytes(data, item) if item.copy_data is not None else None
            try:
                rows += connection.execute(item.text(), copy, timeout=statement_seconds)
            except ServerError as exc:
                raise Stop(result="failed", line=item.line, sqlstate=exc.sqlstate,
                           severity=exc.severity) from None
            except Deadline:
                raise Stop(result="budget", line=item.line, budget="statement_timeout",
                           limit=statement_seconds) from None
            except WireError as exc:
                raise Stop(result="aborted", line=item.line, reason=str(exc)) from None
            guard.may_change_encoding = False
            statements += 1
    finally:
        connection.close()
    return {"result": "ok", "statements": statements, "rows": rows}


def main(argv: list[str]) -> int:
    dump, socket_path, role, database, statement_seconds = argv
    try:
        with open(dump, "rb") as handle:
            data = handle.read()
        skipped = check(data)
        result = load(data, socket_path, role, database, float(statement_seconds))
        result["skipped"] = skipped
    except Stop as stop:
        result = stop.result
    except MemoryError:
        result = {"result": "budget", "budget": "parse_memory"}
    except WireError as exc:
        result = {"result": "aborted", "line": 0, "reason": str(exc)}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
