"""ThrowawayPostgres against the real PostgreSQL server binaries."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from restoredrill.checks.postgres import (PostgresError, ThrowawayPostgres, UnsafeDumpError,
                                          find_bin_dir)
from restoredrill.execute import CommandError
from restoredrill.lab.storagebox import descendants

pytestmark = pytest.mark.integration

CANARY_DUMP = """\
SET standard_conforming_strings = on;
CREATE TABLE public.canary (id integer PRIMARY KEY, note text);
INSERT INTO public.canary VALUES (1, 'restoredrill canary; it''s \\! only text');
COPY public.canary (id, note) FROM stdin;
2	copy line starting with \\\\! stays data
\\.
CREATE FUNCTION public.answer() RETURNS integer LANGUAGE sql AS $body$ SELECT 42 $body$;
"""


@pytest.fixture(scope="module", autouse=True)
def postgres_installed():
    """Fail (never skip) with a clear message when PostgreSQL is missing."""
    try:
        find_bin_dir()
    except PostgresError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def pg(tmp_path):
    with ThrowawayPostgres(tmp_path / "pg") as server:
        yield server


@pytest.fixture
def canary_dump(tmp_path) -> Path:
    path = tmp_path / "canary.sql"
    path.write_text(CANARY_DUMP)
    return path


@pytest.fixture
def marker() -> Path:
    """A file that an unsafe dump would create if it ran a program."""
    path = Path(f"/tmp/restoredrill-pwned-{uuid.uuid4().hex}")
    yield path
    path.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_plain_dump_restores_as_an_unprivileged_role(pg, canary_dump):
    restored = pg.restore_dump(canary_dump, "shop")

    rows = pg.query("shop", "SELECT id, note FROM canary ORDER BY id")
    powers = pg.query("shop", "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                              "WHERE rolname = current_user")
    owner = pg.query("shop", "SELECT pg_get_userbyid(datdba) FROM pg_database "
                             "WHERE datname = current_database()")

    assert pg.startup_seconds < 30
    assert restored.dump_format == "plain" and restored.role == "restore_shop"
    assert rows == [("1", "restoredrill canary; it's \\! only text"),
                    ("2", "copy line starting with \\! stays data")]
    assert pg.query("shop", "SELECT public.answer()") == [("42",)]
    assert powers == [("f", "f", "f")]
    assert owner == [("restore_shop",)]


def test_query_is_read_only(pg, canary_dump):
    pg.restore_dump(canary_dump, "shop")

    with pytest.raises(PostgresError) as refused:
        pg.query("shop", "INSERT INTO canary VALUES (3, 'no')")

    assert "ERROR:  25006" in str(refused.value)    # read_only_sql_transaction
    assert pg.query("shop", "SELECT count(*) FROM canary") == [("2",)]


def test_broken_dump_fails_naming_the_file_and_the_error(pg, tmp_path):
    broken = tmp_path / "broken.sql"
    broken.write_text("CREATE TABLE ok (id int);\nCREATE TABL oops (id int);\nCREATE TABLE never (id int);\n")

    with pytest.raises(PostgresError) as failed:
        pg.restore_dump(broken, "broken")

    message = str(failed.value)
    assert f"{broken}:2: ERROR:  42601" in message          # file, line, SQLSTATE syntax_error
    assert "oops" not in message and "TABL" not in message  # the dump's content is never quoted
    assert pg.query("broken", "SELECT count(*) FROM pg_tables WHERE tablename = 'never'") == [("0",)]


@pytest.mark.parametrize("dangerous_line", [
    "\\! touch {marker}",
    "SELECT 1; \\! touch {marker}",
    "\\o |touch {marker}",
    "SELECT 1 \\g |touch {marker}",
    "\\copy (SELECT 1) TO PROGRAM 'touch {marker}'",
    "\\echo `touch {marker}`",
    "\\encoding UTF8 \\! touch {marker}",
    "\\connect - postgres",
])
def test_dump_with_program_running_meta_command_is_refused(pg, tmp_path, marker, dangerous_line):
    dump = tmp_path / "evil.sql"
    dump.write_text("CREATE TABLE t (id int);\n" + dangerous_line.format(marker=marker) + "\n")

    with pytest.raises(UnsafeDumpError) as refused:
        pg.restore_dump(dump, "evil")

    assert str(dump) in str(refused.value) and "line 2" in str(refused.value)
    assert not marker.exists()


def test_copy_from_program_is_refused_by_the_scan_and_by_the_server(pg, tmp_path, canary_dump, marker):
    dump = tmp_path / "copy_program.sql"
    dump.write_text(f"CREATE TABLE t (line text);\nCOPY t FROM PROGRAM 'touch {marker}';\n")
    pg.restore_dump(canary_dump, "copyprog")

    with pytest.raises(PostgresError) as refused:
        pg.restore_dump(dump, "copyprog_dump")
    with pytest.raises(CommandError) as by_server:  # should a dump get past the scan
        pg._run([pg._bin("psql"), "-X", "-v", "ON_ERROR_STOP=1", *pg._client("restore_copyprog", "copyprog"),
                 "-c", f"COPY canary (note) FROM PROGRAM 'touch {marker}'"], timeout=60)

    assert str(dump) in str(refused.value) and "program" in str(refused.value).lower()
    assert "pg_execute_server_program" in by_server.value.tail
    assert not marker.exists()


def test_real_pg_dump_plain_output_restores(pg, canary_dump, tmp_path):
    pg.restore_dump(canary_dump, "origin")
    plain = pg.dump_database("origin", tmp_path / "origin.sql", fmt="plain")

    restored = pg.restore_dump(plain, "copy_plain")

    assert "\\restrict " in plain.read_text()  # pg_dump >= 15.14 wraps dumps in \restrict
    assert restored.dump_format == "plain"
    assert pg.query("copy_plain", "SELECT count(*) FROM canary") == [("2",)]


@pytest.mark.parametrize("fmt", ["custom", "tar"])
def test_archive_format_dump_restores(pg, canary_dump, tmp_path, fmt):
    pg.restore_dump(canary_dump, "origin")
    archive = pg.dump_database("origin", tmp_path / f"origin.{fmt}", fmt=fmt)

    restored = pg.restore_dump(archive, "copy_archive")

    assert restored.dump_format == fmt
    if fmt == "custom":
        assert archive.read_bytes().startswith(b"PGDMP")
    assert pg.query("copy_archive", "SELECT note FROM canary WHERE id = 1") == [
        ("restoredrill canary; it's \\! only text",)]


def test_owner_and_privilege_statements_are_left_out_like_no_owner(pg, tmp_path):
    """A default pg_dump (with OWNER TO and GRANT) restores as an unprivileged role."""
    dump = tmp_path / "owned.sql"
    dump.write_text("CREATE TABLE public.t (id int, note text);\n"
                    "ALTER TABLE public.t OWNER TO postgres;\n"
                    "COPY public.t (id, note) FROM stdin;\n"
                    "1\tGRANT ALL ON x TO y;\n"
                    "\\.\n"
                    "GRANT ALL ON TABLE public.t TO postgres;\n"
                    "REVOKE ALL ON SCHEMA public FROM PUBLIC;\n")

    restored = pg.restore_dump(dump, "owned")

    assert restored.skipped_statements == 3
    assert pg.query("owned", "SELECT note FROM t") == [("GRANT ALL ON x TO y;",)]


def test_a_statement_the_role_may_not_run_fails_naming_the_dump(pg, tmp_path):
    dump = tmp_path / "super.sql"
    # older pg_dump versions write this; only the extension's owner may run it
    dump.write_text("CREATE TABLE public.t (id int);\n"
                    "COMMENT ON EXTENSION plpgsql IS 'PL/pgSQL procedural language';\n")

    with pytest.raises(PostgresError) as failed:
        pg.restore_dump(dump, "superonly")

    assert f"{dump}:2: ERROR:  42501" in str(failed.value)  # insufficient_privilege, line 2
    assert "hint: the dump is loaded as an unprivileged role" in str(failed.value)
    assert "PL/pgSQL" not in str(failed.value)


def test_stop_leaves_no_postgres_process(tmp_path):
    server = ThrowawayPostgres(tmp_path / "pg").start()
    postmaster = server.pid
    backends = [pid for pid, _ in descendants(postmaster)]
    root = server.root_dir

    server.stop()

    assert backends, "a running postmaster has background processes"
    assert not alive(postmaster)
    assert [pid for pid in backends if alive(pid)] == []
    assert not root.exists()


def test_directory_format_dump_restores(pg, canary_dump, tmp_path):
    pg.restore_dump(canary_dump, "origin")
    directory = pg.dump_database("origin", tmp_path / "origin.dir", fmt="directory")

    restored = pg.restore_dump(directory, "copy_dir")

    assert restored.dump_format == "directory" and (directory / "toc.dat").is_file()
    assert pg.query("copy_dir", "SELECT count(*) FROM canary") == [("2",)]


@pytest.fixture
def secret() -> Path:
    """A harness secret at a path the server's kernel uid could read on the host (0644)."""
    path = Path(f"/tmp/restoredrill-secret-{uuid.uuid4().hex}")
    path.write_text("pbs-token-value\n")
    path.chmod(0o644)
    yield path
    path.unlink()


