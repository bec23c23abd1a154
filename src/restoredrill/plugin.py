"""The pytest plugin (entry point ``pytest11``): inventory options, parametrization,
evidence, the one-screen summary.

It stays inert unless ``--inventory`` is given or a drill asks for inventory data;
a drill collected without an inventory is a usage error, never a silent skip.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from restoredrill import drills_dir
from restoredrill.checks.redact import terminal
from restoredrill.inventory import InventoryError, load_inventory
from restoredrill.plan import KINDS
from restoredrill.report.collector import add_report_options, register_report_collector
from restoredrill.state import DEFAULT_STATE_DIR, StateStore

INVENTORY_KEY = pytest.StashKey[object]()
STATE_KEY = pytest.StashKey[StateStore]()
ABSENT = "restoredrill_absent"
FIXTURE_MODULES = ("restoredrill.fixtures.common", "restoredrill.fixtures.borg", "restoredrill.fixtures.offsite",
                   "restoredrill.fixtures.pbs_restore", "restoredrill.fixtures.pbs", "restoredrill.fixtures.lint",
                   "restoredrill.fixtures.monitoring", "restoredrill.fixtures.site_loss")
SITE_LOSS = "site_loss"
# The fixtures each drill suite uses (fixtures/common.py is always there): registered when the
# suite is collected, so `--select borg` never imports boto3, paramiko, testinfra or requests
# (issue 26: about 0.4 s of every Borg drill run). Any other test file gets them all. A fixture
# module another one imports comes first (site_loss imports lint): imported plainly before it is
# registered, pytest could not rewrite it (PytestAssertRewriteWarning in a monthly run).
DRILL_FIXTURES = {"test_borg.py": ("borg",), "test_lint.py": ("lint",), "test_monitoring.py": ("monitoring",),
                  "test_offsite.py": ("offsite",), "test_offsite_site_loss.py": ("lint", "site_loss"),
                  "test_pbs_audit.py": ("pbs",), "test_pbs_restore.py": ("pbs_restore",)}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("restoredrill", "restoredrill drills")
    group.addoption("--inventory", metavar="FILE", help="inventory YAML the drills run against")
    group.addoption("--state-dir", metavar="DIR", default=None,
                    help=f"state database folder (default {DEFAULT_STATE_DIR})")
    group.addoption("--run-id", default=None, help="identifier of this run (default: time-based)")
    group.addoption("--keep-on-failure", action="store_true", help="keep scratch data of failed drills")
    group.addoption("--site-loss", action="store_true",
                    help="run the site-loss drill (every chunk of each guest's newest offsite snapshot read; "
                         "--mode monthly passes it); without it its cases are deselected")
    add_report_options(group)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "drill_kind(kind): the drill KIND (borg, pbs, offsite, lint, monitoring)")
    for kind in KINDS:
        config.addinivalue_line("markers", f"{kind}: a {kind} drill (-m {kind} selects what --select {kind} does)")
    config.addinivalue_line("markers", f"{ABSENT}: the inventory has nothing for this drill")
    config.addinivalue_line("markers", f"{SITE_LOSS}: the site-loss drill (runs with --site-loss only)")
    path = config.getoption("--inventory")
    if path:
        try:
            config.stash[INVENTORY_KEY] = load_inventory(path)
        except InventoryError as exc:
            raise pytest.UsageError(str(exc)) from None
        config.pluginmanager.register(SummaryCollector(), "restoredrill-summary")
        register_report_collector(config)
    register_fixtures(config, FIXTURE_MODULES[:1])


def register_fixtures(config: pytest.Config, modules) -> None:
    for module in modules:
        if not config.pluginmanager.has_plugin(module):
            config.pluginmanager.import_plugin(module)


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Before a test module is imported: the fixture modules it uses (``DRILL_FIXTURES``).
    (Not at ``pytest_collect_file``: pytest calls that for every file of the drills package,
    whichever were asked for.)"""
    if not isinstance(collector, pytest.Module):
        return
    path = collector.path
    kinds = DRILL_FIXTURES.get(path.name) if path.parent.resolve() == drills_dir().resolve() else None
    modules = [f"restoredrill.fixtures.{kind}" for kind in kinds] if kinds else FIXTURE_MODULES
    register_fixtures(collector.config, modules)


def sanitize_terminal(config: pytest.Config) -> None:
    """Every line pytest prints for a drill run (failure messages too) goes through
    :func:`terminal`: names from archives and guests can hold ESC/OSC sequences that would
    fake a line or retitle the window. pytest's own colors are applied after (``markup``)."""
    reporter = config.pluginmanager.getplugin("terminalreporter")
    writer = getattr(reporter, "_tw", None)
    if writer is None or getattr(writer, "_restoredrill_sanitized", False):
        return
    write = writer.write

    def sanitized(msg: str, *, flush: bool = False, **markup: bool) -> None:
        write(terminal(msg), flush=flush, **markup)
    writer.write = sanitized
    writer._restoredrill_sanitized = True


