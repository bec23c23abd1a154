"""State that survives between runs, in one SQLite file under ``--state-dir``.

Tables:
- ``runs``: one row per run (id, start, end, mode, verdict).
- ``rotations``: small named counters and cursors per scope, e.g. how many runs ago a
  repository was last fully read (``borg:<repo>`` / ``verify_data``).
- ``results``: one row per drill case and run (outcome, seconds, evidence as JSON),
  the history that reports and trends read.

Concurrent pytest-xdist workers share the file (WAL, busy timeout). A file that is
not a database is moved aside (``state.db.corrupt-<time>``) and a new one started;
the caller is told through the ``notices`` list.
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


class StateStore:
    def __init__(self, state_dir: str | Path):
        self.dir = Path(state_dir).expanduser()
        self.path = self.dir / "state.db"
        self.notices: list[str] = []
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._initialise()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"state.db.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            self.notices.append(f"the state database {self.path} was unreadable ({exc}); it was kept "
                                f"as {aside} and a new one started (rotations begin again)")
            self._initialise()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def _initialise(self) -> None:
        with closing(self._connect()) as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("PRAGMA quick_check").fetchone()

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