def superuser_sql(pg, sql: str) -> str:
    """What a dump could do if it ever became superuser (a server privilege-escalation bug)."""
    try:
        pg._admin_sql(sql)
    except CommandError as exc:
        return exc.tail
    return "succeeded"


def test_server_cannot_reach_harness_secrets_even_as_superuser(pg, secret, marker):
    copy_from_file = superuser_sql(pg, f"CREATE TABLE leak (line text); COPY leak FROM '{secret}'")
    read_file = superuser_sql(pg, f"SELECT pg_read_file('{secret}')")
    to_program = superuser_sql(pg, f"COPY (SELECT 1) TO PROGRAM 'cat {secret} > {marker}'")

    assert "No such file or directory" in copy_from_file
    assert "No such file or directory" in read_file
    assert "failed" in to_program
    assert f"cat: {secret}: No such file or directory" in pg.log_tail()  # the program's stderr
    assert not marker.exists()                          # its /tmp is not the host's /tmp


def test_dump_that_is_a_symlink_is_refused_not_followed(pg, secret, tmp_path):
    link = tmp_path / "dump.sql"
    link.symlink_to(secret)

    with pytest.raises(PostgresError) as refused:
        pg.restore_dump(link, "linked")

    assert str(link) in str(refused.value) and "symbolic link" in str(refused.value)
    assert "pbs-token-value" not in str(refused.value)


