"""The monthly disaster-recovery drill and its runbook.

inventory -> recovery steps in dependency order (:func:`restoredrill.plan.plan_recovery_order`)
-> shown, confirmed step by step on a terminal (or ``--yes``) -> every drill -> ``OUT/runbook.md``
(the steps with the times measured in this run's junit.xml) -> ``OUT/evidence/`` (the bundle).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from restoredrill.plan import PlanError, PlanGuest, guest_tier, plan_recovery_order
from restoredrill.runner import EXIT_FAILED, EXIT_USAGE, RunRequest, run_drills

RUNBOOK_FILE = "runbook.md"
MEASURES = (("restore_seconds", "restore"), ("boot_to_reachable_seconds", "boot to reachable"))


@dataclass(frozen=True)
class RunbookStep:
    number: int
    tier: str                       # firewall | dns | pbs | application | data
    title: str
    action: str                     # what the operator does on the day
    drills: tuple[str, ...]         # drill names (junit property ``drill``) whose cases prove it


@dataclass(frozen=True)
class JunitCase:
    name: str
    drill: str
    check: str
    outcome: str                    # passed | failed | error | skipped
    seconds: float
    properties: dict = field(default_factory=dict)


# --- the steps (from the inventory) -------------------------------------------------------

def recovery_steps(inventory) -> tuple[list[RunbookStep], list[str]]:
    """The guests in dependency order, a Borg repository right after the guest whose data it
    holds (``pre_backup_borg``, else at the end), the PBS itself before the first application
    when it is not a guest of the inventory. Returns the steps and the plan's notes (cycles)."""
    pbs_host = host_of(inventory.proxmox.pbs.url) if inventory.proxmox.pbs else None
    guests = [PlanGuest(g.name, g.strategy, tuple(g.depends_on),
                        guest_tier(g.name, g.strategy, tuple(c.target for c in g.health if c.kind == "port"),
                                   pbs_host))
              for g in inventory.guests]
    plan = plan_recovery_order(guests)
    by_name = {g.name: g for g in inventory.guests}
    repos = {repo.name: repo for repo in inventory.borg.repositories}
    drafts: list[tuple[str, str, str, tuple[str, ...]]] = []
    for planned in plan.order:
        if planned.tier == "application" and inventory.proxmox.pbs and not any(
                g.tier == "pbs" for g in plan.order) and not any(d[0] == "pbs" for d in drafts):
            drafts.append(pbs_server_step(inventory))
        drafts.append(guest_step(by_name[planned.name], planned.tier))
        repo = repos.pop(by_name[planned.name].pre_backup_borg or "", None)
        if repo:
            drafts.append(borg_step(repo))
    if inventory.proxmox.pbs and not any(d[0] == "pbs" for d in drafts):
        drafts.append(pbs_server_step(inventory))
    drafts += [borg_step(repo) for repo in repos.values()]
    steps = [RunbookStep(i, tier, title, action, drills) for i, (tier, title, action, drills) in enumerate(drafts, 1)]
    return steps, list(plan.notes)


def host_of(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].split(".", 1)[0]


def guest_step(guest, tier: str):
    needs = f" (needs {', '.join(guest.depends_on)})" if guest.depends_on else ""
    if guest.strategy == "config-export":
        return (tier, f"{tier} {guest.name}{needs}",
                f"install {guest.name} fresh and import its config export {guest.config_export} from the storage "
                f"box (decrypt with the escrowed passphrase)", (f"offsite:{guest.config_export}", f"guest:{guest.name}"))
    if guest.strategy == "pbs":
        return (tier, f"{tier} {guest.name}{needs}",
                f"restore {guest.type} {guest.vmid} from its newest verified PBS snapshot, start it, check "
                f"{', '.join(c.name for c in guest.health) or 'that it answers'}", (f"guest:{guest.name}",))
    return (tier, f"{tier} {guest.name}{needs}", f"rebuild {guest.name}: {guest.exception}", (f"guest:{guest.name}",))


def pbs_server_step(inventory):
    stores = ", ".join(store.name for store in inventory.proxmox.pbs.datastores)
    return ("pbs", "pbs Proxmox Backup Server",
            f"bring up the PBS at {inventory.proxmox.pbs.url} and attach its datastores ({stores}); "
            f"the encryption key comes from escrow", tuple(f"pbs:{store.name}" for store in inventory.proxmox.pbs.datastores))


def borg_step(repo):
    return ("data", f"data borg:{repo.name}",
            f"borg extract the newest archive of {repo.name} and restore its databases "
            f"(passphrase and key from escrow)", (f"borg:{repo.name}",))


def plan_lines(steps: list[RunbookStep], notes: list[str]) -> list[str]:
    lines = ["Disaster-recovery drill: the site comes back in this order"]
    lines += [f"  {step.number:2d}. [{step.tier}] {step.title}: {step.action}" for step in steps]
    return lines + [f"  NOTE {note}" for note in notes]


# --- confirmation -------------------------------------------------------------------------