def loaded_inventory(config: pytest.Config):
    try:
        return config.stash[INVENTORY_KEY]
    except KeyError:
        raise pytest.UsageError("restoredrill drills need an inventory: pass --inventory FILE "
                                "(`restoredrill example-inventory` prints one that documents every key)") from None


def state_store(config: pytest.Config) -> StateStore:
    if STATE_KEY not in config.stash:
        state_dir = config.getoption("--state-dir") or DEFAULT_STATE_DIR
        config.stash[STATE_KEY] = StateStore(Path(state_dir))
    return config.stash[STATE_KEY]


def parametrize_from(metafunc: pytest.Metafunc, argnames: list[str], rows: list[tuple], ids: list[str],
                     indirect: list[str]) -> None:
    """Parametrize, or mark the test absent (deselected, not skipped) when rows is empty."""
    if rows:
        metafunc.parametrize(argnames, rows, ids=ids, indirect=indirect, scope="module")
    else:
        metafunc.parametrize(argnames, [pytest.param(*([None] * len(argnames)),
                                                     marks=pytest.mark.restoredrill_absent)],
                             ids=["absent"], indirect=indirect, scope="module")


TARGET_PARAMS = ("borg_repo", "pbs_guest")


def pytest_itemcollected(item: pytest.Item) -> None:
    """A marker per drill kind beside ``drill_kind(KIND)``, so ``-m borg`` / ``-m "pbs and not
    offsite"`` work as pytest users expect (before -m deselects anything)."""
    kind = item.get_closest_marker("drill_kind")
    if kind and kind.args and kind.args[0] in KINDS:
        item.add_marker(getattr(pytest.mark, kind.args[0]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted_site_loss = config.getoption("--site-loss", False)
    absent = [item for item in items if item.get_closest_marker(ABSENT)
              or (item.get_closest_marker(SITE_LOSS) and not wanted_site_loss)]
    if absent:
        config.hook.pytest_deselected(items=absent)
        dropped = {id(item) for item in absent}
        items[:] = [item for item in items if id(item) not in dropped]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> None:
    """A drill's own failure message (``pytest.fail(..., pytrace=False)``) is the whole story.
    Raised while handling a client's error, pytest would print that error first and then
    "During handling of the above exception, another exception occurred:" (``_pytest/_code/
    code.py`` follows ``__context__``): the message already names the cause, once."""
    failed = call.excinfo.value if call.excinfo else None
    if isinstance(failed, pytest.fail.Exception) and not failed.pytrace:
        failed.__suppress_context__ = True


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--workers N``: every case of one restore target on one worker (restoredrill.grouping)."""
    if INVENTORY_KEY not in config.stash or config.getvalue("dist") == "each":
        return None            # --dist each: every worker runs every case, on purpose
    from restoredrill.grouping import make_scheduler
    return make_scheduler(config, log, config.stash[INVENTORY_KEY].model)


def keep_targets_together(items: list[pytest.Item]) -> None:
    """Keep each target's cases together (pytest's own reordering interleaves them), so a
    module-scoped extract or scratch guest is made once and removed before the next one's.
    (Which worker runs them under ``--workers`` is decided by the controller: restoredrill.grouping.)"""
    def target_of(item) -> str | None:
        callspec = getattr(item, "callspec", None)
        for param in TARGET_PARAMS:
            value = callspec.params.get(param) if callspec else None
            if value is not None:
                return f"{param}:{getattr(value, 'name', value)}"
        return None
    positions = [i for i, item in enumerate(items) if target_of(item) is not None]
    def line_of(item) -> int:
        function = getattr(item, "function", None)
        return getattr(getattr(function, "__code__", None), "co_firstlineno", 0)
    # by file, then target, then the order the checks are written in (stable within a function)
    ordered = sorted((items[i] for i in positions), key=lambda item: (str(item.path), target_of(item), line_of(item)))
    for position, item in zip(positions, ordered):
        items[position] = item


class SummaryCollector:
    """Keeps the drill results of this session for the one-screen summary."""

    def __init__(self) -> None:
        self.reports: list[pytest.TestReport] = []

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        sanitize_terminal(session.config)     # the terminal reporter exists by now

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when in ("setup", "teardown") and report.outcome != "passed"):
            self.reports.append(report)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.reports:
            return
        from restoredrill.report.summary import summary_lines
        terminalreporter.section("restoredrill summary")
        for line in summary_lines(self.reports):
            terminalreporter.write_line(terminal(line, one_line=True))
