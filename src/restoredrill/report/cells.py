"""One cell of the proof matrix: a thing in one copy, from the evidence the drills record.

Proof ladder (strongest wins; a failing case still colours the cell red):
listed (a fresh check saw the point) < verified (PBS's verify state ok, or ``borg check``) <
read back offsite (the S3 copy read without PBS: manifests, chunks present, chunk sample,
cross-copy) < extracted and checked (Borg extract and its data checks; a config export
decrypted and parsed; a guest restored and booted with no health check) < restored, booted
and healthy (a guest restored from that copy, started, every health check passed: at least one).

Which copy a guest restore proves: the ``copy`` evidence when a drill records one (a
datastore name, or ``local`` / ``offsite`` by role), else the PVE storage of the restored
volid (``pbs:backup/...`` -> the datastore whose ``pve_storage`` is ``pbs``), else the
local datastore. A failing S3 case counts against a guest's offsite cell when its message
names the guest's group (``vm/110``) or names no group at all.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from restoredrill.report.history import History
from restoredrill.report.model import PASSED, SKIPPED, Case, parse_time, rto_of, to_float

LISTED, VERIFIED, READ_OFFSITE, EXTRACTED, RESTORED = 1, 2, 3, 4, 5
PROOFS = {0: "nothing proven", LISTED: "listed", VERIFIED: "verified", READ_OFFSITE: "read back offsite",
          EXTRACTED: "extracted and checked", RESTORED: "restored, booted and healthy"}
PROOF_LABELS = {0: "none", LISTED: "listed", VERIFIED: "verified", READ_OFFSITE: "read_offsite",
                EXTRACTED: "extracted", RESTORED: "restored"}
STATE_RANK = {"live": 0, "ok": 1, "none": 2, "late": 3, "fail": 4}
S3_READ_CHECKS = ("manifests", "chunks-present", "chunk-sample", "cross-copy", "encrypted")
BORG_AUDITS = ("reachable", "encrypted", "fresh", "retention", "check", "extract")
GROUP = re.compile(r"\b(vm|ct)/(\d+)\b")
SNAPSHOT_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")


@dataclass
class Cell:
    copy: str
    state: str = "none"                  # ok | late (amber) | fail (red) | none (not seen) | live
    point_name: str = ""
    point_time: datetime | None = None
    rpo_hours: float | None = None
    proof: int = 0
    proof_time: datetime | None = None   # when the strongest proof was reached
    proof_how: str = ""
    verified_time: datetime | None = None        # the newest point proven verified (or better)
    restored_point: datetime | None = None       # the newest point restore-tested (extracted or better)
    last_restore: datetime | None = None         # the run that last restore-tested this copy
    rto: dict[str, float] = field(default_factory=dict)
    rto_when: datetime | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: int = 0
    restorable: bool = False

    def age_seconds(self, now: datetime) -> float | None:
        return None if self.point_time is None else max(0.0, (now - self.point_time).total_seconds())

    def see(self, name: str, when: datetime | None) -> None:
        """A point the run saw; the newest one wins."""
        if when is not None and (self.point_time is None or when > self.point_time):
            self.point_name, self.point_time = name, when

    def reach(self, level: int, when: datetime | None, how: str) -> None:
        if level > self.proof:
            self.proof, self.proof_time, self.proof_how = level, when, how

    def take(self, case: Case) -> bool:
        """Count a case; a failing one is a problem. True when it passed."""
        self.checks += 1
        if case.outcome in (PASSED, SKIPPED):
            return case.outcome == PASSED
        self.problems.append(f"{case.drill} {case.check}: {case.message or case.outcome}")
        return False


@dataclass
class Context:
    inv: object
    cases: list[Case]
    history: History
    now: datetime
    max_untested: timedelta
    started: datetime

    def __post_init__(self) -> None:    # indexed once: every cell reads its drill's cases
        self._cases: dict[str, list[Case]] = {}
        for case in self.cases:
            self._cases.setdefault(case.drill, []).append(case)

    def of(self, drill: str) -> list[Case]:
        return self._cases.get(drill, [])

    def past(self, drill: str) -> list:
        """The history's rows of the drill (this run's too), oldest first."""
        return self.history.of_drill(drill)


# --- PBS: a guest in one datastore ------------------------------------------------------------

def guest_cell(ctx: Context, guest, store) -> Cell:
    cell = Cell(f"pbs:{store.name}")
    suffix = f":{guest.name}"
    for case in ctx.of(f"pbs:{store.name}"):
        if not case.check.endswith(suffix):
            continue
        ok = cell.take(case)
        facts = case.properties
        if case.check.startswith("fresh:"):
            fresh(ctx, cell, facts, ok, ("snapshot", "snapshot_time"), "listed by PBS")
        elif case.check.startswith("verified:") and ok and facts.get("last_verify_state", "ok") == "ok":
            verified = snapshot_time(facts.get("last_verified"))
            cell.verified_time = verified
            cell.reach(VERIFIED, parse_time(facts.get("last_verify_time")) or ctx.started,
                       f"verified by PBS ({facts.get('last_verified', 'newest')})")
    backed = next((c for c in ctx.of(f"guest:{guest.name}") if c.check == "backed-up"), None)
    if backed is not None:
        volid = str(backed.properties.get("newest_backup") or "")
        if store_of_volid(ctx.inv, volid) is store:
            cell.see(volid.split(":", 1)[-1].removeprefix("backup/"), snapshot_time(volid))
    if store.backend == "s3" and store.s3_target:
        read_back(ctx, cell, guest, store.s3_target)
    restores(ctx, cell, guest, store)
    return judge(ctx, cell)


def fresh(ctx: Context, cell: Cell, facts: dict, ok: bool, keys: tuple[str, str], how: str) -> None:
    """A fresh case: the newest point (name and time evidence keys), the RPO it was judged by."""
    cell.see(str(facts.get(keys[0]) or ""), parse_time(facts.get(keys[1])))
    cell.rpo_hours = to_float(facts.get("rpo_hours"))
    if ok:
        cell.reach(LISTED, ctx.started, how)


def group_of(guest) -> str:
    return f"{'vm' if guest.type == 'qemu' else 'ct'}/{guest.vmid}"


def read_back(ctx: Context, cell: Cell, guest, target: str) -> None:
    """The S3 drill's read-back cases that concern this guest's group."""
    mine, passed, relevant = group_of(guest), 0, 0
    for case in ctx.of(f"offsite:{target}"):
        if case.check not in S3_READ_CHECKS:
            continue
        named = {f"{kind}/{vmid}" for kind, vmid in GROUP.findall(case.message or "")}
        if case.outcome not in (PASSED, SKIPPED) and named and mine not in named:
            continue                       # another guest's group failed, not this one
        relevant += 1
        passed += cell.take(case)
    if relevant and passed == relevant:
        cell.reach(READ_OFFSITE, ctx.started, f"read back from S3 target {target} (manifests, chunks)")


def store_of_volid(inv, volid: str):
    storage = volid.split(":", 1)[0] if ":" in volid else ""
    stores = inv.proxmox.pbs.datastores if inv.proxmox.pbs else []
    return next((s for s in stores if s.pve_storage and s.pve_storage == storage), None)


def store_of_restore(inv, evidence: dict):
    """The datastore a guest restore read (see the module docstring)."""
    stores = inv.proxmox.pbs.datastores if inv.proxmox.pbs else []
    named = str(evidence.get("copy") or "")
    found = next((s for s in stores if s.name == named), None) or next((s for s in stores if s.role == named), None)
    found = found or store_of_volid(inv, str(evidence.get("snapshot") or ""))
    return found or next((s for s in stores if s.role == "local"), None)


def restores(ctx: Context, cell: Cell, guest, store) -> None:
    """This run's restore of the guest from this copy (and its health checks), then the history."""
    drill = f"guest:{guest.name}"
    restore = next((c for c in ctx.of(drill) if c.check == "restore"), None)
    cell.restorable = store.role == "local"
    if restore is not None and store_of_restore(ctx.inv, restore.properties) is store:
        cell.restorable = True
        health = [c for c in ctx.of(drill) if c.check not in ("restore", "backed-up")]
        oks = [cell.take(c) for c in [restore, *health]]
        when = parse_time(restore.properties.get("snapshot_time"))
        cell.see(str(restore.properties.get("snapshot") or "").split(":", 1)[-1].removeprefix("backup/"), when)
        scratch = restore.properties.get('scratch_vmid', '?')
        if all(oks) and health:
            cell.reach(RESTORED, ctx.started, f"restored into scratch guest {scratch}, booted, {len(health)} health "
                       f"check(s) passed")
            cell.restored_point = when
        elif all(oks):      # no health check ran (health: [], access none): restored and booted, not healthy
            cell.reach(EXTRACTED, ctx.started, f"restored into scratch guest {scratch} and booted; no health check "
                       f"ran, so not proven healthy")
            cell.restored_point = when
    stores: dict[tuple[str, str], object] = {}

    def from_this_copy(evidence: dict) -> bool:
        key = (str(evidence.get("copy") or ""), str(evidence.get("snapshot") or "").split(":", 1)[0])
        if key not in stores:
            stores[key] = store_of_restore(ctx.inv, evidence)
        return stores[key] is store

    if past_restores(ctx, cell, drill, "restore", "snapshot_time", from_this_copy):
        cell.restorable = True


