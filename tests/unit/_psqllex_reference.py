"""A byte-level model of psql's input lexer: where statements, meta-commands and
COPY data are in a script, as ``psql -f`` will see them.

Modelled on PostgreSQL's src/fe_utils/psqlscan.l (the SQL lexer psql uses to find
statement ends and backslashes), src/bin/psql/psqlscanslash.l (meta-command names
end at whitespace or a backslash), src/bin/psql/mainloop.c (input is lexed line by
line, the newline itself is never lexed, standard_conforming_strings and the client
encoding are taken per line) and src/bin/psql/copy.c (COPY ... FROM STDIN data is
read with fgets up to a line that is exactly ``\\.``). Facts relied on:

* A backslash outside quotes and comments starts a meta-command anywhere in a line
  (``\\;`` and ``\\:`` only insert the character; we report them too).
* ``'...'`` is lexed with backslash escapes when standard_conforming_strings is off,
  and a statement (``SET``, ``set_config``, any function) can switch it at any
  time. So we never guess the setting: a plain string whose end differs between
  the two readings is a :class:`LexProblem`. ``E'...'`` always has escapes;
  ``B'..'``/``X'..'`` never; ``$tag$...$tag$`` and ``"..."`` have none.
* Strings continue over ``'a' <newline> 'b'`` only where psql sees the newline: it
  never sees ``\\n`` (mainloop.c strips it), so only a ``\\r`` can join them.
* psql 16 lexes ``1e'x'`` and ``0x'..'`` differently from psql 15 (the new
  numeric "junk" rules): such strings are treated like plain ones (all readings
  must agree).
* In the client encodings SJIS, BIG5, GBK, UHC, GB18030 and JOHAB psql hides the
  bytes after a lead byte from its lexer (psqlscan.l psqlscan_prepare_buffer), so
  a byte 0x5c there is not a backslash. This model holds for every other encoding
  (all server encodings: an ASCII byte is always an ASCII character); the caller
  refuses scripts that switch to those six (see script.py). Dollar-quote tags with
  bytes >= 0x80 are problems, since their comparison would depend on that masking.
* A NUL byte ends psql's line early (fgets + strlen in input.c and copy.c): problem.

Everything is offsets into the bytes given, so a caller can drop whole statements
and keep every other byte exactly.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

_IDENT = re.compile(rb"[A-Za-z\x80-\xff_][A-Za-z\x80-\xff_0-9$]*")
_DOLLAR_TAG = re.compile(rb"\$(?:[A-Za-z\x80-\xff_][A-Za-z\x80-\xff_0-9]*)?\$")
_DOLLAR_FAIL = re.compile(rb"\$[A-Za-z\x80-\xff_][A-Za-z\x80-\xff_0-9]*")
_PARAM = re.compile(rb"\$[0-9]+")
_NUMBER = re.compile(rb"[0-9]+(?:\.(?!\.)[0-9]*)?|\.[0-9]+")
_EXPONENT = re.compile(rb"[eE][-+]?[0-9]+")
_VARIABLE = re.compile(rb":(?:([A-Za-z\x80-\xff_0-9]+)|'([A-Za-z\x80-\xff_0-9]+)'"
                       rb"|\"([A-Za-z\x80-\xff_0-9]+)\"|\{\?([A-Za-z\x80-\xff_0-9]+)\})")
_SPACE = re.compile(rb"[ \t\n\r\f]+")
_LINE_COMMENT = re.compile(rb"--[^\n\r]*")
# psqlscan.l {quotecontinue} without \n, which psql's lexer never sees
_CONTINUE = re.compile(rb"(?:[ \t\f]|--[^\n\r]*)*\r(?:[ \t\r\f]|--[^\n\r]*\r)*'")
_META_NAME = re.compile(rb"[^ \t\n\r\f\\]*")
_ESCAPE_STOP = re.compile(rb"[\\']")
# the common tokens, lexed in one regex call; anything that may start a quote, comment,
# number, variable or backslash falls through to the exact rules in _step
_FAST = re.compile(rb"(?P<space>[ \t\n\r\f]+)|(?P<ident>[A-Za-z\x80-\xff_][A-Za-z\x80-\xff_0-9$]*+)(?!['&])"
                   rb"|(?P<punct>[,()\[\];+*%^<>=~!@#&|`?]|-(?!-)|/(?!\*)|\.(?![0-9]))")
_PLAIN, _ESCAPE, _RAW = "plain", "escape", "raw"
_SIMPLE = frozenset(b"(),;.=[]+-*/<>%^:~!@#&|`?")


@dataclass
class Statement:
    """One statement as psql sends it: from its first token through its ``;``."""

    start: int
    line: int
    end: int = 0
    tokens: list = field(default_factory=list)  # (kind, bytes): w q s $ n p v
    has_meta: bool = False
    copy_data: CopyData | None = None          # set for COPY ... FROM STDIN

    def words(self) -> list[bytes]:
        return [value for kind, value in self.tokens if kind in ("w", "q")]


@dataclass(frozen=True)
class Meta:
    offset: int
    line: int
    name: bytes
    arguments: bytes


@dataclass(frozen=True)
class CopyData:
    start: int
    end: int
    line: int


@dataclass(frozen=True)
class LexProblem:
    offset: int
    line: int
    message: str


class _Lines:
    """Line numbers of increasing offsets, counted incrementally."""

    def __init__(self, data: bytes):
        self.data, self.offset, self.line = data, 0, 1

    def at(self, offset: int) -> int:
        if offset < self.offset:
            return self.data.count(b"\n", 0, offset) + 1
        self.line += self.data.count(b"\n", self.offset, offset)
        self.offset = offset
        return self.line


class PsqlLexer:
    """Lex a whole script; iterate to get Statement, Meta, CopyData and LexProblem
    items in order of their offsets."""

    def __init__(self, data: bytes):
        self.data = data
        self.lines = _Lines(data)
        self.statement: Statement | None = None
        self.paren_depth = 0
        self.begin_depth = 0
        self.identifiers = [0, 0, 0, 0]
        self.identifier_count = 0
        self.pending: list = []
        self._resume: int | None = None

    def __iter__(self) -> Iterator[Statement | Meta | CopyData | LexProblem]:
        data, i = self.data, 0
        if (nul := data.find(b"\0")) >= 0:
            yield self._problem(nul, "has a NUL byte (psql would silently cut the line there)")
            return
        while i < len(data):
            self._resume = None
            i = self._step(i)
            if self._resume is not None:
                i = max(i, self._resume)
            if self.pending:
                yield from self.pending
                self.pending.clear()
        if self.statement is not None:
            self.statement.end = len(data)
            yield self.statement
            self.statement = None

    # -- helpers -------------------------------------------------------------
    def _problem(self, offset: int, message: str) -> LexProblem:
        return LexProblem(offset, self.lines.at(offset), message)

    def _token(self, start: int, kind: str, value: bytes) -> None:
        if self.statement is None:
            self.statement = Statement(start, self.lines.at(start))
        self.statement.tokens.append((kind, value))

    def _step(self, i: int) -> int:
        data = self.data
        if (fast := _FAST.match(data, i)) is not None:
            kind = fast.lastgroup
            if kind == "space":
                return fast.end()
            if kind == "ident":
                self._identifier(i, fast.group().lower())
                return fast.end()
            return self._punct(i, data[i])
        c = data[i]
        if c in b" \t\n\r\f":
            return _SPACE.match(data, i).end()
        if data.startswith(b"--", i):
            return _LINE_COMMENT.match(data, i).end()
        if data.startswith(b"/*", i):
            return self._comment(i + 2)
        if c == 0x5C:  # backslash
            return self._meta(i)
        if c == 0x27:  # '
            return self._string(i, i + 1, (_PLAIN, _ESCAPE))
        if c == 0x22:  # "
            return self._dquote(i, i + 1)
        if c == 0x24:  # $
            return self._dollar(i)
        if data.startswith(b"::", i):
            self._token(i, "p", b"::")
            return i + 2
        if c == 0x3A and (var := _VARIABLE.match(data, i)):
            self._token(i, "v", next(g for g in var.groups() if g is not None))
            return var.end()
        if 0x30 <= c <= 0x39 or (c == 0x2E and _NUMBER.match(data, i)):
            return self._number(i)
        if (ident := _IDENT.match(data, i)) is not None:
            return self._word(i, ident, after_number=False)
        return self._punct(i, c)

    def _punct(self, i: int, c: int) -> int:
        if c == 0x28:
            self.paren_depth += 1
        elif c == 0x29 and self.paren_depth:
            self.paren_depth -= 1
        self._token(i, "p", bytes([c]))
        if c == 0x3B and not self.paren_depth and not self.begin_depth:
            self._end_statement(i + 1)
        return i + 1

    def _end_statement(self, end: int) -> None:
        statement, self.statement = self.statement, None
        self.identifier_count = 0
        statement.end = end
        self.pending.append(statement)
        if statement.words()[:1] == [b"copy"] and _has_word(statement, b"stdin"):
            if _is_copy_from_stdin(statement.tokens):
                self._copy_data(statement, end)
            else:
                self.pending.append(self._problem(statement.start, "has a COPY statement naming "
                                                  "stdin in a form pg_dump does not write"))

    def _copy_data(self, statement: Statement, end: int) -> None:
        """psql reads COPY data from the line after the statement's line (copy.c)."""
        data = self.data
        eol = data.find(b"\n", end)
        if eol < 0:
            return
        if data[end:eol].strip(b" \t\r\f"):
            self.pending.append(self._problem(end, "has text after COPY ... FROM stdin; on the same line"))
        start = eol + 1
        stop = _copy_end(data, start)
        statement.copy_data = CopyData(start, stop, self.lines.at(start))
        self.pending.append(statement.copy_data)
        self._resume = stop

    # -- tokens ----------------------------------------------------------------
    def _word(self, i: int, ident: re.Match, *, after_number: bool) -> int:
        data, word = self.data, ident.group(0)
        nxt = data[ident.end():ident.end() + 1]
        lower = word.lower()
        if len(word) == 1 and nxt == b"'" and lower in b"bxenu":
            modes = {b"b": (_RAW,), b"x": (_RAW,), b"e": (_ESCAPE,), b"n": (_PLAIN, _ESCAPE)}.get(lower)
            if modes is not None:
                if after_number:
                    modes = tuple(dict.fromkeys((*modes, _PLAIN, _ESCAPE)))
                return self._string(i, i + 2, modes)
        if len(word) == 1 and lower == b"u" and data.startswith(b"&", i + 1):
            if data.startswith(b"'", i + 2):
                modes = (_PLAIN, _ESCAPE) if after_number else (_PLAIN,)
                return self._string(i, i + 3, modes)
            if data.startswith(b'"', i + 2):
                return self._dquote(i, i + 3)
        self._identifier(i, lower)
        return ident.end()

    def _identifier(self, i: int, lower: bytes) -> None:
        """psqlscan.l's CREATE [OR REPLACE] FUNCTION/PROCEDURE ... BEGIN ... END heuristic."""
        self._token(i, "w", lower)
        if self.identifier_count == 0:
            self.identifiers = [0, 0, 0, 0]
        if lower in (b"create", b"function", b"procedure", b"or", b"replace") and \
                self.identifier_count < 4:
            self.identifiers[self.identifier_count] = lower[0]
        self.identifier_count += 1
        ids = self.identifiers
        if (ids[0] == ord("c") and (ids[1] in (ord("f"), ord("p")) or (
                ids[1] == ord("o") and ids[2] == ord("r") and ids[3] in (ord("f"), ord("p"))))
                and self.paren_depth == 0):
            if lower == b"begin" or lower == b"case" and self.begin_depth >= 1:
                self.begin_depth += 1
            elif lower == b"end" and self.begin_depth > 0:
                self.begin_depth -= 1

    def _number(self, i: int) -> int:
        data = self.data
        end = _NUMBER.match(data, i).end()
        if (exponent := _EXPONENT.match(data, end)) is not None:
            end = exponent.end()
        self._token(i, "n", data[i:end])
        if (ident := _IDENT.match(data, end)) is not None:
            return self._word(end, ident, after_number=True)
        return end

    def _dollar(self, i: int) -> int:
        data = self.data
        tag = _DOLLAR_TAG.match(data, i)
        if tag is not None:
            delimiter = tag.group(0)
            if any(b >= 0x80 for b in delimiter):
                self.pending.append(self._problem(i, "has a dollar-quote tag with non-ASCII bytes"))
            close = data.find(delimiter, tag.end())
            end = len(data) if close < 0 else close + len(delimiter)
            self._token(i, "$", data[tag.end():close if close >= 0 else end])
            return end
        if (param := _PARAM.match(data, i)) is not None:
            self._token(i, "n", param.group(0))
            if (ident := _IDENT.match(data, param.end())) is not None:
                return self._word(param.end(), ident, after_number=True)
            return param.end()
        self._token(i, "p", b"$")  # {dolqfailed}: only the $ is eaten
        return i + 1

    def _dquote(self, i: int, j: int) -> int:
        data, body = self.data, j
        while True:
            close = data.find(b'"', j)
            if close < 0:
                self._token(i, "q", data[j:])
                return len(data)
            if data.startswith(b'""', close):
                j = close + 2
                continue
            self._token(i, "q", data[body:close].replace(b'""', b'"'))
            return close + 1

    def _string(self, i: int, j: int, modes: tuple) -> int:
        ends = {mode: _string_end(self.data, j, mode) for mode in modes}
        end = max(ends.values())
        if len(set(ends.values())) > 1:
            self.pending.append(self._problem(i, "has a string literal whose end depends on "
                                                 "standard_conforming_strings or the psql version"))
        elif modes == (_ESCAPE,) and _masked_backslash(self.data, j, end):
            self.pending.append(self._problem(i, "has a backslash right after a non-ASCII byte in "
                                                 "an escape string"))
        self._token(i, "s", self.data[j:max(end - 1, j)])
        return end

    def _comment(self, j: int) -> int:
        data, depth = self.data, 1
        while depth:
            opening, closing = data.find(b"/*", j), data.find(b"*/", j)
            if closing < 0:
                return len(data)
            if 0 <= opening < closing:
                depth, j = depth + 1, opening + 2
            else:
                depth, j = depth - 1, closing + 2
        return j

    def _meta(self, i: int) -> int:
        data = self.data
        eol = data.find(b"\n", i)
        eol = len(data) if eol < 0 else eol
        name = _META_NAME.match(data, i + 1, eol).group(0)
        if self.statement is not None:
            self.statement.has_meta = True
        self.pending.append(Meta(i, self.lines.at(i), name, data[i + 1 + len(name):eol]))
        return eol


