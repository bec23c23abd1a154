"""A failed check is data: what was expected, what was found, and where."""
from __future__ import annotations


class CheckFailed(AssertionError):
    def __init__(self, where: str, expected: str, found: str, hint: str = ""):
        self.where = where
        self.expected = expected
        self.found = found
        self.hint = hint
        text = f"{where}: expected {expected}; found {found}"
        super().__init__(text + (f". {hint}" if hint else ""))
