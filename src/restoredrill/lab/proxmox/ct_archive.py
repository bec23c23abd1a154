"""A container backup's pxar archive in the double: which archives a snapshot holds, whether
they fit the restored volumes, and their extraction into the new container's rootfs.

A CT snapshot holds ``root.pxar.didx`` (one pxar stream) or, written by PBS 3.3+ with
change detection mode ``metadata``/``data``, the split pair ``root.mpxar.didx`` (metadata)
+ ``root.ppxar.didx`` (payload); ``proxmox-backup-client restore <snapshot> root.pxar``,
what pve-container runs, restores either (proxmox-backup ``proxmox-backup-client/src/main.rs``
``restore``: a ``.pxar`` name resolves to the split pair when the manifest has it). Both are
read with the streaming reader (``pbsformat.pxar``), which refuses hostile names, links
and sizes before anything is written.

Extraction follows proxmox-backup ``pbs-client/src/pxar/extract.rs`` for what the double
needs: directories, regular files (content from the archive), symlinks (created, never
followed), hardlinks (``linkat`` to the target path from the root), FIFOs; modes and
mtimes are applied, owners are not (the double runs unprivileged, as an unprivileged CT's
idmap would shift them anyway). DECLARED DEVIATIONS: device nodes and sockets are not
created (no CAP_MKNOD; pxar would create them), and a symlink whose target is absolute or
leaves the rootfs is refused (real pxar restores it as is; the double's own code reads the
restored rootfs from the host, so it keeps tarfile's ``data``-filter rule it had before).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path, PurePosixPath

from restoredrill.pbsformat.pxar import Entry, PxarError, iter_entries, read_file
from restoredrill.pbsformat.pxarstream import shown

CT_ARCHIVE = "root.pxar.didx"
CT_META_ARCHIVE = "root.mpxar.didx"
CT_PAYLOAD_ARCHIVE = "root.ppxar.didx"
CT_ARCHIVE_FORMAT = "pxar"
_FILE_READ_LIMIT = 1 << 62      # the archive's own size bounds every read


def ct_archives(names: set[str]) -> tuple[str, str | None] | None:
    """(metadata archive, payload archive or None) of a CT snapshot's files, or None."""
    if CT_META_ARCHIVE in names and CT_PAYLOAD_ARCHIVE in names:
        return CT_META_ARCHIVE, CT_PAYLOAD_ARCHIVE
    if CT_ARCHIVE in names:
        return CT_ARCHIVE, None
    return None


def archive_overflow(meta: Path, limits: list[tuple[str, int]]) -> str | None:
    """What pxar says when the archive's files do not fit their volume (the first file that
    crosses a volume's size, by apparent size; ZFS subvolumes answer EDQUOT), or None.
    ``limits``: (mount path, bytes) deepest first, 0 = no quota. Only the metadata stream
    is read: sizes are in it for single and split archives alike."""
    used = {path: 0 for path, _ in limits}
    with meta.open("rb") as stream:
        for entry in iter_entries(stream):
            if entry.kind != "file":
                continue            # a hardlink adds no data
            name = "/" + entry.path
            path = next((p for p, _ in limits if p == "/" or name == p or name.startswith(p + "/")),
                        None)
            if path is None:
                continue
            used[path] += entry.size
            limit = dict(limits)[path]
            if limit and used[path] > limit:
                leaf = entry.path.rsplit("/", 1)[-1]    # extract.rs: "error at entry {:?}"
                return (f'error at entry "{leaf}": failed to copy file contents: Disk quota '
                        'exceeded (os error 122)')
    return None


def extract_ct_archive(meta: Path, payload: Path | None, rootfs: Path) -> None:
    """Unpack the pxar archive into the (empty) folder ``rootfs``; raises PxarError."""
    directories: list[tuple[Path, Entry]] = []
    with meta.open("rb") as meta_in, contextlib.ExitStack() as stack:
        payload_stream = stack.enter_context(payload.open("rb")) if payload else None
        # the whole archive is checked before the first byte is written
        entries = list(iter_entries(meta_in, payload_stream))
        for entry in entries:
            if entry.kind == "symlink":
                _check_symlink(entry)
        for entry in entries:
            target = rootfs / entry.path if entry.path else rootfs
            if entry.kind == "dir":
                if entry.path:
                    target.mkdir(mode=0o700)
                directories.append((target, entry))
            elif entry.kind == "file":
                _write_file(target, read_file(meta_in, payload_stream, entry, _FILE_READ_LIMIT), entry)
            elif entry.kind == "symlink":
                os.symlink(entry.link_target, target)
                os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
            elif entry.kind == "hardlink":
                os.link(rootfs / entry.link_target, target, follow_symlinks=False)
            elif entry.kind == "fifo":
                os.mkfifo(target, _safe_mode(entry.mode, 0o600))
    for folder, entry in reversed(directories):     # deepest first: modes may drop write bits
        if entry.path:
            os.chmod(folder, _safe_mode(entry.mode, 0o700))
        os.utime(folder, ns=(entry.mtime_ns, entry.mtime_ns))


def _write_file(target: Path, data: bytes, entry: Entry) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(target, _safe_mode(entry.mode, 0o600))
    os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))


def _safe_mode(mode: int, owner_bits: int) -> int:
    """tarfile's ``data`` filter rule: no setuid/setgid/sticky, no group/other write, the
    owner may always read and write (and enter a directory)."""
    return (mode & 0o755) | owner_bits


def _check_symlink(entry: Entry) -> None:
    target = PurePosixPath(entry.link_target)
    depth = len(PurePosixPath(entry.path).parts) - 1
    for part in target.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            break
    if target.is_absolute() or depth < 0:
        raise PxarError(f"pxar: symlink '/{shown(entry.path)}' points outside the container's "
                        "root file system (refused by the double)")
