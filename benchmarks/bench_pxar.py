"""Throughput of the streaming pxar reader (pbsformat/pxar.py): how fast a container archive's
file list comes out, for a single ``root.pxar`` and a split ``root.mpxar`` + ``root.ppxar``.

Run: python benchmarks/bench_pxar.py [--files 20000] [--big-mb 64] [--repeat 3]

The archive (written by lab/pxarwrite.py) holds ``--files`` small files (0-2 KiB) in 100
directories, a symlink and a hardlink per directory, and one ``--big-mb`` file. Columns:
entries/s and archive MB/s of ``iter_entries`` per CPU second of this process, best of
``--repeat``, from a seekable stream (contents skipped by seeking) and from a pipe (every
byte read); ``split+payload`` also checks each PAYLOAD_REF against the payload stream.
Target: >= 20,000 entries/s listing from a seekable stream. Not a timed test: figures are
printed.
"""
from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from restoredrill.lab.pxarwrite import Node, encode
from restoredrill.pbsformat.pxar import iter_entries

TARGET_ENTRIES_PER_SECOND = 20_000


class Pipe(io.BytesIO):
    """A stream that says it cannot seek (as a chunk reader feeding the parser would)."""

    def seekable(self) -> bool:
        return False


def make_tree(files: int, big_mb: int) -> Node:
    rng = random.Random(1)
    root = Node("dir", perms=0o755)
    for number in range(100):
        folder = Node("dir", perms=0o755)
        for index in range(files // 100):
            folder.children[f"file-{index:05}.conf".encode()] = Node("file", data=rng.randbytes(rng.randrange(2048)))
        folder.children[b"link"] = Node("symlink", target=b"file-00000.conf")
        folder.children[b"zz-hardlink"] = Node("hardlink", target=f"d{number:03}/file-00000.conf".encode())
        root.children[f"d{number:03}".encode()] = folder
    root.children[b"big.img"] = Node("file", data=bytes(big_mb << 20))
    return root


def best(run, repeat: int) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeat):
        started = time.process_time()
        count = run()
        times.append(time.process_time() - started)
    return max(min(times), 1e-9), count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--big-mb", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tree = make_tree(args.files, args.big_mb)
    single, _ = encode(tree)
    meta, payload = encode(tree, split=True)
    cases = {
        "single, seekable": lambda: sum(1 for _ in iter_entries(io.BytesIO(single))),
        "single, pipe": lambda: sum(1 for _ in iter_entries(Pipe(single))),
        "split meta only": lambda: sum(1 for _ in iter_entries(io.BytesIO(meta))),
        "split+payload": lambda: sum(1 for _ in iter_entries(io.BytesIO(meta), io.BytesIO(payload))),
    }
    sizes = {"single, seekable": len(single), "single, pipe": len(single), "split meta only": len(meta),
             "split+payload": len(meta) + len(payload)}
    print(f"archive: {len(single) / 1e6:.1f} MB single, {len(meta) / 1e6:.1f} MB mpxar + "
          f"{len(payload) / 1e6:.1f} MB ppxar")
    print(f"{'case':<18} {'entries':>8} {'entries/s':>11} {'MB/s':>8}")
    missed = False
    for name, run in cases.items():
        seconds, count = best(run, args.repeat)
        print(f"{name:<18} {count:>8} {count / seconds:>11,.0f} {sizes[name] / seconds / 1e6:>8.1f}")
        if name == "single, seekable" and count / seconds < TARGET_ENTRIES_PER_SECOND:
            missed = True
    if missed:
        print(f"MISSED target: >= {TARGET_ENTRIES_PER_SECOND:,} entries/s (single, seekable)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
