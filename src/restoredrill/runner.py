"""Run the drill suites with pytest for the CLI, and map pytest's exit codes to ours."""
from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from restoredrill import drills_dir
from restoredrill.state import DEFAULT_STATE_DIR

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
KIND_FILES = {"borg": "test_borg*.py", "pbs": "test_pbs*.py", "offsite": "test_offsite*.py", "lint": "test_lint*.py",
              "monitoring": "test_monitoring*.py"}


@dataclass
class RunRequest:
    inventory: Path
    kinds: list[str]
    junit: Path | None = None
    out_dir: Path | None = None
    state_dir: Path | None = None
    run_id: str | None = None
    workers: int = 1                 # pytest-xdist workers (already capped by scratch.budgets.max_parallel)
    extra_args: list[str] = field(default_factory=list)
    plugins: list = field(default_factory=list)     # plugin objects a mode registers (restoredrill.modes)
    preflight: bool = True           # probe every endpoint first; the cases of a failed one are blocked
    preflight_file: Path | None = None               # the failed endpoints, for the blocking plugin
    scope: str | None = None         # "scheduled", or why this run is not (run_scope): production signals
    selection: str = ""              # what narrowed the run (selection_text), for "no drill matched"


SCHEDULED = "scheduled"


def selection_text(select: list[str] | None, keyword: str | None, markexpr: str | None,
                   last_failed: bool = False) -> str:
    """What narrows a run to part of the inventory (``--select lint, -k 'x'``); "" for every drill."""
    from restoredrill.plan import IMPLEMENTED_KINDS
    parts = []
    if select and not set(IMPLEMENTED_KINDS) <= set(select):
        parts.append("--select " + " --select ".join(dict.fromkeys(select)))
    if keyword:
        parts.append(f"-k {keyword!r}")
    if markexpr:
        parts.append(f"-m {markexpr!r}")
    if last_failed:
        parts.append("--lf")
    return ", ".join(parts)


def run_scope(mode: str | None, selection: str) -> str:
    """``scheduled`` for the one run whose verdict production signals carry (``--mode scheduled``,
    every kind, no -k/-m/--lf): it pushes the heartbeat, mails failures and writes
    ``reports.metrics_file``. Any other run says why it is not (``--notify`` opts it in)."""
    if selection:
        return f"partial run ({selection})"
    if mode == SCHEDULED:
        return SCHEDULED
    return f"{mode} run (not --mode scheduled)" if mode else "manual run (not --mode scheduled)"


# pytest's own plugins no drill run uses (the command line offers no --pdb, doctests or unittest
# cases): each is imported and configured every run, `debugging` imports pdb (0.03 s), and
# `unraisableexception` runs gc.collect twice at the end (0.045 s; an exception in a __del__
# is then printed by Python itself, "Exception ignored in ..."). Issue 26: the fixed cost of a run.
UNUSED_PYTEST_PLUGINS = ("-p", "no:debugging", "-p", "no:doctest", "-p", "no:unittest", "-p", "no:pastebin",
                         "-p", "no:unraisableexception")


def pytest_args(request: RunRequest) -> list[str]:
    base = drills_dir()
    files = [str(path) for kind in request.kinds for path in sorted(base.glob(KIND_FILES[kind]))]
    ini = Path(__file__).with_name("pytest-drills.ini")
    args = [*files, "-c", str(ini), f"--rootdir={base.parent}", f"--inventory={request.inventory}",
            "-o", "junit_family=xunit1", "-o", "console_output_style=classic", "-rfE", "--tb=short",
            "-p", "no:benchmark", "-p", "no:hypothesispytest",
            "-p", "no:pytest11.testinfra",   # its plugin (fixture `host`) imports testinfra: the drills build their own
            *UNUSED_PYTEST_PLUGINS]
    junit = request.junit or (request.out_dir / "junit.xml" if request.out_dir else None)
    if junit:
        args.append(f"--junitxml={junit}")
    if request.out_dir:
        args.append(f"--out-dir={request.out_dir}")
    if request.state_dir:
        args.append(f"--state-dir={request.state_dir}")
    if request.scope:
        args.append(f"--run-scope={request.scope}")
    # pytest's cache (--lf, --ff) lives in the state folder: the drills may sit in a read-only install
    args += ["-o", f"cache_dir={Path(request.state_dir or DEFAULT_STATE_DIR).expanduser() / 'pytest-cache'}"]
    run_id = request.run_id or (new_run_id() if request.workers > 1 else None)
    if run_id:      # every xdist worker must record the same run
        args.append(f"--run-id={run_id}")
    if request.workers > 1:
        # every case of one restore target on one worker (restoredrill.grouping): restored once
        args += ["-n", str(request.workers), "--dist", "loadgroup"]
    else:   # one process: pytest-xdist's plugin would only import execnet (about 0.07 s a run, issue 26)
        args += ["-p", "no:xdist", "-p", "no:xdist.looponfail"]
    if request.preflight_file:
        args += ["-p", "restoredrill.preflight.blocking", f"--preflight-blocked={request.preflight_file}"]
    return args + request.extra_args


