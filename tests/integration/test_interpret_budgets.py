"""Issue 20 §2: every interpretation of restored data has a budget; exceeding it fails that
check naming the budget. Real sandbox, real PostgreSQL, real disk."""
from __future__ import annotations

import os
import resource

import pytest

from restoredrill import sandbox
from restoredrill.checks.budgets import InterpretBudgets
from restoredrill.checks.postgres import PostgresError
from tests.integration.test_postgres_loader import pg  # noqa: F401 (the module's throwaway server)

pytestmark = pytest.mark.integration
PY = "/usr/bin/python3"


def _run(code: str, **kwargs):
    return sandbox.run_sandboxed([PY, "-I", "-S", "-c", code], timeout=60, **kwargs)


def test_the_sandboxs_ram_backed_tmp_is_sized():
    """Issue 20: a command in the sandbox wrote 4.5 GB into its RAM-backed /tmp."""
    code = ("import sys\ntry:\n    open('/tmp/fill', 'wb').write(bytes(64 << 20))\n    print('written')\n"
            "except OSError as exc:\n    print('refused', exc.errno)\n")
    result = _run(code, limits=sandbox.Limits(tmpfs_bytes=8 << 20))
    assert result.stdout.strip() == "refused 28"           # ENOSPC at 8 MiB
    assert _run(code.replace("/tmp/", "/dev/shm/"), limits=sandbox.Limits(tmpfs_bytes=8 << 20)
                ).stdout.strip() == "refused 28"


def test_printed_output_past_the_limit_stops_the_program_without_keeping_it():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(sandbox.BudgetExceeded) as over:
        _run("import sys\nfor _ in range(1024): sys.stdout.write('x' * (1 << 20))", stdout_limit=1 << 20)
    assert over.value.budget == "output" and "printed more than 1048576 bytes" in str(over.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 << 10   # KiB: < 64 MiB


def test_stderr_is_kept_as_a_bounded_tail():
    result = _run("import sys\nfor i in range(200000): sys.stderr.write(f'line {i}\\n')\n", check=False)
    assert len(result.stderr) <= 64 << 10 and result.stderr.rstrip().endswith("line 199999")


def test_a_watch_names_the_budget_it_saw_exceeded():
    with pytest.raises(sandbox.BudgetExceeded) as over:
        _run("import time; time.sleep(30)", watch=lambda: ("min_free", "left 0 bytes free"))
    assert over.value.budget == "min_free" and "left 0 bytes free" in str(over.value)


def test_a_dump_that_fills_the_disk_fails_naming_min_free(pg, tmp_path, monkeypatch):
    """Issue 20: a 612-byte dump (STORAGE EXTERNAL, repeat over generate_series) wrote 2.6 GiB
    outside scratch and its min_free check. Here min_free is set 96 MiB below what is free
    now and the dump writes 512 MiB: the load stops at the budget."""
    info = os.statvfs(pg.root_dir)
    free = info.f_bavail * info.f_frsize
    monkeypatch.setattr(pg, "budgets", InterpretBudgets(min_free_bytes=free - (96 << 20)))
    dump = tmp_path / "fill.sql"
    dump.write_text("CREATE TABLE big (v text);\nALTER TABLE big ALTER COLUMN v SET STORAGE EXTERNAL;\n"
                    "INSERT INTO big SELECT repeat('x', 1048576) FROM generate_series(1, 512);\n")

    with pytest.raises(PostgresError) as failed:
        pg.restore_dump(dump, "fill")

    assert "scratch.min_free" in str(failed.value) and str(dump) in str(failed.value)


def test_pg_sleep_in_a_dump_fails_naming_statement_timeout(pg, tmp_path, monkeypatch):
    monkeypatch.setattr(pg, "budgets", InterpretBudgets(statement_seconds=1.0))
    dump = tmp_path / "sleepy.sql"
    dump.write_text("CREATE TABLE t (a int);\nSELECT pg_sleep(600);\n")

    with pytest.raises(PostgresError) as failed:
        pg.restore_dump(dump, "sleepy")

    assert "scratch.budgets.statement_timeout (1 s)" in str(failed.value) and "line 2" in str(failed.value)


def test_a_load_past_the_check_budget_fails_naming_it(pg, tmp_path, monkeypatch):
    monkeypatch.setattr(pg, "budgets", InterpretBudgets(statement_seconds=60.0, check_seconds=3.0))
    dump = tmp_path / "slow.sql"
    dump.write_text("".join("SELECT pg_sleep(1);\n" for _ in range(10)))

    with pytest.raises(PostgresError) as failed:
        pg.restore_dump(dump, "slow")

    assert "scratch.budgets.check_timeout (3 s)" in str(failed.value)


def test_query_output_past_the_budget_fails_naming_it(pg, tmp_path, monkeypatch):
    dump = tmp_path / "rows.sql"
    dump.write_text("CREATE TABLE r (v text);\nINSERT INTO r SELECT repeat('y', 1000) FROM generate_series(1, 5000);\n")
    pg.restore_dump(dump, "rows")
    monkeypatch.setattr(pg, "budgets", InterpretBudgets(output_bytes=1 << 20))

    with pytest.raises(PostgresError) as failed:
        pg.query("rows", "SELECT v FROM r")

    assert "scratch.budgets.output (1048576 bytes)" in str(failed.value)


def test_a_failing_query_never_shows_the_restored_rows_it_printed(pg, tmp_path):
    """Issue 20 §4: restored rows reached the failure message through psql's stdout."""
    dump = tmp_path / "secret.sql"
    dump.write_text("CREATE TABLE s (v text);\nINSERT INTO s VALUES ('RESTORED-ROW-SECRET');\n")
    pg.restore_dump(dump, "secretrows")

    with pytest.raises(PostgresError) as failed:
        pg.query("secretrows", "SELECT v FROM s; SELECT 1/0")

    assert "RESTORED-ROW-SECRET" not in str(failed.value)
    assert "22012" in str(failed.value)        # division_by_zero: the SQLSTATE is shown


def test_a_42501_inside_restored_output_gives_no_privilege_hint(pg, tmp_path):
    """Issue 20 §4: the hint follows the server's SQLSTATE, not text restored data printed."""
    dump = tmp_path / "fake.sql"
    dump.write_text("CREATE TABLE t (a int);\nSELECT '42501 must be owner of' AS x;\nSELECT 1/0;\n")

    with pytest.raises(PostgresError) as failed:
        pg.restore_dump(dump, "fakehint")

    assert "22012" in str(failed.value) and "hint:" not in str(failed.value)


def test_default_budgets_fit_a_small_runner():
    from restoredrill.inventory.model import Scratch
    budgets = InterpretBudgets.from_scratch(Scratch())
    assert budgets == InterpretBudgets()
    assert budgets.parse_memory_bytes + budgets.output_bytes + 2 * budgets.tmpfs_bytes <= 2 << 30
