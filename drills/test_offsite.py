"""Offsite drills: read the offsite copies directly, trusting neither PBS nor the sync job.

S3 target (the PBS datastore in a bucket, read without PBS and without the key):
reachable -> hardening (versioning, object lock, lifecycle) -> manifests (every manifest
and index: magic, sizes, csums) -> chunks present (every referenced chunk is in the
bucket LISTING) -> chunk sample (a rotating slice read: magic, CRC, digest where plain)
-> encrypted -> retention (PBS prune rules, per group) -> fresh (RPO).

Config export (the firewall's configuration on the SSH storage box): fresh (newest
by the revision inside) -> parses (decrypted with the passphrase, a complete OPNsense
configuration).

Cross-copy consistency (``cross_copy``): the local PBS datastore's newest snapshots, read
through the PBS API (list, then each manifest with ``download``), against their copies in
the bucket (archive objects read and checksummed): once the sync window has passed, every
archive must carry the same checksum on both sides (``checks.pbs_offsite.compare_copies``).
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from restoredrill.checks.coverage import coverage_facts, nothing_checked, rotation_coverage
from restoredrill.checks.pbs_offsite import list_some, nothing_compared
from restoredrill.fixtures.offsite import offsite_step

pytestmark = pytest.mark.drill_kind("offsite")


def fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


def problems_text(problems) -> str:
    return list_some([str(p) for p in problems])


def empty_cause(s3_drill) -> str:
    t = s3_drill.target
    return (f"s3://{t.bucket}/{s3_drill.layout.content_prefix} holds no snapshot: a wrong bucket or store_prefix, "
            "a key that lists nothing, or a sync that never ran")


def require_some(s3_drill, evidence, count: int, what: str) -> None:
    """Record how many ``what`` the case checked; fail on 0 unless the target declares
    ``expect_empty`` (see :mod:`restoredrill.checks.coverage`)."""
    t = s3_drill.target
    empty_ok = getattr(t, "expect_empty", False)
    evidence(**coverage_facts(count, what, empty_ok=empty_ok))
    failure = nothing_checked(count, what, f"S3 target {t.name}", empty_ok=empty_ok, cause=empty_cause(s3_drill))
    if failure is not None:
        fail(str(failure))


def settle(outcome, evidence) -> None:
    """Act on a ``("skip" | "fail" | "pass", text)`` coverage outcome (None: carry on)."""
    if outcome is None:
        return
    verdict, text = outcome
    evidence(coverage=text)
    if verdict == "skip":
        pytest.skip(text)
    if verdict == "fail":
        fail(text)


# --- S3 target ---------------------------------------------------------------------------

def test_s3_reachable(s3_drill, evidence):
    """``aws s3api head-bucket`` with the drill's read-only key; the store prefix is there."""
    t = s3_drill.target
    evidence(drill=f"offsite:{t.name}", check="reachable", endpoint=t.endpoint, bucket=t.bucket,
             store_prefix=t.store_prefix)
    with offsite_step(f"S3 target {t.name}"):
        found = s3_drill.reachable
        catalog = s3_drill.catalog
    evidence(in_use_marker=found["marker"], content_objects=catalog.content_objects,
             chunk_objects=len(catalog.chunks), snapshots=len(catalog.snapshots))
    if not catalog.snapshots:
        fail(f"S3 target {t.name}: expected PBS snapshots under s3://{t.bucket}/{s3_drill.layout.content_prefix}; "
             f"found {catalog.content_objects} object(s) and no snapshot (wrong store_prefix?)")


def test_s3_hardening(s3_drill, evidence):
    """Versioning, object lock (mode, default retention) and lifecycle rules of the bucket."""
    t = s3_drill.target
    evidence(drill=f"offsite:{t.name}", check="hardening", bucket=t.bucket,
             require_object_lock=t.require_object_lock)
    with offsite_step(f"S3 target {t.name}"):
        report = s3_drill.hardening
    evidence(**report.facts, notes=" | ".join(report.notes))
    if report.problems:
        fail(f"S3 target {t.name}, bucket {t.bucket}: expected a bucket that protects the offsite copy; "
             f"found: " + "; ".join(report.problems))


