"""Hostile plain-SQL dumps through the code the Borg drill uses: ``ThrowawayPostgres.restore_dump``.

One real, sandboxed server for the whole module (starting one per dump would cost seconds
each). Every dump must be refused with a PostgresError that names the dump and the line;
the marker file that executed content would create never appears, and no line of
/etc/shadow reaches the message.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from restoredrill.checks.postgres import PostgresError, ThrowawayPostgres, find_bin_dir
from tests.hostile.conftest import Secrets
from tests.hostile.sql_inputs import ALL, SqlInput

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    try:
        find_bin_dir()
    except PostgresError as exc:
        pytest.fail(str(exc), pytrace=False)       # missing PostgreSQL is a failure, never a skip
    with ThrowawayPostgres(tmp_path_factory.mktemp("hostile-pg") / "pg") as pg:
        yield pg


@pytest.fixture
def marker_dir(server):
    """The server's socket directory: the one folder that every sandboxed client (the old psql
    load and today's loader) could write and the test can see (the sandbox's /tmp is its own
    tmpfs, so a marker in the host's /tmp could never appear)."""
    folder = server.socket_dir
    yield folder
    for marker in folder.glob("*.marker"):
        marker.unlink()


def _names_line(message: str, name: str, lines: int | tuple[int, ...]) -> bool:
    """psql's own errors say ``FILE:LINE:``; the scanner's refusals say ``line N``."""
    return any(f"line {n}" in message or f"{name}:{n}:" in message
               for n in (lines if isinstance(lines, tuple) else (lines,)))


@pytest.mark.parametrize("item", ALL, ids=[i.id for i in ALL])
def test_hostile_dump_is_refused_and_nothing_runs(server, marker_dir: Path, tmp_path: Path, item: SqlInput,
                                                 hostile_secrets: Secrets):
    marker = marker_dir / f"{item.id}.marker"
    dump = tmp_path / f"{item.id}.sql"
    dump.write_bytes(item.text.replace("{M}", str(marker)).encode("utf-8", "surrogateescape"))
    database = "d_" + re.sub(r"[^a-z0-9]", "_", item.id)[:40]
    with pytest.raises(PostgresError) as caught:
        server.restore_dump(dump, database)
    message = str(caught.value)
    assert not marker.exists(), f"{item.id}: the dump ran a program or wrote a file"
    assert dump.name in message, message
    if item.line is not None:
        assert _names_line(message, dump.name, item.line), f"line {item.line} not named:\n{message}"
    for word in item.words:
        assert word in message, message
    assert all(n.decode() not in message for n in hostile_secrets.needles()), message
    assert server.pid is not None, "the server did not survive the dump"
