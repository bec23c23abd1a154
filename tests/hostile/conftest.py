"""Shared pieces of the hostile-input corpus: a secret marker, leak scans, tar and borg builders.

Every input here is something an attacker who controls backed-up data (or a server
answer, or an inventory edit) could plant. The corpus checks the same four promises
for each: the drill FAILS with a clear message, nothing hostile is executed, nothing
outside the scratch folders is read or written, and no secret reaches any output.
"""
from __future__ import annotations

import io
import os
import secrets
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from restoredrill.clients.borg import resolve_binary
from restoredrill.secrets import write_private

SHADOW = Path("/etc/shadow")


@dataclass(frozen=True)
class Secrets:
    """The values that must never appear in any output of a run."""
    marker: str                 # the Borg passphrase of every hostile repository
    passphrase_file: Path
    shadow_head: str            # the first line of /etc/shadow (root-readable here)

    def needles(self) -> list[bytes]:
        found = [self.marker.encode()]
        if self.shadow_head:
            found.append(self.shadow_head.encode())
        return found


def shadow_head() -> str:
    """The first line of /etc/shadow, at most 60 characters: a password hash a leak would show."""
    try:
        first = SHADOW.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return ""
    return first[:60] if len(first) >= 12 else ""


@pytest.fixture(scope="session")
def hostile_secrets(tmp_path_factory) -> Secrets:
    marker = f"HOSTILE-SECRET-{secrets.token_hex(12)}"
    path = tmp_path_factory.mktemp("hostile-secrets") / "borg.pass"
    write_private(path, marker)
    return Secrets(marker, path, shadow_head())


def leaks_in(secrets_: Secrets, texts: Iterable[str | bytes] = (), paths: Iterable[Path] = ()) -> list[str]:
    """Where a secret appears: 'stdout', a file path... (empty: nowhere)."""
    found = []
    needles = secrets_.needles()
    for index, text in enumerate(texts):
        data = text.encode(errors="replace") if isinstance(text, str) else text
        if any(n in data for n in needles):
            found.append(f"text #{index}")
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        for path in files:
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(str(path))
    return found


# --- tar members ------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """One tar member. kind: file | dir | symlink | hardlink | chr | blk | fifo | zeros | sparse."""
    name: str
    kind: str = "file"
    data: bytes = b""
    target: str = ""            # symlink/hardlink target
    device: tuple[int, int] = (0, 0)
    size: int = 0               # zeros: bytes of zeros; sparse: apparent size
    mode: int = 0o644


def file(name: str, data: bytes | str = b"ok\n", mode: int = 0o644) -> Member:
    return Member(name, "file", data.encode() if isinstance(data, str) else data, mode=mode)


def symlink(name: str, target: str) -> Member:
    return Member(name, "symlink", target=target)


def hardlink(name: str, target: str) -> Member:
    return Member(name, "hardlink", target=target)


class ZeroReader(io.RawIOBase):
    """``size`` zero bytes without holding them in memory."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def _info(member: Member) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member.name)
    info.mode = 0o755 if member.kind == "dir" else member.mode
    info.mtime = 1_700_000_000
    kinds = {"file": tarfile.REGTYPE, "zeros": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
             "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE,
             "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}
    info.type = kinds[member.kind]
    info.linkname = member.target
    info.devmajor, info.devminor = member.device
    return info


def write_tar(stream, members: Iterable[Member]) -> None:
    """Write members as a PAX tar stream (names and link targets exactly as given)."""
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = _info(member)
            if member.kind == "file":
                info.size = len(member.data)
                tar.addfile(info, io.BytesIO(member.data))
            elif member.kind == "zeros":
                info.size = member.size
                tar.addfile(info, io.BufferedReader(ZeroReader(member.size), 1 << 20))
            else:
                tar.addfile(info)


# --- borg repositories built with the real borg ------------------------------------

@dataclass
class HostileRepo:
    name: str
    location: Path
    members: list[Member] = field(default_factory=list)
    tar_file: Path | None = None        # a ready tar (e.g. GNU sparse, made by tar -S) instead of members


def borg_env(base_dir: Path, passphrase: str) -> dict[str, str]:
    """Builder environment (the lab's way: the passphrase in the environment of the BUILDER
    only; the drill itself gets it through a pipe)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("BORG_")},
            "BORG_BASE_DIR": str(base_dir), "BORG_PASSPHRASE": passphrase, "LANG": "C.UTF-8",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}


def build_repo(repo: HostileRepo, base_dir: Path, passphrase: str) -> None:
    """``borg init`` then ``borg import-tar REPO::hostile -`` with the members streamed in."""
    borg = resolve_binary("borg")
    env = borg_env(base_dir / repo.name, passphrase)
    subprocess.run([borg, "init", "--encryption=repokey-blake2", str(repo.location)], env=env,
                   check=True, capture_output=True, timeout=120)
    source = str(repo.tar_file) if repo.tar_file else "-"
    proc = subprocess.Popen([borg, "import-tar", "--compression=lz4", f"{repo.location}::hostile-archive", source],
                            stdin=subprocess.PIPE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not repo.tar_file:
        write_tar(proc.stdin, repo.members)
    proc.stdin.close()
    err = proc.stderr.read()
    proc.wait(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"borg import-tar for {repo.name} failed: {err.decode(errors='replace')[-2000:]}")


def with_known_defects(names: Iterable[str], defects: dict[str, str]) -> list:
    """Parameters named by input id; a known defect is ``xfail(strict=True)`` so that its fix shows up
    as an XPASS failure and the mark must then be removed."""
    return [pytest.param(name, id=name, marks=[pytest.mark.xfail(strict=True, reason=defects[name])]
                         if name in defects else []) for name in names]
