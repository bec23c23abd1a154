"""Which restore drills may run together: the scratch budgets as pure functions.

``scratch.budgets`` caps the scratch guests in flight at once: how many
(``max_parallel``), the memory their backed-up configs declare (``max_memory``) and the
size of their backups (``max_disk``). The claim ledger (``fixtures/pbs_restore.py``,
in ``state.db``) asks :func:`admit` before every restore; ``restoredrill run
--workers N`` asks :func:`worker_count`. No I/O here: plain values in, plain values out.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MIB = 1024 ** 2
DEFAULT_MEMORY_MIB = 512          # qemu-server and pve-container default for ``memory``


@dataclass(frozen=True)
class Budget:
    max_parallel: int
    max_memory: int               # bytes
    max_disk: int                 # bytes

    @classmethod
    def from_inventory(cls, budgets) -> Budget:
        """From ``scratch.budgets`` of the inventory model."""
        return cls(int(budgets.max_parallel), int(budgets.max_memory), int(budgets.max_disk))


@dataclass(frozen=True)
class Demand:
    """What one scratch guest takes from the budget while it exists."""
    guest: str
    memory: int                   # bytes, from the backup's config
    disk: int                     # bytes, the backup's size


def guest_memory(config: dict) -> int:
    """Configured memory in bytes of a backed-up guest config (``memory: 2048`` or PVE 8's
    ``memory: current=2048``, MiB); the PVE default when absent."""
    raw = str(config.get("memory", "")).strip()
    match = re.search(r"(?:^|current=)(\d+)", raw)
    return int(match.group(1) if match else DEFAULT_MEMORY_MIB) * MIB


def demand_of(guest: str, config: dict, backup_bytes: int) -> Demand:
    return Demand(guest, guest_memory(config), int(backup_bytes))


def never_fits(budget: Budget, demand: Demand) -> str | None:
    """Why this guest can never run, even alone (waiting would not help); None if it can."""
    if demand.memory > budget.max_memory:
        return (f"guest {demand.guest} needs {human(demand.memory)} of memory, more than "
                f"scratch.budgets.max_memory ({human(budget.max_memory)})")
    if demand.disk > budget.max_disk:
        return (f"guest {demand.guest}'s backup is {human(demand.disk)}, more than "
                f"scratch.budgets.max_disk ({human(budget.max_disk)})")
    return None


def admit(budget: Budget, running: Sequence[Demand], candidate: Demand) -> str | None:
    """None when ``candidate`` may start beside ``running``; else what it waits for."""
    if len(running) + 1 > budget.max_parallel:
        return f"{len(running)} scratch guest(s) in flight, scratch.budgets.max_parallel is {budget.max_parallel}"
    memory = sum(d.memory for d in running) + candidate.memory
    if memory > budget.max_memory:
        return (f"memory {human(memory)} with {candidate.guest} would exceed scratch.budgets.max_memory "
                f"({human(budget.max_memory)})")
    disk = sum(d.disk for d in running) + candidate.disk
    if disk > budget.max_disk:
        return (f"disk {human(disk)} with {candidate.guest} would exceed scratch.budgets.max_disk "
                f"({human(budget.max_disk)})")
    return None


def plan_waves(budget: Budget, demands: Iterable[Demand]) -> tuple[list[list[Demand]], list[tuple[Demand, str]]]:
    """Group guests into waves that may run together (first fit, in the given order), and
    list those that never fit with the reason. A planning view of :func:`admit`."""
    waves: list[list[Demand]] = []
    refused: list[tuple[Demand, str]] = []
    for demand in demands:
        reason = never_fits(budget, demand)
        if reason:
            refused.append((demand, reason))
            continue
        wave = next((w for w in waves if admit(budget, w, demand) is None), None)
        if wave is None:
            waves.append([demand])
        else:
            wave.append(demand)
    return waves, refused


def first_free_vmid(first: int, last: int, taken: Iterable[int]) -> int | None:
    """The lowest VMID of the scratch range that is neither in PVE nor claimed."""
    used = set(taken)
    return next((vmid for vmid in range(first, last + 1) if vmid not in used), None)


def worker_count(requested: int | None, max_parallel: int) -> tuple[int, str | None]:
    """pytest-xdist workers for ``--workers N``: at most ``max_parallel``; 1 means no xdist."""
    if not requested or requested < 1:
        return 1, None
    if requested > max_parallel:
        return max_parallel, (f"--workers {requested} capped at scratch.budgets.max_parallel "
                              f"({max_parallel})")
    return requested, None


def human(size: int) -> str:
    for unit, factor in (("GiB", 1024 ** 3), ("MiB", MIB), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"
