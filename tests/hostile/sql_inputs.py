"""Hostile plain-SQL dumps: every psql meta-command that runs a program or touches a file,
server-side escapes an unprivileged role must be refused, and lexer-desync tricks that hide
a meta-command from a scanner that lexes differently from psql.

``{M}`` in a dump is replaced by the marker file that only executed content would create.
``line`` is the line (1-based) the refusal must name. psql's lexer (src/bin/psql/psqlscanslash.l,
src/fe_utils/psqlscan.l in PostgreSQL) runs a backslash command wherever a backslash appears
outside quotes, comments and dollar quotes, not only at the start of a line.
"""
from __future__ import annotations

from dataclasses import dataclass

HEAD = "CREATE TABLE t (a integer);\n"


@dataclass(frozen=True)
class SqlInput:
    id: str
    text: str
    line: int | tuple[int, ...] | None   # the line(s) the message may name (None: only the dump's name)
    words: tuple[str, ...] = ()   # further fragments the message must hold


def _meta(id_: str, command: str) -> SqlInput:
    return SqlInput(id_, HEAD + command + "\n", 2)


META = [
    _meta("meta-shell-bang", "\\! touch {M}"),
    _meta("meta-shell-bang-mid-line", "SELECT 1; \\! touch {M}"),
    _meta("meta-output-pipe", "\\o |touch {M}"),
    _meta("meta-output-file", "\\o {M}"),
    _meta("meta-g-pipe", "SELECT 1 \\g |touch {M}"),
    _meta("meta-gx-pipe", "SELECT 1 \\gx |touch {M}"),
    _meta("meta-w-pipe", "SELECT 1 \\w |touch {M}"),
    _meta("meta-gexec", "SELECT 'COPY t TO PROGRAM ''touch {M}''' \\gexec"),
    _meta("meta-copy-program", "\\copy t to program 'touch {M}'"),
    _meta("meta-copy-from-file", "\\copy t from '/etc/shadow'"),
    _meta("meta-set-backtick", "\\set x `touch {M}`"),
    _meta("meta-setenv-pager", "\\setenv PAGER 'touch {M}'"),
    _meta("meta-include", "\\i /etc/shadow"),
    _meta("meta-include-relative", "\\ir ../../../../../../../etc/shadow"),
    _meta("meta-include-long", "\\include /etc/shadow"),
    _meta("meta-lo-import", "\\lo_import /etc/shadow"),
    _meta("meta-lo-export", "\\lo_export 1 {M}"),
    _meta("meta-connect-superuser", "\\connect postgres postgres"),
    _meta("meta-c-superuser", "\\c - postgres"),
    _meta("meta-cd", "\\cd /"),
    _meta("meta-edit", "\\e {M}"),
    _meta("meta-password", "\\password postgres"),
    _meta("meta-if-backtick", "\\if `touch {M}`\n\\endif"),
    _meta("meta-echo-backtick", "\\echo `touch {M}`"),
    _meta("meta-echo-chained", "\\echo ok \\\\ \\! touch {M}"),
    _meta("meta-semicolon-then-bang", "SELECT 1 \\;\\! touch {M}"),
]

SERVER = [
    SqlInput("copy-to-program", HEAD + "COPY t TO PROGRAM 'touch {M}';\n", 2, ("PROGRAM",)),
    SqlInput("copy-from-program", HEAD + "COPY t FROM PROGRAM 'touch {M}';\n", 2, ("PROGRAM",)),
    SqlInput("copy-from-server-file", HEAD + "COPY t FROM '/etc/shadow';\n", 2),
    SqlInput("do-block-copy-program",
             HEAD + "DO $$BEGIN EXECUTE 'COPY t TO PROGRAM ''touch {M}'''; END$$;\n", 2),
    SqlInput("extension-file-fdw", HEAD + "CREATE EXTENSION file_fdw;\n", 2),
    SqlInput("extension-adminpack", HEAD + "CREATE EXTENSION adminpack;\n", 2),
    SqlInput("untrusted-language-plpython", HEAD + "CREATE LANGUAGE plpython3u;\n", 2),
    SqlInput("untrusted-language-function",
             HEAD + "CREATE FUNCTION f() RETURNS void LANGUAGE plperlu AS $$ system('touch {M}') $$;\n", 2),
    SqlInput("alter-system-archive-command", HEAD + "ALTER SYSTEM SET archive_command = 'touch {M}';\n", 2),
    SqlInput("pg-read-file-shadow", HEAD + "SELECT pg_read_file('/etc/shadow');\n", 2),
    SqlInput("server-lo-import-shadow", HEAD + "SELECT lo_import('/etc/shadow');\n", 2),
    SqlInput("set-role-superuser", HEAD + "SET ROLE postgres;\n", 2),
    SqlInput("create-superuser-role", HEAD + "CREATE ROLE evil SUPERUSER LOGIN;\n", 2),
]

