"""Throughput of the psql-script lexer and of the plain-dump preparation on large dumps.

Run: python benchmarks/bench_psql_lexer.py [--mb 30] [--styles copy,inserts] [--repeat 3]
                                           [--reference]

Generates plain dumps in pg_dump 15 style (preamble with \\restrict, a function body in
dollar quotes, tables with OWNER TO and GRANT statements, table data of 8 columns) in
two styles: ``copy`` (pg_dump's default: COPY ... FROM stdin blocks) and ``inserts``
(``pg_dump --inserts``: one INSERT statement per row of ~190 bytes, strings with
doubled quotes, backslashes, non-ASCII text and JSON). Columns: lex (one pass of the
lexer); prepare (``prepare_plain_dump``: leave out owner/privilege statements, then
lex and check the output again, as a drill does). MB/s are of dump input per CPU
second of this process, best of ``--repeat`` runs; "wall" is prepare per wall-clock
second of that run (lower when the machine is shared). ``--reference`` also times the frozen pre-optimisation lexer in
tests/unit/_psqllex_reference.py (slow on ``inserts``: use ``--mb 5``) and checks
that both lexers give the same items. Target: >= 10 MB/s prepare on both styles.
Not a timed test: figures are printed.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from restoredrill.checks.postgres.psqllex import PsqlLexer
from restoredrill.checks.postgres.script import prepare_plain_dump

PREAMBLE = b"""--
-- PostgreSQL database dump
--

\\restrict Qx1kZbYc0mWn3Rt5Uv7Yz9Ab2Cd4Ef6Gh8Ij0Kl2Mn4Op6Qr8St0Uv2Wx4Yz6

