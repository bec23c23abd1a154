"""Which copy of a guest's backups a restore drill restores from (pure logic).

A site keeps its PBS backups twice: the ``local`` datastore (the fast layer) and the
``offsite`` one (in the lab and on PBS 4 an S3-backed datastore: the copy a disaster
restores from). Each guest's ``restore_from`` picks one: ``local``, ``offsite`` or
``rotate`` (default): the copy whose last passing restore case is oldest (never tested
counts as oldest; a tie goes to the local copy, which costs no egress), so that over
``reports.max_untested_days`` every copy of every guest is restore-tested.

A copy is reached through the PVE storage that points at its datastore (and namespace):
PVE's restore reads from the PBS datastore the storage names (pve-storage
``src/PVE/Storage/PBSPlugin.pm``: ``do_raw_client_cmd`` passes the storage.cfg entry's
``datastore`` as ``--repository`` and its ``namespace`` as ``--ns``, and the storage's own
key ``/etc/pve/priv/storage/<id>.enc`` as ``--keyfd``).

An offsite restore downloads the whole backup from the object store; the offsite S3
target's ``egress_budget`` caps what the offsite restores of one run may read. A restore
that would pass it is not started (a JUnit skip with the reason), never half-run.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

LOCAL, OFFSITE = "local", "offsite"
DEFAULT_LOCAL_STORAGE = "pbs"     # what the drills used before datastores were declared


@dataclass(frozen=True)
class BackupCopy:
    copy: str                       # "local" or "offsite"
    pve_storage: str
    datastore: str | None = None
    namespace: str | None = None
    s3_target: str | None = None
    egress_budget: int | None = None    # bytes per run (offsite S3 target), None: no cap

    def evidence(self) -> dict[str, str]:
        """The JUnit properties naming the copy (also what ``rotate`` reads back)."""
        return {"copy": self.copy, "pve_storage": self.pve_storage, "datastore": self.datastore or "",
                "namespace": self.namespace or ""}


class CopyError(ValueError):
    """The inventory declares no copy the guest's ``restore_from`` can use."""


def copies_of(inventory, budget_of=lambda target: None) -> dict[str, BackupCopy]:
    """The restorable copies the inventory declares: the first ``role: local`` and the first
    ``role: offsite`` datastore that have a ``pve_storage``. Without a local one, the PVE
    storage ``pbs`` stands for it (as before copies were chosen). ``budget_of(target)``:
    the egress budget in bytes of an ``offsite.s3`` target."""
    pbs = inventory.proxmox.pbs
    stores = pbs.datastores if pbs else []
    found: dict[str, BackupCopy] = {}
    for store in stores:
        if store.pve_storage and store.role not in found:
            target = store.s3_target if store.backend == "s3" else None
            found[store.role] = BackupCopy(store.role, store.pve_storage, store.name, store.namespace, target,
                                           budget_of(target) if target else None)
    found.setdefault(LOCAL, BackupCopy(LOCAL, DEFAULT_LOCAL_STORAGE))
    return {name: found[name] for name in (LOCAL, OFFSITE) if name in found}


def last_tested_by_copy(rows: Iterable[dict], guest: str) -> dict[str, datetime | None]:
    """Newest passing restore of ``guest`` per copy, from history rows
    (``{"drill", "check", "outcome", "run_started", "evidence"}``). A row without ``copy``
    evidence was written before copies existed: every such restore came from the local copy."""
    last: dict[str, datetime | None] = {}
    for row in rows:
        if row["drill"] != f"guest:{guest}" or row["check"] != "restore" or row["outcome"] != "passed":
            continue
        copy = str((row.get("evidence") or {}).get("copy") or LOCAL)
        when = row["run_started"]
        if last.get(copy) is None or when > last[copy]:
            last[copy] = when
    return last


def choose_copy(guest, copies: dict[str, BackupCopy], last_tested: dict[str, datetime | None],
                pinned_storage: str | None = None) -> tuple[BackupCopy, str]:
    """(copy, why) for ``guest``: the pinned snapshot's storage decides when pinned; else
    ``restore_from``; ``rotate`` takes the least recently restore-tested copy."""
    if pinned_storage is not None:
        match = [c for c in copies.values() if c.pve_storage == pinned_storage]
        if not match:
            raise CopyError(f"guest {guest.name}: the pinned snapshot's storage {pinned_storage!r} is no "
                            f"declared copy ({', '.join(c.pve_storage for c in copies.values())}); set "
                            "pve_storage on the datastore it belongs to (proxmox.pbs.datastores[])")
        return match[0], f"pinned snapshot on {pinned_storage}"
    how = guest.restore_from
    if how in (LOCAL, OFFSITE):
        if how not in copies:
            raise CopyError(f"guest {guest.name}: restore_from {how} needs a proxmox.pbs.datastores[] entry with "
                            f"role {how} and pve_storage (the PVE storage pointing at it); declare one or use "
                            "restore_from: rotate")
        return copies[how], f"restore_from {how}"
    order = [name for name in (LOCAL, OFFSITE) if name in copies]
    epoch = datetime.min

    def age_key(name: str):
        when = last_tested.get(name)
        return (when is not None, (when.replace(tzinfo=None) if when else epoch), order.index(name))

    chosen = min(order, key=age_key)
    described = ", ".join(f"{name} {last_tested[name].isoformat(timespec='seconds')}" if last_tested.get(name)
                          else f"{name} never" for name in order)
    return copies[chosen], f"rotate: last restore-tested {described}"


def egress_refusal(copy: BackupCopy, size: int, used: int) -> str | None:
    """Why an offsite restore of ``size`` bytes may not start when ``used`` bytes of the
    run's egress budget are taken already; None when it fits (or the copy has no cap)."""
    if copy.copy != OFFSITE or copy.egress_budget is None:
        return None
    if used + size <= copy.egress_budget:
        return None
    return (f"not restored from the offsite copy ({copy.pve_storage}, datastore {copy.datastore}): the backup's "
            f"{size:,} bytes would pass the egress budget of S3 target {copy.s3_target} "
            f"({copy.egress_budget:,} bytes per run, {used:,} already taken by this run's offsite restores); "
            f"raise offsite.s3[].egress_budget or restore this guest from the local copy (restore_from: local)")
