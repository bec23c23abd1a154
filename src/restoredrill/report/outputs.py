"""Writing report files: atomically, and never lost.

Every file goes through a temporary file in the same folder and a rename, so a
reader (a CI upload, node_exporter, a browser) never sees half a file. When the
reports folder cannot be written, the files go to a new folder under the system
temp dir and the run says where (a notice), so a report is never lost.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

FALLBACK_PREFIX = "restoredrill-reports-"


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def usable_dir(wanted: Path) -> tuple[Path, str | None]:
    """``wanted`` if a file can be created in it, else a new fallback folder and why."""
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".restoredrill-probe-", dir=wanted)
        os.close(fd)
        os.unlink(probe)
        return wanted, None
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix=FALLBACK_PREFIX))
        reason = exc.strerror or type(exc).__name__
        return fallback, (f"the reports folder {wanted} cannot be written ({reason}); the reports of this run "
                          f"were written to {fallback} instead")


def write_files(out_dir: Path, files: dict[str, str]) -> tuple[Path, dict[str, Path], list[str]]:
    """Write ``{name: text}`` into ``out_dir`` (or a fallback folder); returns the folder used,
    the paths written and notices."""
    folder, why = usable_dir(out_dir)
    notices = [why] if why else []
    written: dict[str, Path] = {}
    for name, text in files.items():
        try:
            write_atomically(folder / name, text)
        except OSError as exc:
            if folder == out_dir:        # the folder broke half-way (disk full?): start again elsewhere
                fallback = Path(tempfile.mkdtemp(prefix=FALLBACK_PREFIX))
                notices.append(f"{folder / name} could not be written ({exc.strerror or exc}); the reports "
                               f"of this run were written to {fallback} instead")
                return write_files_plain(fallback, files, notices)
            notices.append(f"{folder / name} could not be written ({exc.strerror or exc})")
            continue
        written[name] = folder / name
    return folder, written, notices


def write_files_plain(folder: Path, files: dict[str, str], notices: list[str]):
    written = {}
    for name, text in files.items():
        try:
            write_atomically(folder / name, text)
            written[name] = folder / name
        except OSError as exc:
            notices.append(f"{folder / name} could not be written ({exc.strerror or exc})")
    return folder, written, notices