DESYNC = [
    # a scanner that ignores -- comments would think a quoted identifier hides the \!
    SqlInput("desync-comment-quote", HEAD + "-- \"\n\\! touch {M}\n-- \"\n", 3),
    # x$a$ is an identifier (a $ inside a name), not the start of a dollar quote
    SqlInput("desync-identifier-dollar", HEAD + "SELECT 1 AS x$a$;\n\\! touch {M}\n-- $a$\n", 3),
    # E'\'' is one quote character: the string ends at the third quote
    SqlInput("desync-escape-string", HEAD + "SELECT E'\\'';\n\\! touch {M}\n-- '\n", 3),
    SqlInput("desync-standard-strings-off",
             HEAD + "SET standard_conforming_strings = off;\nSELECT '\\'';\n\\! touch {M}\n-- '\n", (3, 4)),
    # PostgreSQL block comments nest: the quote is still inside the comment
    SqlInput("desync-nested-comment", HEAD + "/* /* */ ' */\n\\! touch {M}\n-- '\n", 3),
    # the COPY is in a comment: no data section follows
    SqlInput("desync-copy-in-comment", HEAD + "-- COPY t (a) FROM stdin;\n\\! touch {M}\n\\.\n", 3),
    # after \. the data section is over
    SqlInput("desync-copy-data-ends", HEAD + "COPY t (a) FROM stdin;\n1\n\\.\n\\! touch {M}\n", 5),
    # a carriage return is not a line end for psql, a backslash after it still starts a command
    SqlInput("desync-carriage-return", HEAD + "SELECT 1;\r\\! touch {M}\n", 2),
    # multi-line quoted identifier, then a real command after it closes
    SqlInput("desync-multiline-identifier", HEAD + "CREATE TABLE \"a\nb\" (x int);\n\\! touch {M}\n", 4),
    # multi-line dollar quote with a different tag inside, then a real command after it closes
    SqlInput("desync-dollar-quote-tags",
             HEAD + "SELECT $a$ first\n$b$ not the end\n$a$;\n\\! touch {M}\n", 5),
    # invalid UTF-8 before the command
    SqlInput("desync-invalid-utf8", HEAD + "SELECT '\udcff\udcfe';\n\\! touch {M}\n", 3),
]



def _encoding_attack(id_: str, switch: str, lead: int, *, words: tuple[str, ...] = (),
                     line: int | tuple[int, ...] | None = None) -> SqlInput:
    """Issue 20: a statement switches the client encoding, then a lead byte of that encoding
    right before a quote: psql (psqlscan.l psqlscan_prepare_buffer) hides the quote, sees no
    string and runs the \\! line; our lexer sees a string. ``switch`` holds {F}: the function
    definition and call that change the encoding (or a statement that does)."""
    text = (HEAD + switch + "SELECT 1 AS " + chr(0xDC00 + lead) + "'\n\\! touch {M}\n';\n")
    return SqlInput(id_, text, line, words)


_SQL_FUNCTION = ("CREATE FUNCTION enc() RETURNS text LANGUAGE sql AS "
                 "$$ SELECT set_config('client'||'_encoding', '{E}', false) $$;\nSELECT enc();\n")
_PLPGSQL_SET = ("CREATE FUNCTION enc() RETURNS void LANGUAGE plpgsql AS "
                "$$ BEGIN SET client_encoding = '{E}'; END $$;\nSELECT enc();\n")
# no rule word anywhere: the statement is built from chr() at run time
_PLPGSQL_DYNAMIC = ("CREATE FUNCTION enc() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE "
                    "'SET ' || chr(99) || 'lient_' || chr(101) || 'ncoding = ' || quote_literal('{E}'); "
                    "END $$;\nSELECT enc();\n")
GUARD = "client encoding changed during the load"
ENCODING = [
    # the reproduction: set_config in a SQL function body, SJIS lead byte 0x82
    _encoding_attack("encoding-sjis-sql-function", _SQL_FUNCTION.replace("{E}", "SJIS"), 0x82,
                     words=("function body",), line=2),
    _encoding_attack("encoding-big5-sql-function", _SQL_FUNCTION.replace("{E}", "BIG5"), 0xA4, line=2),
    _encoding_attack("encoding-gbk-plpgsql-set", _PLPGSQL_SET.replace("{E}", "GBK"), 0xB0, line=2),
    _encoding_attack("encoding-uhc-plpgsql-set", _PLPGSQL_SET.replace("{E}", "UHC"), 0xB0, line=2),
    _encoding_attack("encoding-johab-sql-function", _SQL_FUNCTION.replace("{E}", "JOHAB"), 0x88, line=2),
    # no rule word in the dump: only the load's guard (ParameterStatus) can stop these
    _encoding_attack("encoding-gb18030-dynamic-sql", _PLPGSQL_DYNAMIC.replace("{E}", "GB18030"), 0x81,
                     words=(GUARD,), line=3),
    _encoding_attack("encoding-sjis-dynamic-sql", _PLPGSQL_DYNAMIC.replace("{E}", "SJIS"), 0x82,
                     words=(GUARD,), line=3),
    _encoding_attack("encoding-sjis-pg-settings-update",
                     "UPDATE pg_settings SET setting = 'SJIS' WHERE name = 'client_encoding';\n", 0x82,
                     words=(GUARD,), line=2),
    _encoding_attack("encoding-big5-query-to-xml",
                     "SELECT query_to_xml('SELECT set_config(''client_encoding'', ''BIG5'', false)', "
                     "true, true, '');\n", 0xA4, words=(GUARD,), line=2),
    # ways psql itself offers, refused before anything runs
    _encoding_attack("encoding-sjis-set-names", "SET NAMES 'SJIS';\n", 0x82, line=2),
    _encoding_attack("encoding-sjis-meta-encoding", "\\encoding SJIS\n", 0x82, line=2),
    _encoding_attack("encoding-utf8-meta-encoding", "\\encoding UTF8\n", 0x82, line=2),
    _encoding_attack("encoding-sjis-select-set-config",
                     "SELECT pg_catalog.set_config('client_encoding', 'SJIS', false);\n", 0x82, line=2),
]

ALL = META + SERVER + DESYNC + ENCODING
