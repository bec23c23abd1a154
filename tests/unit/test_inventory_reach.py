"""Checks by address (access ssh, from_runner HTTP) need scratch.runner_netns and the guest's
own address: inventory errors with file:line, before anything runs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from restoredrill.inventory import InventoryError, parse_inventory

SSH_GUEST = """\
site: {name: x}
scratch:
  guest_ssh: {key_file: /k, known_hosts_file: /kh}
guests:
  - name: web
    vmid: 110
    type: qemu
    strategy: pbs
    access: ssh
    address: 10.199.0.110/24
    health:
      - name: health
        kind: http
        target: http://10.199.0.110:8080/health
        from_runner: true
"""


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, Path("inventory.yaml"))
    return info.value.problems


def test_ssh_and_from_runner_without_runner_netns_are_refused_with_line_and_fix():
    found = problems(SSH_GUEST)
    assert len(found) == 2, found
    assert found[0].startswith("inventory.yaml:9 guests[0].access: guest web: access ssh reaches the scratch "
                               "guest by its address, which is production's too")
    assert "set scratch.runner_netns" in found[0]
    assert found[1].startswith("inventory.yaml:15 guests[0].health[0].from_runner: guest web, check health: "
                               "from_runner reaches")


def test_with_runner_netns_the_same_guest_is_valid():
    text = SSH_GUEST.replace("scratch:\n", "scratch:\n  runner_netns: drill-runner\n")
    assert parse_inventory(text, Path("inventory.yaml")).model.scratch.runner_netns == "drill-runner"


@pytest.mark.parametrize("change,where,words", [
    (("http://10.199.0.110:8080", "http://10.0.0.5:8080"), "guests[0].health[0].target",
     "must name the guest's own address 10.199.0.110"),
    (("http://10.199.0.110:8080", "http://web.lan:8080"), "guests[0].health[0].target", "not 'web.lan'"),
    (("address: 10.199.0.110/24", "address: web.lan"), "guests[0].address", "is not an IPv4 address"),
    (("    address: 10.199.0.110/24\n", ""), "guests[0].address", "access ssh needs the guest's address"),
    (("kind: http", "kind: command"), "guests[0].health[0].from_runner", "applies to http checks only"),
    (("  guest_ssh: {key_file: /k, known_hosts_file: /kh}\n", ""), "guests[0].access", "needs scratch.guest_ssh"),
])
def test_address_checks_name_the_guests_own_address(change, where, words):
    text = SSH_GUEST.replace("scratch:\n", "scratch:\n  runner_netns: drill-runner\n").replace(*change)
    found = problems(text)
    assert any(f" {where}: " in p and words in p for p in found), found


def test_check_inventory_exits_2_naming_the_guest(tmp_path):
    path = tmp_path / "inventory.yaml"
    path.write_text(SSH_GUEST)
    proc = subprocess.run([sys.executable, "-m", "restoredrill.cli", "check-inventory", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "guest web: access ssh" in proc.stdout + proc.stderr