def test_s3_manifests(s3_drill, evidence):
    """Every manifest and every index/blob it lists: magic, sizes, csums against the manifest."""
    t = s3_drill.target
    evidence(drill=f"offsite:{t.name}", check="manifests", bucket=t.bucket)
    with offsite_step(f"S3 target {t.name}: reading manifests and indexes"):
        meta = s3_drill.metadata
    evidence(manifests_read=meta.manifests_read, indexes_read=meta.indexes_read, blobs_read=meta.blobs_read,
             chunks_referenced=len(meta.uses), in_progress=",".join(meta.in_progress),
             bytes_read=s3_drill.bucket.budget.used)
    if meta.problems:
        fail(f"S3 target {t.name}: expected every manifest and index to be complete and to match; "
             f"found {len(meta.problems)} problem(s): {problems_text(meta.problems)}")
    require_some(s3_drill, evidence, meta.manifests_read, "manifests")


def test_s3_chunks_present(s3_drill, evidence):
    """Every chunk an index references is in the bucket listing of ``.chunks/`` (not a cache)."""
    from restoredrill.checks.pbs_offsite import find_missing_chunks
    t = s3_drill.target
    evidence(drill=f"offsite:{t.name}", check="chunks-present", bucket=t.bucket)
    with offsite_step(f"S3 target {t.name}"):
        catalog, meta = s3_drill.catalog, s3_drill.metadata
    missing = find_missing_chunks(meta, catalog)
    evidence(chunks_referenced=len(meta.uses), chunks_listed=len(catalog.chunks),
             chunks_unreferenced=len(set(catalog.chunks) - set(meta.uses)),
             stray_chunk_objects=len(catalog.stray_chunk_keys), chunks_missing=len(missing))
    if missing:
        fail(f"S3 target {t.name}: expected every referenced chunk in the bucket; found {len(missing)} "
             f"missing: {problems_text(missing)}")
    require_some(s3_drill, evidence, len(meta.uses), "chunks referenced")


def test_s3_chunk_sample(s3_drill, evidence):
    """A slice of the chunks is read (magic, CRC-32, digest where plain); all within N runs."""
    t = s3_drill.target
    evidence(drill=f"offsite:{t.name}", check="chunk-sample", bucket=t.bucket)
    with offsite_step(f"S3 target {t.name}: reading the chunk sample"):
        outcome = s3_drill.sample
    plan, result = outcome.plan, outcome.result
    completes = "this run" if plan.runs_left_after_this == 0 else \
        f"after slice {plan.runs}/{plan.runs}, in {plan.runs_left_after_this} more run(s)"
    evidence(slice=plan.describe(), cycle_started=plan.cycle_started, full_coverage=completes,
             last_full_coverage=plan.last_complete or "never", chunks_in_slice=outcome.chunks_in_slice,
             chunks_referenced=outcome.referenced_chunks, chunks_read=result.chunks_read,
             bytes_read=result.bytes_read, crc_only=result.crc_only, digest_verified=result.digest_verified,
             egress_used=s3_drill.bucket.budget.used)
    if result.problems:
        fail(f"S3 target {t.name}: expected every chunk of {plan.describe()} to be intact; found "
             f"{len(result.problems)} bad: {problems_text(result.problems)}")
    empty_ok = getattr(t, "expect_empty", False)
    evidence(**coverage_facts(result.chunks_read, "chunks read", empty_ok=empty_ok))
    settle(rotation_coverage(outcome.chunks_in_slice, outcome.referenced_chunks, slice_name=plan.describe(),
                             what="referenced chunks in the bucket", where=f"S3 target {t.name}", empty_ok=empty_ok,
                             cause=empty_cause(s3_drill)), evidence)


