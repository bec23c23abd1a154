"""Guest configs, MACs and the state-only runtime (which runs nothing)."""
from __future__ import annotations

import pytest

from restoredrill.lab.proxmox.guest_options import typed_config
from restoredrill.lab.proxmox.guests import (AgentNotRunning, Guest, GuestError,
                                             StateOnlyRuntime, lxc_net_with_mac, net_mac,
                                             parse_config, qemu_net_with_mac, render_config)


def test_config_text_round_trip_keeps_description_and_hints():
    text = "#line one\n#line two\nname: app\nnet0: virtio=BC:24:11:00:00:01,bridge=vmbr0\n" \
           "#qmdump#map:scsi0:drive-scsi0:local-zfs:raw:\n[snapshot1]\nname: old\n"
    options, hints = parse_config(text)
    assert options == {"description": "line one\nline two", "name": "app",
                       "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0"}
    assert hints == ["#qmdump#map:scsi0:drive-scsi0:local-zfs:raw:"]
    assert parse_config(render_config(options, hints)) == (options, hints)


def test_net_strings_get_a_mac_in_upstreams_order():
    made = qemu_net_with_mac("bridge=vmbr-drill,model=virtio,link_down=1")
    assert made.startswith("virtio=BC:24:11:") and made.endswith(",bridge=vmbr-drill,link_down=1")
    kept = qemu_net_with_mac("e1000=BC:24:11:AA:BB:CC,bridge=vmbr0")
    assert kept == "e1000=BC:24:11:AA:BB:CC,bridge=vmbr0"
    assert net_mac(qemu_net_with_mac(kept, "BC:24:11:00:00:02")) == "BC:24:11:00:00:02"
    ct = lxc_net_with_mac("name=eth0,bridge=vmbr-drill,ip=dhcp")
    assert ct.startswith("name=eth0,bridge=vmbr-drill,hwaddr=BC:24:11:") and ct.endswith(",ip=dhcp")


def test_config_values_are_typed_as_on_the_wire():
    config = {"cores": "2", "onboot": "1", "memory": "2048", "name": "x",
              "lxc.apparmor.profile": "unconfined"}
    assert typed_config(config, "qemu") == {"cores": 2, "onboot": 1, "memory": "2048",
                                            "name": "x", "lxc": [["lxc.apparmor.profile",
                                                                  "unconfined"]]}
    assert typed_config({"memory": "512"}, "lxc") == {"memory": 512}


def test_state_only_runtime_runs_nothing_and_agents_are_never_there():
    failures = {9901: "start failed: QEMU exited with code 1"}
    runtime = StateOnlyRuntime(start_failure=failures.get)
    guest = Guest(9902, "qemu", {"agent": "1"})
    with pytest.raises(GuestError, match="VM 9902 is not running"):
        runtime.agent_ping(guest)
    runtime.start(guest)
    assert runtime.status(guest) == "running"
    with pytest.raises(AgentNotRunning, match="QEMU guest agent is not running"):
        runtime.agent_exec(guest, ["cat", "/etc/hostname"], None)
    with pytest.raises(GuestError, match="already running"):
        runtime.start(guest)
    runtime.stop(guest)
    no_agent = Guest(9903, "qemu", {})
    runtime.start(no_agent)
    with pytest.raises(GuestError, match="No QEMU guest agent configured"):
        runtime.agent_ping(no_agent)
    with pytest.raises(GuestError, match="QEMU exited"):
        runtime.start(Guest(9901, "qemu", {}))