def _copy_end(data: bytes, start: int) -> int:
    """Just past the line that is exactly ``\\.`` (copy.c handleCopyIn), or the end."""
    found = data.find(b"\n\\.\n", start - 1)
    limit = len(data) if found < 0 else found
    crlf = data.find(b"\n\\.\r\n", start - 1, limit + 4)
    if crlf >= 0:
        return crlf + 5
    return len(data) if found < 0 else found + 4


def _has_word(statement: Statement, word: bytes) -> bool:
    return any(kind == "w" and value == word for kind, value in statement.tokens)


def _is_copy_from_stdin(tokens: list) -> bool:
    """``COPY [BINARY] name[.name...] [(columns)] FROM STDIN ...``: the only COPY form after
    which psql reads data from the script. Other COPY statements naming stdin are
    refused, so that no guess about the server's answer is needed."""
    words = [(kind, value) for kind, value in tokens]
    i = 1
    if words[i:i + 1] == [("w", b"binary")]:
        i += 1
    if i >= len(words) or words[i][0] not in ("w", "q"):
        return False
    i += 1
    while words[i:i + 1] == [("p", b".")] and i + 1 < len(words) and words[i + 1][0] in ("w", "q"):
        i += 2
    if words[i:i + 1] == [("p", b"(")]:
        depth = 0
        while i < len(words):
            depth += {b"(": 1, b")": -1}.get(words[i][1], 0) if words[i][0] == "p" else 0
            i += 1
            if depth == 0:
                break
    return words[i:i + 2] == [("w", b"from"), ("w", b"stdin")]


def _string_end(data: bytes, j: int, mode: str) -> int:
    """Offset just past a string body starting at j (and its continuations)."""
    while True:
        if mode == _RAW:
            close = data.find(b"'", j)
        elif mode == _PLAIN:
            close = data.find(b"'", j)
            while close >= 0 and data.startswith(b"''", close):
                close = data.find(b"'", close + 2)
        else:
            close = _escape_close(data, j)
        if close < 0:
            return len(data)
        more = _CONTINUE.match(data, close + 1)
        if more is None:
            return close + 1
        j = more.end()


def _escape_close(data: bytes, j: int) -> int:
    while (stop := _ESCAPE_STOP.search(data, j)) is not None:
        k = stop.start()
        if data[k] == 0x5C or data.startswith(b"''", k):
            j = k + 2
        else:
            return k
    return -1


def _masked_backslash(data: bytes, start: int, end: int) -> bool:
    """A backslash up to 3 bytes after a byte >= 0x80: a trail byte in GB18030/JOHAB..."""
    k = data.find(b"\\", start, end)
    while k >= 0:
        if any(b >= 0x80 for b in data[max(start, k - 3):k]):
            return True
        k = data.find(b"\\", k + 1, end)
    return False
