"""Chunk read-and-verify throughput of the offsite drill vs a plain boto3 download.

Starts a real SeaweedFS (``lab.seaweed``), uploads encrypted PBS chunks (4 MiB of
random data each, as a VM disk chunk), then alternates, with the same number of
threads over the same objects:

* plain:  boto3 ``get_object(...)["Body"].read()`` in a thread pool (nothing checked);
* drill:  ``audit_sample`` over ``ReadOnlyBucket.scan_many`` (bounded pool, egress budget,
  length check; each body streamed through a ``ChunkScanner``: magic, CRC-32, encryption),
  exactly the chunk sample's code path.

Rounds alternate which goes first (the machine's load drifts); prints MB/s per round, and
the drill's share of plain as the median of the paired rounds (target: at least 95 %, issue 26).

    python benchmarks/bench_offsite.py [--chunks 64] [--chunk-mib 4] [--threads 8] [--rounds 7] [--https]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from restoredrill.checks.pbs_offsite import Catalog, MetadataResult, audit_sample
from restoredrill.clients.s3 import ReadOnlyBucket, S3Settings
from restoredrill.lab.seaweed import SeaweedServer
from restoredrill.pbsformat import CryptConfig, Layout, chunk_digest, encode_blob

BUCKET = "bench"
TARGET = 0.95
LAYOUT = Layout.s3("bench-store")


def upload_chunks(server: SeaweedServer, count: int, size: int) -> tuple[list[str], dict[str, bytes]]:
    admin = server.client("admin", workers=16)
    admin.create_bucket(Bucket=BUCKET)
    crypt = CryptConfig.generate()

    def one(_index: int) -> tuple[str, bytes]:
        plain = os.urandom(size)
        digest = chunk_digest(plain, crypt)
        key = LAYOUT.chunk_key(digest)
        admin.put_object(Bucket=BUCKET, Key=key, Body=encode_blob(plain, compress=True, crypt=crypt))
        return key, digest

    with ThreadPoolExecutor(8) as pool:
        pairs = list(pool.map(one, range(count)))
    return [k for k, _ in pairs], dict(pairs)


def plain_download(server: SeaweedServer, keys: list[str], threads: int) -> int:
    client = server.client("drill", workers=threads)

    def get(key: str) -> int:
        return len(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(get, keys))


def drill_read_and_verify(server: SeaweedServer, keys: list[str], digests: dict[str, bytes], threads: int) -> int:
    """The chunk sample's own code path: ``audit_sample`` over ``ReadOnlyBucket.scan_many``."""
    access, secret = server.credentials("drill")
    bucket = ReadOnlyBucket(S3Settings(
        name="bench", endpoint=server.endpoint, bucket=BUCKET, access_key=lambda: access,
        secret_key=lambda: secret, ca_file=str(server.ca_file) if server.ca_file else None,
        egress_budget=10 * 1024 ** 3, max_workers=threads))
    catalog = Catalog(LAYOUT, [], {}, [], 0, 0)
    result = audit_sample(list(digests.values()), MetadataResult(), catalog, bucket.scan_many, True)
    if result.problems or result.crc_only != len(keys):
        raise SystemExit(f"benchmark chunks did not verify: {result.problems[:3]}")
    return result.bytes_read


def timed(function, *args) -> tuple[float, float, int]:
    """(wall seconds, this process's CPU seconds, bytes)."""
    started, cpu = time.perf_counter(), time.process_time()
    size = function(*args)
    return time.perf_counter() - started, time.process_time() - cpu, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--chunk-mib", type=float, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--https", action="store_true", help="TLS to the S3 gateway (lab CA)")
    args = parser.parse_args(argv)
    size = int(args.chunk_mib * 1024 * 1024)
    with tempfile.TemporaryDirectory(prefix="bench-offsite-") as tmp:
        started = time.perf_counter()
        with SeaweedServer(Path(tmp) / "seaweed", https=args.https) as server:
            print(f"SeaweedFS ready in {server.ready_seconds:.2f} s at {server.endpoint} "
                  f"(RSS {server.memory().get('VmRSS', 0) / 2 ** 20:.0f} MiB)")
            keys, digests = upload_chunks(server, args.chunks, size)
            print(f"uploaded {len(keys)} encrypted chunks of {args.chunk_mib:g} MiB in "
                  f"{time.perf_counter() - started:.1f} s; {args.threads} threads, {args.rounds} rounds")
            plain_download(server, keys, args.threads)                      # warm-up, not counted
            drill_read_and_verify(server, keys, digests, args.threads)
            plain_rates, drill_rates, ratios = [], [], []
            cpu = {"plain": 0.0, "drill": 0.0}
            volume = 0
            for round_no in range(1, args.rounds + 1):
                # alternate which goes first, so drift in the machine's load hits both alike
                order = ("plain", "drill") if round_no % 2 else ("drill", "plain")
                rates = {}
                for name in order:
                    if name == "plain":
                        seconds, used, total = timed(plain_download, server, keys, args.threads)
                    else:
                        seconds, used, total = timed(drill_read_and_verify, server, keys, digests, args.threads)
                    rates[name] = total / seconds / 1e6
                    cpu[name] += used
                volume += total
                plain_rates.append(rates["plain"])
                drill_rates.append(rates["drill"])
                ratios.append(rates["drill"] / rates["plain"])
                print(f"round {round_no}: plain boto3 {rates['plain']:7.1f} MB/s   "
                      f"drill read+verify {rates['drill']:7.1f} MB/s   ({ratios[-1]:.0%})")
            memory = server.memory()
        plain, drill = statistics.median(plain_rates), statistics.median(drill_rates)
        share = statistics.median(ratios)
        print(f"median: plain {plain:.1f} MB/s, drill {drill:.1f} MB/s; best: plain {max(plain_rates):.1f}, "
              f"drill {max(drill_rates):.1f} MB/s")
        print(f"drill / plain: median of paired rounds {share:.0%}, of medians {drill / plain:.0%}, of bests "
              f"{max(drill_rates) / max(plain_rates):.0%} (target >= {TARGET:.0%}: "
              f"{'met' if share >= TARGET else 'NOT met'}); "
              f"load average {os.getloadavg()[0]:.1f}; SeaweedFS peak RSS {memory.get('VmHWM', 0) / 2 ** 20:.0f} MiB")
        per_gb = {name: used / volume * 1e9 for name, used in cpu.items()}
        print(f"client CPU per GB read: plain {per_gb['plain']:.2f} s, drill {per_gb['drill']:.2f} s "
              "(the drill's extra is the verification)")
    return 0 if share >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
