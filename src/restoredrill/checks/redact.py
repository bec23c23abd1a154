"""How a check speaks of restored content without repeating it.

Restored files, guest command output, HTTP bodies and query results are hostile
and may be secret: messages and evidence end up in JUnit, HTML, mail and the state
database. By default they carry only a fingerprint (``sha256:`` and the first 12
hex digits), the length in bytes and whether the content matched what the
inventory declared. An inventory entry that sets ``show_found: true`` may also
show what was found: at most :data:`SHOW_LIMIT` printable characters, control and
other non-printable characters replaced by ``?``, and never for a file that is
reachable under more than one name (a hard link).
"""
from __future__ import annotations

import hashlib
import re

SHOW_LIMIT = 80
HIDDEN_HINT = "content not shown; set show_found: true on this inventory entry to see it"


def fingerprint(data: bytes) -> str:
    """``sha256:<12 hex>, N bytes``: enough to tell two values apart, not to read one."""
    return f"sha256:{hashlib.sha256(data).hexdigest()[:12]}, {len(data)} bytes"


def printable(text: str, limit: int = SHOW_LIMIT) -> str:
    """At most ``limit`` characters, each printable (others, bidi controls included, become ``?``)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


# C0 controls but newline and tab, DEL, C1 controls (U+0080-U+009F: 8-bit CSI/OSC), and the
# bidi and zero-width format characters that reorder or hide text on a terminal
_TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e"
                              "\u2066-\u2069\ufeff]")


def terminal(text: str, *, one_line: bool = False) -> str:
    """Text safe to print on a terminal: ESC (colors, OSC titles, cursor moves), CR and every
    other control or bidi character becomes ``?`` (names from an archive can hold them);
    ``one_line`` also turns line breaks into ``?`` (a name cannot start a fake line)."""
    cleaned = _TERMINAL_UNSAFE.sub("?", str(text))
    return cleaned.replace("\n", "?").replace("\t", " ") if one_line else cleaned


def as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data


def describe(data: bytes | str, *, matched: bool | None = None, show: bool = False,
             linked: bool = False, tail: bool = False) -> str:
    """One phrase about content: fingerprint, matched or not, and (opt-in) the content itself.

    ``tail``: show the last characters (command output) rather than the first.
    """
    raw = as_bytes(data)
    words = [fingerprint(raw)]
    if matched is not None:
        words.append("matched" if matched else "did not match")
    if show and not linked:
        text = raw.decode("utf-8", "replace").strip()
        words.append(f"content {printable(text[-SHOW_LIMIT:] if tail else text)!r}")
    elif show:
        words.append("content not shown: the file has more than one link")
    return ", ".join(words)


def evidence(prefix: str, data: bytes | str, *, matched: bool | None = None, show: bool = False,
             linked: bool = False) -> dict[str, object]:
    """The evidence keys for content: ``<prefix>_sha256``, ``_bytes``, ``_matched``, opt-in ``_shown``."""
    raw = as_bytes(data)
    facts: dict[str, object] = {f"{prefix}_sha256": f"sha256:{hashlib.sha256(raw).hexdigest()[:12]}",
                                f"{prefix}_bytes": len(raw)}
    if matched is not None:
        facts[f"{prefix}_matched"] = matched
    if show and not linked:
        facts[f"{prefix}_shown"] = printable(raw.decode("utf-8", "replace").strip())
    return facts
