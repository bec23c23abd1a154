"""The report collector: a pytest plugin object that gathers every drill case of the
session and, when the session ends, writes what people and machines read.

    first case    -> the run recorded as started, heartbeat start ping
    each case     -> nodeid, drill, check, outcome, message, seconds, evidence
    session end   -> history (state database) -> regressions and coverage gaps
                  -> drill-report.xml, report.html, metrics.prom (OUT, or a fallback folder)
                  -> heartbeat success/failure ping, failure mail

It runs only in the controlling process (not in pytest-xdist workers) and only with
``--inventory``. Nothing it does changes the exit code: a drill failed or could not
run (exit 1) is pytest's verdict alone; a report or a delivery that fails is a notice
on stderr and in the reports.
"""
from __future__ import annotations

import sys
import time
import uuid
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

import pytest

from restoredrill.checks.redact import terminal
from restoredrill.report import history as hist
from restoredrill.report.model import ERROR, FAILED, PASSED, SKIPPED, Case, RunReport
from restoredrill.report.signals import Deliveries, production_signals
from restoredrill.report.targets import Collected, settle_drills, sibling_keys

DRILL_REPORT = "drill-report.xml"
HTML_REPORT = "report.html"
METRICS_FILE = "metrics.prom"
PLUGIN_NAME = "restoredrill-report"


def add_report_options(group) -> None:
    group.addoption("--out-dir", metavar="DIR", default=None,
                    help=f"folder for {DRILL_REPORT}, {HTML_REPORT} and {METRICS_FILE} (default: the --junitxml "
                         "folder, else reports.out_dir of the inventory)")
    group.addoption("--max-untested-days", type=float, default=None, metavar="DAYS",
                    help=f"a drill with no passing restore test for longer is a coverage gap "
                         f"(default {hist.MAX_UNTESTED_DAYS})")
    group.addoption("--rto-regression", type=float, default=None, metavar="SHARE",
                    help=f"a restore slower than the median of the last {hist.RTO_WINDOW} runs by more than "
                         f"this share is a regression (default {hist.RTO_REGRESSION_SHARE})")
    group.addoption("--no-notify", action="store_true",
                    help="send no heartbeat ping and no mail (reports are still written)")
    group.addoption("--notify", action="store_true",
                    help="push the heartbeat, mail failures and write reports.metrics_file although this is "
                         "not the scheduled run")
    group.addoption("--run-scope", default=None, metavar="SCOPE",
                    help="'scheduled' for the run whose verdict production signals carry (restoredrill run "
                         "--mode scheduled, every kind); else why this run is not it (default: a manual run)")


def register_report_collector(config: pytest.Config) -> None:
    """Called from the plugin's pytest_configure when --inventory is given. A pytest-xdist
    worker only names its cases; the controller collects them and writes the outputs."""
    if config.getoption("collectonly", False) or config.pluginmanager.has_plugin(PLUGIN_NAME):
        return
    plugin = CaseNamer() if hasattr(config, "workerinput") else ReportCollector(config)
    config.pluginmanager.register(plugin, PLUGIN_NAME)


def new_run_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


class CaseNamer:
    """Gives every case report its drill and check, also when it failed before recording
    evidence (for pytest's junit.xml, the terminal summary and the collector)."""

    def __init__(self) -> None:
        self.names: dict[str, tuple[str, str]] = {}
        self.collected: dict[str, Collected] = {}
        self.kinds: set[str] = set()

    def pytest_collection_finish(self, session) -> None:
        for item in session.items:
            self.names[item.nodeid] = guess_names(item)
            self.collected[item.nodeid] = Collected(self.names[item.nodeid][0], sibling_keys(item.nodeid))
            kind = item.get_closest_marker("drill_kind")
            if kind and kind.args:
                self.kinds.add(str(kind.args[0]))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.name_report(report)

    def name_report(self, report: pytest.TestReport) -> tuple[str, str]:
        recorded = {str(k): v for k, v in report.user_properties}
        guess = self.names.get(report.nodeid) or names_from_nodeid(report.nodeid)
        drill, check = str(recorded.get("drill") or guess[0]), str(recorded.get("check") or guess[1])
        report.user_properties += [(key, value) for key, value in (("drill", drill), ("check", check))
                                   if key not in recorded]
        return drill, check


