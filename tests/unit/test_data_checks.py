"""Data checks on a hostile extract: paths never leave it, links and special files are never
followed or opened, and no restored byte reaches a message or evidence (unless opted in).

Real files, links, FIFOs, device nodes and sockets in tmp dirs; a real SQLite and a real
throwaway PostgreSQL. The secret is a fresh random value per test, kept outside the extract.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import secrets
import socket
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from restoredrill.checks.budgets import InterpretBudgets
from restoredrill.checks import data
from restoredrill.checks.errors import CheckFailed
from restoredrill.inventory.model import PostgresDump

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def secret() -> str:
    return f"canary tok-{secrets.token_hex(16)}"


@pytest.fixture
def outside(tmp_path, secret) -> Path:
    """A directory beside the extract holding the secret (a token file on the runner)."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "token").write_text(secret + "\n")
    return folder


@pytest.fixture
def extract(tmp_path) -> Path:
    root = tmp_path / "extract"
    (root / "app" / "db").mkdir(parents=True)
    (root / "app" / "photo.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def leaks(secret: str, failure: CheckFailed | None = None, evidence: dict | None = None) -> bool:
    token = secret.split("tok-")[1]
    texts = [str(failure)] if failure else []
    texts += [str(v) for v in (evidence or {}).values()]
    return any(token in text or token[:12] in text for text in texts)


@pytest.mark.parametrize("how", ["absolute", "relative", "chained", "parent"])
@pytest.mark.parametrize("pattern", ["^canary", "^no-such-value$"])
def test_canary_reached_through_a_link_is_refused_and_never_read(extract, outside, secret, how, pattern):
    canary = extract / "app" / ".canary"
    if how == "absolute":
        canary.symlink_to(outside / "token")
    elif how == "relative":
        canary.symlink_to("../../outside/token")
    elif how == "chained":
        (extract / "app" / "hop").symlink_to(outside / "token")
        canary.symlink_to("hop")
    else:                       # a symlinked parent directory: app/conf -> outside
        (extract / "app" / "conf").symlink_to(outside)
        canary = extract / "app" / "conf" / "token"
    relative = canary.relative_to(extract).as_posix()
    with pytest.raises(CheckFailed) as info:
        data.check_canary(extract, relative, None, pattern)
    assert "symbolic link" in str(info.value)
    assert not leaks(secret, info.value)


def test_canary_mismatch_shows_fingerprint_length_and_no_content(extract, secret):
    (extract / "app" / ".canary").write_text(secret + "\n")
    with pytest.raises(CheckFailed) as info:
        data.check_canary(extract, "app/.canary", "canary 2024", None)
    message = str(info.value)
    assert "sha256:" in message and f"{len(secret)} bytes" in message and "did not match" in message
    assert "'canary 2024'" in message           # the expected value comes from the inventory
    assert not leaks(secret, info.value)


def test_canary_pass_keeps_no_value_in_evidence(extract, secret):
    (extract / "app" / ".canary").write_text(secret + "\n")
    facts = data.check_canary(extract, "app/.canary", None, "^canary tok-")
    assert facts["canary_matched"] is True and facts["canary_bytes"] == len(secret)
    assert facts["canary_sha256"].startswith("sha256:") and len(facts["canary_sha256"]) == 19
    assert not leaks(secret, evidence=facts)


def test_canary_opt_in_shows_at_most_80_printable_characters(extract):
    value = "canary \x1b[31mred\u202e" + "x" * 200
    (extract / "app" / ".canary").write_text(value)
    with pytest.raises(CheckFailed) as info:
        data.check_canary(extract, "app/.canary", "canary", None, show_found=True)
    text = ast.literal_eval(str(info.value).split("content ", 1)[1])     # the repr of the shown text
    assert len(text) == 80 and text.isprintable() and text.startswith("canary ?[31mred?xx")
    facts = data.check_canary(extract, "app/.canary", None, "^canary", show_found=True)
    assert facts["canary_shown"] == text


def test_hard_link_to_a_secret_is_a_regular_file_whose_content_is_never_shown(extract, outside, secret):
    """Borg only links archive members to each other; a hard link made on the same file system
    by someone else reads as a regular file. It is read, never quoted, even with show_found."""
    os.link(outside / "token", extract / "app" / ".canary")
    for show in (False, True):
        with pytest.raises(CheckFailed) as info:
            data.check_canary(extract, "app/.canary", "canary 2024", None, show_found=show)
        assert not leaks(secret, info.value)
    assert "more than one link" in str(info.value)
    assert not leaks(secret, evidence=data.check_canary(extract, "app/.canary", None, "^canary", show_found=True))


def special_files(extract: Path) -> dict[str, str]:
    """A FIFO, a character device (/dev/zero's numbers) and a listening Unix socket."""
    os.mkfifo(extract / "app" / "fifo")
    os.mknod(extract / "app" / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(extract / "app" / "sock"))
    return {"fifo": "a FIFO", "zero": "a character device", "sock": "a socket"}


def run_briefly(call, seconds: float = 10.0):
    """Run call in a thread: a check that opened a FIFO would block forever."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as exc:        # noqa: BLE001 - handed to the test
            outcome["error"] = exc
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the check blocked (it opened a FIFO or a device)"
    return outcome


def test_special_files_are_refused_by_kind_and_never_opened(extract):
    kinds = special_files(extract)
    for name, kind in kinds.items():
        path = f"app/{name}"
        for call in (lambda: data.check_canary(extract, path, None, "x"),          # noqa: B023 - run at once
                     lambda: data.check_sqlite(extract, path, work_dir=extract.parent)):   # noqa: B023
            outcome = run_briefly(call)
            assert isinstance(outcome.get("error"), CheckFailed), outcome
            assert kind in str(outcome["error"]) and "never opened" in str(outcome["error"])


def test_file_count_skips_links_and_special_files_and_says_so(extract, outside):
    special_files(extract)
    (extract / "app" / "link").symlink_to(outside / "token")
    (extract / "app" / "dirlink").symlink_to(outside)
    facts = data.check_min_files(extract, 1)
    assert facts == {"files": 1, "symlinks_skipped": 2, "special_files_skipped": 3}


def test_spot_check_never_opens_a_fifo_or_follows_a_link_in_the_source(extract, tmp_path, outside, secret):
    """The live source is hostile too: its links and FIFOs are counted, never followed or opened,
    and a sampled file the source only has as a link differs (it is not compared with the secret)."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "photo.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (source / "a.txt").symlink_to(outside / "token")
    os.mkfifo(source / "b.txt")
    outcome = run_briefly(lambda: data.spot_check(extract, source, "app", sample=10, count_tolerance=0.0,
                                                  mismatch_tolerance=0.0, seed=1))
    assert outcome.get("value", {}).get("source_symlinks_skipped") == 1, outcome
    assert outcome["value"]["source_special_files_skipped"] == 1 and outcome["value"]["sampled"] == 1
    (extract / "app" / "a.txt").write_text(secret + "\n")
    outcome = run_briefly(lambda: data.spot_check(extract, source, "app", sample=10, count_tolerance=5.0,
                                                  mismatch_tolerance=0.0, seed=1))
    failure = outcome.get("error")
    assert isinstance(failure, CheckFailed), outcome
    assert "1 differ: app/a.txt" in str(failure) and not leaks(secret, failure)


def test_spot_check_archive_path_through_a_link_is_refused(extract, tmp_path, outside):
    source = tmp_path / "source"
    source.mkdir()
    (source / "token").write_text("x")
    (extract / "srv").symlink_to(outside)
    with pytest.raises(CheckFailed) as info:
        data.spot_check(extract, source, "srv", sample=1, count_tolerance=1.0, mismatch_tolerance=0.0, seed=1)
    assert "symbolic link" in str(info.value)


def test_paths_present_counts_links_but_never_goes_through_them(extract, outside):
    (extract / "app" / "dangling").symlink_to("/nonexistent/restoredrill")
    assert data.check_paths_present(extract, ["app/photo.jpg", "app/dangling"]) == {"paths_checked": 2}
    (extract / "etc").symlink_to(outside)
    with pytest.raises(CheckFailed) as info:
        data.check_paths_present(extract, ["etc/token", "app/none"])
    assert "missing: app/none" in str(info.value) and "etc is a symbolic link" in str(info.value)


def test_absolute_and_dotdot_paths_are_refused(extract, outside):
    for path in ("/app/photo.jpg", "app/../../outside/token", "../outside/token"):
        with pytest.raises(CheckFailed) as info:
            data.check_canary(extract, path, None, "x")
        assert "absolute" in str(info.value) or "'..'" in str(info.value), path


def make_db(path: Path, secret: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes(body TEXT)")
        conn.execute("INSERT INTO notes VALUES (?)", (secret,))
    conn.close()


def test_sqlite_through_a_link_is_refused(extract, outside, secret):
    make_db(outside / "real.sqlite", secret)
    (extract / "app" / "db" / "app.sqlite").symlink_to(outside / "real.sqlite")
    with pytest.raises(CheckFailed) as info:
        data.check_sqlite(extract, "app/db/app.sqlite", work_dir=extract.parent)
    assert "symbolic link" in str(info.value)


def test_sqlite_unreadable_schema_is_named_not_quoted(extract, secret):
    """SQLite's own error text quotes the schema it could not parse: it is not shown."""
    db = extract / "app" / "db" / "app.sqlite"
    make_db(db, secret)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA writable_schema=ON")
        conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'notes'",
                     (f"CREATE TABLE notes(body TEXT) {secret.split()[1]} oops",))
    conn.close()
    with pytest.raises(CheckFailed) as info:
        data.check_sqlite(extract, "app/db/app.sqlite", work_dir=extract.parent)
    assert "cannot be read; content not shown" in str(info.value) and not leaks(secret, info.value)
    with pytest.raises(CheckFailed) as info:
        data.check_sqlite(extract, "app/db/app.sqlite", work_dir=extract.parent, show_found=True)
    assert "malformed database schema" in str(info.value)


def test_sqlite_integrity_problems_are_counted_unless_opted_in(extract):
    db = extract / "app" / "db" / "app.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t(a)")
        conn.execute("INSERT INTO t VALUES (NULL)")
    conn.close()
    assert data.check_sqlite(extract, "app/db/app.sqlite", work_dir=extract.parent) == {"sqlite_tables": 1,
                                                                                       "checked_tables": 1}
    assert sorted(p.name for p in db.parent.iterdir()) == ["app.sqlite"]             # no journal, no WAL
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA writable_schema=ON")
        conn.execute("UPDATE sqlite_master SET sql = 'CREATE TABLE t(a NOT NULL)' WHERE name = 't'")
    conn.close()
    with pytest.raises(CheckFailed) as info:
        data.check_sqlite(extract, "app/db/app.sqlite", work_dir=extract.parent)
    assert "not ok: 1 problems" in str(info.value) and "t.a" not in str(info.value)
    with pytest.raises(CheckFailed) as info:
        data.check_sqlite(extract, "app/db/app.sqlite", work_dir=extract.parent, show_found=True)
    assert "first: 'NULL value in t.a'" in str(info.value)


