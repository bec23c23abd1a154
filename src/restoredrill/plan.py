"""Planning: which drills run, and how much each may read. Pure functions, no I/O."""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

KINDS = ("borg", "pbs", "offsite", "lint")
IMPLEMENTED_KINDS = ("borg", "pbs", "offsite", "lint")


class PlanError(ValueError):
    pass


def select_kinds(selected: list[str] | None) -> list[str]:
    """The drill kinds to run: all implemented ones, or the ones asked for."""
    if not selected:
        return list(IMPLEMENTED_KINDS)
    unknown = [k for k in selected if k not in KINDS]
    if unknown:
        raise PlanError(f"unknown drill kind {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    return list(dict.fromkeys(selected))


@dataclass(frozen=True)
class CheckPlan:
    full: bool                 # borg check --verify-data this run
    reason: str
    runs_until_full: int       # 0 when this run is the full one


def plan_borg_check(runs_since_full: int | None, last_full: datetime | None, *, every_runs: int,
                    max_age: timedelta, now: datetime) -> CheckPlan:
    """Full read every ``every_runs`` runs or when the last full read is older than ``max_age``.

    Other runs do a repository check (segment CRCs) and an archives check of the newest
    archive; the extract drill decrypts the chosen archive anyway. So every chunk is
    read at least once within ``every_runs`` runs.
    """
    if last_full is None or runs_since_full is None:
        return CheckPlan(True, "no full read of this repository is on record", 0)
    if now - last_full >= max_age:
        return CheckPlan(True, f"last full read {last_full:%Y-%m-%d} is older than {max_age.days} days", 0)
    if runs_since_full + 1 >= every_runs:
        return CheckPlan(True, f"every {every_runs} runs a full read (rotation)", 0)
    left = every_runs - runs_since_full - 1
    return CheckPlan(False, f"partial check; full read due in {left} run(s) or by "
                            f"{(last_full + max_age):%Y-%m-%d}", left)


def choose_archive(names: list[str], how: str, seed: str) -> str:
    """``names`` oldest first; pick the newest, the oldest, or a random one (seeded by the run)."""
    if not names:
        raise PlanError("no archives to choose from")
    if how == "latest":
        return names[-1]
    if how == "oldest":
        return names[0]
    return random.Random(seed).choice(names)


def choose_snapshot(items: list[dict], how: str, seed: str, pinned: str | None = None) -> dict:
    """Pick a restore point from PVE's backup list (``ctime``, ``volid``, ``verification``):
    latest, latest verified, oldest retained, random within retention (so over months every
    age is exercised), or pinned."""
    ordered = sorted(items, key=lambda item: int(item.get("ctime", 0)))
    if not ordered:
        raise PlanError("no snapshot to restore")
    if how == "pinned":
        match = [item for item in ordered if item.get("volid") == pinned]
        if not match:
            raise PlanError(f"pinned snapshot {pinned} is not in the backup list")
        return match[0]
    if how == "latest-verified":
        verified = [item for item in ordered if (item.get("verification") or {}).get("state") == "ok"]
        if not verified:
            raise PlanError("no verified snapshot (verification state ok) to restore")
        return verified[-1]
    if how == "latest":
        return ordered[-1]
    if how == "oldest":
        return ordered[0]
    return random.Random(seed).choice(ordered)
