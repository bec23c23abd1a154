"""Lab guests are real and isolated: own namespaces, a bridge with no way out, cleanup."""
from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from restoredrill.lab.guests.image import CANARY_VALUE, GuestSpec, build_rootfs
from restoredrill.lab.guests.netns import LabNetwork, list_namespaces, reap_stale_namespaces
from restoredrill.lab.guests.sandbox import GuestError, GuestSandbox

pytestmark = pytest.mark.integration
ADDRESS = "10.199.0.110"


@pytest.fixture(scope="module")
def network():
    net = LabNetwork().create()
    yield net
    net.destroy()


@pytest.fixture
def guest(network, tmp_path):
    root = tmp_path / "root"
    build_rootfs(root, GuestSpec("app-vm", f"{ADDRESS}/24", "ssh-ed25519 AAAAC3Nza test"))
    ns = network.add_guest_namespace(110)
    network.attach(ns, None, mac="BC:24:11:00:01:10")
    sandbox = GuestSandbox(110, root, ns, "app-vm", tmp_path / "guest.log")
    sandbox.start(configure_network=True)
    yield sandbox
    sandbox.stop()
    network.remove_namespace(ns)


def from_runner(network, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", network.runner_ns, "python3", "-c", code],
                          capture_output=True, text=True, timeout=60)


# The guest's web app starts in the background of its init: on a busy machine it may not listen
# yet when a test asks. Wait for it by a condition (it answers at all) with a deadline, then
# print the status code and body of its answer, whatever the code.
HEALTH_PROBE = f"""
import time, urllib.request, urllib.error
deadline = time.monotonic() + 45
while True:
    try:
        answer = urllib.request.urlopen('http://{ADDRESS}:8080/health', timeout=5)
        print(answer.status, answer.read().decode())
        break
    except urllib.error.HTTPError as error:
        print(error.code, error.read().decode())
        break
    except (ConnectionError, OSError) as error:
        if time.monotonic() > deadline:
            print('unreachable', error)
            break
        time.sleep(0.2)
"""


def test_guest_runs_its_services_from_the_restored_root(guest, network):
    result = guest.exec(["sh", "-c", "hostname; cat /srv/app/canary.txt; /etc/init.d/webapp status"])
    assert result.exitcode == 0
    assert result.out.split("\n")[:3] == ["app-vm", CANARY_VALUE, "webapp is running"]
    eth0 = next(i for i in guest.interfaces() if i["name"] == "eth0")
    assert eth0["hardware-address"] == "bc:24:11:00:01:10"
    assert eth0["ip-addresses"][0]["ip-address"] == ADDRESS
    health = from_runner(network, HEALTH_PROBE)
    assert health.stdout.startswith("200") and '"healthy"' in health.stdout, (health.stdout, health.stderr)


def test_damaged_data_makes_the_health_check_fail(guest, network):
    db = guest.root / "srv" / "app" / "app.sqlite"
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE canary SET value = 'gone'")
    conn.close()
    health = from_runner(network, HEALTH_PROBE)
    # the app stays up on a damaged database and says so: a 500 naming the damage, never a
    # refused connection (which HEALTH_PROBE would print as "unreachable" after its deadline)
    assert health.stdout.startswith("500") and "damaged" in health.stdout, (health.stdout, health.stderr)


def test_guest_is_isolated(guest):
    assert os.readlink(f"/proc/{guest.init_pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert os.readlink(f"/proc/{guest.init_pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert os.readlink(f"/proc/{guest.init_pid}/root") != "/"
    routes = guest.exec(["ip", "route"]).out
    assert "default" not in routes and "10.199.0.0/24" in routes


def connect_probe(family: str, address: str, port: int) -> str:
    return (f"import socket,sys\ns=socket.socket(socket.{family})\ns.settimeout(2)\n"
            f"try:\n r=s.connect_ex(({address!r},{port}))\nexcept OSError:\n r=1\nsys.exit(0 if r==0 else 1)")


def test_guest_cannot_reach_the_hosts_loopback_or_link_local(guest):
    """Listeners on the host's 127.0.0.1 and on '::' (link-local included) stay out of reach."""
    with socket.socket(socket.AF_INET) as four, socket.socket(socket.AF_INET6) as six:
        four.bind(("127.0.0.1", 0))
        four.listen(1)
        six.bind(("::", 0))
        six.listen(1)
        assert guest.exec(["python3", "-c", connect_probe("AF_INET", "127.0.0.1", four.getsockname()[1])]).exitcode == 1
        host_links = subprocess.run(["ip", "-o", "-6", "addr", "show", "scope", "link"], capture_output=True,
                                    text=True).stdout.split("\n")
        targets = [f"{line.split()[3].split('/')[0]}%eth0" for line in host_links if line.strip()] or ["fe80::1%eth0"]
        for address in targets:
            probe = connect_probe("AF_INET6", address, six.getsockname()[1])
            assert guest.exec(["python3", "-c", probe]).exitcode == 1
    assert guest.exec(["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"]).out.strip() == "1"


def test_stop_leaves_no_process_and_destroy_no_namespace(network, tmp_path):
    root = tmp_path / "root"
    build_rootfs(root, GuestSpec("ct", "10.199.0.120/24", "ssh-ed25519 AAAAC3Nza test"))
    ns = network.add_guest_namespace(120)
    network.attach(ns, "10.199.0.120/24")
    sandbox = GuestSandbox(120, root, ns, "ct", tmp_path / "log")
    sandbox.start(configure_network=False)
    pid = sandbox.init_pid
    sandbox.stop()
    assert not Path(f"/proc/{pid}").exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(root) not in ps
    with pytest.raises(GuestError, match="not running"):
        sandbox.exec(["true"])
    network.remove_namespace(ns)
    assert ns not in list_namespaces()


def test_namespaces_of_a_killed_run_are_reaped():
    stale = "rdl999999-abcd-lab"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    assert stale in reap_stale_namespaces()
    assert stale not in list_namespaces()
