"""The runner-path proof against real network namespaces (the lab's ``LabNetwork``: a bridge in
its own namespace, the runner's leg, guests on veths): the lab's wiring passes; an extra
route, a leg on another bridge, an impostor or a static wrong neighbour entry fail, naming
what was found. Needs root (``ip netns``)."""
from __future__ import annotations

import os
import time

import pytest

from restoredrill.clients.runner_check import RunnerPath
from restoredrill.clients.runner_path import MacMismatch, NoAnswer, RunnerPathError
from restoredrill.lab.guests.netns import LabNetwork, ip

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

GUEST, GUEST_MAC = "10.198.7.110", "bc:24:11:5e:a0:10"
BRIDGE = "vmbr-drill"


@pytest.fixture(scope="module")
def network():
    net = LabNetwork(bridge=BRIDGE, subnet_prefix="10.198.7").create()
    guest = net.add_guest_namespace(110)
    net.attach(guest, f"{GUEST}/24", mac=GUEST_MAC)
    try:
        yield net
    finally:
        net.destroy()


@pytest.fixture
def path(network) -> RunnerPath:
    ip("neigh", "flush", "all", netns=network.runner_ns, check=False)
    return RunnerPath(network.runner_ns, BRIDGE, GUEST, "app-vm")


def test_the_labs_wiring_is_proven_and_the_guest_answers_with_its_mac(path, network):
    leg = path.verify_routes()
    assert (leg.device, leg.address) == ("eth0", "10.198.7.2/24")
    started = time.monotonic()
    assert path.verify_mac([GUEST_MAC.upper()]) == GUEST_MAC
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("setup,undo,shown", [
    ([("route", "add", "default", "via", "10.198.7.1", "dev", "eth0")],
     [("route", "del", "default")], "route default via 10.198.7.1 dev eth0 table main"),
    ([("link", "add", "rdtest0", "type", "veth", "peer", "name", "rdtest1"),       # no dummy module here
      ("addr", "add", "192.0.2.1/24", "dev", "rdtest0"),
      ("link", "set", "rdtest0", "up")],
     [("link", "del", "rdtest0")], "route 192.0.2.0/24 dev rdtest0 table main"),
    ([("route", "add", "198.51.100.0/24", "via", "10.198.7.1", "dev", "eth0", "table", "100")],
     [("route", "flush", "table", "100")], "route 198.51.100.0/24 via 10.198.7.1 dev eth0 table 100"),
    ([("route", "add", "10.198.7.0/24", "via", "10.198.7.1", "dev", "eth0", "metric", "50")],   # the subnet,
     [("route", "del", "10.198.7.0/24", "via", "10.198.7.1", "dev", "eth0", "metric", "50")],    # via a gateway
     "route 10.198.7.0/24 via 10.198.7.1 dev eth0 table main"),
])
def test_an_extra_route_in_the_runner_namespace_fails_before_any_contact(path, network, setup, undo, shown):
    for args in setup:
        ip(*args, netns=network.runner_ns)
    try:
        with pytest.raises(RunnerPathError) as info:
            path.verify_routes()
        with pytest.raises(RunnerPathError):
            path.verify_mac([GUEST_MAC])
    finally:
        for args in undo:
            ip(*args, netns=network.runner_ns, check=False)
    message = str(info.value)
    assert shown in message and "no default route" in message and "No contact was made" in message
    path.verify_routes()


def test_a_leg_on_another_bridge_fails(path, network):
    port = ip("-o", "link", "show", "master", BRIDGE, netns=network.lab_ns).stdout.splitlines()[0]
    name = port.split(": ")[1].split("@")[0]
    ip("link", "add", "vmbr0", "type", "bridge", netns=network.lab_ns)
    ip("link", "set", name, "master", "vmbr0", netns=network.lab_ns)
    try:
        with pytest.raises(RunnerPathError, match=f"is {name} in namespace {network.lab_ns}, attached to vmbr0, "
                                                  f"not to the drill bridge {BRIDGE}"):
            path.verify_routes()
    finally:
        ip("link", "set", name, "master", BRIDGE, netns=network.lab_ns)
        ip("link", "del", "vmbr0", netns=network.lab_ns)
    path.verify_routes()


def test_a_static_wrong_neighbour_entry_is_a_mismatch(path, network):
    ip("neigh", "replace", GUEST, "lladdr", "02:00:00:00:00:01", "nud", "permanent", "dev", "eth0",
       netns=network.runner_ns)
    try:
        with pytest.raises(MacMismatch) as info:
            path.verify_mac_until([GUEST_MAC], time.monotonic() + 30)
    finally:
        ip("neigh", "del", GUEST, "dev", "eth0", netns=network.runner_ns, check=False)
    assert (f"the address {GUEST} answers from MAC 02:00:00:00:00:01, the scratch guest's NIC is {GUEST_MAC}: "
            f"another machine holds this address on the drill bridge") in str(info.value)


def test_an_impostor_holding_the_address_on_the_bridge_is_a_mismatch(path, network):
    impostor = network.add_guest_namespace(9999)
    network.attach(impostor, f"{GUEST}/24", mac="02:00:00:00:00:99")
    try:
        started = time.monotonic()
        with pytest.raises(MacMismatch, match="answers from MAC 02:00:00:00:00:99"):
            path.verify_mac_until([GUEST_MAC], time.monotonic() + 30)
        assert time.monotonic() - started < 5          # never retried
    finally:
        network.remove_namespace(impostor)


def test_nothing_answering_is_retried_until_the_deadline(network):
    silent = RunnerPath(network.runner_ns, BRIDGE, "10.198.7.111", "app-ct")
    started = time.monotonic()
    with pytest.raises(NoAnswer, match="nothing answers ARP for 10.198.7.111"):
        silent.verify_mac_until(["bc:24:11:00:00:01"], time.monotonic() + 2)
    assert time.monotonic() - started >= 2


def test_a_missing_namespace_is_refused(network):
    with pytest.raises(RunnerPathError, match="cannot read the runner namespace rdl-missing"):
        RunnerPath("rdl-missing", BRIDGE, GUEST, "app-vm").verify_routes()
