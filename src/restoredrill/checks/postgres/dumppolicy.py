"""What a plain dump may contain: the refusal rules applied to the statements and
meta-commands that :mod:`psqllex` finds, and which statements are owner or
privilege statements (left out, as ``pg_restore --no-owner --no-privileges`` does).

Each rule returns a short description of what was found, naming only a command,
a keyword or a name from our own lists (or a name made of plain identifier
characters), never other text of the dump.
"""
from __future__ import annotations

import re

from restoredrill.checks.postgres.psqllex import LexProblem, Meta, PsqlLexer, Statement

# what pg_dump writes (\restrict, \unrestrict, psql >= 13.22/14.19/15.14/16.10/17.6)
# and two harmless extras; not \connect (it could switch user) nor \set (it could
# turn ON_ERROR_STOP off), nor anything else of psql's ~100 commands
ALLOWED_META_COMMANDS = frozenset({"restrict", "unrestrict", "encoding", "echo"})
# arguments of an allowed meta-command: no quote, backtick (psqlscanslash.l runs it
# in a shell), colon (variable interpolation), backslash (next command), pipe
_SAFE_META_ARGUMENTS = re.compile(rb"[A-Za-z0-9_ \t\r\f.,+=/@%-]*")
# encodings in which every ASCII byte is an ASCII character (PostgreSQL's server
# encodings, common/encnames.c names, normalized as pg_char_to_encoding does:
# lower case, letters and digits only). Not SJIS, BIG5, GBK, UHC, GB18030, JOHAB:
# there a byte 0x5c can be the second byte of a character, psql then does not
# see a backslash where this lexer does (psqlscan.l psqlscan_prepare_buffer).
SAFE_ENCODINGS = frozenset(
    {"sqlascii", "utf8", "unicode", "eucjp", "euccn", "euckr", "euctw", "eucjis2004",
     "muleinternal", "koi8", "koi8r", "koi8u", "alt", "cp866", "win866", "win874", "win",
     "tcvn", "tcvn5712", "vscii", "abc", "default",
     *(f"latin{n}" for n in range(1, 11)),
     *(f"iso8859{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)),
     *(f"win{n}" for n in range(1250, 1259)), *(f"windows{n}" for n in range(1250, 1259)),
     "cp1250", "cp1251", "cp1252", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258"})
# trusted extensions (PostgreSQL 13+: an unprivileged database owner may create them)
# that touch neither files, nor the network, nor other databases. Refused among
# others: adminpack (writes server files), file_fdw (reads them), dblink and
# postgres_fdw (open connections), plperlu/plpython3u/pltclu (untrusted languages).
# lo is allowed: a domain and a trigger function that unlinks large objects of
# its own database; the server-file functions lo_import/lo_export are core ones.
ALLOWED_EXTENSIONS = frozenset(
    {"plpgsql", "pgcrypto", "uuid-ossp", "citext", "hstore", "pg_trgm", "btree_gin", "btree_gist",
     "ltree", "cube", "isn", "intarray", "fuzzystrmatch", "unaccent", "tablefunc", "seg", "lo",
     "tsm_system_rows", "tsm_system_time", "dict_int", "earthdistance"})
# server functions that read or write server files or directories (or signal the server)
SERVER_FILE_FUNCTIONS = frozenset(
    {"pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir",
     "pg_ls_waldir", "pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_ls_logicalmapdir",
     "pg_ls_logicalsnapdir", "pg_ls_replslotdir", "lo_import", "lo_export", "pg_file_write",
     "pg_file_rename", "pg_file_unlink", "pg_file_sync", "pg_logdir_ls", "pg_reload_conf",
     "pg_rotate_logfile", "pg_terminate_backend", "pg_cancel_backend", "pg_promote",
     "pg_log_backend_memory_contexts", "dblink", "dblink_exec", "dblink_connect"})
_PLAIN_NAME = re.compile(rb"[A-Za-z0-9_.-]{1,63}")
# statement_problem's rules look only at the first word (refused forms start with one of
# _RULE_FIRST_WORDS), at a few other words and at :VARIABLES. A word is an identifier
# (bytes of the statement, ASCII lower-cased) or a "quoted" one (its bytes, "" made ");
# a variable name is the bytes right after ":", ":'", ':"' or ":{?". So where neither
# _RULE_WORDS finds a word in the lower-cased bytes of a statement (strings and all)
# nor _RULE_VARIABLE a colon before an upper-case letter, no rule can refuse it.
_RULE_FIRST_WORDS = frozenset({b"copy", b"create", b"do", b"alter", b"load", b"set", b"reset"})
_RULE_VARIABLE = re.compile(rb":(?:['\"]|\{\?)?[A-Z]")


def _alternation(words: list[bytes]) -> bytes:
    """A regex for any of the words, as a prefix tree: sre tries plain alternatives one
    by one at every byte, this is about twice as fast on data rows."""
    if words == [b""]:
        return b""
    heads: dict[bytes, list[bytes]] = {}
    for word in words:
        if word:
            heads.setdefault(word[:1], []).append(word[1:])
    branches = [re.escape(head) + _alternation(tails) for head, tails in sorted(heads.items())]
    if len(branches) == 1 and b"" not in words:
        return branches[0]
    return b"(?:" + b"|".join(branches) + (b")?" if b"" in words else b")")


_RULE_WORDS = re.compile(_alternation(sorted(
    {b"stdin", b"client_encoding", b"set_config", b"session_authorization",
     *(name.encode() for name in SERVER_FILE_FUNCTIONS)})))
_PSQL_VARIABLE = re.compile(rb"[A-Z][A-Z0-9_]*")
_META_NAME = re.compile(rb"[A-Za-z0-9_!?;:+.-]{1,30}")


def _show(name: bytes) -> str:
    """A name from the dump, shown only when it is made of plain identifier characters."""
    return name.decode() if _PLAIN_NAME.fullmatch(name) else "(an unusual name)"


def encoding_is_safe(name: bytes) -> bool:
    return re.sub(rb"[^a-z0-9]", b"", name.lower()).decode() in SAFE_ENCODINGS


def meta_problem(meta: Meta) -> str | None:
    """psqlscanslash.l: the name runs to whitespace or a backslash; psql expands
    backticks and :variables in the arguments, and a backslash starts another command."""
    name = meta.name.decode("ascii", "replace")
    if name not in ALLOWED_META_COMMANDS:
        shown = (f"\\{name}" if _META_NAME.fullmatch(meta.name) else
                 "\\(an unusual name)" if meta.name else "a lone backslash")
        return f"runs the psql meta-command {shown}"
    if not _SAFE_META_ARGUMENTS.fullmatch(meta.arguments):
        return (f"has a quote, backtick, colon, pipe or backslash in the arguments of \\{name} "
                f"(psql would expand or run it)")
    if name == "encoding" and not encoding_is_safe(meta.arguments.strip()):
        return "switches psql to a client encoding that is not allowed (\\encoding)"
    return None


def item_problem(item) -> str | None:
    """What is refused in one item of :class:`PsqlLexer`'s output, or None."""
    if isinstance(item, LexProblem):
        return item.message
    if isinstance(item, Meta):
        return meta_problem(item)
    if isinstance(item, Statement):
        return statement_problem(item)
    return None


def is_owner_or_privilege(statement: Statement) -> bool:
    """GRANT, REVOKE, ALTER DEFAULT PRIVILEGES and ``ALTER <object> ... OWNER TO <role>``
    (as pg_dump writes them: one action, the role last). Never one holding a meta-command."""
    if statement.has_meta or statement.copy_data is not None:
        return False
    if statement.first_word() not in (b"grant", b"revoke", b"alter"):
        return False  # the rules below all need one of these first
    words = statement.words()
    if words[:1] in ([b"grant"], [b"revoke"]) or words[:3] == [b"alter", b"default", b"privileges"]:
        return True
    tokens = [t for t in statement.tokens if t != ("p", b";")]
    if words[:1] != [b"alter"] or len(tokens) < 4:
        return False
    tail_ok = tokens[-3] == ("w", b"owner") and tokens[-2] == ("w", b"to") and tokens[-1][0] in "wq"
    return tail_ok and not _top_level_comma(tokens) and words.count(b"owner") == 1


def _top_level_comma(tokens: list) -> bool:
    depth = 0
    for kind, value in tokens:
        if kind == "p":
            depth += {b"(": 1, b")": -1}.get(value, 0)
            if value == b"," and depth == 0:
                return True
    return False


def statement_problem(statement: Statement) -> str | None:
    """The first refused form in a statement, or None."""
    if statement.first_word() not in _RULE_FIRST_WORDS:
        text = statement.text()
        if _RULE_WORDS.search(text.lower()) is None and (b":" not in text or
                                                          _RULE_VARIABLE.search(text) is None):
            return None  # most rows of an --inserts dump: see _RULE_FIRST_WORDS
    return _rules_problem(statement)


def _rules_problem(statement: Statement, depth: int = 0) -> str | None:
    rules = (_copy_problem, _create_problem, _first_word_problem, _set_problem, _function_problem)
    for rule in rules if depth else (*rules, _variable_problem):
        if (problem := rule(statement)) is not None:
            return problem
    return _body_problem(statement, depth)


# how deep quoted SQL inside quoted SQL is followed (a body that EXECUTEs a string...)
BODY_DEPTH = 3
_BODY_SETTINGS = re.compile(rb"client_encoding|session_authorization|\bnames\b")


def _is_routine(statement: Statement) -> bool:
    """CREATE [OR REPLACE] FUNCTION/PROCEDURE (its body is SQL or PL/pgSQL)."""
    words = statement.words()
    return words[:1] == [b"create"] and any(w in (b"function", b"procedure") for w in words[1:4])


def _body_problem(statement: Statement, depth: int) -> str | None:
    """Function bodies, DO blocks and other quoted SQL (``$$...$$``, ``'...'``) are held to
    the same rules as top-level statements where they reach settings, files or programs:
    each string that may be SQL is lexed again (psqllex, as the server's SQL lexer reads
    it: a body is never psql input, so its meta-commands and variables do not matter) and
    every statement in it checked; any mention of client_encoding, session_authorization
    or SET NAMES in a body is refused outright (the load also stops on any change of the
    client encoding the server reports, see loader.py). Strings of other top-level
    statements are data (pg_dump writes rows mentioning pg_read_file): not followed."""
    if depth >= BODY_DEPTH:
        return None
    if depth == 0 and not _is_routine(statement):
        return None     # strings of other statements are data (dynamic SQL there: loader.py's guard)
    for kind, value in statement.tokens:
        if kind not in ("$", "s") or not value:
            continue
        if _BODY_SETTINGS.search(value.lower()) is not None:
            return ("reaches client_encoding, session_authorization or SET NAMES inside a "
                    "function body or quoted SQL")
        for item in PsqlLexer(value):
            if not isinstance(item, Statement):
                continue     # a body is not psql input: no meta-commands, no variables there
            for sub in _sub_statements(item):
                if (problem := _rules_problem(sub, depth + 1)) is not None:
                    return problem if depth else f"{problem} (inside a function body or quoted SQL)"
    return None


def _sub_statements(statement: Statement):
    """The statement, and the rest of it from each word a rule starts with: in PL/pgSQL a
    statement can follow BEGIN, THEN, LOOP, ELSE... in what the SQL lexer sees as one."""
    yield statement
    tokens = statement.tokens
    for index in range(1, len(tokens)):
        if tokens[index][0] == "w" and tokens[index][1] in _RULE_FIRST_WORDS:
            yield Statement(statement.start, statement.line, statement.end, tokens=tokens[index:])


def _copy_problem(statement: Statement) -> str | None:
    words = statement.words()
    if words[:1] != [b"copy"]:
        if b"copy" in words and b"stdin" in words:
            return "has COPY ... stdin inside another statement"
        return None
    tokens = statement.tokens
    if b"program" in words:
        return "runs COPY ... PROGRAM (a program on the server)"
    for index, (kind, value) in enumerate(tokens[:-1]):
        if kind == "w" and value in (b"from", b"to") and tokens[index + 1][0] == "s":
            return "runs COPY with a server file (only FROM stdin and TO stdout are allowed)"
    if statement.copy_data is None and b"stdout" not in words:
        return "runs COPY without FROM stdin or TO stdout"
    return None


def _create_problem(statement: Statement) -> str | None:
    words = statement.words()
    if words[:1] != [b"create"]:
        return None
    rest = [w for w in words[1:4] if w not in (b"or", b"replace", b"trusted", b"procedural")]
    kind = rest[0] if rest else b""
    if kind == b"language":
        return "runs CREATE LANGUAGE"
    if kind == b"extension":
        return _extension_problem(statement)
    if kind in (b"function", b"procedure"):
        tokens = statement.tokens
        for index, (token_kind, value) in enumerate(tokens[:-1]):
            if token_kind == "w" and value == b"language" and tokens[index + 1][0] in "wqs":
                language = tokens[index + 1][1].lower()
                if language in (b"c", b"internal") or language.endswith(b"u"):
                    return (f"creates a {kind.decode()} in the untrusted language "
                            f"{_show(language)}")
    return None


def _extension_problem(statement: Statement) -> str | None:
    names = [(k, v) for k, v in statement.tokens[2:] if k in "wqs"]
    while names and names[0] in (("w", b"if"), ("w", b"not"), ("w", b"exists")):
        names.pop(0)
    name = names[0][1] if names else b""
    if name.decode("utf-8", "replace").lower() not in ALLOWED_EXTENSIONS:
        return (f"runs CREATE EXTENSION {_show(name)} (allowed: "
                f"{', '.join(sorted(ALLOWED_EXTENSIONS))})")
    if b"cascade" in statement.words():
        return "runs CREATE EXTENSION ... CASCADE (it could create other extensions)"
    return None


def _first_word_problem(statement: Statement) -> str | None:
    words = statement.words()
    if words[:1] == [b"do"]:
        return "runs a DO block (pg_dump never writes one)"
    if words[:2] == [b"alter", b"system"]:
        return "runs ALTER SYSTEM"
    if words[:1] == [b"load"]:
        return "runs LOAD (loads a shared library into the server)"
    if b"client_encoding" in words[1:] and words[:1] != [b"set"]:
        return "changes client_encoding other than with SET"
    return None


def _set_problem(statement: Statement) -> str | None:
    """SET/RESET ROLE and SESSION AUTHORIZATION; SET client_encoding and SET NAMES to an
    encoding in which psql would lex bytes differently from us."""
    words = statement.words()
    if words[:1] not in ([b"set"], [b"reset"]):
        return None
    rest = words[1:]
    if rest[:1] in ([b"session"], [b"local"]) and rest[1:2] != [b"authorization"]:
        rest = rest[1:]
    if rest[:1] in ([b"role"], [b"session_authorization"]) or rest[:2] == [b"session", b"authorization"]:
        return f"runs {words[0].decode().upper()} ROLE or SESSION AUTHORIZATION"
    if words[:1] == [b"set"] and rest[:1] in ([b"client_encoding"], [b"names"]):
        values = [v for k, v in statement.tokens if k in "wqs"][len(words) - len(rest) + 1:]
        values = [v for v in values if v != b"to"]
        if not values or not encoding_is_safe(values[0]):
            return ("sets a client encoding that is not allowed (SJIS, BIG5, GBK, UHC, GB18030 "
                    "and JOHAB hide backslashes from psql's lexer)")
    return None


def _function_problem(statement: Statement) -> str | None:
    tokens = statement.tokens
    for index, (kind, value) in enumerate(tokens):
        if kind not in "wq":
            continue
        name = value.lower().decode("utf-8", "replace")
        if name in SERVER_FILE_FUNCTIONS:
            return f"calls the server function {name}"
        if name == "set_config" and tokens[index + 1:index + 3] != [("p", b"("), ("s", b"search_path")]:
            return "calls set_config for another setting than search_path"
        if name == "session_authorization":
            return "changes session_authorization"
    return None


def _variable_problem(statement: Statement) -> str | None:
    """psql interpolates :NAME, :'NAME', :"NAME" outside quotes (psqlscan.l). A dump
    cannot define variables (every meta-command that sets one is refused), so only
    psql's own (upper-case: DBNAME, HOST, VERSION, LAST_ERROR_MESSAGE...) could expand."""
    for kind, value in statement.tokens:
        if kind == "v" and _PSQL_VARIABLE.fullmatch(value):
            return f"uses the psql variable :{value.decode()}"
    return None
