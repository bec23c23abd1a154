"""Borg restore drills: one case per repository and check.

reachable -> encrypted -> fresh -> retained -> consistent (borg check, budgeted)
-> extracts -> the extracted data passes every declared check.
"""
from __future__ import annotations

import json
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from restoredrill.checks import data as data_checks
from restoredrill.checks.budgets import InterpretBudgets
from restoredrill.checks.coverage import NothingChecked
from restoredrill.checks.errors import CheckFailed
from restoredrill.fixtures.borg import age_of, last_case_of_repository, remove_extract
from restoredrill.fixtures.common import drill_step
from restoredrill.plan import plan_borg_check

pytestmark = pytest.mark.drill_kind("borg")


def test_reachable(borg_drill, evidence):
    """``borg list --json REPO`` answers: the repository is there and opens (its id and encryption mode
    come with the archive list, see :class:`restoredrill.clients.borg.Listing`)."""
    repo = borg_drill.repo
    evidence(drill=f"borg:{repo.name}", check="reachable", repository=repo.name, location=repo.location)
    with drill_step(f"repository {repo.name}"):
        info = borg_drill.info
    evidence(repository_id=info["repository"]["id"])


def test_encrypted(borg_drill, evidence):
    repo = borg_drill.repo
    evidence(drill=f"borg:{repo.name}", check="encrypted", repository=repo.name)
    with drill_step(f"repository {repo.name}"):
        mode = borg_drill.info["encryption"]["mode"]
    evidence(encryption=mode)
    if repo.encryption_required and mode == "none":
        pytest.fail(f"repository {repo.name}: expected client-side encryption (policy requires it); "
                    f"found encryption mode 'none': anyone holding the copy can read it", pytrace=False)


def test_fresh(borg_drill, inventory, evidence):
    repo = borg_drill.repo
    rpo = borg_drill.rpo(inventory)
    limit = rpo.max_age + rpo.grace
    evidence(drill=f"borg:{repo.name}", check="fresh", repository=repo.name,
             rpo_hours=limit.total_seconds() / 3600)
    with drill_step(f"repository {repo.name}"):
        archives = borg_drill.archives
    if not archives:
        pytest.fail(f"repository {repo.name}: expected an archive younger than {limit}; found no archives",
                    pytrace=False)
    newest = archives[-1]
    age = age_of(newest)
    evidence(archive=newest.name, archive_time=newest.start.isoformat(), age_hours=round(age / 3600, 2),
             archives=len(archives))
    if age > limit.total_seconds():
        pytest.fail(f"repository {repo.name}: expected the newest archive to be younger than {limit} "
                    f"(RPO {repo.rpo or 'default'}); found {newest.name} from {newest.start:%Y-%m-%d %H:%M} UTC, "
                    f"{age / 3600:.1f} h old: backups have stopped or are failing", pytrace=False)


def test_retention(borg_drill, inventory, evidence):
    """The archives present are what the retention policy promises (Borg's own prune rules)."""
    from restoredrill import retention
    repo = borg_drill.repo
    evidence(drill=f"borg:{repo.name}", check="retention", repository=repo.name)
    if not repo.retention:
        pytest.fail(f"repository {repo.name}: no retention policy is named (borg.repositories[].retention); "
                    f"name one so the drill can count what the policy promises", pytrace=False)
    policy = retention.Policy.from_mapping(inventory.model.policies.retention[repo.retention].options())
    zone = repo.prune_timezone or inventory.model.site.timezone
    rpo = borg_drill.rpo(inventory)
    with drill_step(f"repository {repo.name}"):
        points = [retention.Point(time=a.start, name=a.name) for a in borg_drill.archives]
    result = retention.audit(points, policy, "borg", zone, datetime.now(timezone.utc),
                             rpo=rpo.max_age + rpo.grace)
    decisions = retention.simulate("borg", points, policy, zone, now=datetime.now(timezone.utc))
    evidence(policy=policy.describe(), retention=result.summary(), timezone=zone,
             points=json.dumps([{"time": d.point.time.isoformat(), "name": d.point.name, "keep": d.keep,
                                 "rule": d.rule, "rank": d.rank} for d in decisions]))
    if not result.ok:
        pytest.fail(f"repository {repo.name}: retention {repo.retention} ({policy.describe()}) does not hold: "
                    + "; ".join(result.problems), pytrace=False)


def test_check(borg_drill, inventory, state, evidence, progress):
    """``borg check``: a full ``--verify-data`` on a rotation, a cheaper check in between; every
    call ends before the repository's next backup window (a full check that cannot is deferred,
    reported as partial and stays due)."""
    repo = borg_drill.repo
    scope = f"borg:{repo.name}"
    now = datetime.now(timezone.utc)
    runs = state.get(scope, "runs_since_full")
    last = state.get(scope, "last_full")
    plan = plan_borg_check(int(runs) if runs is not None else None,
                           datetime.fromisoformat(last) if last else None,
                           every_runs=repo.verify_data.every_runs, max_age=repo.verify_data.max_age, now=now)
    evidence(drill=f"borg:{repo.name}", check="check", repository=repo.name, check_reason=plan.reason)
    with drill_step(f"repository {repo.name}: borg check"):
        steps = borg_drill.check_steps(plan.full, state)
        evidence(check_mode=steps.mode, full_check=steps.full, **({"check_note": steps.note} if steps.note else {}))
        progress(f"{repo.name}: borg check ({steps.mode})")
        facts = borg_drill.run_check(steps, state)
    evidence(runs_until_full=plan.runs_until_full if steps.full or not plan.full else 0, **facts)
    if steps.full:
        state.put(scope, "runs_since_full", "0")
        state.put(scope, "last_full", now.isoformat())
    else:
        state.put(scope, "runs_since_full", str(int(runs or 0) + 1))


