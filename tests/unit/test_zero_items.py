"""The zero rule (issue 14, section 1): a case that inspects a collection records how many
items it checked and fails when that is 0, unless the target declares ``expect_empty``;
a rotation with nothing to do this run is a skip, never a pass.

The shared helper, then every check function that counts, each fed empty input (real
files and a real SQLite for the data checks)."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from restoredrill.checks import data
from restoredrill.checks import pbs_audit
from restoredrill.checks.coverage import (NothingChecked, coverage_facts, evidence_key, note_coverage,
                                          require_some, rotation_coverage)
from restoredrill.checks.errors import CheckFailed, Verdict
from restoredrill.checks.pbs_offsite import CopyListing, compare_copies, nothing_compared

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


# --- the helper --------------------------------------------------------------------------

def test_zero_items_fail_with_one_paragraph_naming_place_and_fix():
    with pytest.raises(NothingChecked) as info:
        require_some(0, "files sampled", "/srv/app")
    message = str(info.value)
    assert isinstance(info.value, CheckFailed)          # a failed check, never an error
    assert message.startswith("/srv/app: expected something to check; found 0 files sampled.")
    assert "Nothing was checked" in message and "unmounted source" in message
    assert "expect_empty: true" in message and "\n" not in message
    assert info.value.facts == {"checked_files_sampled": 0}


def test_some_items_pass_and_the_count_is_evidence():
    assert require_some(3, "files sampled", "/srv/app") == {"checked_files_sampled": 3}
    assert require_some(1, "tables", "db", cause="a cause") == {"checked_tables": 1}


def test_declared_empty_passes_and_says_so_in_the_evidence():
    assert require_some(0, "guests", "cluster", empty_ok=True) == {"checked_guests": 0, "expect_empty": True}
    assert coverage_facts(5, "guests") == {"checked_guests": 5}


def test_the_cause_given_replaces_the_default():
    with pytest.raises(NothingChecked) as info:
        require_some(0, "guests", "cluster", cause="the token lacks VM.Audit")
    assert "the token lacks VM.Audit" in str(info.value) and "unmounted" not in str(info.value)


def test_a_negative_count_is_a_bug_not_a_pass():
    with pytest.raises(ValueError):
        require_some(-1, "files", "x")


def test_evidence_keys_are_one_word():
    assert evidence_key(" Snapshots compared ") == "checked_snapshots_compared"
    assert evidence_key("referenced chunks (in the bucket)") == "checked_referenced_chunks_in_the_bucket"


def test_a_verdict_gets_the_count_and_on_zero_the_problem():
    verdict = note_coverage(Verdict(), 0, "guests", "cluster")
    assert not verdict.ok and verdict.facts == {"checked_guests": 0}
    assert verdict.message().startswith("cluster: expected something to check; found 0 guests.")
    assert note_coverage(Verdict(), 2, "guests", "cluster").ok
    declared = note_coverage(Verdict(), 0, "guests", "cluster", empty_ok=True)
    assert declared.ok and declared.facts["expect_empty"] is True


def test_an_empty_rotation_slice_is_a_skip_and_nothing_at_all_a_failure():
    assert rotation_coverage(4, 30, slice_name="slice 2/7", what="chunks", where="S3 target t") is None
    verdict, reason = rotation_coverage(0, 30, slice_name="slice 2/7", what="chunks", where="S3 target t")
    assert verdict == "skip" and "slice 2/7 holds none of the 30 chunks" in reason
    verdict, message = rotation_coverage(0, 0, slice_name="slice 2/7", what="chunks", where="S3 target t")
    assert verdict == "fail" and "found 0 chunks" in message and "Nothing was checked" in message
    verdict, _ = rotation_coverage(0, 0, slice_name="slice 2/7", what="chunks", where="t", empty_ok=True)
    assert verdict == "pass"


# --- Borg data checks ------------------------------------------------------------------------

@pytest.fixture
def extract(tmp_path):
    root = tmp_path / "extract"
    (root / "app").mkdir(parents=True)
    return root


def spot(extract, source, **kwargs):
    return data.spot_check(extract, source, "app", sample=10, count_tolerance=0.1, mismatch_tolerance=0.0,
                           seed=1, **kwargs)


def test_a_spot_check_of_an_empty_source_and_archive_fails(extract, tmp_path):
    source = tmp_path / "mnt"          # an unmounted mount point: an empty directory
    source.mkdir()
    with pytest.raises(NothingChecked) as info:
        spot(extract, source)
    assert "found 0 files sampled" in str(info.value) and str(source) in str(info.value)
    assert "unmounted source mount point" in str(info.value)
    assert info.value.facts == {"checked_files_sampled": 0}
    facts = spot(extract, source, empty_ok=True)
    assert facts["sampled"] == 0 and facts["checked_files_sampled"] == 0 and facts["expect_empty"] is True


def test_a_spot_check_that_samples_records_the_count(extract, tmp_path):
    source = tmp_path / "mnt"
    source.mkdir()
    for name in ("a", "b"):
        (source / name).write_text(name)
        (extract / "app" / name).write_text(name)
    facts = spot(extract, source)
    assert facts["checked_files_sampled"] == 2 and "expect_empty" not in facts


def test_a_zero_byte_sqlite_database_fails(extract, tmp_path):
    (extract / "app" / "app.sqlite").write_bytes(b"")
    with pytest.raises(NothingChecked) as info:
        data.check_sqlite(extract, "app/app.sqlite", work_dir=tmp_path)
    assert str(info.value).startswith("app/app.sqlite: expected something to check; found 0 tables.")
    assert info.value.facts == {"checked_tables": 0}
    facts = data.check_sqlite(extract, "app/app.sqlite", work_dir=tmp_path, empty_ok=True)
    assert facts == {"sqlite_tables": 0, "checked_tables": 0, "expect_empty": True}


def test_a_sqlite_database_without_tables_fails_and_one_with_a_table_passes(extract, tmp_path):
    path = extract / "app" / "app.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 3")          # a real, valid file with no table
    conn.commit()
    conn.close()
    assert path.stat().st_size > 0
    with pytest.raises(NothingChecked):
        data.check_sqlite(extract, "app/app.sqlite", work_dir=tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    assert data.check_sqlite(extract, "app/app.sqlite", work_dir=tmp_path)["checked_tables"] == 1


# --- PBS audit ---------------------------------------------------------------------------------

def test_a_cluster_where_the_token_sees_no_guest_fails():
    nodes_only = [{"type": "node", "node": "pve1"}, {"type": "storage", "storage": "local", "node": "pve1"}]
    for resources in ([], nodes_only):
        verdict = pbs_audit.check_cluster_inventoried(resources, {110}, (9900, 9999))
        assert not verdict.ok and verdict.facts["checked_guests"] == 0
        assert "found 0 guests" in verdict.message() and "VM.Audit" in verdict.message()
    assert pbs_audit.check_cluster_inventoried([], {110}, (9900, 9999), empty_ok=True).ok
    one = [{"vmid": 110, "type": "qemu", "name": "app", "node": "pve1"}]
    verdict = pbs_audit.check_cluster_inventoried(one, {110}, (9900, 9999))
    assert verdict.ok and verdict.facts["checked_guests"] == 1


def test_a_server_retention_comparison_of_nothing_fails():
    cases = [({}, [[]]),                                               # empty group, empty answer
             ({1: True, 2: False}, [[]]),                              # PBS answered nothing
             ({1: True}, [[{"backup-time": 7, "keep": True}]])]        # answered for other snapshots
    for engine, answers in cases:
        verdict = pbs_audit.compare_keep_sets(engine, answers, {}, where="datastore local, guest app")
        assert not verdict.ok and verdict.facts["compared"] == 0 and verdict.facts["checked_snapshots_compared"] == 0
        assert verdict.message().startswith("datastore local, guest app: expected something to check; found 0 "
                                            "snapshots compared.")
    declared = pbs_audit.compare_keep_sets({}, [[]], {}, where="w", empty_ok=True)
    assert declared.ok and declared.facts["expect_empty"] is True
    agreed = pbs_audit.compare_keep_sets({1: True}, [[{"backup-time": 1, "keep": True}]], {}, where="w")
    assert agreed.ok and agreed.facts["checked_snapshots_compared"] == 1


# --- offsite cross-copy ---------------------------------------------------------------------

def listing(hours_ago: float) -> CopyListing:
    return CopyListing(NOW - timedelta(hours=hours_ago), {"index.json.blob": "ab"})


def test_a_cross_copy_of_an_empty_local_store_fails():
    result = compare_copies({}, {"vm/1/x": listing(30)}, NOW, timedelta(hours=28))
    verdict, message = nothing_compared(result, where="S3 target t, PBS datastore local")
    assert verdict == "fail" and "found 0 snapshots compared" in message and "Datastore.Audit" in message
    assert nothing_compared(result, where="w", empty_ok=True)[0] == "pass"


def test_a_cross_copy_with_every_snapshot_pending_is_skipped_with_the_reason():
    result = compare_copies({"vm/1/a": listing(1), "ct/2/b": listing(2)}, {}, NOW, timedelta(hours=28))
    assert result.compared == 0 and result.pending == 2 and not result.problems
    verdict, reason = nothing_compared(result, where="S3 target t")
    assert verdict == "skip" and "all 2 snapshot(s) chosen are newer than the sync window" in reason
    assert nothing_compared(result, where="S3 target t", empty_ok=True)[0] == "skip"     # not empty: pending


def test_a_snapshot_inside_the_window_already_offsite_is_compared_not_pending():
    """Local keep-last 2, a nightly backup, a 28 h window: for hours after each backup both
    local snapshots are inside the window; the copies the sync already made are compared."""
    local = {"vm/1/a": listing(1), "vm/1/b": listing(25)}
    same = compare_copies(local, dict(local), NOW, timedelta(hours=28))
    assert same.compared == 2 and same.pending == 0 and not same.problems
    assert nothing_compared(same, where="w") is None
    differs = compare_copies(local, {"vm/1/a": CopyListing(NOW - timedelta(hours=1), {"index.json.blob": "cd"})},
                             NOW, timedelta(hours=28))
    assert differs.problems == ["vm/1/a/index.json.blob: csum differs: local ab, offsite cd"]
    assert differs.pending == 1 and differs.compared == 1


def test_a_cross_copy_that_compared_or_found_problems_is_left_alone():
    same = {"vm/1/a": listing(30)}
    assert nothing_compared(compare_copies(same, same, NOW, timedelta(hours=28)), where="w") is None
    missing = compare_copies(same, {}, NOW, timedelta(hours=28))
    assert missing.problems and nothing_compared(missing, where="w") is None


# --- the per-target key ------------------------------------------------------------------------

def test_expect_empty_is_an_optional_key_of_each_target_that_counts():
    from restoredrill.inventory.model import PbsDatastore, PveEndpoint, S3Target, SpotCheck, SqliteFile
    for model in (PveEndpoint, PbsDatastore, SpotCheck, SqliteFile, S3Target):
        field = model.model_fields["expect_empty"]
        assert field.default is False and field.annotation is bool, model
    assert SpotCheck(source="/srv/app", expect_empty=True).expect_empty
    assert not SqliteFile(path="app/app.sqlite").expect_empty


def test_the_lab_never_declares_a_target_empty():
    from pathlib import Path
    lab = Path(__file__).resolve().parents[2] / "src" / "restoredrill" / "lab"
    assert [p.name for p in lab.rglob("*.py") if "expect_empty" in p.read_text()] == []
