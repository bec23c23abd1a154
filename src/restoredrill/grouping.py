"""Which pytest-xdist worker runs which case: every case of one restore target on one worker.

A Borg repository's cases share one module-scoped extract (and Borg's one lock); a guest's
restore case and every health case share one scratch guest. Were they split over workers,
each worker would restore the target again, at the same time: two scratch copies of one
guest answer on the same address of the drill bridge, and the address check fails them.

pytest-xdist's own ``--dist loadgroup`` (an ``xdist_group`` mark, turned into an ``@group``
suffix of the node id in the worker) does nothing on pytest 9: xdist 3.8 writes
``item._nodeid``, which pytest 9 no longer reads (``Node.nodeid`` is ``str(self._id)``,
_pytest/nodes.py). So the controller groups by itself (:class:`TargetScheduling`, through the
``pytest_xdist_make_scheduler`` hook): it sees only node ids, and maps each one to its target
with the inventory, which it has loaded too. Pure: node ids and names in, group names out.
"""
from __future__ import annotations

import fnmatch

# drill files whose cases share one restore per target, and the inventory names of those targets
TARGET_FILES = (("test_borg*.py", "borg"), ("test_pbs_restore*.py", "guest"))


def restore_targets(inventory) -> dict[str, dict[str, set[str]]]:
    """``{"borg": {repo: its data-check ids}, "guest": {guest restored from PBS: its health
    checks}}``: the suffixes of the case ids after ``NAME-``."""
    from restoredrill.fixtures.borg import data_checks
    guests = [g for g in inventory.guests if g.strategy == "pbs"] if inventory.proxmox.pve else []
    return {"borg": {repo.name: {check.id for check in data_checks(repo)} for repo in inventory.borg.repositories},
            "guest": {guest.name: {check.name for check in guest.health} for guest in guests}}


def param_id(nodeid: str) -> str | None:
    """``app-vm-http`` of ``drills/test_pbs_restore.py::test_health[app-vm-http]`` (an ``@group``
    suffix that older pytest-xdist appends is dropped)."""
    if nodeid.rfind("@") > nodeid.rfind("]"):
        nodeid = nodeid[:nodeid.rfind("@")]
    function = nodeid.rsplit("::", 1)[-1]
    if "[" not in function or not function.endswith("]"):
        return None
    return function[function.index("[") + 1:-1]


def target_of_nodeid(nodeid: str, targets: dict[str, dict[str, set[str]]]) -> str | None:
    """``guest:app-vm`` / ``borg:app-local`` for a case of a restore target; None otherwise.
    Case ids are ``NAME`` or ``NAME-CHECK`` (fixtures/borg.py, fixtures/pbs_restore.py): an
    exact NAME and CHECK of the inventory first; else (ids pytest escaped or numbered) the
    longest name the id starts with."""
    file_name = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    kind = next((kind for pattern, kind in TARGET_FILES if fnmatch.fnmatch(file_name, pattern)), None)
    ident = param_id(nodeid) if kind else None
    if ident is None:
        return None
    known = targets.get(kind, {})
    exact = [name for name, checks in known.items() if ident == name or ident[len(name) + 1:] in checks
             and ident.startswith(f"{name}-")]
    names = exact or [name for name in known if ident.startswith(f"{name}-")]
    return f"{kind}:{max(names, key=len)}" if names else None


def scope_of(nodeid: str, targets: dict[str, dict[str, set[str]]]) -> str:
    """The work unit of a case: its target's group, else the case alone (audits spread freely)."""
    return target_of_nodeid(nodeid, targets) or nodeid


def make_scheduler(config, log, inventory):
    """A LoadScopeScheduling whose work units are :func:`scope_of` (largest units first, as
    xdist's loadscope reorders by default), so one worker runs all of a target's cases."""
    from xdist.scheduler import LoadScopeScheduling
    targets = restore_targets(inventory)

    class TargetScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid, targets)

    return TargetScheduling(config, log)
