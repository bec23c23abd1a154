"""``restoredrill``: the command line. Exit codes: 0 every drill passed, 1 a drill failed
or could not run, 2 usage or inventory error."""
from __future__ import annotations

import argparse
import gc
import re
import sys
from pathlib import Path

from restoredrill import __version__
from restoredrill.plan import KINDS, PlanError, select_kinds
from restoredrill.runner import EXIT_FAILED, EXIT_OK, EXIT_USAGE, RunRequest, run_drills
from restoredrill.state import StateError


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 too; keep its message one paragraph
        self.print_usage(sys.stderr)
        print(f"restoredrill: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="restoredrill", description="Prove that backups restore.")
    parser.add_argument("--version", action="version", version=f"restoredrill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    lab = sub.add_parser("lab", help="build a throwaway lab, run the drills against it, tear it down")
    lab.add_argument("action", nargs="?", choices=["serve"], help="serve: keep the lab up until SIGINT/SIGTERM")
    lab.add_argument("--out", type=Path, default=Path("reports/lab"), help="reports folder (default reports/lab)")
    lab.add_argument("--dir", type=Path, help="lab serve: folder for inventory.yaml and endpoints.json")
    lab.add_argument("--select", action="append", choices=KINDS, metavar="KIND", help="drill kind (repeatable)")
    lab.add_argument("--keep", action="store_true", help="keep the lab folder after the run (for debugging)")
    lab.add_argument("--pve-version", default="9.1.1", metavar="X.Y.Z",
                     help="the PVE release the lab's double answers as (8.x or 9.x; default 9.1.1)")
    lab.add_argument("--pbs-version", default="4.0.14", metavar="X.Y.Z",
                     help="the PBS release the lab's double answers as (3.1 to 4.x; default 4.0.14)")

    run = sub.add_parser("run", help="run the drills against a real site or a served lab")
    run.add_argument("--inventory", type=Path, required=True, help="inventory YAML")
    run.add_argument("--select", action="append", choices=KINDS, metavar="KIND", help="drill kind (repeatable)")
    run.add_argument("--junit", type=Path, help="JUnit XML file (default OUT/junit.xml)")
    run.add_argument("--out", type=Path, help="reports folder")
    run.add_argument("--state-dir", type=Path, help="state folder (default ~/.local/state/restoredrill)")
    run.add_argument("--run-id", help="run identifier (default: time based)")
    run.add_argument("-k", dest="keyword", help="only drills matching this pytest -k expression")
    run.add_argument("--mode", choices=["scheduled", "gate", "monthly"],
                     help="scheduled: audits + a restore rotation under scratch.budgets.max_run_time; gate: fast "
                          "audits only (CI); monthly: the DR drill with a plan, runbook.md and evidence/, "
                          "and the site-loss drill (default: every drill but the site-loss drill)")
    run.add_argument("--yes", action="store_true", help="monthly: confirm every step without asking (unattended)")
    run.add_argument("--site-loss", action="store_true",
                     help="also run the site-loss drill (each guest's newest offsite snapshot rebuilt from the bucket "
                          "and the escrowed key: reads every chunk of it); --mode monthly always runs it")
    run.add_argument("--workers", type=int, metavar="N", default=1,
                     help="run drills in N pytest-xdist workers (at most scratch.budgets.max_parallel)")
    run.add_argument("--no-preflight", action="store_true",
                     help="skip the preflight: every case meets a dead endpoint itself (one failure each)")
    run.add_argument("-m", dest="markexpr", metavar="MARKEXPR",
                     help="only drills matching this pytest marker expression: a marker per kind (-m borg, "
                          "-m 'pbs and not offsite')")
    run.add_argument("--lf", "--last-failed", dest="last_failed", action="store_true",
                     help="rerun only the cases that failed last run (pytest's cache, kept in the state folder)")
    run.add_argument("--ff", "--failed-first", dest="failed_first", action="store_true",
                     help="run every case, those that failed last run first")
    run.add_argument("--plan", "--collect-only", dest="plan", action="store_true",
                     help="show the cases, their targets and the snapshot or archive each restore would use; "
                          "restore nothing, send nothing, write no report")
    signals = run.add_mutually_exclusive_group()
    signals.add_argument("--notify", action="store_true",
                         help="push the heartbeat, mail failures and write reports.metrics_file although this "
                              "is not the scheduled run (default: only --mode scheduled with every kind, no -k/-m)")
    signals.add_argument("--no-notify", action="store_true", help="send no heartbeat and no mail, whatever the run")
    run.add_argument("--keep-on-failure", action="store_true",
                     help="keep the scratch guest of a failed restore drill for inspection (reap removes it "
                          "after scratch.expiry)")

    check = sub.add_parser("check-inventory", help="validate an inventory (never runs command: references)")
    check.add_argument("file", type=Path)
    check.add_argument("--no-file-checks", action="store_true",
                       help="the inventory is for another host: skip checking its file: secrets (existence, mode)")

    lint = sub.add_parser("lint", help="recovery-path lint: strategies, key escrow, circular dependencies, "
                                       "3-2-1 (reads only the inventory)")
    lint.add_argument("--inventory", type=Path, required=True, help="inventory YAML")

    preflight = sub.add_parser("preflight", help="one line per endpoint: TCP, TLS, token, privileges, SSH host "
                                                 "keys, Borg, S3, Kuma, SMTP (exit 0 all reachable, 1 a finding)")
    preflight.add_argument("--inventory", type=Path, required=True, help="inventory YAML")

    reap = sub.add_parser("reap", help="remove what killed runs left behind")
    reap.add_argument("--inventory", type=Path, required=True)
    reap.add_argument("--state-dir", type=Path)

    from restoredrill.onboard.options import add_init_arguments, add_setup_arguments
    add_init_arguments(sub.add_parser("init", help="draft an inventory from the PVE and PBS APIs and "
                                                       "borgmatic's configuration (never overwrites)"))
    add_setup_arguments(sub.add_parser("setup", help="the pveum / proxmox-backup-manager commands creating "
                                                         "the drill users, tokens, roles, pool and ACLs (--apply: "
                                                         "send them through the API)"))
    sub.add_parser("example-inventory", help="print the example inventory, which documents every key "
                                             "(start your own from it)")

    from restoredrill import prune_sim
    sim = sub.add_parser("prune-sim", help="simulate a PBS or Borg prune on points read from stdin")
    prune_sim.add_arguments(sim)
    for command in sub.choices.values():      # `restoredrill reap --debug` as well as `restoredrill --debug reap`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the Python traceback of an unexpected error")
    return parser


def main(argv: list[str] | None = None) -> int:
    # A command allocates its modules, pydantic's schemas and pytest's plugins once and keeps
    # them: at the default threshold (700) the collector runs about 125 times over them, 0.04-0.06 s
    # of a Borg drill run; at 10,000 it runs 8 times, 0.02 s (issue 26). Cycles are still collected.
    gc.set_threshold(10_000, 10, 10)
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, PlanError) as exc:
        print(f"restoredrill: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StateError as exc:       # e.g. state.db held by another run: the drills could not run
        print(f"restoredrill: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("restoredrill: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - every command ends on one readable line, never a traceback
        if args.debug:
            raise
        print(f"restoredrill {args.command}: {failure_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


def failure_line(exc: BaseException) -> str:
    """One line per cause. The clients' own errors (PVE/PBS, Borg, secrets, commands) already
    name the call, the cause and the fix, and never hold a secret; anything else is a bug,
    shown by type and first line, with the way to its traceback."""
    from restoredrill.clients.borg import BorgError
    from restoredrill.clients.proxmox_api import ApiError
    from restoredrill.clients.pve import GuardError, TaskFailed
    from restoredrill.execute import CommandError
    from restoredrill.secrets import SecretError
    text = " ".join(str(exc).split())[:1000]
    if isinstance(exc, (ApiError, GuardError, TaskFailed, BorgError, CommandError, SecretError, OSError)):
        return text or type(exc).__name__
    return (f"unexpected {type(exc).__name__}: {text} (a bug in restoredrill; run again with --debug for the "
            f"traceback and report it)")


def validated(path: Path, *, check_files: bool = True):
    from restoredrill.inventory import InventoryError, load_inventory
    try:
        return load_inventory(path, check_files=check_files)
    except InventoryError as exc:
        raise UsageError(str(exc)) from None


def cmd_check_inventory(args) -> int:
    loaded = validated(args.file, check_files=not args.no_file_checks)
    inv = loaded.model
    print(f"{args.file}: valid inventory for site {inv.site.name!r}: {len(inv.guests)} guests, "
          f"{len(inv.borg.repositories)} Borg repositories, {len(inv.offsite.s3)} S3 targets, "
          f"{len(inv.offsite.storage_boxes)} storage boxes (no secret was resolved, no command run"
          f"{'' if args.no_file_checks else '; every file: secret exists with mode 0600 or tighter'})")
    return EXIT_OK


def cmd_lint(args) -> int:
    from restoredrill.checks.lint import lint
    findings = lint(validated(args.inventory, check_files=False).model)   # reads only the inventory
    for finding in findings:
        print(finding)
    print(f"{args.inventory}: {len(findings)} lint finding(s)" if findings else f"{args.inventory}: no lint findings")
    return EXIT_FAILED if findings else EXIT_OK


def cmd_run(args) -> int:
    from restoredrill.runner import run_scope, selection_text
    from restoredrill.scheduling import worker_count
    loaded = validated(args.inventory)
    kinds = select_kinds(args.select)
    extra = (["-k", args.keyword] if args.keyword else []) + (["-m", args.markexpr] if args.markexpr else [])
    extra += [flag for flag, on in (("--lf", args.last_failed), ("--ff", args.failed_first),
                                    ("--no-notify", args.no_notify), ("--notify", args.notify),
                                    ("--site-loss", args.site_loss),
                                    ("--keep-on-failure", args.keep_on_failure)) if on]
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, not {args.workers}")
    if args.plan:
        from restoredrill.preview import show_plan
        return show_plan(loaded, kinds, args, extra)
    workers, note = worker_count(args.workers, loaded.model.scratch.budgets.max_parallel)
    if note:
        print(f"restoredrill: {note}", file=sys.stderr)
    selection = selection_text(args.select, args.keyword, args.markexpr, args.last_failed)
    request = RunRequest(inventory=args.inventory, kinds=kinds, junit=args.junit, out_dir=args.out,
                         state_dir=args.state_dir, run_id=args.run_id, workers=workers, extra_args=extra,
                         preflight=not args.no_preflight,
                         scope=run_scope(args.mode, selection), selection=selection)
    if args.mode:
        from restoredrill.modes import run_in_mode
        return run_in_mode(args.mode, request, loaded, yes=args.yes)
    return run_drills(request)


LAB_RELEASES = {"--pve-version": ((8, 0), (9, 99)), "--pbs-version": ((3, 1), (4, 99))}


def lab_versions(args) -> dict[str, str]:
    """The releases the lab's double answers as; outside the supported ones a usage error."""
    chosen = {}
    for option, (oldest, newest) in LAB_RELEASES.items():
        text = getattr(args, option[2:].replace("-", "_"))
        match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", text)
        if not match or not oldest <= (int(match[1]), int(match[2])) <= newest:
            raise UsageError(f"{option} {text!r}: give a release MAJOR.MINOR.PATCH from {oldest[0]}.{oldest[1]} "
                             f"to {newest[0]}.x, the releases restoredrill supports (README: Supported versions)")
        chosen[option[2:].replace("-", "_")] = text
    return chosen


def cmd_lab(args) -> int:
    from restoredrill.lab import cli as lab_cli
    versions = lab_versions(args)
    if args.action == "serve":
        if args.dir is None:
            raise UsageError("lab serve needs --dir DIR (where inventory.yaml and endpoints.json are written)")
        return lab_cli.serve(args.dir, versions)
    return lab_cli.run_lab(args.out, select_kinds(args.select), keep=args.keep, versions=versions)


def cmd_preflight(args) -> int:
    from restoredrill.preflight import run_preflight
    lines = run_preflight(validated(args.inventory))
    for line in lines:
        print(line)
    bad = [line for line in lines if not line.ok]
    print(f"{args.inventory}: {len(lines)} endpoint(s), "
          + (f"{len(bad)} with a finding" if bad else "all reachable and usable"))
    return EXIT_FAILED if bad else EXIT_OK


def cmd_reap(args) -> int:
    from restoredrill.reap import reap
    return reap(validated(args.inventory), args.state_dir)


def cmd_example_inventory(args) -> int:
    from restoredrill import example_inventory
    sys.stdout.write(example_inventory().read_text(encoding="utf-8"))
    return EXIT_OK


def cmd_prune_sim(args) -> int:
    from restoredrill import prune_sim
    return prune_sim.run(args, sys.stdin, sys.stdout, sys.stderr)


def cmd_init(args) -> int:
    from restoredrill.onboard.init_cmd import InitUsage, run_init
    try:
        return run_init(args)
    except InitUsage as exc:
        raise UsageError(str(exc)) from None


def cmd_setup(args) -> int:
    from restoredrill.onboard.setup_cmd import SetupUsage, run_setup
    try:
        # the token secret files do not exist yet: setup --apply writes them
        return run_setup(args, validated(args.inventory, check_files=False))
    except SetupUsage as exc:
        raise UsageError(str(exc)) from None


COMMANDS = {"init": cmd_init, "setup": cmd_setup, "check-inventory": cmd_check_inventory, "run": cmd_run,
            "lint": cmd_lint, "lab": cmd_lab, "reap": cmd_reap, "prune-sim": cmd_prune_sim,
            "example-inventory": cmd_example_inventory, "preflight": cmd_preflight}

if __name__ == "__main__":
    sys.exit(main())
