"""Hostile PBS metadata that once escaped as a non-FormatError (OverflowError, RecursionError,
ValueError from strptime) or made a long message: each is now a short FormatError."""
from __future__ import annotations

import json
import time

import pytest

from restoredrill.pbsformat.blob import FormatError
from restoredrill.pbsformat.crypt import KeyFileError, parse_key_file
from restoredrill.pbsformat.manifest import (
    MAX_BACKUP_EPOCH,
    MAX_JSON_DEPTH,
    UnsafeName,
    check_name,
    classify_content_key,
    parse_manifest,
    parse_snapshot_path,
)


def manifest(backup_time: object = 1_714_528_803, unprotected: object = None) -> str:
    return json.dumps({"backup-type": "vm", "backup-id": "100", "backup-time": backup_time, "files": [],
                       "unprotected": unprotected or {}, "signature": None})


@pytest.mark.parametrize("epoch", [0, 1_714_528_803, MAX_BACKUP_EPOCH])
def test_backup_times_from_1970_to_9999_are_read(epoch):
    assert parse_manifest(manifest(epoch)).backup_time == epoch


@pytest.mark.parametrize("epoch", [-1, MAX_BACKUP_EPOCH + 1, 10 ** 30, -(10 ** 30)])
def test_backup_times_outside_are_a_format_error(epoch):
    with pytest.raises(FormatError, match="backup-time is out of range"):
        parse_manifest(manifest(epoch))


def test_json_up_to_the_depth_limit_parses_and_deeper_is_refused():
    def deep(levels: int) -> dict:
        inner: object = 1
        for _ in range(levels):
            inner = {"x": inner}
        return inner                    # type: ignore[return-value]
    # the document itself is level 1, "unprotected" level 2
    assert parse_manifest(manifest(unprotected=deep(MAX_JSON_DEPTH - 1))).unprotected
    with pytest.raises(FormatError, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        parse_manifest(manifest(unprotected=deep(MAX_JSON_DEPTH)))


def test_brackets_inside_strings_do_not_count_as_depth():
    notes = "[{" * 500 + '\\"[' * 100
    assert parse_manifest(manifest(unprotected={"notes": notes})).unprotected["notes"].startswith("[{")


def test_an_unterminated_string_full_of_escaped_quotes_is_scanned_in_linear_time():
    text = "[" * (MAX_JSON_DEPTH + 1) + '"' + '\\"' * 2_000_000
    started = time.monotonic()
    with pytest.raises(FormatError):
        parse_manifest(text)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("key", ["vm/100/2024-13-45T00:00:00Z/index.json.blob",
                                 "ns/a/ct/101/0000-01-01T00:00:00Z/root.pxar.didx"])
def test_a_bucket_key_with_an_impossible_date_is_no_snapshot_file(key):
    assert classify_content_key(key) is None


def test_an_impossible_snapshot_date_is_a_format_error():
    with pytest.raises(FormatError, match="not a valid date"):
        parse_snapshot_path("vm/100/2024-02-30T00:00:00Z")


def test_a_long_hostile_name_makes_a_short_message():
    with pytest.raises(UnsafeName) as caught:
        check_name("../" * 5000, "backup id")
    assert len(str(caught.value)) < 300


def test_a_deeply_nested_key_file_is_a_key_file_error():
    with pytest.raises(KeyFileError, match="nests too deep"):
        parse_key_file("[" * 100_000 + "]" * 100_000)
