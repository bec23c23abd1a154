"""Recovery-path lint drills (issue #9): failures that need no restore to be found.

One case per lint rule over the whole inventory (strategies, key escrow, circular
dependencies, 3-2-1), then the key proofs: each escrowed key file opens (Borg) or matches
(PBS) the copy it protects, read-only.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from restoredrill.fixtures.common import drill_step
from restoredrill.fixtures.lint import prove_borg_key, prove_pbs_chunk, prove_pbs_key_file, prove_pbs_snapshots

pytestmark = pytest.mark.drill_kind("lint")


def fail_on_findings(lint_findings, rule: str, evidence) -> None:
    found = [f for f in lint_findings if f.rule == rule]
    evidence(drill=f"lint:{rule}", check=rule, findings=len(found))
    if found:
        pytest.fail(f"lint {rule}: expected no finding; found {len(found)}:\n"
                    + "\n".join(f"- {f.message}" for f in found), pytrace=False)


def test_strategies(lint_findings, evidence):
    """Every guest is backed up or excused; nothing others depend on is left without a backup."""
    fail_on_findings(lint_findings, "strategy", evidence)


def test_key_escrow(lint_findings, evidence):
    """The key of every encrypted copy is held outside the site it protects."""
    fail_on_findings(lint_findings, "key-escrow", evidence)


def test_circular_dependency(lint_findings, evidence):
    """What is needed to reach an offsite copy is recoverable without that copy."""
    fail_on_findings(lint_findings, "circular-dependency", evidence)


def test_three_two_one(lint_findings, evidence):
    """Each dataset: three copies, two kinds of media, one offsite."""
    fail_on_findings(lint_findings, "3-2-1", evidence)


def test_monitoring_restorable(lint_findings, evidence):
    """Uptime Kuma's own data is backed up, and a drill proves it comes back."""
    fail_on_findings(lint_findings, "monitoring-restorable", evidence)


def test_escrowed_key(escrowed_copy, inventory, tmp_path, evidence):
    """The escrowed key is the copy's key: Borg opens the repository with it (read-only), a PBS
    key file has the declared fingerprint."""
    copy = escrowed_copy
    key_file = inventory.resolve_path(copy.key_file)
    evidence(drill=f"lint:{copy.label}", check="escrowed-key", key_file=str(key_file))
    with drill_step(f"{copy.label}: escrowed key"):
        if copy.label.startswith("borg:"):
            facts = prove_borg_key(inventory, copy.copy, key_file, tmp_path)
        else:
            facts = prove_pbs_key_file(copy.copy, key_file)
    evidence(**facts)


def test_escrowed_key_matches_snapshots(escrowed_pbs_copy, inventory, evidence):
    """Every encrypted snapshot of the PBS datastore carries the escrowed key's fingerprint."""
    copy = escrowed_pbs_copy
    key_file = inventory.resolve_path(copy.key_file)
    evidence(drill=f"lint:{copy.label}", check="escrowed-key-snapshots", key_file=str(key_file))
    with drill_step(f"{copy.label}: snapshots against the escrowed key"):
        facts = prove_pbs_snapshots(inventory, copy.copy, Path(key_file))
    evidence(**facts)


def test_escrowed_key_decrypts_offsite_chunk(escrowed_s3_copy, inventory, run_id, evidence):
    """The escrowed key itself (not PVE's copy) opens the offsite copy in S3: the newest snapshot's
    manifest is its key's and verifies, a sampled chunk decrypts with it and matches its digest."""
    copy = escrowed_s3_copy
    key_file = inventory.resolve_path(copy.key_file)
    evidence(drill=f"lint:{copy.label}", check="escrowed-key-decrypts", key_file=str(key_file))
    with drill_step(f"{copy.label}: a chunk of the offsite copy decrypted with the escrowed key"):
        facts = prove_pbs_chunk(inventory, copy.copy, Path(key_file), run_id)
    evidence(**facts)
