"""Pure logic on dumps: the format, the copy of a plain dump that psql reads (owner
and privilege statements left out, then checked by the psql lexer model in
:mod:`psqllex` against the rules in :mod:`dumppolicy`), role names and failure
messages. No I/O but reading the dump file given.
"""
from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from restoredrill.checks.postgres.dumppolicy import (ALLOWED_META_COMMANDS, is_owner_or_privilege,
                                                     item_problem)
from restoredrill.checks.postgres.errors import PostgresError, UnsafeDumpError
from restoredrill.checks.postgres.psqllex import Meta, PsqlLexer, Statement

CUSTOM_MAGIC = b"PGDMP"
GZIP_MAGIC = b"\x1f\x8b"
DUMP_FORMATS = ("auto", "plain", "custom", "directory", "tar")
NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,47}")
__all__ = ["ALLOWED_META_COMMANDS", "DUMP_FORMATS", "check_plain_dump_is_safe",
           "copy_without_owner_statements", "detect_dump_format", "dump_failure_message",
           "find_meta_commands", "first_problem", "prepare_plain_dump", "restore_role"]


def restore_role(database: str) -> str:
    """The unprivileged role that owns a restored database."""
    if not NAME_PATTERN.fullmatch(database):
        raise PostgresError(f"database name {database!r} must match {NAME_PATTERN.pattern}")
    return f"restore_{database}"


def detect_dump_format(dump_path: Path) -> str:
    """'directory' (toc.dat inside), 'custom' (PGDMP magic), 'tar' (ustar header) or 'plain'."""
    if dump_path.is_dir():
        if (dump_path / "toc.dat").is_file():
            return "directory"
        raise PostgresError(f"{dump_path} is a directory without toc.dat: not a pg_dump -Fd dump")
    try:
        with open(dump_path, "rb") as handle:
            header = handle.read(512)
    except OSError as exc:
        raise PostgresError(f"cannot read dump {dump_path}: {exc.strerror}") from None
    if header.startswith(CUSTOM_MAGIC):
        return "custom"
    if header[257:262] == b"ustar":
        return "tar"
    if header.startswith(GZIP_MAGIC):
        raise PostgresError(f"{dump_path} is gzip-compressed: decompress it first")
    return "plain"


INSUFFICIENT_PRIVILEGE = "42501"     # PostgreSQL's SQLSTATE (src/backend/utils/errcodes.txt)
PRIVILEGE_HINT = ("\nhint: the dump is loaded as an unprivileged role; make plain dumps with "
                  "pg_dump --no-owner --no-privileges, or use pg_dump -Fc")


def dump_failure_message(dump_path: Path, dump_format: str, tail: str, sqlstate: str = "") -> str:
    """pg_restore's failure as :func:`pg_restore_failure` made it: TOC entry and SQLSTATE,
    never the server's message text (which quotes the dump). The privilege hint follows
    the SQLSTATE the server logged, never text that restored data could have written."""
    program = "psql" if dump_format == "plain" else "pg_restore"
    message = (f"dump {dump_path} ({dump_format} format) did not restore; {program} stopped at "
               f"(where: severity SQLSTATE, the server's text is not shown as it quotes the dump):\n{tail}")
    if sqlstate == INSUFFICIENT_PRIVILEGE:
        message += PRIVILEGE_HINT
    return message


_TOC_ENTRY = re.compile(r"from TOC entry (\d+);")
_LOGGED_SQLSTATE = re.compile(r"^sqlstate=([0-9A-Z]{5}) (?:ERROR|FATAL|PANIC):", re.MULTILINE)
_OWN_ERROR = re.compile(r"^pg_restore: error: (?!could not execute query)([ -~]{1,160})", re.MULTILINE)
_QUOTED = re.compile(r"\"[^\"\n]*\"|'[^'\n]*'")