-- Dumped from database version 15.14 (Debian 15.14-0+deb12u1)
-- Dumped by pg_dump version 15.14 (Debian 15.14-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: shop; Type: SCHEMA; Schema: -; Owner: alice
--

CREATE SCHEMA shop;


ALTER SCHEMA shop OWNER TO alice;

--
-- Name: touch(); Type: FUNCTION; Schema: shop; Owner: alice
--

CREATE FUNCTION shop.touch() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
  NEW.updated := now(); -- it's not a \\command
  RETURN NEW;
END
$$;


ALTER FUNCTION shop.touch() OWNER TO alice;

SET default_tablespace = '';

SET default_table_access_method = heap;

"""
COLUMNS = (b"id integer NOT NULL", b"name text", b"note text", b"path text", b"price numeric(10,2)",
           b"created timestamp with time zone", b"active boolean", b"attrs jsonb")
FOOTER = b"""
--
-- Name: SCHEMA shop; Type: ACL; Schema: -; Owner: alice
--

GRANT USAGE ON SCHEMA shop TO reader;


--
-- PostgreSQL database dump complete
--

\\unrestrict Qx1kZbYc0mWn3Rt5Uv7Yz9Ab2Cd4Ef6Gh8Ij0Kl2Mn4Op6Qr8St0Uv2Wx4Yz6

"""
WORDS = ("alpha", "beta", "caf\u00e9", "na\u00efve", "\u65e5\u672c", "O'Brien", "it's", "x",
         "lorem", "ipsum", "dolor", "sit", "amet", "r\u00e9sum\u00e9", "\u00fcber", "42")


def _row(rng: random.Random, row_id: int) -> list[str | None]:
    """One row of values as text (None is NULL); never a backslash before a quote or at
    the end of a value, which this lexer refuses in plain strings (see script.py)."""
    name = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
    note = None if rng.random() < 0.2 else " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
    path = rf"C:\data\{rng.choice(WORDS[:5])}\file{row_id}.txt"
    attrs = f'{{"k": {rng.randint(0, 999)}, "tag": "{rng.choice(WORDS[:4])}"}}'
    created = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} 10:{rng.randint(0, 59):02d}:00+00"
    return [str(row_id), name, note, path, f"{rng.randint(0, 99999) / 100:.2f}", created,
            rng.choice(("true", "false")), attrs]


def _table_header(table: str, kind: str) -> bytes:
    columns = b",\n    ".join(COLUMNS)
    return (f"--\n-- Name: {table}; Type: TABLE; Schema: shop; Owner: alice\n--\n\n".encode()
            + f"CREATE TABLE shop.{table} (\n    ".encode() + columns + b"\n);\n\n\n"
            + f"ALTER TABLE shop.{table} OWNER TO alice;\n\n".encode()
            + f"--\n-- Data for Name: {table}; Type: {kind}; Schema: shop; Owner: alice\n--\n\n".encode())


def _copy_value(value: str | None) -> str:
    if value is None:
        return "\\N"
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _insert_value(value: str | None, index: int) -> str:
    if value is None:
        return "NULL"
    if index in (0, 4, 6):
        return value
    return "'" + value.replace("'", "''") + "'"


def make_dump(style: str, megabytes: float, seed: int = 15) -> bytes:
    """A pg_dump 15 style plain dump of about the given size."""
    rng, target = random.Random(seed), int(megabytes * 1_000_000)
    parts, size, row_id, table_number = [PREAMBLE], len(PREAMBLE), 0, 0
    while size < target:
        table_number += 1
        table = f"t{table_number}"
        chunk = [_table_header(table, "TABLE DATA")]
        if style == "copy":
            chunk.append(f"COPY shop.{table} (id, name, note, path, price, created, active, attrs) "
                         f"FROM stdin;\n".encode())
        for _ in range(20_000):
            row_id += 1
            values = _row(rng, row_id)
            if style == "copy":
                line = "\t".join(_copy_value(v) for v in values) + "\n"
            else:
                line = (f"INSERT INTO shop.{table} VALUES ("
                        + ", ".join(_insert_value(v, i) for i, v in enumerate(values)) + ");\n")
            chunk.append(line.encode())
        chunk.append(b"\\.\n\n\n" if style == "copy" else b"\n\n")
        chunk.append(f"GRANT SELECT ON TABLE shop.{table} TO reader;\n\n\n".encode())
        block = b"".join(chunk)
        parts.append(block)
        size += len(block)
    parts.append(FOOTER)
    return b"".join(parts)


def _timed(function: Callable[[], object]) -> tuple[float, float, object]:
    """CPU and wall seconds. The lexer is single-threaded: CPU seconds are its cost,
    wall seconds on a shared machine also count other processes."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = function()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def _load_reference() -> type:
    path = ROOT / "tests" / "unit" / "_psqllex_reference.py"
    spec = importlib.util.spec_from_file_location("_psqllex_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.PsqlLexer


def _plain(item: object) -> tuple:
    """An item as a tuple of its fields (the reference's dataclasses and the new lexer's
    classes differ by type, not by fields)."""
    if dataclasses.is_dataclass(item):
        fields = [getattr(item, f.name) for f in dataclasses.fields(item)]
    else:
        fields = [item.start, item.line, item.end, item.tokens, item.has_meta, item.copy_data]
    return (type(item).__name__, *(_plain(f) if dataclasses.is_dataclass(f) else f for f in fields))


def _items(lexer: type, data: bytes) -> list[tuple]:
    return [_plain(item) for item in lexer(data)]


def _best(repeat: int, function: Callable[[], object]) -> tuple[float, float, object]:
    """The run with the least CPU time of ``repeat`` runs (the others met more noise)."""
    return min((_timed(function) for _ in range(repeat)), key=lambda run: run[0])


def measure(style: str, megabytes: float, reference: bool, repeat: int) -> str:
    """One line of figures for one generated dump."""
    data = make_dump(style, megabytes)
    size = len(data) / 1_000_000
    lex_cpu, _, count = _best(repeat, lambda: sum(1 for _ in PsqlLexer(data)))
    prep_cpu, prep_wall, skipped = _best(
        repeat, lambda: prepare_plain_dump(io.BytesIO(data), io.BytesIO(), name=style))
    if not skipped:
        raise SystemExit(f"{style}: no owner or privilege statement was left out; the generator is broken")
    line = (f"{style:<8} {size:>6.1f} {count:>8} {lex_cpu:>7.2f} {size / lex_cpu:>9.1f} "
            f"{prep_cpu:>10.2f} {size / prep_cpu:>13.1f} {size / prep_wall:>10.1f}")
    if reference:
        lexer = _load_reference()
        ref_cpu, _, ref_items = _timed(lambda: _items(lexer, data))
        same = ref_items == _items(PsqlLexer, data)
        line += f"  {size / ref_cpu:>13.2f}  {'yes' if same else 'NO'}"
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=30.0, help="size of each generated dump in MB")
    parser.add_argument("--styles", default="copy,inserts", help="comma-separated: copy, inserts")
    parser.add_argument("--reference", action="store_true",
                        help="also time the frozen reference lexer and compare its items")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, the best is shown")
    args = parser.parse_args()
    print(f"{'style':<8} {'MB':>6} {'items':>8} {'lex s':>7} {'lex MB/s':>9} {'prepare s':>10} "
          f"{'prepare MB/s':>13} {'wall MB/s':>10}{'  ref lex MB/s  same' if args.reference else ''}")
    for style in args.styles.split(","):
        print(measure(style, args.mb, args.reference, args.repeat), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
