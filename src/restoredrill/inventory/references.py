"""Cross references between inventory sections (policy names, storage boxes, ...)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from restoredrill.inventory.model import Inventory
from restoredrill.inventory.names import name_reference_errors
from restoredrill.inventory.reach import runner_reach_errors
from restoredrill.inventory.suggest import unknown_name

Problem = tuple[tuple[str | int, ...], str]


def find_reference_errors(inv: Inventory) -> list[Problem]:
    return [*_duplicate_names(inv), *_borg_references(inv), *_guest_references(inv),
            *_pbs_references(inv), *_offsite_references(inv), *runner_reach_errors(inv),
            *name_reference_errors(inv)]


def _duplicates(items, loc) -> Iterator[Problem]:
    counts = Counter(item.name for item in items)
    for index, item in enumerate(items):
        if counts[item.name] > 1:
            yield (*loc, index, "name"), f"name {item.name!r} is used {counts[item.name]} times; names must be unique"


def _duplicate_names(inv: Inventory) -> Iterator[Problem]:
    yield from _duplicates(inv.borg.repositories, ("borg", "repositories"))
    yield from _duplicates(inv.guests, ("guests",))
    yield from _duplicates(inv.offsite.storage_boxes, ("offsite", "storage_boxes"))
    yield from _duplicates(inv.offsite.s3, ("offsite", "s3"))
    yield from _duplicates(inv.offsite.config_exports, ("offsite", "config_exports"))


def _policy(inv: Inventory, kind: str, name: str | None, loc) -> Iterator[Problem]:
    table = getattr(inv.policies, kind)
    if name is not None and name not in table:
        yield loc, unknown_name(f"{kind} policy", name, table, f"policies.{kind}")


def _box(inv: Inventory, name: str | None, loc) -> Iterator[Problem]:
    names = {box.name for box in inv.offsite.storage_boxes}
    if name is not None and name not in names:
        yield loc, unknown_name("storage box", name, names, "offsite.storage_boxes")


def _borg_references(inv: Inventory) -> Iterator[Problem]:
    for i, repo in enumerate(inv.borg.repositories):
        loc = ("borg", "repositories", i)
        yield from _policy(inv, "retention", repo.retention, (*loc, "retention"))
        yield from _policy(inv, "rpo", repo.rpo, (*loc, "rpo"))
        yield from _box(inv, repo.storage_box, (*loc, "storage_box"))
        if repo.location.startswith("ssh://") and repo.storage_box is None:
            yield (*loc, "storage_box"), "an ssh:// repository needs storage_box (for its host key and login)"
        if "@" in repo.location.split("//", 1)[-1].split("/", 1)[0] and ":" in \
                repo.location.split("//", 1)[-1].split("@", 1)[0]:
            yield (*loc, "location"), "the location must not hold a password; use passphrase/ssh keys"
        if repo.encryption_required and repo.passphrase is None:
            yield (*loc, "passphrase"), "encryption_required is true but no passphrase reference is given"


def _guest_references(inv: Inventory) -> Iterator[Problem]:
    names = {guest.name for guest in inv.guests}
    repos = {repo.name for repo in inv.borg.repositories}
    exports = {export.name for export in inv.offsite.config_exports}
    for i, guest in enumerate(inv.guests):
        loc = ("guests", i)
        yield from _policy(inv, "rpo", guest.rpo, (*loc, "rpo"))
        for j, dep in enumerate(guest.depends_on):
            if dep not in names:
                yield (*loc, "depends_on", j), unknown_name("guest", dep, names, "guests")
        if guest.pre_backup_borg and guest.pre_backup_borg not in repos:
            yield (*loc, "pre_backup_borg"), unknown_name("Borg repository", guest.pre_backup_borg, repos,
                                                          "borg.repositories")
        if guest.config_export and guest.config_export not in exports:
            yield (*loc, "config_export"), unknown_name("config export", guest.config_export, exports,
                                                        "offsite.config_exports")
        if guest.strategy == "pbs" and guest.restore_from == "offsite" and not _offsite_storage(inv):
            yield (*loc, "restore_from"), ("restore_from offsite needs a proxmox.pbs.datastores[] entry with role "
                                           "offsite and pve_storage (the PVE storage pointing at it)")
        low, high = inv.scratch.vmid_range
        if low <= guest.vmid <= high:
            yield (*loc, "vmid"), (f"production guest {guest.vmid} lies inside the scratch range "
                                   f"{low}-{high}; move the scratch range (scratch.vmid_range)")


def _offsite_storage(inv: Inventory) -> str | None:
    stores = inv.proxmox.pbs.datastores if inv.proxmox.pbs else []
    return next((s.pve_storage for s in stores if s.role == "offsite" and s.pve_storage), None)


def _pbs_references(inv: Inventory) -> Iterator[Problem]:
    if inv.proxmox.pbs is None:
        return
    targets = {target.name for target in inv.offsite.s3}
    for i, store in enumerate(inv.proxmox.pbs.datastores):
        loc = ("proxmox", "pbs", "datastores", i)
        yield from _policy(inv, "retention", store.retention, (*loc, "retention"))
        yield from _policy(inv, "rpo", store.rpo, (*loc, "rpo"))
        if store.backend == "s3" and store.s3_target is None:
            yield (*loc, "s3_target"), "a datastore with backend s3 needs s3_target naming an offsite.s3 entry"
        elif store.s3_target is not None and store.s3_target not in targets:
            yield (*loc, "s3_target"), unknown_name("S3 target", store.s3_target, targets, "offsite.s3")


def _offsite_references(inv: Inventory) -> Iterator[Problem]:
    for i, export in enumerate(inv.offsite.config_exports):
        loc = ("offsite", "config_exports", i)
        yield from _box(inv, export.storage_box, (*loc, "storage_box"))
        yield from _policy(inv, "rpo", export.rpo, (*loc, "rpo"))
    for i, target in enumerate(inv.offsite.s3):     # read by fixtures/offsite.py resolve_offsite_policy:
        loc = ("offsite", "s3", i)                  # a name that matched nothing fell back to defaults
        yield from _policy(inv, "retention", target.retention, (*loc, "retention"))
        yield from _policy(inv, "rpo", target.rpo, (*loc, "rpo"))
