"""State that survives between runs, in one SQLite file under ``--state-dir``.

Tables:
- ``runs``: one row per run (id, start, end, mode, verdict).
- ``rotations``: small named counters and cursors per scope, e.g. how many runs ago a
  repository was last fully read (``borg:<repo>`` / ``verify_data``).
- ``results``: one row per drill case and run (outcome, seconds, evidence as JSON),
  the history that reports and trends read.

Concurrent pytest-xdist workers share the file (WAL, busy timeout). A file that is
not a database, or fails ``PRAGMA quick_check``, is moved aside (``state.db.corrupt-<time>``,
with its ``-wal``/``-shm``) and a new one started; the caller is told through the
``notices`` list. A database that is only locked (another run holds it past the busy
timeout) is never moved aside: that would reset rotations and scratch claims under the
run holding it. It raises :class:`StateLocked` instead, and the run fails.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_STATE_DIR = Path("~/.local/state/restoredrill")
SCHEMA_VERSION = 1
BUSY_TIMEOUT_SECONDS = 30.0
# Result codes of sqlite3.h (https://www.sqlite.org/rescode.html): only these two mean
# the file itself is damaged; BUSY (5) and LOCKED (6) mean another connection holds it,
# and CANTOPEN, IOERR, READONLY, FULL are the disk's or the folder's problem.
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT, mode TEXT, verdict TEXT,
  inventory TEXT);
CREATE TABLE IF NOT EXISTS rotations (
  scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_at TEXT NOT NULL,
  PRIMARY KEY (scope, key));
CREATE TABLE IF NOT EXISTS results (
  run_id TEXT NOT NULL, drill TEXT NOT NULL, name TEXT NOT NULL, outcome TEXT NOT NULL,
  seconds REAL, evidence TEXT, recorded_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS results_by_drill ON results (drill, name, recorded_at);
"""


def now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StateError(RuntimeError):
    """The state database cannot be used, and must not be replaced."""


class StateLocked(StateError):
    """Another connection held the database for longer than the busy timeout."""


class StateCorrupt(sqlite3.DatabaseError):
    """``PRAGMA quick_check`` found the file damaged (it opened, but is not sound)."""


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Only a damaged file may be moved aside. ``sqlite3.OperationalError`` ("database is
    locked") is a subclass of ``DatabaseError`` too, so the class alone does not tell."""
    if isinstance(exc, StateCorrupt):
        return True
    code = getattr(exc, "sqlite_errorcode", None)       # Python 3.11+: the extended result code
    if code is not None:
        return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


class StateStore:
    def __init__(self, state_dir: str | Path, busy_timeout: float = BUSY_TIMEOUT_SECONDS):
        self.dir = Path(state_dir).expanduser()
        self.path = self.dir / "state.db"
        self.busy_timeout = busy_timeout
        self.notices: list[str] = []
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._initialise()
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise self._unusable(exc) from None
            self._move_aside(exc)
            self._initialise()

    def _unusable(self, exc: sqlite3.DatabaseError) -> StateError:
        code = getattr(exc, "sqlite_errorname", "") or ""
        if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc).lower():
            return StateLocked(
                f"the state database {self.path} is locked: another restoredrill run (or a tool reading "
                f"it) held it for more than {self.busy_timeout:g} s. It was left as it is (its rotations and "
                f"scratch claims stay). Wait for the other run to finish, or find the holder with "
                f"`fuser {self.path}`, or give this run its own --state-dir.")
        return StateError(f"the state database {self.path} cannot be used ({exc}); it was left as it is. "
                          f"Check the permissions and free space of {self.dir}, or pass another --state-dir.")

    def _move_aside(self, exc: sqlite3.DatabaseError) -> None:
        """Keep the damaged file as ``state.db.corrupt-<time>`` (SQLite has removed its WAL
        and shared-memory files when the failed connection closed)."""
        aside = self.path.with_name(f"state.db.corrupt-{int(time.time())}")
        os.replace(self.path, aside)
        self.notices.append(f"the state database {self.path} was unreadable ({exc}); it was kept "
                            f"as {aside} and a new one started (rotations begin again)")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return conn

    def _initialise(self) -> None:
        with closing(self._connect()) as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            verdict = conn.execute("PRAGMA quick_check").fetchone()
            if not verdict or verdict[0] != "ok":
                raise StateCorrupt(f"PRAGMA quick_check: {verdict[0] if verdict else 'no answer'}")

    # --- rotations ------------------------------------------------------------------
    def get(self, scope: str, key: str, default: str | None = None) -> str | None:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT value FROM rotations WHERE scope=? AND key=?", (scope, key)).fetchone()
        return row[0] if row else default

    def put(self, scope: str, key: str, value: str) -> None:
        with closing(self._connect()) as conn:
            conn.execute("INSERT INTO rotations VALUES (?,?,?,?) ON CONFLICT(scope, key) DO UPDATE "
                         "SET value=excluded.value, updated_at=excluded.updated_at",
                         (scope, key, value, now_text()))

    def get_json(self, scope: str, key: str, default=None):
        raw = self.get(scope, key)
        return default if raw is None else json.loads(raw)

    def put_json(self, scope: str, key: str, value) -> None:
        self.put(scope, key, json.dumps(value, sort_keys=True))

    # --- runs and results -----------------------------------------------------------
    def start_run(self, run_id: str, mode: str, inventory: str) -> None:
        with closing(self._connect()) as conn:
            conn.execute("INSERT OR IGNORE INTO runs (id, started_at, mode, inventory) VALUES (?,?,?,?)",
                         (run_id, now_text(), mode, inventory))

    def finish_run(self, run_id: str, verdict: str) -> None:
        with closing(self._connect()) as conn:
            conn.execute("UPDATE runs SET finished_at=?, verdict=? WHERE id=?", (now_text(), verdict, run_id))

    def record_result(self, run_id: str, drill: str, name: str, outcome: str, seconds: float,
                      evidence: dict) -> None:
        with closing(self._connect()) as conn:
            conn.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?)",
                         (run_id, drill, name, outcome, seconds, json.dumps(evidence, default=str),
                          now_text()))

    def results(self, drill: str | None = None) -> list[dict]:
        query = "SELECT run_id, drill, name, outcome, seconds, evidence, recorded_at FROM results"
        args: tuple = ()
        if drill:
            query, args = query + " WHERE drill=?", (drill,)
        with closing(self._connect()) as conn:
            rows = conn.execute(query + " ORDER BY recorded_at", args).fetchall()
        keys = ("run_id", "drill", "name", "outcome", "seconds", "evidence", "recorded_at")
        return [dict(zip(keys, row)) for row in rows]
