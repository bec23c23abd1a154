"""Checks by address never land on another machine: against the lab (real guests on the drill
bridge, the runner's leg in its namespace). No runner namespace: the inventory is refused;
a runner namespace with a way out, or an impostor answering the guest's address: the guest's
cases fail before any check runs and nothing is left; the lab's own path passes, over SSH too."""
from __future__ import annotations

import subprocess
import sys

import pytest

from restoredrill.lab.guests.netns import ip
from tests.e2e.test_pbs_restore_drills import SELECT, case, only_guest, scratch_guests

pytestmark = pytest.mark.e2e

# Records every TCP connection made to the impostor (ports 22 and 8080), one line each.
LISTENER = ("import socket,sys,threading\n"
            "def serve(port):\n"
            " s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            " s.bind(('0.0.0.0',port)); s.listen(8)\n"
            " while True:\n"
            "  c,a=s.accept(); open(sys.argv[1],'a').write(f'{port} {a[0]}\\n'); c.close()\n"
            "for p in (22,8080): threading.Thread(target=serve,args=(p,),daemon=True).start()\n"
            "print('ready',flush=True); threading.Event().wait()\n")


def ssh_guest(inventory: dict) -> dict:
    """app-vm reached over SSH (through the runner's namespace) instead of its agent."""
    inventory = only_guest(inventory, "app-vm")
    next(g for g in inventory["guests"] if g["name"] == "app-vm")["access"] = "ssh"
    return inventory


def test_access_ssh_without_runner_netns_is_refused(drill, lab_inventory, lab):
    inventory = ssh_guest(lab_inventory)
    inventory["scratch"]["runner_netns"] = None
    run = drill(inventory, *SELECT)
    assert run.code == 2, run.stdout[-2000:] + run.stderr[-2000:]
    output = run.stdout + run.stderr
    assert "guests[1].access: guest app-vm: access ssh reaches the scratch guest by its address" in output
    assert "guests[1].health[6].from_runner: guest app-vm, check health-from-runner" in output
    assert "set scratch.runner_netns" in output and run.cases == {}
    assert scratch_guests(lab) == []


def test_a_runner_namespace_with_a_default_route_fails_before_the_restore(drill, lab_inventory, lab):
    network = lab.double.network
    netns = network.add_guest_namespace(7701)         # the test's own runner namespace, on the drill bridge
    try:
        network.attach(netns, "10.199.0.3/24")
        ip("route", "add", "default", "via", "10.199.0.1", "dev", "eth0", "onlink", netns=netns)
        inventory = ssh_guest(lab_inventory)
        inventory["scratch"]["runner_netns"] = netns
        run = drill(inventory, *SELECT)
    finally:
        network.remove_namespace(netns)
    assert run.code == 1
    message = case(run, "test_restore[app-vm]")["message"]
    assert f"the runner namespace {netns} does not reach 10.199.0.110 through the drill bridge" in message
    assert "route default via 10.199.0.1 dev eth0 table main" in message and "No contact was made" in message
    assert case(run, "test_health[app-vm-canary]")["outcome"] != "passed"
    assert "restore_upid" not in case(run, "test_restore[app-vm]")["properties"]
    assert scratch_guests(lab) == []


@pytest.mark.parametrize("access", ["ssh", "agent"])
def test_an_impostor_on_the_guests_address_fails_the_guest_before_any_check(drill, lab_inventory, lab, tmp_path,
                                                                           access):
    network = lab.double.network
    impostor = network.add_guest_namespace(7702)
    seen = tmp_path / "connections"
    seen.touch()
    listener = None
    try:
        network.attach(impostor, "10.199.0.110/24", mac="02:00:00:00:77:02")
        listener = subprocess.Popen(["ip", "netns", "exec", impostor, sys.executable, "-c", LISTENER, str(seen)],
                                    stdout=subprocess.PIPE, text=True)
        assert listener.stdout.readline().strip() == "ready"
        inventory = ssh_guest(lab_inventory)
        next(g for g in inventory["guests"] if g["name"] == "app-vm")["access"] = access
        run = drill(inventory, *SELECT)
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        network.remove_namespace(impostor)
    assert run.code == 1
    message = case(run, "test_restore[app-vm]")["message"]
    assert "the address 10.199.0.110 answers from MAC 02:00:00:00:77:02, the scratch guest's NIC is bc:24:11:" \
        in message and "another machine holds this address on the drill bridge" in message
    assert all(c["outcome"] != "passed" for name, c in run.cases.items() if name.startswith("test_health[app-vm"))
    assert seen.read_text() == ""              # no SSH, no HTTP reached the impostor
    assert scratch_guests(lab) == []


def test_the_labs_runner_path_passes_over_ssh_with_its_evidence(drill, lab_inventory, lab):
    run = drill(ssh_guest(lab_inventory), *SELECT)
    assert run.code == 0, run.stdout[-4000:]
    facts = case(run, "test_restore[app-vm]")["properties"]
    assert facts["access"] == "ssh"
    assert facts["runner_leg"] == f"{lab.double.network.runner_ns} eth0 10.199.0.2/24 (10.199.0.0/24)"
    assert facts["guest_mac"].startswith("bc:24:11:")
    for name in ("sshd-running", "canary", "db-canary", "health-from-runner"):
        assert case(run, f"test_health[app-vm-{name}]")["outcome"] == "passed"
    assert scratch_guests(lab) == []
