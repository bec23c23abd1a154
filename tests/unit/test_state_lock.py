"""state.db: a database another run holds is waited for and never taken for corrupt;
only a damaged file is moved aside.

The holder is a real second process with a real SQLite lock (``BEGIN EXCLUSIVE``), as a
second restoredrill run (or ``sqlite3 state.db`` left open in a shell) would hold it.
"""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from restoredrill.state import StateLocked, StateStore

HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("INSERT INTO rotations VALUES ('holder', 'k', 'v', 'now')")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def hold_lock(db: Path, seconds: float) -> subprocess.Popen:
    """A second process holding an exclusive transaction on ``db`` for ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), str(seconds)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def seeded_store(state_dir: Path, *, wal: bool = True) -> Path:
    """A state.db holding one rotation (what a lost file would take with it)."""
    store = StateStore(state_dir)
    store.put("borg:app", "verify_data", "3")
    if not wal:          # a database some tool switched back to a rollback journal
        with sqlite3.connect(store.path, isolation_level=None) as conn:
            conn.execute("PRAGMA journal_mode = DELETE")
    return store.path


@pytest.mark.parametrize("wal", [True, False], ids=["wal", "rollback-journal"])
def test_a_locked_database_fails_clearly_and_is_left_in_place(tmp_path, wal):
    db = seeded_store(tmp_path, wal=wal)
    holder = hold_lock(db, 30)
    try:
        started = time.monotonic()
        with pytest.raises(StateLocked) as raised:
            StateStore(tmp_path, busy_timeout=1.0)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert waited >= 0.9, "the busy timeout was not waited for"
    message = str(raised.value)
    assert str(db) in message and "locked" in message and "--state-dir" in message
    assert not list(tmp_path.glob("state.db.corrupt-*")), "a locked database was moved aside"
    assert StateStore(tmp_path).get("borg:app", "verify_data") == "3"


def test_a_lock_released_within_the_busy_timeout_is_waited_for(tmp_path):
    db = seeded_store(tmp_path)
    holder = hold_lock(db, 0.5)
    try:
        store = StateStore(tmp_path, busy_timeout=20.0)
    finally:
        holder.wait(timeout=30)
    assert store.notices == []
    assert store.get("borg:app", "verify_data") == "3"
    assert store.get("holder", "k") == "v", "the holder's transaction was lost"
    assert not list(tmp_path.glob("state.db.corrupt-*"))


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path):
    (tmp_path / "state.db").write_bytes(b"this is not a database" * 200)
    store = StateStore(tmp_path, busy_timeout=1.0)
    assert len(list(tmp_path.glob("state.db.corrupt-*"))) == 1
    assert store.notices and "unreadable" in store.notices[0]
    store.put("s", "k", "v")
    assert store.get("s", "k") == "v"


def test_a_damaged_database_that_opens_is_moved_aside(tmp_path):
    """A valid header over damaged pages: opens, but fails ``PRAGMA quick_check`` (or any read)."""
    db = seeded_store(tmp_path)
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")          # everything in the main file
        conn.executemany("INSERT INTO results VALUES ('r', 'd', ?, 'passed', 1, '{}', 'now')",
                         [(f"case-{i}-" + "x" * 200,) for i in range(400)])
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    for number in range(3, len(data) // page):                # leave page 1 (header, schema) alone
        data[number * page:number * page + 8] = b"\x0d\xff\xff\xff\xff\xff\xff\xff"
    db.write_bytes(bytes(data))
    store = StateStore(tmp_path, busy_timeout=1.0)
    assert len(list(tmp_path.glob("state.db.corrupt-*"))) == 1
    assert store.notices and "unreadable" in store.notices[0]