def pg_restore_failure(output: str, server_log: str) -> tuple[str, str]:
    """What pg_restore's failure may show: the failed TOC entry's number and the SQLSTATE the
    server logged, or pg_restore's own complaint about the file (quoted parts elided); never
    the SQL text or the server's message, which quote the dump. Also the SQLSTATE alone."""
    entries = _TOC_ENTRY.findall(output)
    states = _LOGGED_SQLSTATE.findall(server_log)
    if entries or states:
        entry = f"TOC entry {entries[-1]}" if entries else "an entry"
        state = states[-1] if states else ""
        return f"pg_restore: {entry} failed: ERROR:  {state or 'unknown SQLSTATE'}", state
    own = [_QUOTED.sub('"…"', line) for line in _OWN_ERROR.findall(output)]
    return "\n".join(own[-3:]) or "pg_restore failed (no message it may show)", ""


def prepare_plain_dump(source: BinaryIO, out: BinaryIO, *, name: str) -> int:
    """Write the copy of a plain dump that psql will read and return how many owner and
    privilege statements were left out (whole statements, as psql's lexer delimits
    them: never inside strings, comments or COPY data).

    The bytes written are lexed again and checked before anything is written, so
    the check is on exactly what psql reads. Every byte that is kept is copied
    unchanged (no decoding: psql reads bytes). Raises :class:`UnsafeDumpError`.
    """
    data = source.read()
    view = memoryview(data)  # pieces are views, not copies: memory is input plus output
    pieces: list[memoryview | bytes] = []
    position = skipped = 0
    for item in PsqlLexer(data):
        if isinstance(item, Statement) and is_owner_or_privilege(item):
            # a left-out statement leaves its line breaks behind, so that psql's
            # "psql:FILE:LINE:" in an error is the dump's own line
            pieces += (view[position:item.start], b"\n" * data.count(b"\n", item.start, item.end))
            position, skipped = item.end, skipped + 1
    pieces.append(view[position:])
    output = b"".join(pieces)
    if (found := first_problem(output)) is not None:
        offset, problem = found
        line = output.count(b"\n", 0, offset) + 1      # the same line in the dump
        raise UnsafeDumpError(f"refusing to load {name}: line {line} {problem}; a plain dump may "
                              f"only contain what pg_dump writes (make one with pg_dump, or use "
                              f"pg_dump -Fc)")
    out.write(output)
    return skipped


def first_problem(script: bytes) -> tuple[int, str] | None:
    """(offset, what) of the first thing in a psql script that we refuse, or None."""
    for item in PsqlLexer(script):
        if (problem := item_problem(item)) is not None:
            return item.offset if not isinstance(item, Statement) else item.start, problem
    return None


# -- thin wrappers for older callers --------------------------------------------------
def check_plain_dump_is_safe(dump_path: Path) -> None:
    """Raise :class:`UnsafeDumpError` if the stripped copy of the dump would be refused."""
    with open(dump_path, "rb") as handle:
        prepare_plain_dump(handle, io.BytesIO(), name=str(dump_path))


def copy_without_owner_statements(source: TextIO, out: TextIO, *, name: str = "the dump") -> int:
    """Text-stream form of :func:`prepare_plain_dump` (surrogateescape keeps bytes)."""
    data = source.read().encode("utf-8", "surrogateescape")
    stripped = io.BytesIO()
    skipped = prepare_plain_dump(io.BytesIO(data), stripped, name=name)
    out.write(stripped.getvalue().decode("utf-8", "surrogateescape"))
    return skipped


def find_meta_commands(lines: Iterable[str]) -> Iterator[tuple[int, str, str]]:
    """(line number, name, arguments) of each psql meta-command in a script."""
    data = "".join(lines).encode("utf-8", "surrogateescape")
    for item in PsqlLexer(data):
        if isinstance(item, Meta):
            yield (item.line, item.name.decode("utf-8", "surrogateescape"),
                   item.arguments.decode("utf-8", "surrogateescape"))