def test_s3_encrypted(s3_drill, evidence):
    """The provider sees only encrypted data: crypt-mode of every archive, sampled chunks, key."""
    t = s3_drill.target
    policy = s3_drill.policy
    evidence(drill=f"offsite:{t.name}", check="encrypted", encryption_required=policy.encryption_required)
    with offsite_step(f"S3 target {t.name}"):
        meta = s3_drill.metadata
        sample = s3_drill.sample.result
    evidence(key_fingerprints=",".join(sorted(meta.fingerprints)), plain_archives=len(meta.plain_archives),
             unencrypted_chunks_in_sample=len(sample.unencrypted))
    require_some(s3_drill, evidence, meta.manifests_read, "manifests")
    if not policy.encryption_required:
        return
    problems = [f"{key}: crypt-mode none in its manifest" for key in meta.plain_archives]
    problems += [f"{key}: unencrypted chunk" for key in sample.unencrypted]
    if policy.key_fingerprint:
        other = sorted(fp for fp in meta.fingerprints if fp.lower() != policy.key_fingerprint.lower())
        if other:
            problems.append(f"snapshots encrypted with key(s) {', '.join(other)}, not the key kept outside "
                            f"the site ({policy.key_fingerprint})")
    if problems:
        fail(f"S3 target {t.name}: expected only client-side encrypted data (encryption required); found "
             f"{len(problems)} problem(s): {list_some(problems)}")


def test_s3_retention(s3_drill, inventory, evidence):
    """The snapshots present are what the retention policy promises (PBS's prune rules, per group)."""
    from restoredrill.checks.pbs_offsite import audit_retention
    t = s3_drill.target
    policy = s3_drill.policy
    zone = inventory.model.site.timezone
    evidence(drill=f"offsite:{t.name}", check="retention", policy_source=policy.source, timezone=zone)
    if policy.policy is None:
        fail(f"S3 target {t.name}: no retention policy found; name one in offsite.s3[].retention (proposed), "
             f"in the proxmox.pbs datastore with s3_target {t.name}, or as policies.retention.{t.name}")
    with offsite_step(f"S3 target {t.name}"):
        audits = audit_retention(s3_drill.catalog, policy.policy, zone, datetime.now(timezone.utc),
                                 policy.rpo_limit)
    evidence(policy=policy.policy.describe(), groups=len(audits),
             retention=" | ".join(f"{group}: {a.summary()}" for group, a in audits.items()),
             points=retention_points(s3_drill.catalog, policy.policy, zone))
    problems = [f"{group}: {problem}" for group, a in audits.items() for problem in a.problems]
    if problems:
        fail(f"S3 target {t.name}: retention {policy.retention_name} ({policy.policy.describe()}) does not "
             f"hold: {list_some(problems)}")
    require_some(s3_drill, evidence, len(audits), "groups")


def retention_points(catalog, policy, zone: str) -> str:
    """Every group's points with the PBS engine's decision, for the report's retention calendar."""
    import json

    from restoredrill import retention
    from restoredrill.checks.pbs_offsite import group_points
    return json.dumps([{"group": group, "time": d.point.time.isoformat(), "name": d.point.name, "keep": d.keep,
                        "rule": d.rule, "rank": d.rank}
                       for group, points in group_points(catalog).items()
                       for d in retention.simulate("pbs", points, policy, zone)])


def test_s3_fresh(s3_drill, evidence):
    """Each group's newest snapshot is younger than the sync cycle plus grace (the RPO)."""
    from restoredrill.checks.pbs_offsite import check_freshness
    t = s3_drill.target
    limit = s3_drill.policy.rpo_limit
    evidence(drill=f"offsite:{t.name}", check="fresh", rpo_hours=limit.total_seconds() / 3600,
             rpo_policy=s3_drill.policy.rpo_name or "default")
    with offsite_step(f"S3 target {t.name}"):
        problems, facts = check_freshness(s3_drill.catalog, datetime.now(timezone.utc), limit)
    evidence(newest=" | ".join(f"{f.group}: {f.newest} ({f.age_hours} h)" for f in facts))
    if problems:
        fail(f"S3 target {t.name}: expected every group's newest snapshot younger than "
             f"{limit.total_seconds() / 3600:g} h; found: {list_some(problems)}")


