"""The double's container archive handling (lab/proxmox/ct_archive.py): seed a folder as pxar
(seed.make_pxar, single and split), extract it, and compare with the source; refusals."""
from __future__ import annotations

import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from restoredrill.lab.proxmox.ct_archive import (CT_ARCHIVE, CT_META_ARCHIVE, CT_PAYLOAD_ARCHIVE,
                                                 archive_overflow, ct_archives, extract_ct_archive)
from restoredrill.lab.proxmox.seed import make_pxar
from restoredrill.lab.pxarwrite import Node, encode
from restoredrill.pbsformat.pxar import PxarError

WHEN = datetime(2026, 5, 1, 1, 1, 3, tzinfo=timezone.utc)


def source_tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("app-ct\n")
    (root / "init").write_text("#!/bin/sh\n")
    os.chmod(root / "init", 0o755)
    (root / "srv").mkdir(mode=0o750)
    (root / "srv/secret").write_bytes(b"s" * 70_000)
    os.chmod(root / "srv/secret", 0o4640)          # setuid is dropped on extraction
    os.link(root / "srv/secret", root / "srv/secret.again")
    os.symlink("usr/bin", root / "bin")
    os.symlink("../init", root / "etc/init")
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    os.mkfifo(root / "tmp/fifo")                   # not archived by tree_of_directory
    return root


def write_archive(tmp_path: Path, archives: dict[str, bytes]) -> tuple[Path, Path | None]:
    meta_name, payload_name = ct_archives(set(archives))
    meta = tmp_path / meta_name
    meta.write_bytes(archives[meta_name])
    payload = None
    if payload_name:
        payload = tmp_path / payload_name
        payload.write_bytes(archives[payload_name])
    return meta, payload


@pytest.mark.parametrize("split", [False, True])
def test_a_seeded_folder_comes_back(tmp_path: Path, split: bool) -> None:
    source = source_tree(tmp_path / "source")
    archives = make_pxar(source, WHEN, split=split)
    assert set(archives) == ({CT_META_ARCHIVE, CT_PAYLOAD_ARCHIVE} if split else {CT_ARCHIVE})
    meta, payload = write_archive(tmp_path, archives)
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    extract_ct_archive(meta, payload, rootfs)
    assert (rootfs / "etc/hostname").read_text() == "app-ct\n"
    assert (rootfs / "srv/secret").read_bytes() == b"s" * 70_000
    assert stat.S_IMODE((rootfs / "init").stat().st_mode) == 0o755
    assert stat.S_IMODE((rootfs / "srv/secret").stat().st_mode) == 0o640
    assert stat.S_IMODE((rootfs / "srv").stat().st_mode) == 0o750
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o755      # no sticky, no o+w
    assert (rootfs / "srv/secret").stat().st_ino == (rootfs / "srv/secret.again").stat().st_ino
    assert os.readlink(rootfs / "bin") == "usr/bin" and os.readlink(rootfs / "etc/init") == "../init"
    assert (rootfs / "etc/hostname").stat().st_mtime == WHEN.timestamp()
    assert not (rootfs / "tmp/fifo").exists()


def test_fifos_come_back_devices_and_sockets_do_not(tmp_path: Path) -> None:
    tree = Node("dir", children={b"fifo": Node("fifo"), b"null": Node("chardev", device=(1, 3)),
                                 b"sock": Node("socket")})
    meta, payload = write_archive(tmp_path, {CT_ARCHIVE: encode(tree)[0]})
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    extract_ct_archive(meta, payload, rootfs)
    assert stat.S_ISFIFO((rootfs / "fifo").lstat().st_mode)
    assert sorted(os.listdir(rootfs)) == ["fifo"]


@pytest.mark.parametrize(("name", "node", "unchecked", "problem"), [
    (b"z", Node("symlink", target=b"/etc/shadow"), False, "symlink '/z' points outside"),
    (b"z", Node("symlink", target=b"../../etc/shadow"), False, "symlink '/z' points outside"),
    (b"z", Node("symlink", target=b"a/../../x"), False, "symlink '/z' points outside"),
    (b"..", Node("file", data=b"2"), True, "file name '..'"),
])
def test_hostile_entries_are_refused_before_anything_is_written(tmp_path: Path, name: bytes, node: Node,
                                                                unchecked: bool, problem: str) -> None:
    tree = Node("dir", children={b"a": Node("file", data=b"1"), name: node})
    meta, payload = write_archive(tmp_path, {CT_ARCHIVE: encode(tree, unchecked=unchecked)[0]})
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    with pytest.raises(PxarError, match=problem):
        extract_ct_archive(meta, payload, rootfs)
    assert os.listdir(rootfs) == []


def test_overflow_counts_files_per_volume_once(tmp_path: Path) -> None:
    tree = Node("dir", children={
        b"big": Node("file", data=b"x" * 600), b"zz": Node("hardlink", target=b"big"),
        b"data": Node("dir", children={b"blob": Node("file", data=b"y" * 900)})})
    meta, _ = write_archive(tmp_path, {CT_ARCHIVE: encode(tree)[0]})
    assert archive_overflow(meta, [("/data", 1000), ("/", 1000)]) is None
    assert archive_overflow(meta, [("/data", 800), ("/", 1000)]) == (
        'error at entry "blob": failed to copy file contents: Disk quota exceeded (os error 122)')
    assert "entry \"big\"" in archive_overflow(meta, [("/", 500)])
    assert archive_overflow(meta, [("/", 0)]) is None
