"""The pure edge of the Proxmox clients: the answer envelope, the typed accessors, how
server text is clipped into messages, and the UPID formats at their upstream limits.
(The same code against a real HTTPS server: tests/hostile/test_api_answers.py.)"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from restoredrill.clients.proxmox_api import (ApiError, NotAnEnvelope, answer_list, clip, epoch_field, field,
                                              read_envelope)
from restoredrill.clients.pve import TaskFailed, wait_for_task
from restoredrill.clients.upid import UpidError, parse_upid

CALL = "PVE GET /cluster/resources"
UPID = "UPID:pve1:0000ABCD:00001234:65000000:qmrestore:9901:root@pam:"


def test_clip_bounds_and_escapes_server_text():
    assert clip("short") == "short"
    long = clip("x" * 1_000_000)
    assert long.startswith("x" * 300) and long.endswith("(999700 more characters)") and len(long) < 340
    shown = clip("a\nb\x1b[2J\u202eevil\x07")
    assert shown == "a\\nb\\x1b[2J\\u202eevil\\x07" and shown.isprintable()
    assert len(clip(list(range(100_000)))) < 100          # a huge non-string is never rendered whole


def test_the_envelope_is_an_object_with_data():
    assert read_envelope(b'{"data": null}') is None
    assert read_envelope(b'{"data": [1], "total": 1}') == [1]
    for body, problem in ((b"[1, 2]", "a list of 2 items"), (b"{}", "without 'data'"), (b'"x"', "a string")):
        with pytest.raises(NotAnEnvelope, match=problem):
            read_envelope(body)
    for body in (b"<html>gateway</html>", b"\xff\xfe", b"[" * 100_000, b"1" * 5000):
        assert read_envelope(body) == {"errors": body}     # not JSON: refused by the choke point unless binary


def test_fields_are_typed_strictly():
    item = {"vmid": "9901", "n": 7, "flag": True, "arabic": "\u0661\u0662", "spaced": " 1", "under": "1_0",
            "float": 1.5, "pool": None}
    assert field(item, "vmid", int, call=CALL) == 9901 and field(item, "n", int, call=CALL) == 7
    assert field(item, "pool", str, call=CALL, required=False) is None
    for name in ("flag", "arabic", "spaced", "under", "float"):
        with pytest.raises(ApiError, match=rf"^{CALL}: answer field '{name}' is .*expected an integer"):
            field(item, name, int, call=CALL)
    with pytest.raises(ApiError, match="answer field 'pool' is missing"):
        field(item, "pool", str, call=CALL)
    with pytest.raises(ApiError, match="item 1 of the answer is null, expected an object"):
        answer_list([{}, None], CALL)


def test_a_string_field_is_described_never_quoted():
    with pytest.raises(ApiError) as caught:
        field({"vmid": "drill@pve!rd=0b6a-secret-echo"}, "vmid", int, call=CALL)
    assert "secret" not in str(caught.value) and "a string of 29 characters" in str(caught.value)


def test_epochs_stay_inside_datetime():
    assert epoch_field({"t": 0}, "t", call=CALL) == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert epoch_field({"t": 253402300799}, "t", call=CALL).year == 9999
    for bad in (-1, 253402300800, 10 ** 30):
        with pytest.raises(ApiError, match="not a time between 1970 and 9999"):
            epoch_field({"t": bad}, "t", call=CALL)


def test_upids_at_the_upstream_limits():
    # proxmox-rs proxmox-schema/src/upid.rs documents this PBS example (an empty worker id)
    gc = parse_upid("UPID:elsa:00004F37:0039E469:00000000:5CA78B83:garbage_collection::root@pam:")
    assert (gc.product, gc.node, gc.id, gc.task_id) == ("pbs", "elsa", "", 0)
    long_uptime = parse_upid("UPID:pve1:0000abcd:1FFFFFFFF:65000000:vzdump::root@pam:")   # lowercase, 9-digit pstart
    assert (long_uptime.pid, long_uptime.pstart) == (0xABCD, 0x1FFFFFFFF)
    assert parse_upid("UPID:pbs1:00000001:00000002:FFFFFFFFFFFFFFFF:65000000:t:i:u@pam:").task_id == 2 ** 64 - 1
    assert parse_upid(f"UPID:{'n' * 63}:0000ABCD:00001234:FFFFFFFF:t::u@pam:").starttime.year == 2106
    for node in ("n" * 64, "-pve1", "pve1-", "pve.example", "pve_1"):
        with pytest.raises(UpidError, match="its NODE field is not a host name"):
            parse_upid(f"UPID:{node}:0000ABCD:00001234:65000000:qmrestore:9901:root@pam:")
    with pytest.raises(UpidError, match="its PSTART field is not 8 or 9 hex digits"):
        parse_upid("UPID:pve1:0000ABCD:1234567890:65000000:qmrestore:9901:root@pam:")


def test_a_failed_task_keeps_only_clipped_server_text():
    states = {"status": "stopped", "exitstatus": "E" * 50_000 + "\n"}
    with pytest.raises(TaskFailed) as caught:
        wait_for_task(lambda: states, lambda: ["\x1b[2J" + "x" * 10_000] * 1000, UPID, deadline=1, what="restore")
    failed = caught.value
    assert len(failed.log_tail) == 20 and all(len(line) < 340 and line.isprintable() for line in failed.log_tail)
    assert len(failed.exitstatus) < 340 and failed.exitstatus.isprintable() and len(str(failed)) < 1500