def drill_module():
    spec = importlib.util.spec_from_file_location("restoredrill_drill_borg", ROOT / "drills" / "test_borg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_postgres_dump_that_is_a_link_is_refused_before_any_server_starts(extract, outside, tmp_path):
    (outside / "dump.sql").write_text("SELECT 1;\n")
    (extract / "app" / "db" / "app.sql").symlink_to(outside / "dump.sql")
    spec = PostgresDump(path="app/db/app.sql", database="app")
    with pytest.raises(CheckFailed) as info:
        drill_module().restore_postgres_dump(extract, spec, InterpretBudgets())
    assert "a PostgreSQL dump" in str(info.value) and "symbolic link" in str(info.value)
    assert not list(extract.parent.glob("throwaway-postgres-*"))


def test_postgres_query_mismatch_shows_the_expected_value_and_only_a_fingerprint_found(extract, secret, tmp_path):
    """Real throwaway PostgreSQL: the row found is the secret; the expected value is shown."""
    (extract / "app" / "db" / "app.sql").write_text(
        "CREATE TABLE public.t (v text);\n"
        f"INSERT INTO public.t VALUES ('{secret}');\n")
    spec = PostgresDump.model_validate({"path": "app/db/app.sql", "database": "app", "queries": [
        {"sql": "SELECT v FROM t", "expect": "lab-canary-v1"}]})
    with pytest.raises(CheckFailed) as info:
        drill_module().restore_postgres_dump(extract, spec, InterpretBudgets())
    message = str(info.value)
    assert "'lab-canary-v1'" in message and f"{len(secret)} bytes" in message and "did not match" in message
    assert not leaks(secret, info.value)