def new_run_id() -> str:
    """The same form as the drills' own (``run_id`` fixture)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def run_drills(request: RunRequest) -> int:
    missing = [k for k in request.kinds if not list(drills_dir().glob(KIND_FILES[k]))]
    if missing:
        print(f"restoredrill: the {', '.join(missing)} drills do not exist in this installation; a drill "
              f"that cannot run is a failure", file=sys.stderr)
        return EXIT_FAILED
    if request.out_dir:
        request.out_dir.mkdir(parents=True, exist_ok=True)
    finish = list_borg_ahead(request)
    try:
        status = run_pytest(request)
    finally:
        finish()
    junit = request.junit or (request.out_dir / "junit.xml" if request.out_dir else None)
    if status == NO_TESTS_COLLECTED:
        what = request.selection or f"--select {' --select '.join(request.kinds)}"
        print(f"restoredrill: no drill matched {what} in {request.inventory}: nothing ran, no report was "
              f"written and no heartbeat sent. See the case names with `restoredrill run --plan` and fix the "
              f"-k/-m expression or --select", file=sys.stderr)
        return EXIT_USAGE
    code = map_exit_code(status)
    if code == EXIT_OK and junit is not None and junit_has_failures(junit):
        # seen with a pytest-xdist INTERNALERROR: exit 0 although cases failed
        print(f"restoredrill: pytest exited 0 but {junit} is missing or records failed cases; exit 1",
              file=sys.stderr)
        return EXIT_FAILED
    return code


def run_pytest(request: RunRequest) -> int:
    import pytest       # here, not at the top: the other subcommands never pay for it (issue 26)
    junit = request.junit or (request.out_dir / "junit.xml" if request.out_dir else None)
    # pytest writes its JUnit file even when nothing ran: then the one from before is put back
    previous = junit.read_bytes() if junit is not None and junit.is_file() else None
    with preflight_first(request) as request:
        status = int(pytest.main(pytest_args(request), plugins=list(request.plugins)))
    if status in (NO_TESTS_COLLECTED, USAGE_ERROR) and junit is not None:
        if previous is None:
            junit.unlink(missing_ok=True)
        else:
            junit.write_bytes(previous)
    return status


@contextlib.contextmanager
def preflight_first(request: RunRequest):
    """Probe the endpoints the selected drills use, print one line each, and hand the failed
    ones to the blocking plugin (restoredrill.preflight.blocking) through a temporary file."""
    if not request.preflight:
        yield request
        return
    from restoredrill.inventory import load_inventory
    from restoredrill.preflight import run_preflight
    lines = run_preflight(load_inventory(request.inventory), request.kinds)
    for line in lines:
        print(f"preflight: {line}", flush=True)
    failed = [{"key": line.key, "what": line.what, "where": line.where, "cause": line.stop}
              for line in lines if line.stop and line.blocks_drills]
    with tempfile.TemporaryDirectory(prefix="restoredrill-preflight-") as folder:
        path = Path(folder) / "blocked.json"
        path.write_text(json.dumps(failed), encoding="utf-8")
        yield replace(request, preflight_file=path)


def list_borg_ahead(request: RunRequest):
    """Start ``borg list`` of each local repository while pytest starts (clients/borg_ahead.py),
    before the preflight and pytest's import: one process (no workers), Borg drills selected.
    A repository the preflight then blocks never has its cases run, so its listing is left
    unused (a local, read-only call). Returns the function that waits for the listings."""
    if request.workers != 1 or "borg" not in request.kinds:
        return lambda: None
    from restoredrill.clients import borg_ahead
    from restoredrill.clients.borg_target import build_target
    from restoredrill.inventory import load_inventory
    loaded = load_inventory(request.inventory)
    state_dir = Path(request.state_dir or DEFAULT_STATE_DIR).expanduser()
    return borg_ahead.start([build_target(loaded, repo, state_dir) for repo in loaded.model.borg.repositories])


def junit_has_failures(path: Path) -> bool:
    """True when the JUnit file is missing, unreadable or counts failures or errors."""
    import xml.etree.ElementTree as ET
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return True
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return any(int(s.get("failures", 0)) + int(s.get("errors", 0)) > 0 for s in suites)


NO_TESTS_COLLECTED = 5      # pytest.ExitCode.NO_TESTS_COLLECTED: also when -k/-m deselected every case
USAGE_ERROR = 4             # pytest.ExitCode.USAGE_ERROR, e.g. a -m expression that does not parse


def map_exit_code(code: int) -> int:
    """pytest: 0 ok, 1 failures, 2 interrupted, 3 internal error, 4 usage, 5 nothing collected."""
    if code == 0:
        return EXIT_OK
    if code == 4:
        return EXIT_USAGE
    return EXIT_FAILED