class ReportCollector(Deliveries, CaseNamer):
    def __init__(self, config: pytest.Config):
        super().__init__()
        from restoredrill.plugin import loaded_inventory
        self.config = config
        self.loaded = loaded_inventory(config)
        started = datetime.now(timezone.utc)
        if not config.getoption("--run-id"):
            config.option.run_id = new_run_id(started)   # the run_id fixture reads the same option
        self.run = RunReport(config.getoption("--run-id"), self.loaded.model.site.name, started)
        self.cases: OrderedDict[str, Case] = OrderedDict()
        self.store = None
        self.heartbeat = None
        self.findings: list[hist.Finding] = []
        self.history_note = ""
        self.signals, self.not_signalling = production_signals(config)
        self.started = False

    # --- during the session ---------------------------------------------------------------
    def pytest_sessionstart(self, session) -> None:
        self.store = self.open_store()

    def pytest_runtest_logstart(self, nodeid, location) -> None:
        self.begin()

    def begin(self) -> None:
        """At the first case (never for a selection that matched nothing): the run is recorded
        as started, so a run that never finishes stays visible, and the heartbeat starts."""
        if self.started:
            return
        self.started = True
        if self.store is not None:
            try:
                self.store.start_run(self.run.run_id, "drills", str(self.loaded.path))
            except Exception as exc:  # noqa: BLE001 - a history problem must not stop the drills
                self.run.note("history", f"the run could not be recorded in {self.store.path}: {exc}")
                self.store = None
        self.start_heartbeat()

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A drill file that cannot even be collected is a drill that could not run."""
        if report.failed:
            where = report.nodeid or "session"
            self.cases[f"collect:{where}"] = Case(where, "collection", where, ERROR, one_line_message(report),
                                                  report.longreprtext)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        drill, check = self.name_report(report)
        case = self.cases.get(report.nodeid)
        if case is None:
            case = self.cases[report.nodeid] = Case(report.nodeid, drill, check)
        case.seconds += report.duration
        case.properties.update((str(k), v) for k, v in report.user_properties)
        case.drill = str(case.properties.get("drill") or drill)
        case.check = str(case.properties.get("check") or check)
        if report.failed:
            if case.outcome not in (FAILED, ERROR):
                case.outcome = FAILED if report.when == "call" else ERROR
                case.message = one_line_message(report)
                case.details = report.longreprtext
            else:
                case.details += f"\n--- {report.when} ---\n{report.longreprtext}"
        elif report.skipped and case.outcome == PASSED:
            case.outcome, case.message = SKIPPED, one_line_message(report)

    # --- at the end -----------------------------------------------------------------------
    def pytest_sessionfinish(self, session, exitstatus) -> None:
        try:
            self.finish(int(exitstatus))
        except Exception as exc:  # noqa: BLE001 - never hide the drill verdict behind a report bug
            print(f"restoredrill: NOTE the reports of run {self.run.run_id} could not be completed: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)

    def finish(self, exitstatus: int) -> None:
        if not self.cases and exitstatus in (int(pytest.ExitCode.NO_TESTS_COLLECTED), int(pytest.ExitCode.USAGE_ERROR)):
            return            # nothing matched, or a bad -k/-m: no history, no report overwritten, no heartbeat
        self.begin()          # e.g. only collection errors: they are this run's verdict
        begun = time.monotonic()
        run = self.run
        run.finished, run.exitstatus, run.cases = datetime.now(timezone.utc), exitstatus, list(self.cases.values())
        # targets from the drills' own evidence; NOT RUN only for cases that never ran
        run.expected_drills = settle_drills(run.cases, self.collected)
        history = self.update_history()
        self.findings = (hist.regressions(history, run.run_id, self.thresholds(),
                                          run.expected_drills or list(run.by_drill()))
                         + hist.coverage_gaps(history, run.expected_drills or list(run.by_drill()),
                                              run.finished, self.thresholds()))
        from restoredrill.report.overview import drill_statuses
        statuses = drill_statuses(run, history)
        calendars = self.calendars()
        matrix = self.matrix(history)
        before = (len(run.notices), dict(run.deliveries))
        folder = self.write_reports(self.render(statuses, calendars, matrix))
        self.end_heartbeat()
        self.send_mail(folder)
        self.write_metrics(statuses, folder, matrix)
        self.write_summary(statuses, folder)
        if (len(run.notices), run.deliveries) != before:   # fallback folder, deliveries: the reports say so
            self.write_reports(self.render(statuses, calendars, matrix), folder)
        run.outputs["report time"] = f"{time.monotonic() - begun:.2f} s"
        run.outputs["signals"] = ("heartbeat, mail and metrics file speak for the site" if self.signals else
                                  f"none sent, {self.not_signalling}: heartbeat, mail and metrics file untouched; "
                                  f"--notify sends them")
        for notice in run.notices:
            print(terminal(f"restoredrill: NOTE {notice.topic}: {notice.text}"), file=sys.stderr)

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter) -> None:
        run = self.run
        if not run.outputs and not run.notices:
            return
        terminalreporter.section("restoredrill reports")
        for what, where in run.outputs.items():
            terminalreporter.write_line(terminal(f"{what:<14} {where}", one_line=True))
        for finding in self.findings:
            if not finding.ok:
                terminalreporter.write_line(terminal(f"FAILED history {finding.name}: {finding.message}",
                                                     one_line=True))
        quiet = f"not sent, {self.not_signalling}; --notify sends it" if not self.signals else None
        for channel, what in run.deliveries.items():
            if what != quiet:       # the signals line said it once for every channel (the reports keep each)
                terminalreporter.write_line(terminal(f"{channel:<14} {what}", one_line=True))
        if run.notices:
            terminalreporter.write_line(f"{len(run.notices)} notice(s): see stderr and the drill report "
                                        f"(suite restoredrill); they do not change the exit code")

    # --- history --------------------------------------------------------------------------
    def open_store(self):
        from restoredrill.plugin import state_store
        try:
            return state_store(self.config)
        except Exception as exc:  # noqa: BLE001 - unwritable state dir, unusable file
            self.run.note("history", f"the state database cannot be used ({exc}); this run is not recorded "
                                     f"and trends show this run only")
            return None

    def update_history(self) -> hist.History:
        run, store = self.run, self.store
        if store is not None:
            for text in store.notices:
                run.note("history", text)
            store.notices.clear()
            try:
                hist.record_run(store, run, "drills", str(self.loaded.path), self.loaded.model.reports.keep_runs)
                loaded = hist.load_history(store.path)
                self.history_note = f"history: {len(loaded.runs)} runs in {store.path}"
                return loaded
            except Exception as exc:  # noqa: BLE001
                run.note("history", f"the run could not be recorded in {store.path}: {exc}")
        self.history_note = "history: this run only"
        return hist.History.from_run(run)

    def thresholds(self) -> hist.Thresholds:
        """Command line first, then the proposed inventory keys (reports.max_untested_days,
        reports.rto_regression) once the schema has them, then the defaults."""
        reports, option = self.loaded.model.reports, self.config.getoption
        days = first_given(option("--max-untested-days"), getattr(reports, "max_untested_days", None),
                           hist.MAX_UNTESTED_DAYS)
        share = first_given(option("--rto-regression"), getattr(reports, "rto_regression", None),
                            hist.RTO_REGRESSION_SHARE)
        return hist.Thresholds(max_untested_days=days, rto_share=share)

    # --- outputs --------------------------------------------------------------------------
    def out_dir(self) -> Path:
        given = self.config.getoption("--out-dir")
        if given:
            return Path(given).expanduser()
        junit = self.config.getoption("xmlpath", None)
        if junit:
            return Path(junit).expanduser().absolute().parent
        return self.loaded.resolve_path(self.loaded.model.reports.out_dir)

    def calendars(self) -> list:
        from restoredrill.report.calendar import calendars_of
        return calendars_of(self.run.cases, self.run.finished, self.loaded.model.site.timezone,
                            self.retention_policy)

    def matrix(self, history):
        from restoredrill.report.matrix import build_matrix
        try:
            return build_matrix(self.loaded.model, self.run.cases, history, self.run.finished,
                                self.thresholds().max_untested_days, self.run.started)
        except Exception as exc:  # noqa: BLE001 - the rest of the report must still be written
            self.run.note("reports", f"the recovery matrix could not be built ({type(exc).__name__}: {exc})")
            return None

    def retention_policy(self, drill: str):
        """(engine, Policy) from the inventory, for points recorded without decisions."""
        from restoredrill import retention
        kind, _, name = drill.partition(":")
        model = self.loaded.model
        if kind == "borg":
            repo = next((r for r in model.borg.repositories if r.name == name), None)
            if repo and repo.retention in model.policies.retention:
                return "borg", retention.Policy.from_mapping(model.policies.retention[repo.retention].options())
        return None, None

    def render(self, statuses, calendars, matrix=None) -> dict[str, str]:
        from restoredrill.report.drill_report import build_drill_report
        from restoredrill.report.html import render_html
        run = self.run
        context = {"inventory": str(self.loaded.path), "history.source": self.history_note,
                   "history.max_untested_days": f"{self.thresholds().max_untested_days:g}",
                   "history.rto_regression": f"{self.thresholds().rto_share:g}"}
        return {DRILL_REPORT: build_drill_report(run, self.findings, context),
                HTML_REPORT: render_html(run, statuses, self.findings, calendars, run.finished, self.history_note,
                                          matrix)}

    def write_reports(self, files: dict[str, str], folder: Path | None = None) -> Path:
        from restoredrill.report.outputs import write_files
        used, written, notices = write_files(folder or self.out_dir(), files)
        if folder is None:
            for text in notices:
                self.run.note("reports", text)
        self.run.outputs.update({"drill report": str(written.get(DRILL_REPORT, "not written")),
                                 "html report": str(written.get(HTML_REPORT, "not written"))})
        return used

    def write_summary(self, statuses, folder: Path) -> None:
        """``summary.json`` beside the reports (restoredrill.report.summary_json)."""
        from restoredrill.report.outputs import write_atomically
        from restoredrill.report.summary_json import SUMMARY_FILE, render_summary
        scope = self.config.getoption("--run-scope") or self.not_signalling or "manual run"
        try:
            write_atomically(folder / SUMMARY_FILE, render_summary(self.run, statuses, self.findings, scope,
                                                                   self.signals))
            self.run.outputs["summary"] = str(folder / SUMMARY_FILE)
        except OSError as exc:
            self.run.note("reports", f"{folder / SUMMARY_FILE} could not be written ({exc.strerror or exc})")

    def write_metrics(self, statuses, folder: Path, matrix=None) -> None:
        from restoredrill.report.metrics import render_metrics
        from restoredrill.report.outputs import write_atomically
        text = render_metrics(self.run, statuses, self.findings, self.run.finished, matrix)
        if self.signals:
            wanted = self.loaded.resolve_path(self.loaded.model.reports.metrics_file) or folder / METRICS_FILE
        elif self.config.getoption("--out-dir") or self.config.getoption("xmlpath", None):
            wanted = folder / METRICS_FILE            # only where this run was told to write
        else:
            self.run.outputs["metrics"] = (f"not written, {self.not_signalling}: the metrics of the scheduled run "
                                           f"stay; give --out DIR for this run's")
            return
        try:
            write_atomically(wanted, text)
            self.run.outputs["metrics"] = str(wanted)
        except OSError as exc:
            fallback = folder / METRICS_FILE
            self.run.note("metrics", f"the metrics file {wanted} cannot be written ({exc.strerror or exc}); "
                                     f"written to {fallback} instead")
            try:
                write_atomically(fallback, text)
                self.run.outputs["metrics"] = str(fallback)
            except OSError as again:
                self.run.note("metrics", f"{fallback} cannot be written either ({again.strerror or again})")


# --- naming cases ------------------------------------------------------------------------

def guess_names(item) -> tuple[str, str]:
    """(drill, check) from the collected item, for cases that fail before recording evidence:
    the drill_kind marker and the parameter that names a target (``borg_repo.name``)."""
    kind = item.get_closest_marker("drill_kind")
    kind_name = str(kind.args[0]) if kind and kind.args else ""
    check = item.originalname.removeprefix("test_") if hasattr(item, "originalname") else item.name
    target = None
    for param, value in getattr(getattr(item, "callspec", None), "params", {}).items():
        if target is None and isinstance(getattr(value, "name", None), str):
            target = value.name                        # a repository, a guest, an offsite target
            if param == "pbs_guest":
                kind_name = "guest"                    # restore drills are named per guest
            if param == "health_check":
                check = value.name
        elif isinstance(getattr(value, "id", None), str):
            check = value.id                           # a data check of that target
    if target is None:
        return names_from_nodeid(item.nodeid)[0], check
    return (f"{kind_name}:{target}" if kind_name else target), check


def first_given(*values):
    return next(value for value in values if value is not None)


def names_from_nodeid(nodeid: str) -> tuple[str, str]:
    function = nodeid.split("::")[-1]
    base, _, param = function.partition("[")
    return (param.rstrip("]").split("-")[0] or base), base.removeprefix("test_")


def one_line_message(report) -> str:
    """The drill's message (expected / found / where) on one line, at most 1000 characters."""
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = crash.message if crash is not None else report.longreprtext
    for prefix in ("Failed: ", "Skipped: "):
        text = text.removeprefix(prefix)
    return " ".join(text.split())[:1000]
