"""Planning: which drills run, and how much each may read. Pure functions, no I/O."""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

KINDS = ("borg", "pbs", "offsite", "lint", "monitoring")
IMPLEMENTED_KINDS = ("borg", "pbs", "offsite", "lint", "monitoring")


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


BACKUP_TYPES = {"qemu": "vm", "lxc": "ct"}


def backup_of_type(item: dict, guest_type: str) -> bool:
    """A PVE backup volume of a ``qemu`` or ``lxc`` guest. Listing by ``vmid`` matches the
    backup-id only (pve-storage PBSPlugin ``list_volumes``: ``backup-id`` filter, and PBS
    lists every type of that id), so ``vm/110`` and ``ct/110`` both come back; the
    volume's ``subtype`` (or its ``pbs-vm``/``pbs-ct`` format, or its volid) says which."""
    wanted = BACKUP_TYPES[guest_type]
    if item.get("subtype"):
        return item["subtype"] == guest_type
    if item.get("format"):
        return item["format"] == f"pbs-{wanted}"
    return f":backup/{wanted}/" in str(item.get("volid", ""))


def backup_finished(item: dict) -> bool:
    """A PVE backup volume whose snapshot is complete. PBS gives no ``size`` for a snapshot
    without ``index.json.blob`` (a backup still running), and PBSPlugin ``list_volumes``
    shows it as ``size => $item->{size} // 1``: a size of 1 byte is an unfinished snapshot
    (a finished one holds at least its manifest)."""
    try:
        return int(item.get("size", 0)) != 1
    except (TypeError, ValueError):
        return False


def choose_snapshot(items: list[dict], how: str, seed: str, pinned: str | None = None, *,
                    guest_type: str) -> dict:
    """Pick a restore point from PVE's backup list (``ctime``, ``volid``, ``verification``)
    of a ``guest_type`` guest (qemu/lxc): latest, latest verified, oldest retained, random
    within retention (so over months every age is exercised), or pinned. Volumes of the
    other type with the same id and unfinished snapshots are never chosen."""
    usable = [item for item in items if backup_of_type(item, guest_type)]
    other = len(items) - len(usable)
    finished = [item for item in usable if backup_finished(item)]
    ordered = sorted(finished, key=lambda item: int(item.get("ctime", 0)))
    if not ordered:
        left = []
        if other:
            left.append(f"{other} of the other guest type ({'ct' if guest_type == 'qemu' else 'vm'}) with this id")
        if len(usable) > len(finished):
            left.append(f"{len(usable) - len(finished)} unfinished (no manifest yet: a backup still running)")
        raise PlanError("no snapshot to restore" + (f" (left out: {'; '.join(left)})" if left else ""))
    if how == "pinned":
        match = [item for item in ordered if item.get("volid") == pinned]
        if not match:
            gone = next((i for i in items if i.get("volid") == pinned), None)
            why = (" (it is unfinished or of the other guest type)" if gone is not None else "")
            raise PlanError(f"pinned snapshot {pinned} is not in the backup list{why}")
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


# --- scheduled mode: which restore targets this run tests --------------------------------

@dataclass(frozen=True)
class RestoreTarget:
    """A restore target (``borg:REPO`` extract and data checks, ``guest:NAME`` restore and
    health checks), when it was last restore-tested and how long that takes."""
    name: str
    last_tested: datetime | None
    expected_seconds: float


@dataclass(frozen=True)
class Rotation:
    chosen: tuple[str, ...]
    left_out: tuple[str, ...]
    budget_seconds: float
    planned_seconds: float
    notes: tuple[str, ...] = ()


def expected_restore_seconds(past_totals: list[float], default: float) -> float:
    """The time to budget for a target: the longest of its last three restore tests (oldest
    first in ``past_totals``), or ``default`` when it was never tested."""
    recent = [seconds for seconds in past_totals if seconds is not None and seconds >= 0][-3:]
    return max(recent) if recent else default


def plan_restore_rotation(targets: list[RestoreTarget], *, budget_seconds: float, now: datetime,
                          cover_days: float) -> Rotation:
    """Least recently tested first (never tested before all others, then in the given order).
    The most overdue target is always taken, even over budget, so a target longer than the
    budget is still tested; the others only while they fit what is left of the budget."""
    never = datetime.min.replace(tzinfo=now.tzinfo)
    order = sorted(range(len(targets)), key=lambda i: (targets[i].last_tested or never, i))
    chosen, left_out, used, notes = [], [], 0.0, []
    for position, index in enumerate(order):
        target = targets[index]
        if position == 0 or used + target.expected_seconds <= budget_seconds:
            chosen.append(target.name)
            used += target.expected_seconds
        else:
            left_out.append(target.name)
    if chosen and used > budget_seconds:
        notes.append(f"{chosen[0]} alone is expected to take {used:.0f} s, over the restore budget of "
                     f"{budget_seconds:.0f} s; it is the most overdue, so it runs anyway")
    notes += coverage_notes(targets, left_out, budget_seconds, now, cover_days)
    return Rotation(tuple(chosen), tuple(left_out), budget_seconds, used, tuple(notes))


