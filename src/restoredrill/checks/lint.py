"""The recovery-path lint: failures found without restoring anything. Pure, no I/O.

Five rules, each finding naming what falls short:
- ``strategy``: every guest is backed up or excused, and nothing others need is left out;
- ``key-escrow``: the key of each encrypted copy is held outside the site it protects;
- ``circular-dependency``: what is needed to reach an offsite copy is recoverable
  without that copy (the site is gone when the offsite copy is needed);
- ``3-2-1``: per dataset three copies, two kinds of media, one offsite;
- ``monitoring-restorable``: Uptime Kuma's own data is backed up and a drill proves it returns.
Plus the pure halves of the key-proof drill (Borg key export parsing, fingerprints).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from restoredrill.inventory.model import Guest, Inventory

RULES = ("strategy", "key-escrow", "circular-dependency", "3-2-1", "monitoring-restorable")


@dataclass(frozen=True)
class Finding:
    rule: str       # one of RULES
    subject: str    # the guest, repository, datastore, offsite place or dataset that falls short
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


def lint(inv: Inventory) -> list[Finding]:
    return [*check_strategies(inv), *check_key_escrow(inv), *check_circular_dependencies(inv),
            *check_three_two_one(inv), *check_monitoring_restorable(inv)]


# --- strategies ----------------------------------------------------------------------

def check_strategies(inv: Inventory) -> list[Finding]:
    exports = {export.name for export in inv.offsite.config_exports}
    has_pbs = bool(inv.proxmox.pbs and inv.proxmox.pbs.datastores)
    out = []
    for guest in inv.guests:
        needed_by = sorted(g.name for g in inv.guests if guest.name in g.depends_on)
        if guest.strategy != "pbs" and not (guest.exception or "").strip():
            out.append(Finding("strategy", guest.name, f"guest {guest.name}: expected a backup strategy or an "
                               f"exception with a reason; found strategy {guest.strategy} and no reason"))
        if guest.strategy == "none" and needed_by:
            out.append(Finding("strategy", guest.name, (
                f"guest {guest.name} has strategy none but {', '.join(needed_by)} depend on it: a guest others "
                f"need must be recoverable; back it up or export its config")))
        if guest.strategy == "config-export" and not guest.config_export:
            out.append(Finding("strategy", guest.name, (
                f"guest {guest.name} has strategy config-export but names no export (guests[].config_export): "
                f"nothing shows its config is backed up")))
        elif guest.strategy == "config-export" and guest.config_export not in exports:
            out.append(Finding("strategy", guest.name, (
                f"guest {guest.name}: config export {guest.config_export!r} is not declared under "
                f"offsite.config_exports")))
        if guest.strategy == "pbs" and not has_pbs:
            out.append(Finding("strategy", guest.name, (
                f"guest {guest.name} has strategy pbs but no PBS datastore is declared (proxmox.pbs.datastores)")))
    return out


# --- key escrow ----------------------------------------------------------------------

def encrypted_copies(inv: Inventory) -> list[tuple[str, object]]:
    """(label, repository or datastore) of every encrypted copy: ``borg:NAME`` and ``pbs:NAME``."""
    copies: list[tuple[str, object]] = [(f"borg:{repo.name}", repo) for repo in inv.borg.repositories
                                        if repo.passphrase is not None or repo.encryption_required]
    if inv.proxmox.pbs:
        copies += [(f"pbs:{store.name}", store) for store in inv.proxmox.pbs.datastores
                   if store.encryption_required or store.key_fingerprint]
    return copies


def check_key_escrow(inv: Inventory) -> list[Finding]:
    out = []
    for label, copy in encrypted_copies(inv):
        what = _describe(label)
        escrow = copy.key_escrow
        if escrow is None:
            out.append(Finding("key-escrow", label, (
                f"{what} is encrypted but no key_escrow says where its key is held: expected a key kept "
                f"outside the site; found none declared (losing the site would lose the key and every copy)")))
        elif not escrow.outside_site:
            out.append(Finding("key-escrow", label, (
                f"{what}: expected its key held outside the site; found it only at {escrow.location!r} "
                f"(outside_site: false), which is lost with the infrastructure it protects")))
    return out


def _describe(label: str) -> str:
    kind, name = label.split(":", 1)
    return f"Borg repository {name}" if kind == "borg" else f"PBS datastore {name}"


# --- circular dependencies -------------------------------------------------------------

def offsite_places(inv: Inventory) -> dict[str, list[str]]:
    """Each offsite place (S3 target, storage box, offsite PBS datastore on a filesystem) and
    the guests needed to reach it."""
    places = {target.name: list(target.requires) for target in inv.offsite.s3}
    places.update({box.name: list(box.requires) for box in inv.offsite.storage_boxes})
    for store in _offsite_datastores(inv):
        if store.backend != "s3":
            places.setdefault(f"pbs:{store.name}", [])
    return places


def _offsite_datastores(inv: Inventory):
    return [s for s in inv.proxmox.pbs.datastores if s.role == "offsite"] if inv.proxmox.pbs else []


def recovery_sources(inv: Inventory, guest: Guest) -> set[str]:
    """The offsite places a guest can be recovered from: pbs -> the offsite datastores (their S3
    target), config-export -> the export's storage box. Local copies die with the site."""
    if guest.strategy == "pbs":
        return {store.s3_target if store.backend == "s3" and store.s3_target else f"pbs:{store.name}"
                for store in _offsite_datastores(inv)}
    if guest.strategy == "config-export":
        export = next((e for e in inv.offsite.config_exports if e.name == guest.config_export), None)
        return {export.storage_box} if export else set()
    return set()


