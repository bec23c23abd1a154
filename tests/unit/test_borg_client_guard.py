"""The Borg client can only read: every write-side subcommand is refused before borg runs."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from restoredrill.clients.borg import (FORBIDDEN_SUBCOMMANDS, READ_ONLY_SUBCOMMANDS, BorgClient, BorgError, BorgTarget,
                                       explain_failure, parse_borg_time)
from restoredrill.plan import IMPLEMENTED_KINDS, PlanError, choose_archive, plan_borg_check, select_kinds


@pytest.mark.parametrize("sub", sorted(FORBIDDEN_SUBCOMMANDS))
def test_write_side_subcommands_are_refused(sub, tmp_path):
    client = BorgClient(BorgTarget("r", str(tmp_path), tmp_path / "base", binary="/bin/false"))
    with pytest.raises(PermissionError, match="only reads"):
        client._run(sub, [], timeout=5)


def real_borg_subcommands() -> set[str]:
    """Every subcommand the installed borg offers, from its own ``borg help`` (the README's
    install puts borg into the project venv; failing here is a broken install, not a skip)."""
    import re
    import shutil
    import subprocess
    borg = shutil.which("borg")
    assert borg, "borg is not on PATH: run the README's install (make install)"
    text = subprocess.run([borg, "help"], capture_output=True, text=True, check=False).stdout
    commands = text.split("<command>", 2)[-1]
    return set(re.findall(r"^    ([a-z][a-z-]+)\s", commands, flags=re.M))


def test_the_allow_list_itself_refuses_every_other_subcommand(tmp_path):
    """Not a deny list: every subcommand of the real borg outside the four read ones, and
    names borg may add (borg 2's transfer, repo-*) or spell differently, never run."""
    offered = real_borg_subcommands()
    assert {"list", "info", "check", "extract", "serve", "debug", "benchmark", "prune"} <= offered
    others = (offered - READ_ONLY_SUBCOMMANDS) | {"transfer", "repo-delete", "rdelete", "LIST", "list ", "",
                                                   "extract;rm", "--help"}
    client = BorgClient(BorgTarget("r", str(tmp_path), tmp_path / "base", binary="/bin/false"))
    for sub in sorted(others):
        with pytest.raises(PermissionError, match="only reads"):
            client._run(sub, [], timeout=5)


def test_public_methods_use_only_read_subcommands():
    assert READ_ONLY_SUBCOMMANDS == {"list", "info", "check", "extract"}
    assert not READ_ONLY_SUBCOMMANDS & FORBIDDEN_SUBCOMMANDS
    assert not any(hasattr(BorgClient, name) for name in ("prune", "delete", "compact", "break_lock", "create"))


@pytest.mark.parametrize("tail,cause", [
    ("passphrase supplied in BORG_PASSPHRASE, by BORG_PASSCOMMAND or via BORG_PASSPHRASE_FD is incorrect.",
     "wrong passphrase"),
    ("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.", "host key"),
    ("Repository /x does not exist.", "does not exist"),
    ("/tmp is not a valid repository. Check repo config.", "not a Borg repository"),
    ("Failed to create/acquire the lock /r/lock.exclusive (timeout).", "locked"),
    ("ssh: connect to host 127.0.0.1 port 1: Connection refused", "unreachable"),
    ("Mismatch between repository /srv/cloud and key file /etc/escrow/spare.key.", "belongs to another repository"),
])
def test_failures_are_explained(tail, cause):
    assert cause in explain_failure(tail)


def test_borg_times_are_utc():
    assert parse_borg_time("2024-01-01T02:00:00.000000") == datetime(2024, 1, 1, 2, tzinfo=timezone.utc)


def test_check_rotation_reads_everything_within_n_runs():
    now = datetime(2026, 1, 31, tzinfo=timezone.utc)
    assert plan_borg_check(None, None, every_runs=3, max_age=timedelta(days=30), now=now).full
    plans = [plan_borg_check(n, now - timedelta(days=1), every_runs=3, max_age=timedelta(days=30), now=now)
             for n in range(3)]
    assert [p.full for p in plans] == [False, False, True]  # full, partial, partial, full, ...
    assert plans[0].runs_until_full == 2
    old = plan_borg_check(0, now - timedelta(days=31), every_runs=7, max_age=timedelta(days=30), now=now)
    assert old.full and "older than 30 days" in old.reason


def test_archive_choice_and_kinds():
    names = ["a", "b", "c"]
    assert choose_archive(names, "latest", "x") == "c"
    assert choose_archive(names, "oldest", "x") == "a"
    assert choose_archive(names, "random", "seed") == choose_archive(names, "random", "seed")
    assert select_kinds(None) == list(IMPLEMENTED_KINDS) and "borg" in IMPLEMENTED_KINDS
    with pytest.raises(PlanError, match="unknown drill kind"):
        select_kinds(["tape"])


def test_a_junit_file_with_failures_overrides_a_zero_exit(tmp_path):
    from restoredrill.runner import junit_has_failures
    ok = tmp_path / "ok.xml"
    ok.write_text('<testsuites><testsuite name="pytest" failures="0" errors="0" tests="2"/></testsuites>')
    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites><testsuite name="pytest" failures="0" errors="1" tests="2"/></testsuites>')
    assert not junit_has_failures(ok)
    assert junit_has_failures(bad) and junit_has_failures(tmp_path / "missing.xml")


@pytest.mark.parametrize("reported,refused", [("borg 1.2.4", True), ("borg 1.4.4", True), ("borg 1.4.5", False),
                                              ("borg 1.4.6", False), ("nonsense", True)])
def test_extract_needs_a_borg_that_refuses_symlinked_parents(tmp_path, reported, refused):
    """borg < 1.4.5 writes archive members through a symlinked directory member (as root: anywhere);
    such a borg never extracts. The stand-in binary only answers --version and records any other call."""
    calls = tmp_path / "calls"
    fake = tmp_path / "borg"
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && {{ echo '{reported}'; exit 0; }}\necho \"$@\" >> {calls}\n")
    fake.chmod(0o755)
    client = BorgClient(BorgTarget("r", str(tmp_path / "repo"), tmp_path / "base", binary=str(fake)))
    if refused:
        with pytest.raises(Exception, match="cannot extract an untrusted archive safely"):
            client.extract("a", tmp_path)
        assert not calls.exists()
    else:
        client.extract("a", tmp_path)
        assert "extract" in calls.read_text()


