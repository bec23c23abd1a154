"""The zero rule on the offsite drills, against the lab's real SeaweedFS bucket (issue 14,
section 1): a target whose store prefix holds nothing fails every case that inspects a
collection, each saying that nothing was checked; a rotation slice with nothing in it and
a cross-copy whose snapshots are all inside the sync window are JUnit skips with the
reason, and leave the run's exit code to the other cases."""
from __future__ import annotations

import yaml

import pytest

from restoredrill.checks.pbs_offsite import parse_chunk_key, slice_of
from restoredrill.lab.offsite import LAB_BUCKET, LAB_STORE, LAB_TARGET
from restoredrill.pbsformat import Layout
from tests.integration.test_offsite_drills import CROSS, S3_CASES, run, write_inventory

pytestmark = pytest.mark.integration

COUNTING = {"test_s3_manifests": ("manifests", "checked_manifests"),
            "test_s3_chunks_present": ("chunks referenced", "checked_chunks_referenced"),
            "test_s3_chunk_sample": ("referenced chunks in the bucket", "checked_chunks_read"),
            "test_s3_encrypted": ("manifests", "checked_manifests"),
            "test_s3_retention": ("groups", "checked_groups")}


def test_an_empty_store_prefix_fails_every_case_that_counts(offsite_lab, tmp_path):
    write_inventory(tmp_path / "inventory.yaml", offsite_lab, **{
        "empty-prefix": {"store_prefix": "no-such-store"},
        "declared-empty": {"store_prefix": "no-such-store", "expect_empty": True}})
    code, cases, _seconds = run(tmp_path, "empty")
    assert code == 1
    for case in S3_CASES:
        assert cases[f"{case}[{LAB_TARGET}]"]["outcome"] == "passed", cases[f"{case}[{LAB_TARGET}]"]["message"]
    for case, (what, key) in COUNTING.items():
        found = cases[f"{case}[empty-prefix]"]
        assert found["outcome"] == "failure", (case, found)
        assert f"S3 target empty-prefix: expected something to check; found 0 {what}." in found["message"], case
        assert "Nothing was checked" in found["message"] and "no-such-store" in found["message"]
        assert "expect_empty: true" in found["message"]
        assert found["properties"][key] == "0", (case, found["properties"])
    for case in ("test_s3_reachable", "test_s3_fresh"):          # these already refused an empty prefix
        assert cases[f"{case}[empty-prefix]"]["outcome"] == "failure"
    for case, (_what, key) in COUNTING.items():                  # declared empty: a pass that says so
        declared = cases[f"{case}[declared-empty]"]
        assert declared["outcome"] == "passed", (case, declared["message"])
        assert declared["properties"]["expect_empty"] == "True" and declared["properties"][key] == "0"


def test_the_lab_inventory_never_declares_a_target_empty(offsite_lab):
    assert "expect_empty" not in yaml.safe_dump(offsite_lab.inventory_fragment())


def empty_first_slice(offsite_lab) -> int:
    """A rotation length whose first slice holds none of the bucket's chunks."""
    layout = Layout.s3(LAB_STORE)
    pages = offsite_lab.seaweed.client("admin").get_paginator("list_objects_v2").paginate(
        Bucket=LAB_BUCKET, Prefix=layout.chunk_prefix)
    digests = [d for page in pages for item in page.get("Contents", [])
               if (d := parse_chunk_key(item["Key"], layout)) is not None]
    assert digests
    return next(runs for runs in range(2, 10001) if all(slice_of(d, runs) for d in digests))


def test_an_idle_rotation_is_a_skip_and_copies_inside_the_sync_window_are_compared(offsite_lab, tmp_path):
    """Every local snapshot inside the sync window: the ones the sync already copied are compared
    (before, all were pending and the case skipped, as it did every night for hours on a site with
    local keep-last 2); a snapshot not offsite yet stays pending (unit: test_zero_items.py)."""
    runs = empty_first_slice(offsite_lab)
    inventory = write_inventory(tmp_path / "inventory.yaml", offsite_lab, sync_max_age="100000h",
                                **{"idle-slice": {"read_data_runs": runs}})
    inventory["policies"]["rpo"][LAB_TARGET] = {"max_age": "100000h", "grace": "1h"}   # every copy in the window
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    code, cases, _seconds = run(tmp_path, "idle")
    sample = cases["test_s3_chunk_sample[idle-slice]"]
    assert sample["outcome"] == "skipped", sample
    assert f"slice 1/{runs} holds none of the" in sample["message"]
    cross = cases[f"{CROSS}[{LAB_TARGET}]"]
    assert cross["outcome"] == "passed", cross
    facts = cross["properties"]
    assert int(facts["compared"]) > 0 and "pending" in facts, facts
    others = {name: c["message"] for name, c in cases.items() if c["outcome"] not in ("passed", "skipped")}
    assert not others and code == 0, others     # skips leave the exit code to the other cases
    assert cases["test_s3_chunk_sample[lab-s3]"]["outcome"] == "passed"
