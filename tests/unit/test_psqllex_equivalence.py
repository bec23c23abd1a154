"""The fast psql lexer gives exactly what the frozen per-byte lexer gave, on every input.

``_psqllex_reference.py`` is psqllex.py as it was before whole statements were matched
in one regex call and tokenized lazily; it must not be edited. Items are compared field
by field, tokens included (which makes the lazy statements tokenize), and so are the
refusal rules with and without the cheap pre-check in dumppolicy.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restoredrill.checks.postgres import dumppolicy
from restoredrill.checks.postgres.psqllex import PsqlLexer, Statement

HERE = Path(__file__).resolve().parent


def _load_reference():
    spec = importlib.util.spec_from_file_location("_psqllex_reference", HERE / "_psqllex_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


REFERENCE = _load_reference()


def plain(item: object) -> tuple:
    """An item as (type name, fields...): the two modules' classes differ, their fields not."""
    if dataclasses.is_dataclass(item):
        fields = [getattr(item, f.name) for f in dataclasses.fields(item)]
    else:
        fields = [item.start, item.line, item.end, item.tokens, item.has_meta, item.copy_data]
    return (type(item).__name__, *(plain(f) if dataclasses.is_dataclass(f) else f for f in fields))


def assert_same(data: bytes) -> None:
    expected = [plain(item) for item in REFERENCE.PsqlLexer(data)]
    items = list(PsqlLexer(data))
    for item in items:
        if isinstance(item, Statement):
            words = item.words()
            assert item.first_word() == (words[0] if words else None)
            assert item.text() == data[item.start:item.end]
            assert dumppolicy.statement_problem(item) == dumppolicy._rules_problem(item)
    assert [plain(item) for item in items] == expected


# -- every script in the lexer's own tests --------------------------------------------
def _fixture_scripts() -> list[bytes]:
    tree = ast.parse((HERE / "test_postgres_script.py").read_text())
    found = {node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes))}
    scripts = {v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v for v in found}
    return sorted(scripts)


FIXTURES = _fixture_scripts()


def test_the_fixtures_are_found():
    assert len(FIXTURES) > 150 and any(b"PostgreSQL database dump" in s for s in FIXTURES)


@pytest.mark.parametrize("wrap", [b"%s", b"SET search_path = '';\n%s;\n", b"%s\r\n%s\n",
                                  b"SELECT (1;\n%s\n);\n", b"'\n%s\n';\n"])
def test_fixture_scripts_lex_the_same(wrap):
    for script in FIXTURES:
        assert_same(wrap.replace(b"%s", script))


def test_hostile_corpus_dumps_lex_the_same():
    from tests.hostile.sql_inputs import ALL

    assert len(ALL) > 20
    for item in ALL:
        assert_same(item.text.replace("{M}", "/tmp/marker").encode("utf-8", "surrogateescape"))


# -- generated scripts ------------------------------------------------------------------
SQL = st.sampled_from([
    "INSERT INTO t VALUES (", "insert into public.\"T\"\"x\" values(", "SELECT ", "COPY t FROM stdin;\n",
    "copy t (a, b) from stdin;\n", "\\.\n", "\\.\r\n", "1\t2\n", "CREATE FUNCTION f() ", "create ",
    "CREATE OR REPLACE PROCEDURE p() ", "BEGIN ", "END", "CASE ", "creates ", "GRANT ALL ON t TO x",
    "ALTER TABLE t OWNER TO x", "'a''b'", "'C:\\x\\y'", "'a\\'", "'\\\\'", "'\\''", "''", "'\n'",
    "E'\\''", "e'x'", "b'01'", "X'ff'", "N'x'", "u&'x'", "U&\"x\"", "x$E'", "1e'x'", "0x'1'",
    "\"a\"\"b\"", "\"\"", "\"x\ny\"", "1", "1.5", ".5", "1.", "1..2", "1e5", "1E+5", "1e-", "1ex",
    "12abc", "a.b", "t1.5", "::", ":", ":foo", ":'DBNAME'", ":\"HOST\"", ":{?X}", "$$", "$a$",
    "$1", "$", "(", ")", ";", ",", "-", "--", "-- c\n", "/", "/*", "*/", "*", "&", "|", "{", "}",
    "[", "]", "+", "=", "<>", "!", "?", "`", "@", "#", "%", "^", "~", "\\", "\\!", "\\echo x\n",
    "\r", "\n", "\r\n", " ", "\t", "\f", "\v", "\x7f", "\xe9", "caf\xe9", "\udcff", "pg_read_file",
    "PG_LS_DIR", "Set_Config", "stdin", "client_encoding", "x", "values", "true", "NULL"])


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SQL, max_size=40))
def test_generated_scripts_lex_the_same(parts):
    assert_same("".join(parts).encode("utf-8", "surrogateescape"))