def needed_to_reach(inv: Inventory, requires: list[str]) -> list[str]:
    """The required guests and, transitively, what they depend on (in first-seen order)."""
    deps = {guest.name: guest.depends_on for guest in inv.guests}
    seen: list[str] = []
    todo = list(requires)
    while todo:
        name = todo.pop(0)
        if name not in seen:
            seen.append(name)
            todo.extend(deps.get(name, []))
    return seen


def check_circular_dependencies(inv: Inventory) -> list[Finding]:
    guests = {guest.name: guest for guest in inv.guests}
    places = offsite_places(inv)
    needs = {place: needed_to_reach(inv, requires) for place, requires in places.items()}
    sources = {name: recovery_sources(inv, guest) for name, guest in guests.items()}
    reachable = _reachable_places(needs, sources)
    out = []
    for place, requires in places.items():
        for name in requires:
            if name not in guests:
                out.append(Finding("circular-dependency", place,
                                   f"{place} requires guest {name!r}, which is not in the inventory (guests)"))
        if place in reachable:
            continue
        for name in needs[place]:
            if name not in guests or _recoverable(sources[name], reachable):
                continue
            found = sources[name]
            if not found:
                why = f"has no offsite copy to recover it from (strategy {guests[name].strategy})"
            elif found == {place}:
                why = f"can only be recovered from {place}"
            else:
                why = (f"can only be recovered from {', '.join(sorted(found))}, which cannot be reached "
                       f"without it either")
            out.append(Finding("circular-dependency", place, f"{name} is needed to reach {place} but {why}"))
    return out


def _reachable_places(needs: dict[str, list[str]], sources: dict[str, set[str]]) -> set[str]:
    """Fixpoint: a place is reachable once every guest it needs is recoverable from a reachable
    place (guests not in the inventory are not counted here; they are reported apart)."""
    reachable: set[str] = set()
    changed = True
    while changed:
        changed = False
        for place, needed in needs.items():
            if place not in reachable and all(
                    name not in sources or _recoverable(sources[name], reachable) for name in needed):
                reachable.add(place)
                changed = True
    return reachable


def _recoverable(found: set[str], reachable: set[str]) -> bool:
    return bool(found & reachable)


# --- 3-2-1 ---------------------------------------------------------------------------

def check_three_two_one(inv: Inventory) -> list[Finding]:
    out = []
    if not inv.datasets and (inv.guests or inv.borg.repositories):
        out.append(Finding("3-2-1", "datasets", "expected the datasets and their copies (datasets:); found "
                           "none declared, so 3-2-1 cannot be checked"))
    for dataset in inv.datasets:
        copies = dataset.copies
        wheres = ", ".join(c.where for c in copies) or "none"
        media = sorted({c.media for c in copies})
        lacks = []
        if len(copies) < 3:
            lacks.append(f"{len(copies)} copies ({wheres}) where three are needed")
        if len(media) < 2:
            lacks.append(f"one kind of media ({', '.join(media) or 'none'}) where two are needed")
        if not any(c.offsite for c in copies):
            lacks.append("no copy offsite")
        if lacks:
            out.append(Finding("3-2-1", dataset.name, f"dataset {dataset.name} falls short of 3-2-1: "
                               + "; ".join(lacks)))
        out += _unknown_copy_references(inv, dataset)
    return out


def _unknown_copy_references(inv: Inventory, dataset) -> list[Finding]:
    known = {"borg": {r.name for r in inv.borg.repositories},
             "pbs": {s.name for s in inv.proxmox.pbs.datastores} if inv.proxmox.pbs else set()}
    out = []
    for copy in dataset.copies:
        kind, _, name = copy.where.partition(":")
        if kind in known and name not in known[kind]:
            section = "borg.repositories" if kind == "borg" else "proxmox.pbs.datastores"
            out.append(Finding("3-2-1", dataset.name, f"dataset {dataset.name}: copy {copy.where!r} names "
                               f"nothing declared under {section}"))
    return out


# --- key proof (pure halves) ------------------------------------------------------------

@dataclass(frozen=True)
class BorgKeyExport:
    repository_id: str   # hex, from the "BORG_KEY <id>" line
    blob: str            # the encrypted key blob, whitespace removed


