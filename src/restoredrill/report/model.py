"""What one run produced, as plain values: its cases (one per drill check) and notices.

The collector fills a :class:`RunReport` from pytest's reports; the drill report, the
HTML page, the metrics file and the notifications all read the same object, so they
never disagree about a verdict.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

# outcomes of a case, as the drill report and the history store them
PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
# drill-id prefix -> what the drill is about, for headings
KIND_LABELS = {"borg": "Borg repository", "pbs": "PBS datastore", "pve": "Proxmox VE cluster", "guest": "guest",
               "offsite": "offsite target", "s3": "offsite target", "lint": "configuration",
               "monitoring": "monitoring"}
# check names of restore cases (a passing one makes its point restore-tested), and their main phase
RTO_PHASES = {"extract": "restore", "restore": "restore", "boot": "boot"}
# where each restore case records its RTO: (evidence key, phase), first key found wins per phase.
# "restore" is the time to get the data back (Borg: the extract; a guest: the PBS restore into
# the scratch guest), "boot" the scratch guest's start until it answers (guests only).
RTO_MEASURES = {
    "extract": (("seconds", "restore"),),
    "restore": (("restore_seconds", "restore"), ("seconds", "restore"), ("boot_to_reachable_seconds", "boot")),
    "boot": (("boot_to_reachable_seconds", "boot"), ("seconds", "boot")),
}
RTO_NOTE = ("restore: time to get the data back (Borg: the extract; a guest: the PBS restore into a "
            "scratch guest); boot: the restored guest's start until it answers")
VERIFY_CHECKS = ("check", "verify")
FRESH_CHECKS = ("fresh",)


@dataclass
class Case:
    """One drill case: a check of one drill, with its evidence (pytest's record_property)."""

    nodeid: str
    drill: str
    check: str
    outcome: str = PASSED
    message: str = ""          # one line: what was expected, what was found, where
    details: str = ""          # the full failure text (traceback or paragraph)
    seconds: float = 0.0       # pytest's time for setup + call + teardown
    properties: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome == PASSED

    @property
    def evidence(self) -> dict:
        """The facts without the two keys that name the case."""
        return {k: v for k, v in self.properties.items() if k not in ("drill", "check")}

    def measured_seconds(self) -> float | None:
        """The drill's own measurement (`seconds` evidence) or None."""
        return to_float(self.properties.get("seconds"))


@dataclass(frozen=True)
class Notice:
    """Something the reader must know that is not a drill result: a delivery that failed, a
    history database that was reset, reports written to a fallback folder."""

    topic: str      # history | heartbeat | email | reports | metrics
    text: str


@dataclass
class RunReport:
    run_id: str
    site: str
    started: datetime
    finished: datetime | None = None
    exitstatus: int = 0
    cases: list[Case] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    deliveries: dict[str, str] = field(default_factory=dict)   # channel -> what happened (heartbeat, email)
    outputs: dict[str, str] = field(default_factory=dict)      # what -> path written
    expected_drills: list[str] = field(default_factory=list)

    def note(self, topic: str, text: str) -> None:
        self.notices.append(Notice(topic, text))

    @property
    def drills_ok(self) -> bool:
        return self.exitstatus == 0 and all(case.outcome in (PASSED, SKIPPED) for case in self.cases)

    @property
    def verdict(self) -> str:
        """pass, fail (a drill failed or could not run), interrupted or error (pytest's own)."""
        if self.exitstatus == 2:
            return "interrupted"
        if self.exitstatus in (3, 4):
            return "error"
        if self.exitstatus == 5 and not self.cases:
            return "empty"
        return "pass" if self.drills_ok else "fail"

    @property
    def seconds(self) -> float:
        end = self.finished or self.started
        return max(0.0, (end - self.started).total_seconds())

    def by_drill(self) -> "OrderedDict[str, list[Case]]":
        drills: OrderedDict[str, list[Case]] = OrderedDict()
        for case in self.cases:
            drills.setdefault(case.drill, []).append(case)
        return drills

    def failed_cases(self) -> list[Case]:
        return [case for case in self.cases if case.outcome in (FAILED, ERROR)]


def drill_kind(drill: str) -> str:
    return drill.split(":", 1)[0] if ":" in drill else ""


def drill_label(drill: str) -> str:
    return KIND_LABELS.get(drill_kind(drill), "drill")


def rto_of(check: str, evidence: dict) -> dict[str, float]:
    """Phase (restore, boot) -> seconds a restore case measured, from its evidence."""
    phases: dict[str, float] = {}
    for key, phase in RTO_MEASURES.get(check, ()):
        seconds = to_float(evidence.get(key))
        if seconds is not None and phase not in phases:
            phases[phase] = seconds
    return phases


def to_float(value) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def parse_time(value) -> datetime | None:
    """An ISO time from evidence (aware), or None."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo else None