# each of these keeps a statement out of the one-regex path, or sits right at its edge
EDGES = ["'a'\r'b'", "'a' \r 'b'", "'a'\r\n'b'", "'a' -- c\r'b'", "'a'\n'b'", "u&'x'", 'U&"x"',
         "u &'x'", "a&'x'", "1&2", "e'\\''", "E'a\\'", "b'1'", "x'f'", "n'x'", "1e'x'", "0x'1'",
         "x$E'\\'", "'a\\'", "'a\\''b'", "'a\\\\'", "'\\x'", "''''", "'a''\\'", "\"a\"'b'", "'a'b",
         "1'a'", "f(g(h(i(j(1)))))", "f(g(h(i(1))))", "(1;2)", ")", "(()", "1..2", "1.e5", ".5e-3x",
         "1e--2", "a--b", "a/*b*/", "a::b", "a:::b", "a:b", ":B", "$1", "a$b", "{1}", "\x0b", "\x7f",
         "\\!", "create", "CREATE FUNCTION f() BEGIN ATOMIC SELECT 1; END", "Create", "createx",
         "x create", "\"copy\" t from stdin", "copy t from stdin", "COPY t FROM stdin", "stdin", "\udc80x",
         "\"PG_LS_DIR\"(1)", "\"pg_read\"\"_file\"(1)", "Lo_Import(1)", "\"dblink\"", "'stdin'",
         "SESSION_AUTHORIZATION", "x.\"set_config\"('role')", "set_config('search_path')", ":'DB'",
         ":{?X}", ':"H"', ":h", "\"client_encoding\"", "do", "LOAD"]


@pytest.mark.parametrize("edge", EDGES)
def test_edge_cases_lex_the_same(edge):
    for form in ("SELECT {};\n", "INSERT INTO t VALUES ({});\r\n", "{};\nSELECT 1;\n", "x {}"):
        assert_same(form.format(edge).encode("utf-8", "surrogateescape"))


@settings(max_examples=600, deadline=None)
@given(st.lists(st.lists(st.sampled_from([*EDGES, "x", " ", "(", ")", "1", "'s'", ",", "\n"]),
                         max_size=8), max_size=5))
def test_generated_statements_near_the_edges_lex_the_same(statements):
    data = "".join("SELECT " + "".join(parts) + ";\n" for parts in statements)
    assert_same(data.encode("utf-8", "surrogateescape"))


BYTES = st.sampled_from(list(b"aeuxbEUN1.5;;()'''\"\\$:-/*\r\n\n &+e{\x80_ \t"))


@settings(max_examples=1000, deadline=None)
@given(st.lists(BYTES, max_size=60))
def test_generated_bytes_lex_the_same(codes):
    assert_same(bytes(codes))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["", "NULL", "1", "-2.5e3", "true"]),
                          st.text(alphabet="ab'\\\"\n\r;()$:-/*&\xe9 ", max_size=8)),
                min_size=1, max_size=6), st.sampled_from(["\n", "\r\n", " ", ""]))
def test_generated_insert_rows_lex_the_same(values, newline):
    row = ", ".join(number or "'" + text.replace("'", "''") + "'" for number, text in values)
    data = f"INSERT INTO public.t VALUES ({row});{newline}".encode("utf-8", "surrogateescape")
    assert_same(data * 3)