def test_dump_that_is_a_fifo_is_refused_without_blocking(pg, tmp_path):
    fifo = tmp_path / "dump.sql"
    os.mkfifo(fifo)

    with pytest.raises(PostgresError) as refused:
        pg.restore_dump(fifo, "fifo")

    assert str(fifo) in str(refused.value) and "a FIFO" in str(refused.value)


def test_directory_dump_with_a_symlinked_member_is_refused(pg, canary_dump, secret, tmp_path):
    pg.restore_dump(canary_dump, "origin")
    directory = pg.dump_database("origin", tmp_path / "origin.dir", fmt="directory")
    member = next(p for p in directory.iterdir() if p.name != "toc.dat")
    member.unlink()
    member.symlink_to(secret)

    with pytest.raises(PostgresError) as refused:
        pg.restore_dump(directory, "dirlink")

    assert str(member) in str(refused.value) and "symbolic link" in str(refused.value)


def test_archive_dump_failure_names_entry_and_sqlstate_never_the_dump_text(pg, canary_dump, tmp_path):
    """pg_restore prints the failed SQL ("Command was: ...") and the server's message, both
    quoting the dump: only the TOC entry's number and the logged SQLSTATE are shown."""
    pg.restore_dump(canary_dump, "origin")
    # an object only a superuser may create, named like a secret, in the source database
    pg._run([pg._bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *pg._client("postgres", "origin"), "-c",
             'CREATE FUNCTION public."fn-tok-4f1e"() RETURNS event_trigger LANGUAGE plpgsql AS '
             '$$BEGIN END$$; CREATE EVENT TRIGGER "trig-tok-4f1e" ON ddl_command_start '
             'EXECUTE FUNCTION public."fn-tok-4f1e"()'], timeout=60, as_superuser=True)
    archive = pg.dump_database("origin", tmp_path / "origin.custom", fmt="custom")

    with pytest.raises(PostgresError) as failed:
        pg.restore_dump(archive, "copy_event")

    message = str(failed.value)
    assert "custom format" in message and "TOC entry" in message and "ERROR:  42501" in message
    assert "tok-4f1e" not in message and "EVENT TRIGGER" not in message and "Command was" not in message