def past_restores(ctx: Context, cell: Cell, drill: str, check: str, point_key: str, belongs=None) -> bool:
    """The history's passing restore-level cases of this copy: the newest run gives the last restore
    test and its RTO, the newest point any of them restored is the restore-tested point."""
    newest, points = None, set()
    for row in ctx.past(drill):
        if row.check == check and row.outcome == PASSED and (belongs is None or belongs(row.evidence)):
            if newest is None or row.run_started >= newest.run_started:
                newest = row
            points.add(str(row.evidence.get(point_key) or ""))
    if newest is None:
        return False
    remember_restore(cell, newest.run_started, rto_of(check, newest.evidence), None)
    for text in points:
        remember_restore(cell, newest.run_started, {}, parse_time(text))
    return True


def remember_restore(cell: Cell, when: datetime, rto: dict, point: datetime | None) -> None:
    if cell.last_restore is None or when >= cell.last_restore:
        cell.last_restore = when
        if rto:
            cell.rto, cell.rto_when = dict(rto), when
    if point is not None and (cell.restored_point is None or point > cell.restored_point):
        cell.restored_point = point


def snapshot_time(name) -> datetime | None:
    found = SNAPSHOT_TIME.search(str(name or ""))
    return parse_time(found.group(1).replace("Z", "+00:00")) if found else None


