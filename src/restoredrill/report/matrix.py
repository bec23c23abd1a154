"""The 3-2-1 proof matrix: for every protected thing (a row) and every copy of it (a column),
the newest point the run saw, the strongest proof reached and when, the last restore time
(RTO) measured from that copy, coloured against the RPO and ``max_untested_days``.

Rows: the inventory's datasets group them (a dataset's guest: the guest named like the
dataset, or whose ``pre_backup_borg`` is one of its Borg repositories; its Borg data: its
``borg:`` copies; Uptime Kuma's data where ``monitoring.uptime_kuma.data`` names one of
them); guests, Borg repositories, firewall config exports and Kuma data outside every
dataset get rows of their own. Columns: every copy the inventory declares (``datasets``,
every PBS datastore, Borg repository and config export). Pure: inventory model, this
run's cases and the history in, plain values out; the cells read the evidence the drills
record (see ``cells.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from restoredrill.report import cells as C
from restoredrill.report.history import History
from restoredrill.report.model import Case, drill_kind

KUMA_ROW = "kuma-data"


@dataclass(frozen=True)
class Column:
    ref: str            # production, pbs:local, borg:app-offsite, config:fw-encrypted, or free text
    title: str          # "PBS local", "Borg offsite", ...
    detail: str = ""    # where it is, in words
    offsite: bool | None = None


@dataclass
class Row:
    target: str         # the target label in metrics: guest:app-vm, data:app-data, config:opnsense, kuma-data
    title: str
    what: str
    cells: dict[str, C.Cell] = field(default_factory=dict)


@dataclass
class Group:
    name: str | None            # the dataset, None: outside every dataset
    rows: list[Row]
    verdict: str                # 3-2-1 in words, with what this run proved
    meets: bool | None          # 3-2-1 as declared (None: not declared)


@dataclass(frozen=True)
class MatrixFinding:
    source: str                 # lint:3-2-1, matrix, ...
    text: str
    failing: bool


@dataclass
class Matrix:
    columns: list[Column]
    groups: list[Group]
    findings: list[MatrixFinding]
    max_untested_days: float

    def rows(self) -> list[Row]:
        return [row for group in self.groups for row in group.rows]


def build_matrix(inv, cases: list[Case], history: History, now: datetime, max_untested_days: float,
                 started: datetime | None = None) -> Matrix:
    ctx = C.Context(inv, cases, history, now, timedelta(days=max_untested_days), started or now)
    columns = declared_columns(inv)
    groups, findings, placed = [], [], {"guests": set(), "repos": set(), "exports": set(), "kuma": False}
    for dataset in inv.datasets:
        rows = dataset_rows(ctx, dataset, placed, findings)
        groups.append(Group(dataset.name, rows, *three_two_one(dataset, rows)))
    loose = loose_rows(ctx, placed)
    if loose:
        groups.append(Group(None, loose, "outside every dataset: 3-2-1 is not declared for these "
                                         "(list them under datasets: with their copies)", None))
    findings = lint_findings(cases) + findings
    return Matrix(columns, groups, findings, max_untested_days)


# --- columns -----------------------------------------------------------------------------

def declared_columns(inv) -> list[Column]:
    """production, PBS datastores (local first), Borg repositories, config exports, then any other
    copy a dataset names (free text), each once."""
    offsite_of = {copy.where: copy.offsite for d in inv.datasets for copy in d.copies}
    out: dict[str, Column] = {}
    if any(copy.where == "production" for d in inv.datasets for copy in d.copies):
        out["production"] = Column("production", "production", "the live data (not a backup)", False)
    stores = sorted(inv.proxmox.pbs.datastores if inv.proxmox.pbs else [], key=lambda s: s.role != "local")
    for store in stores:
        where = f"datastore {store.name}" + (f", namespace {store.namespace}" if store.namespace else "")
        if store.backend == "s3" and store.s3_target:
            where += f", S3 target {store.s3_target}"
        out[f"pbs:{store.name}"] = Column(f"pbs:{store.name}", f"PBS {store.role}", where, store.role == "offsite")
    for repo in sorted(inv.borg.repositories, key=lambda r: bool(offsite_of.get(f"borg:{r.name}"))):
        offsite = offsite_of.get(f"borg:{repo.name}", bool(repo.storage_box) or None)
        title = "Borg offsite" if offsite else ("Borg local" if offsite is False else "Borg")
        where = f"repository {repo.name}" + (f" on storage box {repo.storage_box}" if repo.storage_box else "")
        out[f"borg:{repo.name}"] = Column(f"borg:{repo.name}", title, where, offsite)
    for export in inv.offsite.config_exports:
        out[f"config:{export.name}"] = Column(f"config:{export.name}", "config export",
                                              f"{export.name} on storage box {export.storage_box}", True)
    for dataset in inv.datasets:
        for copy in dataset.copies:
            if copy.where not in out:
                out[copy.where] = Column(copy.where, copy.where, f"{copy.media} (declared only: no drill "
                                         "reads it)", copy.offsite)
    return list(out.values())


# --- rows --------------------------------------------------------------------------------

def dataset_rows(ctx: "C.Context", dataset, placed: dict, findings: list) -> list[Row]:
    inv = ctx.inv
    wheres = [copy.where for copy in dataset.copies]
    repos = [w.split(":", 1)[1] for w in wheres if w.startswith("borg:")]
    stores = [w.split(":", 1)[1] for w in wheres if w.startswith("pbs:")]
    rows = []
    guest = next((g for g in inv.guests if g.name == dataset.name), None) or next(
        (g for g in inv.guests if g.pre_backup_borg and g.pre_backup_borg in repos), None)
    if stores and guest is None:
        findings.append(MatrixFinding("matrix", f"dataset {dataset.name} declares {', '.join('pbs:' + s for s in stores)}"
                                      f" but no guest is named {dataset.name} (or backs up its Borg repository "
                                      f"first): name the dataset after the guest whose backups it means", True))
    if guest is not None and stores:
        rows.append(guest_row(ctx, guest, [f"pbs:{s}" for s in stores]))
        placed["guests"].add(guest.name)
    if guest is not None and guest.strategy == "config-export" and guest.config_export:
        rows.append(config_row(ctx, guest))
        placed["guests"].add(guest.name)
        placed["exports"].add(guest.config_export)
    if repos:
        rows.append(borg_row(ctx, f"data:{dataset.name}", f"{dataset.name}", "Borg data in "
                             + ", ".join(repos), repos))
        placed["repos"].update(repos)
        kuma = kuma_data(inv)
        if kuma is not None and kuma.borg in repos:
            rows.append(kuma_row(ctx, kuma, repos))
            placed["kuma"] = True
    if "production" in wheres:
        for row in rows:
            row.cells["production"] = C.Cell("production", state="live")
    return rows


def loose_rows(ctx: "C.Context", placed: dict) -> list[Row]:
    inv = ctx.inv
    rows = []
    all_stores = [f"pbs:{s.name}" for s in (inv.proxmox.pbs.datastores if inv.proxmox.pbs else [])]
    for guest in inv.guests:
        if guest.name in placed["guests"]:
            continue
        if guest.strategy == "pbs":
            rows.append(guest_row(ctx, guest, all_stores))
        elif guest.strategy == "config-export" and guest.config_export:
            rows.append(config_row(ctx, guest))
            placed["exports"].add(guest.config_export)
    for repo in inv.borg.repositories:
        if repo.name not in placed["repos"]:
            rows.append(borg_row(ctx, f"data:{repo.name}", repo.name, f"Borg data in {repo.name}", [repo.name]))
    kuma = kuma_data(inv)
    if kuma is not None and not placed["kuma"]:
        rows.append(kuma_row(ctx, kuma, [kuma.borg]))
    for export in inv.offsite.config_exports:
        if export.name not in placed["exports"]:
            row = Row(f"config:{export.name}", f"config export {export.name}", "a firewall's configuration")
            row.cells[f"config:{export.name}"] = C.config_cell(ctx, export.name)
            rows.append(row)
    return rows


def guest_row(ctx: "C.Context", guest, stores: list[str]) -> Row:
    kind = "VM" if guest.type == "qemu" else "container"
    what = f"{kind} {guest.vmid}" + (" (Uptime Kuma)" if kuma_guest(ctx.inv) == guest.name else "")
    row = Row(f"guest:{guest.name}", guest.name, what)
    known = {f"pbs:{s.name}": s for s in (ctx.inv.proxmox.pbs.datastores if ctx.inv.proxmox.pbs else [])}
    for ref in stores:
        store = known.get(ref)
        row.cells[ref] = C.guest_cell(ctx, guest, store) if store else C.Cell(ref, state="none",
                                                                              notes=["no such PBS datastore"])
    return row


def config_row(ctx: "C.Context", guest) -> Row:
    row = Row(f"config:{guest.name}", guest.name, f"firewall configuration (config export {guest.config_export})")
    row.cells[f"config:{guest.config_export}"] = C.config_cell(ctx, guest.config_export)
    return row


def borg_row(ctx: "C.Context", target: str, title: str, what: str, repos: list[str]) -> Row:
    row = Row(target, title, what)
    for repo in repos:
        row.cells[f"borg:{repo}"] = C.borg_cell(ctx, repo)
    return row


def kuma_row(ctx: "C.Context", kuma, repos: list[str]) -> Row:
    row = Row(KUMA_ROW, "Uptime Kuma data", f"{kuma.path} in Borg")
    for repo in repos:
        row.cells[f"borg:{repo}"] = C.borg_cell(ctx, repo, only=f"sqlite:{kuma.path}", required=repo == kuma.borg)
    return row


def kuma_data(inv):
    kuma = getattr(getattr(inv, "monitoring", None), "uptime_kuma", None)
    return getattr(kuma, "data", None) if kuma is not None else None


def kuma_guest(inv) -> str | None:
    kuma = getattr(getattr(inv, "monitoring", None), "uptime_kuma", None)
    return getattr(kuma, "runs_in", None) if kuma is not None else None


# --- 3-2-1 in words, findings --------------------------------------------------------------

def three_two_one(dataset, rows: list[Row]) -> tuple[str, bool]:
    copies = dataset.copies
    media = sorted({c.media for c in copies})
    offsite = [c.where for c in copies if c.offsite]
    meets = len(copies) >= 3 and len(media) >= 2 and bool(offsite)
    head = (f"{len(copies)} copies ({', '.join(c.where for c in copies) or 'none'}), "
            f"{len(media)} kind{'s' if len(media) != 1 else ''} of media ({', '.join(media) or 'none'}), "
            f"{len(offsite)} offsite ({', '.join(offsite) or 'none'})")
    worst: dict[str, C.Cell] = {}
    for row in rows:
        for ref, cell in row.cells.items():
            if ref != "production" and (ref not in worst or C.STATE_RANK[cell.state] > C.STATE_RANK[worst[ref].state]):
                worst[ref] = cell
    proven = [ref for ref, cell in worst.items() if cell.state in ("ok", "late")]
    failing = [ref for ref, cell in worst.items() if cell.state == "fail"]
    proven_offsite = [ref for ref in proven if ref in offsite]
    verdict = ("meets 3-2-1: " if meets else "falls short of 3-2-1: ") + head
    words = [f"proven in this run: {len(proven)} of {len(worst)} backup copies"
             + (f" ({', '.join(proven)})" if proven else "")]
    if failing:
        words.append(f"failing: {', '.join(failing)}")
    if offsite and not proven_offsite:
        words.append("no offsite copy proven in this run")
    return verdict + ". " + "; ".join(words) + ".", meets


def lint_findings(cases: list[Case]) -> list[MatrixFinding]:
    """Lint and key-proof cases as findings: the failing ones with their message, the passing ones
    counted in one line."""
    out, passed = [], []
    for case in cases:
        if drill_kind(case.drill) != "lint":
            continue
        if case.ok or case.outcome == "skipped":
            passed.append(f"{case.drill} {case.check}" if case.drill != f"lint:{case.check}" else case.drill)
        else:
            out.append(MatrixFinding(case.drill if case.drill == f"lint:{case.check}" else f"{case.drill} {case.check}",
                                     case.message or case.outcome, True))
    if passed:
        out.append(MatrixFinding("lint", f"{len(passed)} lint rule(s) and key proof(s) found nothing: "
                                 + ", ".join(passed), False))
    return out
