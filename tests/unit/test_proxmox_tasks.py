"""UPIDs (PVE 9 fields, PBS 10 fields) and task exit statuses."""
from __future__ import annotations

import time

import pytest
from proxmoxer.tools import Tasks

from restoredrill.lab.proxmox.tasks import (TaskFailed, TaskRegistry, Upid, escape_worker_id,
                                            parse_upid, unescape_worker_id)


def test_pve_upid_has_nine_fields_proxmoxer_can_decode():
    upid = Upid("pve1", 0x1F2E, 0x3A4B5C, 0x6650A1B2, "qmrestore", "9901",
                "restoredrill@pve!drill")
    assert upid.text == "UPID:pve1:00001F2E:003A4B5C:6650A1B2:qmrestore:9901:restoredrill@pve!drill:"
    decoded = Tasks.decode_upid(upid.text)
    assert (decoded["node"], decoded["type"], decoded["id"], decoded["user"]) == (
        "pve1", "qmrestore", "9901", "restoredrill@pve")
    assert parse_upid(upid.text) == upid


def test_pbs_upid_has_ten_fields_and_an_escaped_worker_id():
    upid = Upid("pbs1", 0x4FD8, 0x38CFD, 0x6B07E197, "verify_snapshot",
                "local:vm/110/6650A1B2", "root@pam", task_id=4)
    assert upid.text == ("UPID:pbs1:00004FD8:00038CFD:00000004:6B07E197:verify_snapshot:"
                         "local\\x3avm-110-6650A1B2:root@pam:")
    assert len(upid.text.split(":")) == 10
    with pytest.raises(AssertionError):
        Tasks.decode_upid(upid.text)                 # proxmoxer parses 9 fields only
    assert parse_upid(upid.text) == upid


def test_worker_id_escaping_is_systemd_unit_escaping():
    assert escape_worker_id("offsite:local-verify") == "offsite\\x3alocal\\x2dverify"
    assert escape_worker_id(".hidden/a b") == "\\x2ehidden-a\\x20b"
    assert unescape_worker_id(escape_worker_id("store:ct/120/x")) == "store:ct/120/x"


@pytest.mark.parametrize("text", ["UPID:pve1:1:2:3:x:y:z:", "UPID:../etc:00000001:00000002:"
                                  "00000003:t:i:u:", "UPID:pve1:0000000G:00000000:00000000:t::u:",
                                  "not a upid", ""])
def test_malformed_upids_are_refused(text):
    with pytest.raises(ValueError):
        parse_upid(text)


def test_exit_statuses_ok_warnings_and_error_text():
    registry = TaskRegistry("pve", "pve1")
    ok = registry.start("qmstart", "100", "root@pam", lambda t: t.log("started"))
    warned = registry.start("vzrestore", "101", "root@pam", lambda t: t.warn("careful"))

    def fail(task):
        raise TaskFailed("unable to restore CT 101 - boom\nsecond line")
    failed = registry.start("vzrestore", "102", "root@pam", fail)
    for task in (ok, warned, failed):
        assert task.done.wait(5)
    assert (ok.exitstatus, ok.lines) == ("OK", ["started", "TASK OK"])
    assert warned.exitstatus == "WARNINGS: 1" and warned.lines[-1] == "TASK WARNINGS: 1"
    assert failed.exitstatus == "unable to restore CT 101 - boom second line"
    assert failed.lines[-1] == "TASK ERROR: unable to restore CT 101 - boom second line"
    assert len({t.upid.pid for t in (ok, warned, failed)}) == 3   # a worker per PVE task
    registry.stop()


def test_delayed_tasks_stop_when_the_registry_stops():
    registry = TaskRegistry("pbs", "pbs1", delay=lambda _type: 30)
    task = registry.start("verify", "local", "root@pam", lambda t: None)
    assert task.status == "running"
    started = time.monotonic()
    registry.stop()
    assert time.monotonic() - started < 5
    assert task.exitstatus == "interrupted by signal"
