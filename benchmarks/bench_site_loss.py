"""The site-loss drill's reassembly: throughput and peak memory for an encrypted image.

    python benchmarks/bench_site_loss.py [--mib 256] [--zero-share 0.5] [--rounds 3]

Writes one encrypted VM snapshot (4 MiB fixed chunks, zstd, AES-256-GCM, the format PBS
writes; ``--zero-share`` of the image zeros, the rest incompressible) into a local datastore,
then reassembles its index as the drill does (``pbsformat/reconstruct.py``: each distinct chunk
read once, decrypted, digest-checked, written into a sparse file) and prints MiB/s of image
and of stored bytes, and the peak Python memory of one reassembly (tracemalloc: the drill
streams, so it must not grow with the image). Reading from a local folder leaves the network
out: over S3 the drill reads with 8 parallel GETs, so a link slower than the figure here sets
the pace. Not a timed test.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from restoredrill.pbsformat import CryptConfig, DatastoreReader, DatastoreWriter, Layout, LocalSource  # noqa: E402
from restoredrill.pbsformat.reconstruct import decoder, fetch_sequential, plan_chunks, reassemble  # noqa: E402

CHUNK = 4 << 20


def image_stream(path: Path, mib: int, zero_share: float) -> Path:
    zeros = int(mib * zero_share)
    with path.open("wb") as out:
        for i in range(mib):
            out.write(bytes(1 << 20) if i < zeros else os.urandom(1 << 20))       # zeros first: whole zero chunks
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--zero-share", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        crypt = CryptConfig.generate()
        source = image_stream(root / "source.img", args.mib, args.zero_share)
        with source.open("rb") as stream:
            ref = DatastoreWriter(root / "store", precreate_chunk_dirs=False).write_snapshot(
                None, "vm", "110", datetime.now(timezone.utc), {"drive-scsi0.img.fidx": stream}, crypt=crypt,
                chunk_size=CHUNK)
        index = DatastoreReader(root / "store").read_archive_index(ref, "drive-scsi0.img.fidx")
        layout = Layout.local()
        plan = plan_chunks("drive-scsi0.img.fidx", index)
        keys = [layout.chunk_key(d) for d in plan.ranges]
        def once():
            process = decoder(layout, plan, crypt, encrypted_index=True)
            with (root / "out.img").open("w+b") as out:
                return reassemble(plan, layout, fetch_sequential(LocalSource(root / "store"), keys, process), out)
        times, stored = [], 0
        for _ in range(args.rounds):
            started = time.perf_counter()
            stored = once().stored_bytes
            times.append(time.perf_counter() - started)
        tracemalloc.start()
        once()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert (root / "out.img").read_bytes() == source.read_bytes()
        median = statistics.median(times)
        print(f"image {args.mib} MiB ({plan.entries} chunks, {plan.unique} distinct, {stored / 2**20:.1f} MiB stored): "
              f"median {median:.2f} s = {args.mib / median:.0f} MiB/s of image, {stored / 2**20 / median:.0f} MiB/s "
              f"stored; peak Python memory while reassembling {peak / 2**20:.1f} MiB (load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
