"""A failed check is data: what was expected, what was found, and where."""
from __future__ import annotations

from dataclasses import dataclass, field


class CheckFailed(AssertionError):
    def __init__(self, where: str, expected: str, found: str, hint: str = ""):
        self.where = where
        self.expected = expected
        self.found = found
        self.hint = hint
        text = f"{where}: expected {expected}; found {found}"
        super().__init__(text + (f". {hint}" if hint else ""))


@dataclass
class Verdict:
    """The outcome of an audit: the problems found (each says expected / found / where) and the
    facts worth keeping as evidence."""
    problems: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def message(self) -> str:
        return "; ".join(self.problems)
