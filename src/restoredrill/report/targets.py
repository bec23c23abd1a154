"""Which target (drill) each case belongs to, and which targets did not run.

A drill names its target in its evidence (``drill=guest:app-vm``, ``drill=pbs:offsite``);
that is the truth. Before a case runs, only a guess from the collected item exists (its
``drill_kind`` marker and parameters), and a parameter id is not a target: ``local:gc``
is a PBS job of ``pbs:local``, ``local:app-vm`` a backup group in it. So:

- a case that recorded its drill keeps it;
- a case that failed before recording one takes the drill its siblings recorded (same
  drill file, same parameter id or the same owner in it, or the pattern the file's owners
  follow), else keeps the guess;
- a target is NOT RUN only when a collected case never ran at all (an interrupted run,
  ``--maxfail``): never because a guess matched no recorded drill.
Pure: no I/O, no pytest.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from restoredrill.report.model import Case


@dataclass(frozen=True)
class Collected:
    """A collected drill case before it ran: the guessed drill and its sibling keys."""

    guess: str
    siblings: tuple[str, ...] = ()   # see sibling_keys; empty when the case has no parameters


def sibling_keys(nodeid: str) -> tuple[str, ...]:
    """``drills/test_pbs_audit.py::test_job_ran[local:gc]`` -> ``("drills/test_pbs_audit.py::local:gc",
    "drills/test_pbs_audit.py::local:")``: the same parameter id in the same drill file, then the
    same owner (``local:`` of ``local:gc``, ``local:app-vm``) when the id names one."""
    function = nodeid.rsplit("::", 1)
    if len(function) != 2 or "[" not in function[1]:
        return ()
    param = function[1].split("[", 1)[1].rstrip("]")
    keys = [f"{function[0]}::{param}"]
    if ":" in param:
        keys.append(f"{function[0]}::{param.split(':', 1)[0]}:")
    return tuple(keys)


def recorded_drills(cases: list[Case], collected: dict[str, Collected]) -> dict[str, str]:
    """Sibling key -> the one drill its cases recorded (a drill that differs from the guess, so it
    cannot be the guess itself); a key whose cases recorded different drills is left out."""
    seen: dict[str, set[str]] = {}
    for case in cases:
        item = collected.get(case.nodeid)
        if item is not None and case.drill != item.guess:
            for key in item.siblings:
                seen.setdefault(key, set()).add(case.drill)
    return {key: next(iter(drills)) for key, drills in seen.items() if len(drills) == 1}


def settled(item: Collected, known: dict[str, str]) -> str:
    """The siblings' drill; else, for an owner no sibling ran (``offsite:`` when only ``local:``
    cases ran), the pattern the file's owners follow (``local:`` -> ``pbs:local``); else the guess."""
    found = next((known[key] for key in item.siblings if key in known), None)
    if found is not None:
        return found
    owner_key = next((key for key in item.siblings if key.endswith(":")), None)
    if owner_key is None:
        return item.guess
    where, _, owner = owner_key[:-1].rpartition("::")
    kind = owner_pattern(known, where)
    return f"{kind}:{owner}" if kind else item.guess


def owner_pattern(known: dict[str, str], where: str) -> str | None:
    """The kind K when every owner ``X:`` of the drill file ``where`` recorded the drill ``K:X``."""
    kinds = set()
    for key, drill in known.items():
        if not (key.endswith(":") and key.startswith(f"{where}::")):
            continue
        kind, _, target = drill.partition(":")
        if target != key[len(where) + 2:-1]:
            return None
        kinds.add(kind)
    return kinds.pop() if len(kinds) == 1 else None


def settle_drills(cases: list[Case], collected: dict[str, Collected]) -> list[str]:
    """Give cases that carry only a guessed drill the drill their siblings recorded (in place),
    then return the targets of collected cases that never ran and have no case of their own:
    the NOT RUN rows, in collection order."""
    known = recorded_drills(cases, collected)
    for case in cases:
        item = collected.get(case.nodeid)
        if item is not None and case.drill == item.guess:
            case.drill = case.properties["drill"] = settled(item, known)
    ran = {case.nodeid for case in cases}
    present = {case.drill for case in cases}
    missing: OrderedDict[str, None] = OrderedDict()
    for nodeid, item in collected.items():
        drill = settled(item, known)
        if nodeid not in ran and ":" in drill and drill not in present:
            missing[drill] = None
    return list(missing)