def parse_borg_key_export(text: str) -> BorgKeyExport:
    """A ``borg key export`` file (or a keyfile, same format): ``BORG_KEY <repo id>`` then base64.
    Paper (``--paper``) and HTML (``--qr-html``) exports are refused: they cannot be compared."""
    lines = text.strip().splitlines()
    match = re.fullmatch(r"BORG_KEY ([0-9a-f]{64})", lines[0].strip()) if lines else None
    if not match:
        raise ValueError("not a borg key export or keyfile (expected a first line 'BORG_KEY <repository id>'; "
                         "paper and QR exports cannot be proven read-only)")
    blob = "".join("".join(lines[1:]).split())
    if not re.fullmatch(r"[A-Za-z0-9+/=]+", blob):
        raise ValueError("the key data after the BORG_KEY line is not base64")
    return BorgKeyExport(match.group(1), blob)


def compare_borg_exports(escrowed: BorgKeyExport, current: BorgKeyExport) -> str | None:
    """None when the escrowed export is the repository's current key; else what differs."""
    if escrowed.repository_id != current.repository_id:
        return (f"the escrowed key belongs to repository {escrowed.repository_id[:16]}..., the repository "
                f"is {current.repository_id[:16]}...")
    if escrowed.blob != current.blob:
        return ("the escrowed key differs from the key stored in the repository (a new key or a changed "
                "passphrase since the export?): export it again with `borg key export` and escrow that")
    return None


def normalize_fingerprint(text: str) -> str:
    return text.strip().lower()


def fingerprint_mismatches(expected: str, snapshots: list[dict]) -> tuple[int, list[str]]:
    """(encrypted snapshots seen, "type/id/time: fingerprint" of those carrying another key)."""
    seen, wrong = 0, []
    for snap in snapshots:
        found = snap.get("fingerprint")
        if not found:
            continue
        seen += 1
        if normalize_fingerprint(found) != normalize_fingerprint(expected):
            wrong.append(f"{snap.get('backup-type')}/{snap.get('backup-id')}/{snap.get('backup-time')}: {found}")
    return seen, wrong


# --- monitoring is restorable --------------------------------------------------------------

def check_monitoring_restorable(inv: Inventory) -> list[Finding]:
    """Uptime Kuma's own data has a backup, and a drill proves it comes back: its guest is
    backed up and its restore drill checks that Kuma answers, or the Borg repository that
    holds its data folder checks its database. After a loss, monitoring is what tells."""
    kuma = inv.monitoring.uptime_kuma
    if kuma is None:
        return []
    rule, label = "monitoring-restorable", "uptime-kuma"
    if kuma.runs_in is None and kuma.data is None:
        return [Finding(rule, label, (
            "Uptime Kuma's own data: expected monitoring.uptime_kuma.runs_in (its guest) or .data (the Borg "
            "repository and path of its data folder); found neither, so nothing shows that monitoring comes "
            "back after a loss"))]
    out = []
    if kuma.runs_in is not None:
        guest = next((g for g in inv.guests if g.name == kuma.runs_in), None)
        port = kuma.own_port()   # behind a reverse proxy: monitoring.uptime_kuma.listen_port
        if guest is None:
            out.append(Finding(rule, label, f"monitoring.uptime_kuma.runs_in names guest {kuma.runs_in}, which is "
                               "not in guests[]: add it or correct the name"))
        elif guest.strategy != "pbs":
            out.append(Finding(rule, guest.name, (
                f"Uptime Kuma runs in guest {guest.name}, whose strategy is {guest.strategy}: its monitors, "
                "history and notifications are not backed up; snapshot it with PBS")))
        elif not any(c.kind == "http" and _port(c.target) == port for c in guest.health):
            proxy = "" if kuma.listen_port else (
                " (if a reverse proxy serves the url and Kuma listens on another port, say which in "
                "monitoring.uptime_kuma.listen_port)")
            out.append(Finding(rule, guest.name, (
                f"the restore drill of guest {guest.name} does not check that Uptime Kuma answers: add an http "
                f"health check of http://127.0.0.1:{port}/api/entry-page to guests[{guest.name}].health{proxy}")))
    if kuma.data is not None:
        repo = next((r for r in inv.borg.repositories if r.name == kuma.data.borg), None)
        if repo is None:
            out.append(Finding(rule, label, f"monitoring.uptime_kuma.data names Borg repository {kuma.data.borg}, "
                               "which is not in borg.repositories: add it or correct the name"))
        elif kuma.data.path not in [*repo.checks.paths, *map(str, repo.checks.sqlite)]:
            out.append(Finding(rule, repo.name, (
                f"Uptime Kuma's database {kuma.data.path} is in Borg repository {repo.name}, but that "
                f"repository's restore drill does not check it: add it to borg.repositories[{repo.name}]"
                ".checks.sqlite (integrity check) or .checks.paths")))
    return out


def _port(url: str) -> int | None:
    parts = urlsplit(url)
    try:
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:          # a port that is not a number: matches nothing
        return None