def confirm_steps(steps: list[RunbookStep], *, yes: bool, stdin, stdout) -> bool:
    """True to go on. ``--yes``: no prompt. No terminal and no ``--yes``: a usage error."""
    if yes:
        print("restoredrill: monthly: --yes given, every step confirmed", file=stdout)
        return True
    if not (hasattr(stdin, "isatty") and stdin.isatty()):
        raise PlanError("monthly mode confirms each step on a terminal, and stdin is not one; run it from a "
                        "terminal, or pass --yes for an unattended drill")
    for step in steps:
        stdout.write(f"step {step.number}/{len(steps)} {step.title}: confirm [y]es / [a]ll / [n]o? ")
        stdout.flush()
        answer = (stdin.readline() or "n").strip().lower()
        if answer in ("a", "all"):
            return True
        if answer not in ("y", "yes"):
            print(f"restoredrill: monthly drill stopped at step {step.number}; nothing was run", file=stdout)
            return False
    return True


# --- the run ------------------------------------------------------------------------------

def run_monthly(request: RunRequest, loaded, *, yes: bool, stdin, stdout) -> int:
    from restoredrill.bundle import build_evidence_bundle
    steps, notes = recovery_steps(loaded.model)
    print("\n".join(plan_lines(steps, notes)), file=stdout)
    if not confirm_steps(steps, yes=yes, stdin=stdin, stdout=stdout):
        return EXIT_FAILED
    out = request.out_dir or loaded.resolve_path(loaded.model.reports.out_dir)
    # the site-loss drill (drills/test_offsite_site_loss.py) runs in the monthly drill only
    extra = request.extra_args if "--site-loss" in request.extra_args else ["--site-loss", *request.extra_args]
    request = replace(request, out_dir=out, extra_args=extra)
    started = datetime.now(timezone.utc)
    code = run_drills(request)
    if code == EXIT_USAGE:
        return code
    junit = request.junit or out / "junit.xml"
    cases = read_junit_cases(junit) if junit.exists() else []
    (out / RUNBOOK_FILE).write_text(render_runbook(steps, notes, cases, site=loaded.model.site.name,
                                                   started=started, verdict="pass" if code == 0 else "fail"))
    bundle = build_evidence_bundle(out, junit=junit, cases=cases)
    print(f"runbook        {out / RUNBOOK_FILE}\nevidence       {bundle}", file=stdout)
    return code


# --- junit.xml -> cases -------------------------------------------------------------------

def read_junit_cases(path: Path) -> list[JunitCase]:
    """pytest's junit.xml (xunit1: each case carries its evidence as ``<properties>``)."""
    cases = []
    for node in ET.parse(path).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in node.iter("property")}
        outcome = next((tag for tag in ("failure", "error", "skipped") if node.find(tag) is not None), "passed")
        outcome = {"failure": "failed"}.get(outcome, outcome)
        cases.append(JunitCase(node.get("name", ""), props.get("drill", ""), props.get("check", ""), outcome,
                               float(node.get("time") or 0.0), props))
    return cases


# --- rendering (pure) ---------------------------------------------------------------------

def step_measures(step: RunbookStep, cases: list[JunitCase]) -> dict:
    mine = [case for case in cases if case.drill in step.drills]
    measured = {"cases": len(mine), "failed": [f"{c.drill} {c.check}" for c in mine if c.outcome in ("failed", "error")],
                "seconds": round(sum(c.seconds for c in mine), 3)}
    for key, _ in MEASURES:
        values = [value for value in (measure_of(case, key) for case in mine) if value is not None]
        if values:
            measured[key] = round(sum(values), 3)
    return measured


def measure_of(case: JunitCase, key: str) -> float | None:
    """A restore case's own measurement; a Borg extract's ``seconds`` is its restore time."""
    if case.check not in ("restore", "extract"):
        return None
    value = case.properties.get(key)
    if value is None and case.check == "extract" and key == "restore_seconds":
        value = case.properties.get("seconds")
    return None if value is None else float(value)


def render_runbook(steps: list[RunbookStep], notes: list[str], cases: list[JunitCase], *, site: str,
                   started: datetime, verdict: str) -> str:
    lines = [f"# Recovery runbook: {site}", "",
             f"Generated by the monthly disaster-recovery drill of {started:%Y-%m-%d %H:%M} UTC "
             f"(verdict: {verdict}). Steps in dependency order; times measured in this drill.", "",
             "| # | step | what to do | restore s | boot to reachable s | drill s | result |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    total = 0.0
    for step in steps:
        m = step_measures(step, cases)
        total += m.get("restore_seconds", 0.0) + m.get("boot_to_reachable_seconds", 0.0)
        result = ("not drilled" if not m["cases"] else
                  f"FAILED: {'; '.join(m['failed'])}" if m["failed"] else f"passed ({m['cases']} checks)")
        lines.append(f"| {step.number} | {cell(step.title)} | {cell(step.action)} | {fmt(m.get('restore_seconds'))} | "
                     f"{fmt(m.get('boot_to_reachable_seconds'))} | {fmt(m['seconds'] if m['cases'] else None)} | "
                     f"{cell(result)} |")
    lines += ["", f"Measured restore and boot time of all steps together: {total:.1f} s.", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {cell(note)}" for note in notes] + [""]
    lines += ["## Proven by", ""] + [f"- step {s.number}: {', '.join(s.drills)}" for s in steps] + [""]
    return "\n".join(lines)


def fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