# --- Borg: a repository (or one database in it) --------------------------------------------------

def borg_cell(ctx: Context, repo: str, only: str | None = None, required: bool = False) -> Cell:
    """``only``: the data check that matters for this row (Kuma's database); else every data check.
    ``required``: its absence is a problem (the repository monitoring.uptime_kuma.data names)."""
    drill = f"borg:{repo}"
    cell = Cell(drill, restorable=True)
    cases = ctx.of(drill)
    checked = {c.check: c for c in cases}
    extract_ok = False
    for case in cases:
        if only and case.check not in BORG_AUDITS and case.check != only:
            continue
        ok = cell.take(case)
        facts = case.properties
        if case.check == "fresh":
            fresh(ctx, cell, facts, ok, ("archive", "archive_time"), "listed by borg")
        elif case.check == "check" and ok:
            cell.reach(VERIFIED, ctx.started, f"borg check ({facts.get('check_mode', 'check')})")
            cell.verified_time = cell.point_time
        elif case.check == "extract":
            cell.see(str(facts.get("archive") or ""), parse_time(facts.get("archive_time")))
            extract_ok = ok
    data = [c for name, c in checked.items() if name not in BORG_AUDITS and (not only or name == only)]
    if required and only not in checked and "extract" in checked:
        cell.problems.append(f"{drill}: no {only} check in this run (monitoring.uptime_kuma.data names it)")
    if extract_ok and data and all(c.ok for c in data):
        extract = checked["extract"]
        cell.reach(EXTRACTED, ctx.started, f"extracted {extract.properties.get('archive', '')}, "
                   f"{len(data)} data check(s) passed")
        cell.restored_point = parse_time(extract.properties.get("archive_time"))
    past_restores(ctx, cell, drill, "extract", "archive_time")
    return judge(ctx, cell)


# --- a firewall's config export on the storage box -------------------------------------------------

def config_cell(ctx: Context, export: str) -> Cell:
    drill = f"offsite:{export}"
    cell = Cell(f"config:{export}", restorable=True)
    for case in ctx.of(drill):
        ok = cell.take(case)
        facts = case.properties
        if case.check == "fresh":
            fresh(ctx, cell, facts, ok, ("newest", "revision_time"), "newest export read on the storage box")
        elif case.check == "parses" and ok:
            cell.reach(EXTRACTED, ctx.started, "decrypted and parsed as a complete OPNsense configuration")
            cell.restored_point = parse_time(facts.get("revision_time"))
    past_restores(ctx, cell, drill, "parses", "revision_time")
    return judge(ctx, cell)


# --- colour --------------------------------------------------------------------------------------

def judge(ctx: Context, cell: Cell) -> Cell:
    """red: a failing case or a point older than the RPO; amber: a copy restoredrill restores from
    that was not restore-tested within max_untested_days; green: proven; grey: nothing seen."""
    if cell.proof >= EXTRACTED and cell.last_restore is None:
        cell.last_restore = ctx.started
    age = cell.age_seconds(ctx.now)
    if not cell.problems and cell.rpo_hours is not None and age is not None and age > cell.rpo_hours * 3600:
        cell.problems.append(f"newest point {age / 3600:.1f} h old, over the RPO of {cell.rpo_hours:g} h")
    if cell.problems:
        cell.state = "fail"
    elif not cell.checks:
        cell.state = "none"
        cell.notes.append("not checked in this run")
    elif cell.restorable and (cell.last_restore is None or ctx.now - cell.last_restore > ctx.max_untested):
        cell.state = "late"
        days = ctx.max_untested.total_seconds() / 86400
        cell.notes.append("never restore-tested" if cell.last_restore is None else
                          f"not restore-tested for {(ctx.now - cell.last_restore).days} days (limit {days:g})")
    else:
        cell.state = "ok"
    if cell.verified_time is None and cell.proof >= VERIFIED:
        cell.verified_time = cell.point_time
    return cell
