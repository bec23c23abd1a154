"""The offsite drill's chunk presence check vs a plain boto3 listing of the same chunks, in one run.

Starts a real SeaweedFS (``lab.seaweed``), puts --chunks empty-ish objects under a PBS S3
datastore's ``.chunks/`` prefix, then alternates, paired rounds:

* plain: boto3 ``list_objects_v2`` over every page (1000 keys a page), keys collected;
* drill: ``ReadOnlyBucket.list_objects(chunk_prefix, times=False)`` -> ``build_catalog`` ->
  ``find_missing_chunks`` against every chunk referenced (what the offsite drill's
  catalog and presence case do; the index reads are not part of this figure).

Prints both medians and the drill's speed as a share of plain (median of the paired
rounds; target >= 95 %), the client CPU per 1000 chunks, and the memory the presence
check holds per chunk (tracemalloc of the catalog plus the referenced-chunk table),
extrapolated to a 10 M-chunk store.

    python benchmarks/bench_offsite_listing.py [--chunks 10000] [--rounds 7]
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from restoredrill.checks.pbs_offsite import ChunkUse, MetadataResult, build_catalog, find_missing_chunks  # noqa: E402
from restoredrill.clients.s3 import ReadOnlyBucket, S3Settings  # noqa: E402
from restoredrill.lab.seaweed import SeaweedServer  # noqa: E402
from restoredrill.pbsformat import Layout  # noqa: E402

BUCKET = "bench-list"
LAYOUT = Layout.s3("bench-store")
TARGET = 0.95


def upload(server: SeaweedServer, count: int) -> list[bytes]:
    admin = server.client("admin", workers=32)
    admin.create_bucket(Bucket=BUCKET)
    digests = [os.urandom(32) for _ in range(count)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda d: admin.put_object(Bucket=BUCKET, Key=LAYOUT.chunk_key(d), Body=b"x" * 300), digests))   # sizes above 256: each its own int
    return digests


def referenced(digests: list[bytes]) -> MetadataResult:
    metadata = MetadataResult()
    for position, digest in enumerate(digests):
        metadata.uses[digest] = ChunkUse("bench-store/.cnt/vm/100/x/drive-scsi0.img.fidx", position, True, 4 << 20)
        metadata.references[digest] += 1
    return metadata


def plain(client) -> int:
    """boto3 as a script would use it (one client made beforehand, as the drill's bucket is)."""
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=LAYOUT.chunk_prefix):
        keys.extend(item["Key"] for item in page.get("Contents", ()))
    return len(keys)


def drill(bucket: ReadOnlyBucket, metadata: MetadataResult) -> int:
    catalog = build_catalog([], bucket.list_objects(LAYOUT.chunk_prefix, times=False), LAYOUT)
    missing = find_missing_chunks(metadata, catalog)
    if missing or catalog.stray_chunk_keys:
        raise SystemExit(f"presence check found problems: {missing[:2]} {catalog.stray_chunk_keys[:2]}")
    return len(catalog.chunks)


def timed(function, *args) -> tuple[float, float, int]:
    started, cpu = time.perf_counter(), time.process_time()
    count = function(*args)
    return time.perf_counter() - started, time.process_time() - cpu, count


def held_per_chunk(bucket: ReadOnlyBucket, metadata_digests: list[bytes]) -> tuple[float, float]:
    """Bytes per chunk the presence check holds: the listed-chunk table, and the referenced table."""
    gc.collect()
    tracemalloc.start()
    catalog = build_catalog([], bucket.list_objects(LAYOUT.chunk_prefix, times=False), LAYOUT)
    listed = tracemalloc.get_traced_memory()[0]
    metadata = referenced(metadata_digests)
    both = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    count = len(catalog.chunks)
    del metadata
    return listed / count, (both - listed) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-listing-") as tmp, \
            SeaweedServer(Path(tmp) / "seaweed") as server:
        digests = upload(server, args.chunks)
        access, secret = server.credentials("drill")
        bucket = ReadOnlyBucket(S3Settings(name="bench", endpoint=server.endpoint, bucket=BUCKET,
                                           access_key=lambda: access, secret_key=lambda: secret))
        metadata = referenced(digests)
        client = server.client("drill")
        plain(client), drill(bucket, metadata)                 # warm-up
        seconds = {"plain": [], "drill": []}
        cpu = {"plain": 0.0, "drill": 0.0}
        shares = []
        for round_no in range(args.rounds):
            order = ("plain", "drill") if round_no % 2 == 0 else ("drill", "plain")
            pair = {}
            for name in order:
                wall, used, count = timed(plain, client) if name == "plain" else timed(drill, bucket, metadata)
                assert count == args.chunks, (name, count)
                pair[name] = wall
                seconds[name].append(wall)
                cpu[name] += used
            shares.append(pair["plain"] / pair["drill"])
        listed, refs = held_per_chunk(bucket, digests)
    share = statistics.median(shares)
    per_k = {name: used / args.rounds / args.chunks * 1000 for name, used in cpu.items()}
    print(f"chunk listing + presence check, {args.chunks} chunks, {args.rounds} paired rounds, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"plain boto3 listing median {statistics.median(seconds['plain']):.2f} s, drill median "
          f"{statistics.median(seconds['drill']):.2f} s; client CPU per 1000 chunks: plain "
          f"{per_k['plain'] * 1000:.0f} ms, drill {per_k['drill'] * 1000:.0f} ms")
    print(f"drill speed / plain: {share:.2f} (median of paired rounds; target >= {TARGET}: "
          f"{'met' if share >= TARGET else 'NOT met'})")
    print(f"memory held per chunk: listed-chunk table {listed:.0f} B, referenced-chunk table {refs:.0f} B; "
          f"a 10 M-chunk store needs about {(listed + refs) * 10e6 / 2 ** 30:.1f} GiB for the presence check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
