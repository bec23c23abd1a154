"""Network namespaces for the lab: a lab namespace holding the isolated drill bridge,
one namespace per running guest, and a runner namespace with a leg on the bridge.

The bridge lives inside the lab namespace, never in the host's, and IPv6 is off on
every interface there, so a guest cannot reach host services through a link-local
address. Nothing is routed: the namespaces have no default route.
Names carry the creating process id (``rdl<pid>-...``) so a later run can reap what a
killed run left (:func:`reap_stale_namespaces`).
"""
from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field

from restoredrill.execute import pid_alive, run

PREFIX = "rdl"
_NAME = re.compile(rf"^{PREFIX}(\d+)-[0-9a-f]{{4}}-")


class NetnsError(RuntimeError):
    pass


def ip(*args: str, netns: str | None = None, check: bool = True):
    argv = ["ip", "-n", netns, *args] if netns else ["ip", *args]
    return run(argv, timeout=30, check=check, label="ip")


def in_netns(netns: str, *argv: str, check: bool = True):
    return run(["ip", "netns", "exec", netns, *argv], timeout=30, check=check, label=f"netns {netns}")


def list_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"], timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]



def reap_stale_namespaces() -> list[str]:
    """Delete lab namespaces whose creating process is gone."""
    removed = []
    for name in list_namespaces():
        match = _NAME.match(name)
        if match and not pid_alive(int(match.group(1))):
            run(["ip", "netns", "del", name], timeout=30, check=False)
            removed.append(name)
    return removed


@dataclass
class LabNetwork:
    """The lab namespace with one isolated bridge; guests and the runner attach to it."""
    bridge: str = "vmbr-drill"
    subnet_prefix: str = "10.199.0"
    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}-{secrets.token_hex(2)}")
    namespaces: list[str] = field(default_factory=list)
    _veth_count: int = 0

    @property
    def lab_ns(self) -> str:
        return f"{self.tag}-lab"

    @property
    def runner_ns(self) -> str:
        return f"{self.tag}-run"

    @property
    def runner_address(self) -> str:
        return f"{self.subnet_prefix}.2"

    def create(self) -> "LabNetwork":
        if len(self.bridge) > 15:
            raise NetnsError(f"bridge name {self.bridge!r} is longer than 15 characters")
        self._add_ns(self.lab_ns)
        ip("link", "add", self.bridge, "type", "bridge", netns=self.lab_ns)
        self._no_ipv6(self.lab_ns)
        ip("link", "set", self.bridge, "up", netns=self.lab_ns)
        self._add_ns(self.runner_ns)
        self.attach(self.runner_ns, f"{self.runner_address}/24")
        return self

    def _add_ns(self, name: str) -> None:
        run(["ip", "netns", "add", name], timeout=30)
        self.namespaces.append(name)
        ip("link", "set", "lo", "up", netns=name)
        self._no_ipv6(name)

    @staticmethod
    def _no_ipv6(netns: str) -> None:
        for key in ("all", "default"):
            in_netns(netns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1", check=False)
        out = ip("-o", "link", "show", netns=netns).stdout
        for name in re.findall(r"^\d+: ([^:@]+)", out, re.MULTILINE):
            in_netns(netns, "sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1", check=False)

    def add_guest_namespace(self, vmid: int) -> str:
        name = f"{self.tag}-g{vmid}"
        self._add_ns(name)
        return name

    def attach(self, netns: str, address_cidr: str | None, *, mac: str | None = None,
               link_down: bool = False) -> str:
        """A veth pair: eth0 in netns (with address and MAC), its peer on the bridge."""
        self._veth_count += 1
        peer = f"v{self._veth_count}-{self.tag[-4:]}"[:15]
        ip("link", "add", peer, "netns", self.lab_ns, "type", "veth", "peer", "name", "eth0", "netns", netns)
        if mac:
            ip("link", "set", "eth0", "address", mac, netns=netns)
        ip("link", "set", peer, "master", self.bridge, netns=self.lab_ns)
        in_netns(self.lab_ns, "sysctl", "-qw", f"net.ipv6.conf.{peer}.disable_ipv6=1", check=False)
        in_netns(netns, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1", check=False)
        ip("link", "set", peer, "up", netns=self.lab_ns)
        if address_cidr:
            ip("addr", "add", address_cidr, "dev", "eth0", netns=netns)
        if not link_down:
            ip("link", "set", "eth0", "up", netns=netns)
        return peer

    def forget_neighbours(self) -> None:
        """Flush the runner's ARP cache: a restored guest comes back with the same address
        but a new MAC, and a stale entry would black-hole the runner's traffic for ~30 s."""
        ip("neigh", "flush", "all", netns=self.runner_ns, check=False)

    def remove_namespace(self, name: str) -> None:
        run(["ip", "netns", "del", name], timeout=30, check=False)
        if name in self.namespaces:
            self.namespaces.remove(name)

    def destroy(self) -> None:
        for name in reversed(list(self.namespaces)):
            self.remove_namespace(name)

    def bridge_facts(self) -> dict:
        """What PVE's ``GET /nodes/{node}/network/{iface}`` would say of the bridge."""
        ports = ip("-o", "link", "show", "master", self.bridge, netns=self.lab_ns).stdout
        addresses = ip("-o", "addr", "show", "dev", self.bridge, netns=self.lab_ns).stdout
        return {"iface": self.bridge, "type": "bridge", "ports_attached": len(ports.splitlines()),
                "addresses": [line.split()[3] for line in addresses.splitlines()]}
