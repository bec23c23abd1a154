"""The plain-dump loader (checks/postgres/loader.py, wire.py) against a real PostgreSQL server.

Its promises, each shown without the policy's help where the policy could hide a failure:
no meta-command runs even in statements the check never saw, the client encoding cannot
change, a statement past its budget is cancelled, printed rows cost no memory, and a dump
that needs more parse memory than its budget fails naming the budget.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from restoredrill.checks.postgres import PostgresError, ThrowawayPostgres, find_bin_dir
from restoredrill.checks.postgres.loader import Stop, load
from restoredrill.checks.budgets import InterpretBudgets as LoadBudgets

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    try:
        find_bin_dir()
    except PostgresError as exc:
        pytest.fail(str(exc), pytrace=False)
    with ThrowawayPostgres(tmp_path_factory.mktemp("loader") / "pg") as server:
        yield server


def _database(pg: ThrowawayPostgres, name: str) -> tuple[str, str]:
    role = pg._create_database(name, Path(name))
    return str(pg.socket_dir / ".s.PGSQL.5432"), role


def test_unchecked_meta_commands_are_never_run_by_the_loader(pg):
    """load() alone (the policy's check skipped): a \\! line is not a command for it."""
    socket_path, role = _database(pg, "nometa")
    marker = pg.socket_dir / "nometa.marker"
    data = (f"CREATE TABLE t (a int);\n\\! touch {marker}\n\\o |touch {marker}\n"
            f"INSERT INTO t VALUES (1);\n").encode()

    result = load(data, socket_path, role, "nometa", 30)

    assert result["statements"] == 2
    assert not marker.exists()
    assert pg.query("nometa", "SELECT count(*) FROM t") == [("1",)]


def test_a_backslash_line_inside_a_statement_is_sql_text_the_server_rejects(pg):
    socket_path, role = _database(pg, "inline")
    marker = pg.socket_dir / "inline.marker"

    with pytest.raises(Stop) as stopped:
        load(f"SELECT 1 \\! touch {marker}\n;".encode(), socket_path, role, "inline", 30)

    assert stopped.value.result["result"] == "failed" and stopped.value.result["sqlstate"] == "42601"
    assert not marker.exists()


@pytest.mark.parametrize("change", [
    "SELECT set_config('client_encoding', 'SJIS', false);",
    "UPDATE pg_settings SET setting = 'BIG5' WHERE name = 'client_encoding';",
    "SET client_encoding = 'LATIN1'; RESET client_encoding;",  # a second statement: refused by Parse
])
def test_any_encoding_change_but_an_allowed_top_level_set_stops_the_load(pg, change):
    socket_path, role = _database(pg, "enc" + str(abs(hash(change)) % 10000))

    with pytest.raises(Stop) as stopped:
        load(f"CREATE TABLE t (a int);\n{change}\nCREATE TABLE u (a int);\n".encode(), socket_path,
             role, socket_path and role[len("restore_"):], 30)

    assert stopped.value.result["line"] == 2
    assert stopped.value.result["result"] in ("aborted", "failed")


def test_a_top_level_set_to_an_ascii_safe_encoding_is_followed(pg):
    socket_path, role = _database(pg, "latin")
    data = "SET client_encoding = 'LATIN1';\nCREATE TABLE t (a text);\nINSERT INTO t VALUES ('é');\n"

    load(data.encode("latin-1"), socket_path, role, "latin", 30)

    assert pg.query("latin", "SELECT a FROM t") == [("é",)]


def test_a_statement_past_its_budget_is_cancelled_and_names_the_budget(pg):
    socket_path, role = _database(pg, "sleepy")
    started = time.monotonic()

    with pytest.raises(Stop) as stopped:
        load(b"SELECT pg_sleep(60);\n", socket_path, role, "sleepy", 1.0)

    assert time.monotonic() - started < 15
    assert stopped.value.result == {"result": "budget", "line": 1, "budget": "statement_timeout",
                                    "limit": 1.0}
    assert pg.query("sleepy", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' "
                              "AND state = 'active'") == [("0",)]


def test_printed_rows_are_dropped_not_kept(pg, tmp_path, monkeypatch):
    """~300 MiB of printed rows through restore_dump with a 256 MiB parse budget."""
    dump = tmp_path / "loud.sql"
    dump.write_text("SELECT repeat('x', 1048576) FROM generate_series(1, 300);\n")
    monkeypatch.setattr(pg, "budgets", LoadBudgets(parse_memory_bytes=256 << 20))

    restored = pg.restore_dump(dump, "loud")

    assert restored.dump_format == "plain"


def test_a_dump_past_the_parse_memory_budget_fails_naming_it(pg, tmp_path, monkeypatch):
    """Issue 20: 12 MiB of "{" took 1.9 GiB of the harness's memory; now the sandbox's."""
    dump = tmp_path / "braces.sql"
    dump.write_bytes(b"SELECT " + b"{" * (12 << 20) + b";\n")
    monkeypatch.setattr(pg, "budgets", LoadBudgets(parse_memory_bytes=256 << 20))

    with pytest.raises(PostgresError) as failed:
        pg.restore_dump(dump, "braces")

    assert "scratch.budgets.parse_memory" in str(failed.value)
    assert str(dump) in str(failed.value)
