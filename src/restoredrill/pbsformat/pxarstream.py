"""Bounded reading of one pxar stream for :mod:`restoredrill.pbsformat.pxar`: exact reads
that name the entry when the stream ends early, skips that seek when they can, and the
payload stream's markers (upstream pxar ``src/decoder/mod.rs`` ``DecoderImpl::new``:
PAYLOAD_START_MARKER first; ``src/encoder/mod.rs`` ``close``: PAYLOAD_TAIL_MARKER last;
``create_file_do``: each file's PAYLOAD header where its PAYLOAD_REF points)."""
from __future__ import annotations

import io
import os
from typing import BinaryIO

from restoredrill.pbsformat.pxarformat import HEADER, PXAR_PAYLOAD

_SKIP_CHUNK = 1 << 20
_SHOWN_LIMIT = 200


def shown(path: str) -> str:
    """An archive path fit for a one-line message: bytes outside printable ASCII (control
    characters, ANSI escapes, bidi marks, invalid UTF-8) become ``\\xNN``; at most 200
    characters."""
    raw = os.fsencode(path)
    text = "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw)
    return text if len(text) <= _SHOWN_LIMIT else text[:_SHOWN_LIMIT] + "..."


class Stream:
    """One input stream and the offset read so far; a seekable stream is read from its
    start (offset 0), whatever its position was."""

    def __init__(self, raw: BinaryIO, what: str, error: type[ValueError]) -> None:
        self.raw, self.what, self.error = raw, what, error
        self.pos = 0
        self.size = None
        self.payload_end = 0    # end of the furthest PAYLOAD a reference pointed to
        try:
            seekable = raw.seekable()
        except (AttributeError, ValueError, OSError):
            seekable = False
        if seekable:
            self.size = raw.seek(0, io.SEEK_END)
            raw.seek(0)

    def fail(self, path: str, what: str) -> ValueError:
        return self.error(f"pxar: {what} at '/{shown(path)}'")

    def read_exact(self, count: int, path: str, *, eof_ok: bool = False) -> bytes | None:
        parts, wanted = [], count
        while wanted:
            part = self.raw.read(min(wanted, _SKIP_CHUNK))
            if not part:
                if eof_ok and wanted == count:
                    return None
                raise self.fail(path, f"{self.what} truncated: it ends at offset "
                                      f"{self.pos + count - wanted}, {wanted} bytes short")
            parts.append(part)
            wanted -= len(part)
        self.pos += count
        return b"".join(parts)

    def check_room(self, count: int, path: str) -> None:
        if self.size is not None and self.pos + count > self.size:
            raise self.fail(path, f"{count} bytes at offset {self.pos} go beyond the end of "
                                  f"the {self.what} ({self.size} bytes)")

    def skip(self, count: int, path: str) -> None:
        self.check_room(count, path)
        if self.size is not None:
            self.raw.seek(self.pos + count)
            self.pos += count
            return
        while count:
            step = min(count, _SKIP_CHUNK)
            self.read_exact(step, path)
            count -= step

    def seek(self, offset: int, path: str) -> None:
        """Go to ``offset``: any offset in a seekable stream, only forward in a pipe."""
        if self.size is None:
            if offset < self.pos:
                raise self.fail(path, f"offset {offset} in the {self.what} lies before what "
                                      f"was already read ({self.pos}) and it cannot seek")
            self.skip(offset - self.pos, path)
            return
        if not 0 <= offset <= self.size:
            raise self.fail(path, f"offset {offset} is outside the {self.what} "
                                  f"({self.size} bytes)")
        self.raw.seek(offset)
        self.pos = offset

    def expect_marker(self, htype: int, path: str, problem: str) -> None:
        raw = self.read_exact(HEADER.size, path)
        if HEADER.unpack(raw) != (htype, HEADER.size):
            raise self.fail(path, f"{self.what} {problem}")

    def check_payload(self, offset: int, length: int, path: str) -> None:
        """A PAYLOAD_REF's target: a PAYLOAD header of ``length`` content bytes at
        ``offset``, inside the stream and after its start marker."""
        if offset < HEADER.size:
            raise self.fail(path, f"payload offset {offset} points into the start marker")
        self.seek(offset, path)
        htype, full_size = HEADER.unpack(self.read_exact(HEADER.size, path))
        if htype != PXAR_PAYLOAD or full_size != length + HEADER.size:
            raise self.fail(path, f"no PAYLOAD of {length} bytes at payload offset {offset}")
        self.check_room(length, path)
        self.payload_end = max(self.payload_end, offset + HEADER.size + length)

    def expect_tail(self, htype: int, path: str) -> None:
        """The stream ends with the marker ``htype`` (read to the end if it cannot seek)."""
        if self.size is not None:
            if self.size - HEADER.size < max(self.pos, self.payload_end):
                raise self.fail(path, f"{self.what} has no room for its tail marker")
            self.seek(self.size - HEADER.size, path)
            last = self.read_exact(HEADER.size, path)
        else:
            last = b""
            while True:
                part = self.raw.read(_SKIP_CHUNK)
                if not part:
                    break
                self.pos += len(part)
                last = (last + part)[-HEADER.size:]
        if len(last) != HEADER.size or HEADER.unpack(last) != (htype, HEADER.size):
            raise self.fail(path, f"{self.what} does not end with its tail marker")
