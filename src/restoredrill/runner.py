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


def pytest_args(request: RunRequest) -> list[str]:
    base = drills_dir()
    files = [str(path) for kind in request.kinds for path in sorted(base.glob(KIND_FILES[kind]))]
    ini = Path(__file__).with_name("pytest-drills.ini")
    args = [*files, "-c", str(ini), f"--rootdir={base.parent}", f"--inventory={request.inventory}",
            "-o", "junit_family=xunit1", "-o", "console_output_style=classic", "-rfE", "--tb=short",
            "-p", "no:benchmark", "-p", "no:hypothesispytest"]
    junit = request.junit or (request.out_dir / "junit.xml" if request.out_dir else None)
    if junit:
        args.append(f"--junitxml={junit}")
    if request.out_dir:
        args.append(f"--out-dir={request.out_dir}")
    if request.state_dir:
        args.append(f"--state-dir={request.state_dir}")
    run_id = request.run_id or (new_run_id() if request.workers > 1 else None)
    if run_id:      # every xdist worker must record the same run
        args.append(f"--run-id={run_id}")
    if request.workers > 1:
        # one group per target (see fixtures/pbs_restore.py): a worker restores its guest once
        args += ["-n", str(request.workers), "--dist", "loadgroup"]
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
    import pytest       # here, not at the top: the other subcommands never pay for it (issue 26)
    with preflight_first(request) as request:
        code = map_exit_code(int(pytest.main(pytest_args(request), plugins=list(request.plugins))))
    junit = request.junit or (request.out_dir / "junit.xml" if request.out_dir else None)
    if code == EXIT_OK and junit is not None and junit_has_failures(junit):
        # seen with a pytest-xdist INTERNALERROR: exit 0 although cases failed
        print(f"restoredrill: pytest exited 0 but {junit} is missing or records failed cases; exit 1",
              file=sys.stderr)
        return EXIT_FAILED
    return code


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


def junit_has_failures(path: Path) -> bool:
    """True when the JUnit file is missing, unreadable or counts failures or errors."""
    import xml.etree.ElementTree as ET
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return True
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return any(int(s.get("failures", 0)) + int(s.get("errors", 0)) > 0 for s in suites)


def map_exit_code(code: int) -> int:
    """pytest: 0 ok, 1 failures, 2 interrupted, 3 internal error, 4 usage, 5 nothing collected."""
    if code == 0:
        return EXIT_OK
    if code == 4:
        return EXIT_USAGE
    return EXIT_FAILED
