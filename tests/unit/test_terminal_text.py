"""redact.terminal: what may reach a terminal from names restoredrill did not choose."""
from __future__ import annotations

import pytest

from restoredrill.checks.redact import terminal


@pytest.mark.parametrize("raw", ["\x1b]0;title\x07", "\x1b[2J", "\x9b31m", "\r", "\x00", "\x7f", "\u202e",
                                 "\u2066", "\u200b", "\x08"])
def test_controls_escapes_and_bidi_become_question_marks(raw):
    assert terminal(f"a{raw}b").startswith("a?") and raw not in terminal(f"a{raw}b")


def test_line_breaks_stay_in_messages_and_go_in_one_line_text():
    assert terminal("line1\nline2") == "line1\nline2"
    assert terminal("name\nPASS fake", one_line=True) == "name?PASS fake"
    assert terminal("ünïcode ok ✓") == "ünïcode ok ✓"