def test_a_refused_member_is_explained():
    tail = "d/pwned: not extracted, a parent directory is a symlink (malicious or corrupted archive)"
    assert "refused to extract" in explain_failure(tail)


LISTING = ('{"archives": [{"name": "a", "start": "2026-04-01T10:00:00.000000", "id": "ab"}], '
           '"encryption": {"mode": "repokey-blake2"}, "repository": {"id": "cafe", "location": "/r"}}')


@pytest.mark.parametrize("shown,refused", [("1.2.4", True), ("1.4.5", False)])
def test_the_version_a_listing_logged_gates_the_extract_without_another_borg_start(tmp_path, shown, refused):
    """Every call runs with ``--show-version``; the version borg logged there is the one the
    extract is judged by (issue 26: no ``borg --version`` start per extract). The repository id
    and encryption mode come from the same ``borg list --json`` answer (no ``borg info``)."""
    calls = tmp_path / "calls"
    fake = tmp_path / "borg"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n"
                    f"[ \"$1\" = list ] && {{ echo 'borgbackup version {shown}' >&2; echo '{LISTING}'; }}\nexit 0\n")
    fake.chmod(0o755)
    client = BorgClient(BorgTarget("r", str(tmp_path / "repo"), tmp_path / "base", binary=str(fake)))
    listing = client.list_repository()
    assert [a.name for a in listing.archives] == ["a"]
    assert listing.info == {"repository": {"id": "cafe", "location": "/r"}, "encryption": {"mode": "repokey-blake2"}}
    if refused:
        with pytest.raises(BorgError, match=f"borg {shown} cannot extract an untrusted archive safely"):
            client.extract("a", tmp_path)
    else:
        client.extract("a", tmp_path)
    lines = calls.read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["list", "--show-version"]] + ([] if refused else
                                                                                  [["extract", "--show-version"]])
    assert not any("--version" in line.split() for line in lines)


def test_a_listing_without_repository_facts_is_a_clear_error(tmp_path):
    fake = tmp_path / "borg"
    fake.write_text("#!/bin/sh\necho '{\"archives\": []}'\n")
    fake.chmod(0o755)
    client = BorgClient(BorgTarget("r", str(tmp_path / "repo"), tmp_path / "base", binary=str(fake)))
    with pytest.raises(BorgError, match="no repository id or encryption mode"):
        client.list_repository()


def test_relative_base_dir_and_location_are_made_absolute(tmp_path, monkeypatch):
    """borg extract runs inside the extract folder: relative paths would point into it (issue 26)."""
    monkeypatch.chdir(tmp_path)
    target = BorgTarget("r", "repo", Path("state/borg/r"))
    assert target.base_dir == tmp_path / "state" / "borg" / "r" and target.location == str(tmp_path / "repo")
    assert BorgTarget("r", "ssh://u@h:22/./repo", tmp_path).location == "ssh://u@h:22/./repo"