def test_restore(borg_drill, data_check, extracted, inventory, run_id, tmp_path, evidence, request):
    """The extract itself, then each declared check on the extracted data (paths, counts, spot check,
    SQLite, PostgreSQL, canary), one case each. The repository's last case removes the extract
    and fails when it cannot (a folder of restored data left in scratch)."""
    passed = False
    try:
        _restore_case(borg_drill, data_check, extracted, inventory, run_id, tmp_path, evidence)
        passed = True
    finally:
        leftover = remove_extract(extracted) if last_case_of_repository(request) else None
        if leftover:
            evidence(scratch_leftover=leftover)
            if passed:
                pytest.fail(leftover, pytrace=False)


def _restore_case(borg_drill, data_check, extracted, inventory, run_id, tmp_path, evidence):
    repo = borg_drill.repo
    evidence(drill=f"borg:{repo.name}", check=data_check.id, repository=repo.name,
             archive=extracted.archive.name)
    if extracted.failure:
        shown = extracted.failure if data_check.kind == "extract" else \
            f"not checked, the extract failed (see {repo.name}-extract): {extracted.failure}"
        pytest.fail(shown, pytrace=False)
    if data_check.kind == "extract":
        return check_extract(repo, extracted, evidence)
    started = time.monotonic()
    with drill_step(f"repository {repo.name}, archive {extracted.archive.name}"):
        try:
            facts = run_data_check(data_check, extracted.root, inventory, run_id, tmp_path)
        except NothingChecked as exc:       # the count (0) is evidence too
            evidence(**exc.facts)
            raise
    evidence(seconds=time.monotonic() - started, **facts)


def run_data_check(check, root: Path, inventory, run_id: str, tmp_path: Path) -> dict:
    spec = check.spec
    if check.kind == "paths":
        return data_checks.check_paths_present(root, spec)
    if check.kind == "min_files":
        return data_checks.check_min_files(root, spec)
    if check.kind == "spot_check":
        source = inventory.resolve_path(spec.source)
        return data_checks.spot_check(root, source, spec.archive_path or spec.source.lstrip("/"),
                                      sample=spec.sample, count_tolerance=spec.count_tolerance,
                                      mismatch_tolerance=spec.mismatch_tolerance,
                                      seed=zlib.crc32(run_id.encode()),
                                      empty_ok=getattr(spec, "expect_empty", False))
    if check.kind == "sqlite":     # a path, or an entry with path and show_found
        return data_checks.check_sqlite(root, str(spec), work_dir=tmp_path,
                                        show_found=getattr(spec, "show_found", False),
                                        empty_ok=getattr(spec, "expect_empty", False),
                                        budgets=InterpretBudgets.from_scratch(inventory.model.scratch))
    if check.kind == "canary":
        return data_checks.check_canary(root, spec.path, spec.equals, spec.pattern, show_found=spec.show_found)
    if check.kind == "postgres":
        return restore_postgres_dump(root, spec, InterpretBudgets.from_scratch(inventory.model.scratch))
    raise CheckFailed(check.id, "a known check kind", check.kind)


def restore_postgres_dump(root: Path, spec, budgets: InterpretBudgets) -> dict:
    """Restore the dump into a throwaway server and run the declared queries.

    The dump is resolved inside the extract without following a link (a dump that is a
    symlink is refused) and stays open while the server reads it. A query's expected value
    comes from the inventory and is shown; what it found only as a fingerprint, unless the
    query sets show_found."""
    from restoredrill.checks import redact
    from restoredrill.checks.postgres import ThrowawayPostgres
    from restoredrill.checks.safe_paths import split_relative
    started = time.monotonic()
    with data_checks.regular_file(root, spec.path, "a PostgreSQL dump (a regular file)") as dump, \
            ThrowawayPostgres(root.parent, budgets=budgets) as server:   # in scratch, beside the extract
        # the path the fd was reached by: its components are real directories (checked above)
        restored = server.restore_dump(root.joinpath(*split_relative(spec.path)), spec.database)
        for query in spec.queries:
            rows = server.query(spec.database, query.sql)
            found = "\n".join("\t".join(row) for row in rows).strip()
            if found != query.expect.strip():
                raise CheckFailed(f"{spec.path} ({query.sql})", repr(query.expect),
                                  redact.describe(found, matched=False, show=query.show_found,
                                                  linked=dump.st.st_nlink > 1))
    return {"queries": len(spec.queries), "restore_seconds": time.monotonic() - started,
            "dump_format": restored.dump_format, "owner_statements_skipped": restored.skipped_statements}


def check_extract(repo, extracted, evidence) -> None:
    """The archive extracted at all (the fixture did it): record what and how fast."""
    evidence(archive_time=extracted.archive.start.isoformat(), age_hours=round(age_of(extracted.archive) / 3600, 2),
             bytes_restored=extracted.bytes_restored, files_restored=extracted.files, seconds=extracted.seconds)
    if extracted.files == 0:
        pytest.fail(f"repository {repo.name}: archive {extracted.archive.name} extracted no files", pytrace=False)
