"""Budgets for interpreting restored data (issue 20 §2), from ``scratch.budgets`` and
``scratch.min_free`` in the inventory. Exceeding one fails that check naming it, never
the run. Defaults fit a 2-core, 4 GiB runner (see the README's trust section)."""
from __future__ import annotations

from dataclasses import dataclass

GiB = 1 << 30


@dataclass(frozen=True)
class InterpretBudgets:
    parse_memory_bytes: int = GiB           # scratch.budgets.parse_memory
    statement_seconds: float = 600.0        # scratch.budgets.statement_timeout
    check_seconds: float = 1800.0           # scratch.budgets.check_timeout
    output_bytes: int = 16 << 20            # scratch.budgets.output
    tmpfs_bytes: int = 64 << 20             # scratch.budgets.sandbox_tmpfs
    min_free_bytes: int = GiB               # scratch.min_free

    @classmethod
    def from_scratch(cls, scratch) -> "InterpretBudgets":
        budgets = scratch.budgets
        return cls(parse_memory_bytes=budgets.parse_memory,
                   statement_seconds=budgets.statement_timeout.total_seconds(),
                   check_seconds=budgets.check_timeout.total_seconds(), output_bytes=budgets.output,
                   tmpfs_bytes=budgets.sandbox_tmpfs, min_free_bytes=scratch.min_free)

    def describe(self, budget: str) -> str:
        """``scratch.budgets.NAME (VALUE)`` for a message."""
        values = {"parse_memory": f"{self.parse_memory_bytes} bytes",
                  "statement_timeout": f"{self.statement_seconds:g} s",
                  "check_timeout": f"{self.check_seconds:g} s", "output": f"{self.output_bytes} bytes",
                  "sandbox_tmpfs": f"{self.tmpfs_bytes} bytes"}
        if budget == "min_free":
            return f"scratch.min_free ({self.min_free_bytes} bytes must stay free)"
        return f"scratch.budgets.{budget} ({values.get(budget, '?')})"