def test_cross_copy(s3_drill, evidence):
    """The local datastore's snapshots past the sync window are in the bucket, byte for byte:
    manifest csums read through the PBS API against checksums of the bucket's objects."""
    t = s3_drill.target
    evidence(drill=f"offsite:{t.name}", check="cross-copy", bucket=t.bucket)
    pair = s3_drill.pbs_pair()
    if pair is None:     # collection leaves such targets out; never a silent pass
        fail(f"S3 target {t.name}: no proxmox.pbs datastore with role local and one with backend s3 "
             f"and s3_target {t.name} in the inventory: nothing to compare with")
    with offsite_step(f"S3 target {t.name}: comparing with PBS datastore {pair[0].name}"):
        cross = s3_drill.cross_copy
    result = cross.comparison
    evidence(local_datastore=cross.local_store, offsite_datastore=cross.offsite_store,
             sync_window_hours=round(cross.window.total_seconds() / 3600, 2), sync_window_from=cross.window_source,
             local_snapshots=cross.local_snapshots, snapshots_chosen=" ".join(sorted(cross.local)),
             compared=result.compared, pending=result.pending, pruned_offsite=result.pruned_offsite,
             offsite_objects_read=cross.objects_read, notes=" | ".join(result.notes))
    if result.problems:
        fail(f"S3 target {t.name}: expected the snapshots of PBS datastore {cross.local_store} older than the "
             f"sync window ({cross.window}) in the bucket with the same checksum for each archive; found "
             f"{len(result.problems)} problem(s): {list_some(result.problems)}")
    empty_ok = getattr(t, "expect_empty", False)
    evidence(**coverage_facts(result.compared, "snapshots compared", empty_ok=empty_ok))
    settle(nothing_compared(result, where=f"S3 target {t.name}, PBS datastore {cross.local_store}",
                            empty_ok=empty_ok), evidence)


# --- config export on the storage box --------------------------------------------------------

def test_export_fresh(export_drill, evidence):
    """The newest export, by the ``<revision><time>`` inside, is younger than the RPO."""
    from restoredrill.checks.opnsense import newest_good
    export = export_drill.export
    limit = export_drill.rpo.max_age + export_drill.rpo.grace
    evidence(drill=f"offsite:{export.name}", check="fresh", storage_box=export.storage_box,
             path_glob=export.path_glob, rpo_hours=limit.total_seconds() / 3600)
    with offsite_step(f"config export {export.name} on storage box {export.storage_box}"):
        files = export_drill.files
    if not files:
        fail(f"config export {export.name}: expected export files matching {export.path_glob!r} on storage "
             f"box {export.storage_box}; found none")
    newest = newest_good(files)
    by_mtime = max(files, key=lambda f: f.mtime)
    evidence(files_matched=export_drill.matched, files_read=len(files), newest_by_mtime=by_mtime.path)
    if newest is None:
        fail(f"config export {export.name}: expected at least one readable export; found {len(files)} file(s), "
             f"none readable: {list_some([f'{f.path}: {f.error}' for f in files])}")
    age = datetime.now(timezone.utc) - newest.revision
    hours = age.total_seconds() / 3600
    evidence(newest=newest.path, revision_time=newest.revision.isoformat(), age_hours=round(hours, 2))
    if age > limit:
        fail(f"config export {export.name}: expected the newest export younger than "
             f"{limit.total_seconds() / 3600:g} h; found {newest.path} with revision time "
             f"{newest.revision:%Y-%m-%d %H:%M} UTC, {hours:.1f} h old (file mtime "
             f"{newest.mtime:%Y-%m-%d %H:%M}): exports have stopped")


def test_export_parses(export_drill, evidence):
    """The newest export opens (decrypted with the passphrase) as a complete OPNsense configuration."""
    from restoredrill.checks.opnsense import newest_good
    export = export_drill.export
    evidence(drill=f"offsite:{export.name}", check="parses", storage_box=export.storage_box,
             path_glob=export.path_glob)
    with offsite_step(f"config export {export.name} on storage box {export.storage_box}"):
        files = export_drill.files
    if not files:
        fail(f"config export {export.name}: expected export files matching {export.path_glob!r}; found none")
    newest = newest_good(files)
    cutoff = newest.mtime if newest else None
    broken = [f for f in files if f.error and (cutoff is None or f.mtime >= cutoff)]
    older_broken = [f for f in files if f.error and f not in broken]
    if newest is not None:
        evidence(newest=newest.path, encrypted=newest.encrypted, encryption=newest.kdf or "none",
                 **newest.config.facts())
    if older_broken:
        evidence(older_unreadable=" | ".join(f"{f.path}: {f.error}" for f in older_broken))
    if broken:
        fail(f"config export {export.name}: expected the newest export to be a readable OPNsense configuration; "
             f"found {list_some([f'{f.path}: {f.error}' for f in broken])}")
