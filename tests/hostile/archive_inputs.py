"""The hostile Borg archives: one repository per input, each with the checks that point at it.

Pure data (no I/O): :func:`inputs` builds the list from the paths of one run (the
secret file, the folder outside scratch a write-through would land in, the live
source of the spot check). Each input names the drill cases that must FAIL and a
fragment each message must hold.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.hostile.conftest import Member, file, hardlink, symlink

UP = "../" * 16       # more than enough to climb from any scratch folder to /


@dataclass(frozen=True)
class Places:
    secret: Path          # the Borg passphrase file: a runner secret
    outside: Path         # a folder outside scratch; nothing may appear in it
    source: Path          # live source directory of the spot check
    marker: Path          # a file only executed hostile content would create
    secret_value: bytes   # what the secret file holds


@dataclass
class ArchiveInput:
    id: str
    repo: str                                     # the repository (one archive) that carries it
    members: list[Member]
    checks: dict
    expect: dict[str, tuple[str, ...]]            # case suffix (check id) -> message fragments
    extract_refused: bool = False                 # borg itself refuses (rc 1) or free space is short
    sparse_size: int = 0                          # build with GNU tar -S around a sparse file this big
    written_nowhere: tuple[str, ...] = field(default=())   # names that must not appear in Places.outside
    old_borg: bool = False                        # run with a borg that reports version 1.2.4


def _ok() -> Member:
    return file("ok.txt", "a harmless regular file\n")


def _shell(marker: Path) -> bytes:
    return f"#!/bin/sh\ntouch {marker}\n".encode()


def inputs(p: Places) -> list[ArchiveInput]:
    """Every input, grouped into a few repositories (``repo``) where one extract can carry several
    (checks of different paths); an input that makes borg refuse the extract gets its own."""
    secret_rel = str(p.secret).lstrip("/")
    outside_rel = str(p.outside).lstrip("/")
    canary = lambda path: {"canary": {"path": path, "equals": "expected-canary"}} 
    sqlite = lambda path: {"sqlite": [path]}                                        
    dump = lambda path: {"postgres_dumps": [{"path": path, "database": "hostile"}]} 
    link = ("symbolic link",)
    return [
        # -- links and special files, all read by SQLite checks in one archive ------------------
        ArchiveInput("symlink-abs-to-secret", "links", [symlink("abs-link", str(p.secret))],
                     sqlite("abs-link"), {"sqlite:abs-link": link}),
        ArchiveInput("symlink-rel-to-secret", "links", [symlink("rel-link", UP + secret_rel)],
                     sqlite("rel-link"), {"sqlite:rel-link": link}),
        ArchiveInput("symlink-chain-to-shadow", "links",
                     [symlink("a", "b"), symlink("b", "c"), symlink("c", "/etc/shadow")],
                     sqlite("a"), {"sqlite:a": link}),
        ArchiveInput("hardlink-to-symlink-member", "links",
                     [symlink("s", str(p.secret)), hardlink("hard-to-link", "s")],
                     sqlite("hard-to-link"), {"sqlite:hard-to-link": link}),
        ArchiveInput("chardev-dev-mem", "links", [Member("mem", "chr", device=(1, 1))],
                     sqlite("mem"), {"sqlite:mem": ("character device",)}),
        ArchiveInput("blockdev-loop0", "links", [Member("loop0", "blk", device=(7, 0))],
                     sqlite("loop0"), {"sqlite:loop0": ("block device",)}),
        ArchiveInput("fifo-member", "links", [Member("fifo", "fifo")],
                     sqlite("fifo"), {"sqlite:fifo": ("FIFO",)}),
        ArchiveInput("sqlite-holding-a-secret", "links", [file("secret.sqlite", p.secret_value * 200)],
                     sqlite("secret.sqlite"), {"sqlite:secret.sqlite": ("cannot be read",)}),
        ArchiveInput("absolute-member-name", "links", [file(f"/{outside_rel}/abs-member", p.secret_value)],
                     sqlite(f"{outside_rel}/abs-member"), {f"sqlite:{outside_rel}/abs-member": ("cannot be read",)},
                     written_nowhere=("abs-member",)),
        ArchiveInput("dotdot-member-name", "links", [file(f"{UP}{outside_rel}/dotdot-member", p.secret_value)],
                     sqlite(f"{outside_rel}/dotdot-member"),
                     {f"sqlite:{outside_rel}/dotdot-member": ("cannot be read",)}, written_nowhere=("dotdot-member",)),
        ArchiveInput("setuid-script-never-run", "links", [file("setuid.sh", _shell(p.marker), mode=0o4755)],
                     sqlite("setuid.sh"), {"sqlite:setuid.sh": ("cannot be read",)}),
        # -- dumps: refused unopened, or refused before anything runs ------------------------------
        ArchiveInput("symlink-dump-to-shadow", "dumps", [symlink("shadow.sql", "/etc/shadow")],
                     dump("shadow.sql"), {"postgres:shadow.sql": link}),
        ArchiveInput("fifo-as-dump", "dumps", [Member("fifo.sql", "fifo")],
                     dump("fifo.sql"), {"postgres:fifo.sql": ("FIFO",)}),
        ArchiveInput("dump-shell-escape", "dumps",
                     [file("shell.sql", f"CREATE TABLE t (a int);\n\\! touch {p.marker}\n")],
                     dump("shell.sql"), {"postgres:shell.sql": ("shell.sql", "line 2", "\\!")}),
        ArchiveInput("dump-copy-to-program", "dumps",
                     [file("program.sql", f"CREATE TABLE t (a int);\nCOPY t TO PROGRAM 'touch {p.marker}';\n")],
                     dump("program.sql"), {"postgres:program.sql": ("program.sql", "PROGRAM")}),
        # -- paths, counts and the spot check ---------------------------------------------------
        ArchiveInput("symlinked-parent-in-check-path", "walks", [symlink("etc", "/etc")],
                     {"paths": ["etc/shadow"], **canary("etc/shadow")},
                     {"canary:etc/shadow": ("etc is a symbolic link",), "paths": ("refused", "etc/shadow")}),
        ArchiveInput("min-files-symlink-loops", "walks",
                     [symlink("loop", "."), symlink("up", ".."), symlink("root", "/"), Member("sub", "dir"),
                      symlink("sub/back", "../sub")],
                     {"min_files": 50}, {"min_files": ("regular files", "symbolic links")}),
        ArchiveInput("spot-check-archive-dir-is-symlink", "walks", [symlink("data", "/etc")],
                     {"spot_check": {"source": str(p.source), "archive_path": "data"}},
                     {"spot_check": ("data", "symbolic link")}),
        # -- traversal in the inventory's paths ('..', a leading /) is refused when the inventory is
        #    loaded (inventory/model.py archive_relative; tests/hostile/test_inventory_paths.py), so it
        #    cannot reach this run; the drill's own run-time refusal is in tests/unit/test_data_checks.py
        # -- canaries (one per archive) -----------------------------------------------------------
        ArchiveInput("canary-holding-a-secret", "canary-secret", [file("canary", p.secret_value)],
                     canary("canary"), {"canary:canary": ("sha256",)}),
        ArchiveInput("canary-oversized", "canary-oversized", [file("canary", b"A" * (100 << 10))],
                     canary("canary"), {"canary:canary": ("at most 65536 bytes",)}),
        ArchiveInput("canary-terminal-escapes", "canary-escapes",
                     [file("canary", b"\x1b]0;owned\x07\x1b[2J\x1b[31mred\r\nline2\x00")],
                     {"canary": {"path": "canary", "equals": "expected-canary", "show_found": True}},
                     {"canary:canary": ("expected-canary",)}),
        # -- borg itself refuses the extract, or scratch is too small: one archive each -----------
        ArchiveInput("symlinked-dir-abs-then-member", "dir-link-abs",
                     [symlink("d", str(p.outside)), file("d/pwned-abs", "written through a link\n")],
                     canary("d/pwned-abs"), {"extract": ("d/pwned-abs", "parent directory is a symlink")},
                     extract_refused=True, written_nowhere=("pwned-abs",)),
        ArchiveInput("symlinked-dir-rel-then-member", "dir-link-rel",
                     [symlink("r", UP + outside_rel), file("r/pwned-rel", "written through a link\n")],
                     canary("r/pwned-rel"), {"extract": ("r/pwned-rel", "parent directory is a symlink")},
                     extract_refused=True, written_nowhere=("pwned-rel",)),
        ArchiveInput("hardlink-abs-to-runner-file", "hardlink-abs", [hardlink("canary", str(p.outside / "target"))],
                     canary("canary"), {"extract": ("canary",)}, extract_refused=True),
        ArchiveInput("hardlink-dotdot-to-shadow", "hardlink-dotdot", [hardlink("canary", UP + "etc/shadow")],
                     canary("canary"), {"extract": ("hardlink source path is unsafe",)}, extract_refused=True),
        ArchiveInput("sparse-file-larger-than-scratch", "sparse", [], canary("ok.txt"),
                     {"extract": ("bytes free",)}, extract_refused=True, sparse_size=200 << 20),
        # -- a borg older than 1.4.5 writes through symlinked parents (CVE-2026-62268): refuse it ---
        ArchiveInput("borg-without-the-extract-fix", "old-borg", [file("canary", "expected-canary\n")],
                     canary("canary"), {"extract": ("1.2.4", "1.4.5")}, extract_refused=True, old_borg=True),
        ArchiveInput("file-larger-than-free-space", "too-large", [Member("big.bin", "zeros", size=96 << 20)],
                     canary("ok.txt"), {"extract": ("bytes free",)}, extract_refused=True),
    ]


def merge_checks(items: list[ArchiveInput]) -> dict:
    """The checks block of one repository from its inputs (lists joined, a canary at most once)."""
    merged: dict = {}
    for item in items:
        for key, value in item.checks.items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            elif key in merged:
                raise ValueError(f"{item.id}: repository {item.repo} already has {key}")
            else:
                merged[key] = value
    return merged