def coverage_notes(targets: list[RestoreTarget], left_out: list[str], budget_seconds: float, now: datetime,
                   cover_days: float) -> list[str]:
    notes = []
    for target in targets:
        if target.name in left_out and target.last_tested and now - target.last_tested > timedelta(days=cover_days):
            notes.append(f"{target.name} was last restore-tested {target.last_tested:%Y-%m-%d}, more than "
                         f"{cover_days:g} days ago, and does not fit this run's budget")
    total = sum(target.expected_seconds for target in targets)
    runs_needed = -(-total // budget_seconds) if budget_seconds > 0 else float("inf")
    if runs_needed > cover_days:
        notes.append(f"all restore targets together take about {total:.0f} s: at {budget_seconds:.0f} s a run "
                     f"the rotation needs {runs_needed:g} daily runs, more than {cover_days:g} days; raise "
                     f"scratch.budgets.max_run_time or run more often")
    return notes


# --- monthly mode: the order a site comes back in -----------------------------------------

TIERS = ("firewall", "dns", "pbs", "application")
DNS_NAMES = ("dns", "unbound", "bind", "pihole", "pi-hole", "adguard", "resolver", "dnsmasq")


@dataclass(frozen=True)
class PlanGuest:
    name: str
    strategy: str                    # pbs | config-export | none
    depends_on: tuple[str, ...] = ()
    tier: str = "application"        # firewall | dns | pbs | application


@dataclass(frozen=True)
class RecoveryPlan:
    order: tuple[PlanGuest, ...]
    cycles: tuple[tuple[str, ...], ...]  # each cycle as a -> b -> a (first name repeated last)
    notes: tuple[str, ...] = ()


def guest_tier(name: str, strategy: str, ports: tuple[str, ...] = (), pbs_host: str | None = None) -> str:
    """firewall: restored from its config export; dns: named like a resolver or checked on
    port 53; pbs: named like the backup server (or the host of the PBS URL); else application."""
    if strategy == "config-export":
        return "firewall"
    words = set(name.lower().replace("_", "-").replace(".", "-").split("-"))
    if words & set(DNS_NAMES) or "53" in ports:
        return "dns"
    if "pbs" in words or name == pbs_host or {"backup", "server"} <= words:
        return "pbs"
    return "application"


def plan_recovery_order(guests: list[PlanGuest]) -> RecoveryPlan:
    """Topological order over ``depends_on`` (Kahn); among the guests that are ready, the lower
    tier (firewall, DNS, PBS, applications) first, then the inventory order. Guests on a cycle
    cannot be ordered: each cycle is named and its guests follow the rest."""
    by_name = {guest.name: guest for guest in guests}
    rank = {guest.name: (TIERS.index(guest.tier), i) for i, guest in enumerate(guests)}
    notes = [f"{guest.name} depends on {dep}, which is not in the inventory"
             for guest in guests for dep in guest.depends_on if dep not in by_name]
    needs = {guest.name: {dep for dep in guest.depends_on if dep in by_name and dep != guest.name}
             for guest in guests}
    done: list[str] = []
    while True:
        ready = [name for name in by_name if name not in done and needs[name] <= set(done)]
        if not ready:
            break
        done.append(min(ready, key=rank.__getitem__))
    stuck = [name for name in by_name if name not in done]
    cycles = find_cycles({name: needs[name] & set(stuck) for name in stuck})
    for cycle in cycles:
        notes.append("dependency cycle: " + " -> ".join(cycle) + " (no order brings these back)")
    order = done + sorted(stuck, key=rank.__getitem__)
    return RecoveryPlan(tuple(by_name[name] for name in order), tuple(cycles), tuple(notes))


def find_cycles(edges: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Elementary cycles found by depth-first search, each reported once (as a rotation of
    its lexicographically smallest start)."""
    found: dict[frozenset, tuple[str, ...]] = {}

    def visit(name: str, path: list[str]) -> None:
        for dep in sorted(edges.get(name, ())):
            if dep in path:
                cycle = path[path.index(dep):]
                start = cycle.index(min(cycle))
                rotated = cycle[start:] + cycle[:start]
                found.setdefault(frozenset(rotated), tuple(rotated + [rotated[0]]))
            elif len(path) < len(edges):
                visit(dep, path + [dep])

    for name in sorted(edges):
        visit(name, [name])
    return sorted(found.values())
