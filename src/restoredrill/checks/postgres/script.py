"""Pure logic on dumps: the format, the psql script lexer (safety scan and the
owner/privilege stripper), role names and failure messages. No I/O but reading
the dump file given.
"""
from __future__ import annotations

import re
from pathlib import Path

from restoredrill.checks.postgres.errors import PostgresError, UnsafeDumpError

CUSTOM_MAGIC = b"PGDMP"
GZIP_MAGIC = b"\x1f\x8b"
DUMP_FORMATS = ("auto", "plain", "custom", "directory", "tar")
NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,47}")
# what pg_dump writes (\restrict, \unrestrict) and two harmless extras; not \connect
# (it could switch user) nor \set (it could turn ON_ERROR_STOP off)
ALLOWED_META_COMMANDS = frozenset({"restrict", "unrestrict", "encoding", "echo"})


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


_OWNER_OR_PRIVILEGE = re.compile(
    r"^(ALTER\s+[A-Z ]+?\s.*\sOWNER\s+TO\s.*|GRANT\s.*|REVOKE\s.*|ALTER\s+DEFAULT\s+PRIVILEGES\s.*);\s*$")
_COPY_FROM_STDIN = re.compile(r"^COPY\s.*\sFROM\s+stdin;\s*$", re.IGNORECASE)


def copy_without_owner_statements(source, out) -> int:
    """Copy a plain dump line by line, leaving out one-line OWNER TO / GRANT / REVOKE
    statements outside COPY data (pg_restore's --no-owner --no-privileges). Returns
    how many were left out."""
    skipped = 0
    in_copy = False
    for line in source:
        if in_copy:
            in_copy = line.rstrip("\r\n") != "\\."
        elif _COPY_FROM_STDIN.match(line):
            in_copy = True
        elif _OWNER_OR_PRIVILEGE.match(line):
            skipped += 1
            continue
        out.write(line)
    return skipped


def dump_failure_message(dump_path: Path, dump_format: str, tail: str) -> str:
    message = f"dump {dump_path} ({dump_format} format) did not restore; last output:\n{tail}"
    if "must be member of role" in tail or "must be owner of" in tail:
        message += ("\nhint: the dump is loaded as an unprivileged role; make plain dumps with "
                    "pg_dump --no-owner --no-privileges, or use pg_dump -Fc")
    return message


def check_plain_dump_is_safe(dump_path: Path) -> None:
    """Raise :class:`UnsafeDumpError` naming the first psql meta-command we do not allow.

    Allowed are the harmless ones pg_dump writes; their arguments may contain
    neither a backtick (psql runs it as a shell command) nor another backslash
    (which starts a further meta-command on the same line).
    """
    allowed = ", ".join("\\" + name for name in sorted(ALLOWED_META_COMMANDS))
    with open(dump_path, encoding="utf-8", errors="replace") as handle:
        for line_number, name, arguments in find_meta_commands(handle):
            problem = None
            if name not in ALLOWED_META_COMMANDS:
                problem = f"runs the psql meta-command \\{name}"
            elif "`" in arguments or "\\" in arguments:
                problem = f"has a backtick or backslash in the arguments of \\{name}"
            if problem:
                raise UnsafeDumpError(f"refusing to load {dump_path}: line {line_number} {problem}; "
                                      f"a dump may only use {allowed}")


def find_meta_commands(lines):
    """Yield (line number, name, arguments) of each psql meta-command in an SQL script.

    The script is lexed twice at once, with standard_conforming_strings on and
    off, since a script can switch it and so change where psql sees strings end.
    """
    scanners = (PsqlScriptScanner(standard_strings=True), PsqlScriptScanner(standard_strings=False))
    for number, line in enumerate(lines, start=1):
        for found in dict.fromkeys(scanner.feed(line) for scanner in scanners):
            if found:
                yield number, *found


_COPY_FROM_STDIN = re.compile(r"^\s*copy\b.*\bfrom\s+stdin\b", re.IGNORECASE | re.DOTALL)
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_META_NAME = re.compile(r"\\([A-Za-z]+|[^A-Za-z\s]?)")
_SPECIAL = re.compile(r"[\\'\"$;]|--|/\*")  # where the lexer's state may change
_E_STRING_END = re.compile(r"\\.?|'")


class PsqlScriptScanner:
    """Finds psql meta-commands the way psql's lexer does, line by line.

    Skips quoted strings ('...', E'...', "...", $tag$...$tag$), comments and the
    data of COPY ... FROM stdin. With ``standard_strings`` off, a backslash
    escapes a quote in '...' too. A backslash anywhere else starts a
    meta-command, also mid-line; its arguments run to the end of the line.
    """

    def __init__(self, standard_strings: bool = True):
        self.standard_strings = standard_strings
        self.quote: str | None = None  # "'", "e'", '"' or a dollar tag
        self.comment_depth = 0
        self.in_copy_data = False
        self.statement: list[str] = []  # the current statement, quoted text left out

    def feed(self, line: str) -> tuple[str, str] | None:
        """Scan one line; return (name, arguments) of the meta-command it holds, if any."""
        if self.in_copy_data:
            self.in_copy_data = line.rstrip("\r\n") != "\\."
            return None
        i = 0
        while i < len(line):
            if self.comment_depth:
                i = self._skip_comment(line, i)
            elif self.quote:
                i = self._skip_quoted(line, i)
            elif (special := _SPECIAL.search(line, i)) is None:
                self.statement.append(line[i:])
                break
            elif special.start() > i:
                self.statement.append(line[i:special.start()])
                i = special.start()
            elif line.startswith("--", i):
                break
            elif line.startswith("/*", i):
                self.comment_depth, i = 1, i + 2
            elif line[i] == "\\":
                match = _META_NAME.match(line, i)
                return match.group(1), line[match.end():].rstrip("\r\n")
            elif line[i] == ";":
                statement, self.statement = "".join(self.statement), []
                # COPY data starts on the next line; the rest of this one is still lexed
                self.in_copy_data = self.in_copy_data or bool(_COPY_FROM_STDIN.match(statement))
                i += 1
            else:
                i = self._open_quote_or_append(line, i)
        self.statement.append("\n")
        return None

    def _open_quote_or_append(self, line: str, i: int) -> int:
        ch, before = line[i], line[max(i - 2, 0):i]
        if ch == "'":
            escaped = before[-1:] in ("e", "E") and not before[:-1][-1:].isalnum()
            self.quote = "e'" if escaped or not self.standard_strings else "'"
        elif ch == '"':
            self.quote = '"'
        elif ch == "$" and not (before[-1:].isalnum() or before[-1:] == "_"):
            tag = _DOLLAR_TAG.match(line, i)
            if tag:
                self.quote = tag.group(0)
                return tag.end()
        self.statement.append(ch)
        return i + 1

    def _skip_quoted(self, line: str, i: int) -> int:
        if self.quote == "e'":
            while (match := _E_STRING_END.search(line, i)) is not None:
                i = match.end()
                if match.group(0) == "'":
                    self.quote = None
                    return i
            return len(line)
        closing = "'" if self.quote == "e'" else self.quote
        end = line.find(closing, i)
        if end < 0:
            return len(line)
        self.quote = None
        return end + len(closing)

    def _skip_comment(self, line: str, i: int) -> int:
        while i < len(line) and self.comment_depth:
            if line.startswith("*/", i):
                self.comment_depth, i = self.comment_depth - 1, i + 2
            elif line.startswith("/*", i):
                self.comment_depth, i = self.comment_depth + 1, i + 2
            else:
                i += 1
        return i


