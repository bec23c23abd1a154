"""The lab's small application dataset: files, photos, a SQLite database, a PostgreSQL
plain-SQL dump and a canary, as an app that Borg backs up would have them."""
from __future__ import annotations

import random
import sqlite3
from datetime import datetime
from pathlib import Path

APP = "app"
CANARY_FILE = f"{APP}/.restoredrill-canary"
CANARY_PATTERN = r"^canary \d{4}-\d{2}-\d{2}T\d{2}:\d{2}"
SQLITE_FILE = f"{APP}/db/app.sqlite"
PG_DUMP_FILE = f"{APP}/db/app.sql"
KUMA_DB_FILE = f"{APP}/uptime-kuma/kuma.db"   # a copy of the lab Kuma's database (LabKuma.backup_database)
PG_CANARY = "lab-canary-v1"
PHOTOS = 40


def build_dataset(source: Path, seed: int = 7) -> None:
    """Write the constant part of the dataset under source/app."""
    rng = random.Random(seed)
    app = source / APP
    for sub in ("photos", "docs", "db", "log"):
        (app / sub).mkdir(parents=True, exist_ok=True)
    for i in range(PHOTOS):
        (app / "photos" / f"IMG_{i:04d}.jpg").write_bytes(rng.randbytes(rng.randint(2000, 20000)))
    for i in range(15):
        (app / "docs" / f"note-{i:02d}.txt").write_text(f"note {i}\n" + "lorem ipsum\n" * rng.randint(1, 50))
    write_sqlite(source / SQLITE_FILE, rng)
    (source / PG_DUMP_FILE).write_text(postgres_dump(rng))


def write_sqlite(path: Path, rng: random.Random) -> None:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT NOT NULL, size INTEGER)")
        conn.executemany("INSERT INTO photos (name, size) VALUES (?, ?)",
                         [(f"IMG_{i:04d}.jpg", rng.randint(2000, 20000)) for i in range(500)])
        conn.execute("CREATE INDEX photos_by_name ON photos (name)")
    conn.close()


def postgres_dump(rng: random.Random) -> str:
    """A plain-SQL dump in pg_dump's shape (COPY ... FROM stdin)."""
    rows = "\n".join(f"{i}\tuser{i}\tuser{i}@example.net" for i in range(1, 101))
    return f"""--
-- PostgreSQL database dump (restoredrill lab)
--
SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

CREATE TABLE public.users (
    id integer PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL
);

CREATE TABLE public.restoredrill_canary (
    value text NOT NULL
);

COPY public.users (id, name, email) FROM stdin;
{rows}
\\.

COPY public.restoredrill_canary (value) FROM stdin;
{PG_CANARY}
\\.

CREATE INDEX users_by_email ON public.users USING btree (email);
"""


def stamp_backup(source: Path, when: datetime) -> None:
    """What the app's pre-backup hook writes: the canary and a log line."""
    text = f"canary {when:%Y-%m-%dT%H:%M} restoredrill lab"
    (source / CANARY_FILE).write_text(text + "\n")
    (source / APP / "log" / "last-backup.txt").write_text(f"{when.isoformat()}\n")


def data_checks() -> dict:
    """The inventory's checks block for this dataset (used by the lab inventory)."""
    return {
        "paths": [f"{APP}/photos", f"{APP}/docs", SQLITE_FILE, PG_DUMP_FILE],
        "min_files": PHOTOS + 15,
        "sqlite": [SQLITE_FILE, KUMA_DB_FILE],
        "postgres_dumps": [{"path": PG_DUMP_FILE, "database": "app", "queries": [
            {"sql": "SELECT value FROM restoredrill_canary", "expect": PG_CANARY},
            {"sql": "SELECT count(*) FROM users", "expect": "100"}]}],
        "canary": {"path": CANARY_FILE, "pattern": CANARY_PATTERN},
    }
