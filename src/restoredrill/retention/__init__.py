"""Bit-exact simulations of PBS and Borg 1.x prune, and an audit of a backup history.

    from restoredrill.retention import Point, Policy, simulate, audit
    decisions = simulate("borg", points, Policy(keep_daily=7), "Europe/Berlin")

`simulate_pbs` and `simulate_borg` return one `Decision` per input point, in input
order. `audit` checks a history against its policy: would a prune remove something
(prune not running), which periods have no backup, and how old the newest one is.
"""

from __future__ import annotations

from collections.abc import Sequence

from .audit import Audit, RuleCoverage, audit
from .borg import simulate_borg
from .model import Decision, Point, Policy, RetentionError
from .pbs import simulate_pbs

__all__ = [
    "Audit",
    "Decision",
    "ENGINES",
    "Point",
    "Policy",
    "RetentionError",
    "RuleCoverage",
    "audit",
    "simulate",
    "simulate_borg",
    "simulate_pbs",
]

ENGINES = ("pbs", "borg")


def simulate(engine: str, points: Sequence[Point], policy: Policy, tz: object = None, **kw) -> list[Decision]:
    """Run the named engine ("pbs" or "borg"); keyword options (`now`, `oldest_rule`) go to it."""
    if engine == "pbs":
        kw.pop("now", None)  # a PBS prune does not depend on the current time
        return simulate_pbs(points, policy, tz, **kw)
    if engine == "borg":
        return simulate_borg(points, policy, tz, **kw)
    raise RetentionError(f"Unknown prune engine {engine!r}: use 'pbs' or 'borg'.")
