"""No destructive call can reach a guest outside the scratch range, without the drill tag
or outside the drill pool: every guarded PveClient method is checked before sending."""
from __future__ import annotations

import pytest

from restoredrill.clients.pve import GuardError, PveClient, ScratchGuard, TaskFailed, wait_for_task
from restoredrill.clients.upid import UpidError, parse_upid

GUARD = ScratchGuard(9900, 9999, "restoredrill", "drills")


class RecordingApi:
    """Stands in for the API choke point: answers reads from a table, records writes."""

    def __init__(self, guests: dict[int, dict]):
        self.guests = guests          # vmid -> {"tags", "pool"}
        self.sent: list[tuple[str, str]] = []

    def call(self, method, path, guest="", **params):
        if method == "get" and path == "/cluster/resources":
            return [{"vmid": v, "pool": g.get("pool")} for v, g in self.guests.items()]
        if method == "get" and path.endswith("/config"):
            vmid = int(path.split("/")[-2])
            return {"tags": self.guests[vmid].get("tags")}
        self.sent.append((method, path, params))
        if path.endswith("/agent/exec"):
            return {"pid": 42}
        return "UPID:pve1:00001234:00005678:65000000:qmrestore:9901:drill@pve!rd:" if method != "get" else {}


GOOD = {"tags": "restoredrill;run-1", "pool": "drills"}
CALLS = {
    "update_config": lambda c, v: c.update_config("pve1", "qemu", v, onboot=0),
    "start": lambda c, v: c.power("pve1", "qemu", v, "start"),
    "stop": lambda c, v: c.power("pve1", "lxc", v, "stop"),
    "shutdown": lambda c, v: c.power("pve1", "qemu", v, "shutdown"),
    "destroy": lambda c, v: c.destroy("pve1", "qemu", v),
    "agent_ping": lambda c, v: c.agent_ping("pve1", v),
    "agent_exec": lambda c, v: c.agent_exec("pve1", v, ["true"]),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_guest_outside_the_scratch_range_is_refused(name):
    api = RecordingApi({100: {"tags": "restoredrill", "pool": "drills"}})
    with pytest.raises(GuardError, match="outside the scratch range"):
        CALLS[name](PveClient(api, GUARD), 100)
    assert api.sent == []


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("facts,reason", [({"tags": "prod", "pool": "drills"}, "drill tag"),
                                          ({"tags": None, "pool": "drills"}, "drill tag"),
                                          ({"tags": "restoredrill", "pool": "prod"}, "drill pool"),
                                          ({"tags": "restoredrill", "pool": None}, "drill pool")])
def test_scratch_vmid_without_tag_or_pool_is_refused(name, facts, reason):
    api = RecordingApi({9905: facts})
    with pytest.raises(GuardError, match=reason):
        CALLS[name](PveClient(api, GUARD), 9905)
    assert api.sent == []


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_drill_guest_may_be_changed(name):
    api = RecordingApi({9905: GOOD})
    CALLS[name](PveClient(api, GUARD), 9905)
    assert len(api.sent) == 1


def test_restore_never_overwrites_and_always_tags():
    client = PveClient(RecordingApi({9901: GOOD}), GUARD)
    overrides = {"tags": "restoredrill", "pool": "drills", "force": 1}
    with pytest.raises(GuardError, match="it exists"):
        client.restore("pve1", "qemu", 9901, "pbs:backup/vm/110/2026-01-01T00:00:00Z", "local", overrides)
    with pytest.raises(GuardError, match="outside the scratch range"):
        client.restore("pve1", "qemu", 110, "pbs:backup/vm/110/2026-01-01T00:00:00Z", "local", overrides)
    with pytest.raises(GuardError, match="drill tag and pool"):
        client.restore("pve1", "qemu", 9902, "v", "local", {"pool": "drills"})
    api = RecordingApi({})
    PveClient(api, GUARD).restore("pve1", "lxc", 9903, "vol", "local", overrides)
    [(method, path, params)] = api.sent
    assert (method, path) == ("post", "/nodes/pve1/lxc") and "force" not in params
    assert params["restore"] == 1 and params["ostemplate"] == "vol"


def test_upids_of_both_products():
    pve = parse_upid("UPID:pve-1:0000A1B2:0012C3D4:6650A0B0:qmrestore:9901:drill@pve!rd:")
    assert (pve.product, pve.node, pve.type, pve.id, pve.user) == ("pve", "pve-1", "qmrestore", "9901", "drill@pve!rd")
    assert pve.pid == 0xA1B2
    pbs = parse_upid("UPID:localhost:00000F00:000ABCDE:00000002:6650A0B0:verificationjob:store1\\x3av\\x2d1:root@pam:")
    assert (pbs.product, pbs.task_id, pbs.type, pbs.id) == ("pbs", 2, "verificationjob", "store1:v-1")
    assert parse_upid("UPID:n:00000001:123456789:6650A0B0:t:i:u:").pstart == 0x123456789
    for bad in ("UPID:x", "nope:a:b:c:d:e:f:g:", "UPID:n:zz:1:1:t:i:u:", "UPID:n:1:123456789:6650A0B0:t:i:u:",
                "UPID:pve_1:0000A1B2:0012C3D4:6650A0B0:qmrestore:9901:drill@pve!rd:"):
        with pytest.raises(UpidError):
            parse_upid(bad)


def test_task_wait_raises_with_the_log_never_returns_none():
    upid = "UPID:pve1:00001234:00005678:65000000:qmrestore:9901:drill@pve!rd:"
    states = iter([{"status": "running"}, {"status": "stopped", "exitstatus": "unable to restore: boom"}])
    with pytest.raises(TaskFailed) as info:
        wait_for_task(lambda: next(states), lambda: ["line 1", "boom"], upid, deadline=10, what="restore 9901")
    assert "boom" in str(info.value) and info.value.log_tail == ["line 1", "boom"]
    ok = wait_for_task(lambda: {"status": "stopped", "exitstatus": "WARNINGS: 2"}, list, upid, deadline=1, what="x")
    assert ok["exitstatus"] == "WARNINGS: 2"
    with pytest.raises(TaskFailed, match="still running"):
        wait_for_task(lambda: {"status": "running"}, list, upid, deadline=0.2, what="x")


def test_isolation_plan_moves_every_nic_and_refuses_a_hookscript():
    from datetime import datetime, timezone

    from restoredrill.checks.isolation import config_diff, expiry_of, plan_isolation, unsafe_keys
    backup = {"net0": "virtio=BC:24:11:5E:A0:10,bridge=vmbr0,firewall=1", "net1": "e1000=AA:BB,bridge=vmbr1",
              "onboot": "1", "hostpci0": "mapping=nic", "usb0": "host=spice", "startup": "order=2", "name": "app"}
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    plan = plan_isolation("qemu", backup, bridge="vmbr-drill", storage="local-zfs", pool="drills", tag="restoredrill",
                          run_id="R1", name="app", expires=when)
    assert plan.create["net0"] == "virtio,bridge=vmbr-drill" and plan.create["net1"] == "e1000,bridge=vmbr-drill"
    assert plan.create["onboot"] == 0 and plan.create["pool"] == "drills" and "restoredrill" in plan.create["tags"]
    assert "force" not in plan.create and sorted(plan.delete) == ["hostpci0", "usb0"]
    assert expiry_of(plan.create["description"]) == when and not plan.refusals
    risky = plan_isolation("lxc", {"hookscript": "local:snippets/x.sh", "mp0": "/srv,mp=/mnt",
                                   "net0": "name=eth0,bridge=vmbr0,ip=10.0.0.5/24,hwaddr=AA"},
                           bridge="vmbr-drill", storage="s", pool="p", tag="t", run_id="r", name="ct", expires=when)
    assert risky.refusals and "hookscript" in risky.refusals[0]
    assert risky.create["net0"] == "name=eth0,ip=10.0.0.5/24,bridge=vmbr-drill" and risky.create["rootfs"] == "s:1"
    assert unsafe_keys("qemu", {"net0": "virtio,bridge=vmbr0", "onboot": "1", "hostpci0": "x"}, "vmbr-drill") == [
        "net0 is not on the isolated bridge vmbr-drill: virtio,bridge=vmbr0", "onboot is set",
        "hostpci0 passes host hardware through: x"]
    assert unsafe_keys("lxc", {"mp0": "/srv/media,mp=/mnt", "lxc.apparmor.profile": "unconfined"}, "b") == [
        "mp0 exposes a host path: /srv/media,mp=/mnt", "raw lxc.apparmor.profile kept"]
    assert config_diff({"a": 1, "b": 2}, {"b": 3, "c": 4}) == {"changed": [["b", "2", "3"]], "removed": ["a"],
                                                              "added": ["c"]}


def test_snapshot_choice():
    from restoredrill.plan import choose_snapshot
    items = [{"volid": "v1", "ctime": 1, "verification": {"state": "ok"}, "subtype": "qemu", "size": 9},
             {"volid": "v2", "ctime": 2, "verification": {"state": "failed"}, "subtype": "qemu", "size": 9},
             {"volid": "v3", "ctime": 3, "subtype": "qemu", "size": 9}]
    assert choose_snapshot(items, "latest", "s", guest_type="qemu")["volid"] == "v3"
    assert choose_snapshot(items, "latest-verified", "s", guest_type="qemu")["volid"] == "v1"
    assert choose_snapshot(items, "oldest", "s", guest_type="qemu")["volid"] == "v1"
    assert choose_snapshot(items, "pinned", "s", "v2", guest_type="qemu")["volid"] == "v2"
    assert choose_snapshot(items, "random", "a", guest_type="qemu") == choose_snapshot(items, "random", "a",
                                                                                       guest_type="qemu")
    with pytest.raises(Exception, match="no verified"):
        choose_snapshot([{"volid": "x", "ctime": 1, "subtype": "qemu"}], "latest-verified", "s", guest_type="qemu")


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("vmid, inside", [(9899, False), (9900, True), (9999, True), (10000, False)])
def test_the_scratch_range_ends_are_exact(name, vmid, inside):
    """first and last are inside, first-1 and last+1 outside: an off-by-one either way fails."""
    api = RecordingApi({vmid: GOOD})
    if inside:
        CALLS[name](PveClient(api, GUARD), vmid)
        assert len(api.sent) == 1
    else:
        with pytest.raises(GuardError, match="outside the scratch range 9900-9999"):
            CALLS[name](PveClient(api, GUARD), vmid)
        assert api.sent == []


@pytest.mark.parametrize("vmid, inside", [(9899, False), (9900, True), (9999, True), (10000, False)])
def test_restore_at_the_scratch_range_ends(vmid, inside):
    api = RecordingApi({})
    overrides = {"tags": "restoredrill;run-1", "pool": "drills"}
    restore = lambda: PveClient(api, GUARD).restore("pve1", "qemu", vmid, "pbs:backup/vm/110/2026-01-01T00:00:00Z",  # noqa: E731
                                                    "local-zfs", overrides)
    if inside:
        restore()
        assert [path for _m, path, _p in api.sent] == ["/nodes/pve1/qemu"]
    else:
        with pytest.raises(GuardError, match="outside the scratch range"):
            restore()
        assert api.sent == []


# --- issue 20 §5 ------------------------------------------------------------------------------
class EveryCallApi(RecordingApi):
    """Records every call, the reads too: a refusal must come before any request."""

    def call(self, method, path, guest="", **params):
        self.sent.append((method, path, params))
        return {"result": []} if path.endswith("network-get-interfaces") else {"exited": 1}


AGENT_READS = {     # name -> (call, the agent path it reads)
    "agent_interfaces": (lambda c, v: c.agent_interfaces("pve1", v), "network-get-interfaces"),
    "agent_exec_status": (lambda c, v: c.agent_exec_status("pve1", v, 42), "exec-status"),
}


@pytest.mark.parametrize("name", sorted(AGENT_READS))
@pytest.mark.parametrize("vmid", [110, 9899, 10000])
def test_agent_reads_outside_the_scratch_range_are_refused_before_any_call(name, vmid):
    """The agent answers from inside a guest: reading a production guest's agent is refused."""
    api = EveryCallApi({})
    with pytest.raises(GuardError, match=f"refusing to query the agent of guest {vmid}: it lies outside"):
        AGENT_READS[name][0](PveClient(api, GUARD), vmid)
    assert api.sent == []


@pytest.mark.parametrize("name", sorted(AGENT_READS))
def test_agent_reads_of_a_scratch_guest_are_sent(name):
    api = EveryCallApi({})
    call, read = AGENT_READS[name]
    call(PveClient(api, GUARD), 9905)
    assert [path for _, path, _ in api.sent] == [f"/nodes/pve1/qemu/9905/agent/{read}"]


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("tags", ["restoredrill-old", "xrestoredrill", "restoredrill2", "prod;restoredrill-x",
                                  "xrestoredrill,restoredrill2"])
def test_a_tag_that_only_contains_the_drill_tag_is_refused(name, tags):
    api = RecordingApi({9905: {"tags": tags, "pool": "drills"}})
    with pytest.raises(GuardError, match="does not carry the drill tag"):
        CALLS[name](PveClient(api, GUARD), 9905)
    assert api.sent == []
