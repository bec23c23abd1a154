"""testinfra hosts for scratch guests, the three ways the harness reaches them:

- ``AgentBackend``: the QEMU guest agent through the PVE API (``agent/exec`` +
  ``exec-status``; no network path to the guest needed);
- ``PctBackend``: ``pct exec VMID -- sh -c CMD`` over SSH to the node (its key is
  limited by contrib/restoredrill-pct-guard to the scratch range);
- SSH on the drill network with strict host keys: testinfra's own ``ssh`` backend
  with an ssh_config this module writes (``ProxyCommand`` through the runner's
  network namespace when the runner's leg on the drill bridge lives in one).

Hosts are built directly (``testinfra.host.Host(backend)``), never through
``Host.get_host``, whose process-wide cache would hand a reused VMID an old guest.
"""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult
from testinfra.backend.ssh import SshBackend

from restoredrill.execute import CommandError, run


class GuestUnreachable(RuntimeError):
    pass


class AgentBackend(BaseBackend):
    NAME = "pve-agent"

    def __init__(self, pve, node: str, vmid: int, *, timeout: float = 120, **kwargs):
        self.pve, self.node, self.vmid, self.timeout = pve, node, vmid, timeout
        super().__init__(f"pve-agent-{vmid}", **kwargs)

    def get_encoding(self) -> str:      # no python probe inside the guest
        return "utf-8"

    def run(self, command: str, *args: str, **kwargs) -> CommandResult:
        cmd = self.get_command(command, *args)
        pid = self.pve.agent_exec(self.node, self.vmid, ["/bin/sh", "-c", cmd])
        deadline, interval = time.monotonic() + self.timeout, 0.05
        while time.monotonic() < deadline:
            status = self.pve.agent_exec_status(self.node, self.vmid, pid)
            if status.get("exited"):
                return self.result(int(status.get("exitcode", -1)), self.encode(cmd),
                                   status.get("out-data", ""), status.get("err-data", ""))
            time.sleep(interval)
            interval = min(interval * 1.5, 0.5)
        raise GuestUnreachable(f"guest {self.vmid}: agent exec of {cmd!r} did not finish within {self.timeout:g} s")


class PctBackend(BaseBackend):
    NAME = "pct-ssh"

    def __init__(self, node_ssh: dict, vmid: int, *, timeout: float = 120, **kwargs):
        self.node_ssh, self.vmid, self.timeout = node_ssh, vmid, timeout
        super().__init__(f"pct-{vmid}", **kwargs)

    def get_encoding(self) -> str:
        return "utf-8"

    def ssh_argv(self, remote: str) -> list[str]:
        n = self.node_ssh
        return ["ssh", "-F", "none", "-i", n["key_file"], "-o", f"UserKnownHostsFile={n['known_hosts_file']}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "ConnectTimeout=20", "-p", str(n.get("port", 22)), f"{n['user']}@{n['host']}", remote]

    def run(self, command: str, *args: str, **kwargs) -> CommandResult:
        cmd = self.get_command(command, *args)
        remote = f"pct exec {self.vmid} -- /bin/sh -c {shlex.quote(cmd)}"
        try:
            result = run(self.ssh_argv(remote), timeout=self.timeout, check=False, input="",
                         label=f"pct exec {self.vmid}")
        except CommandError as exc:
            raise GuestUnreachable(f"guest {self.vmid}: {exc}") from None
        if result.returncode == 255:
            raise GuestUnreachable(f"guest {self.vmid}: ssh to the node failed: {result.stderr.strip()[-300:]}")
        return self.result(result.returncode, self.encode(cmd), result.stdout, result.stderr)


def write_ssh_config(path: Path, *, address: str, user: str, key_file: str, known_hosts_file: str,
                     runner_netns: str | None) -> Path:
    lines = ["Host drill-guest", f"  HostName {address}", f"  User {user}", f"  IdentityFile {key_file}",
             "  IdentitiesOnly yes", f"  UserKnownHostsFile {known_hosts_file}", "  GlobalKnownHostsFile /dev/null",
             "  StrictHostKeyChecking yes", "  BatchMode yes", "  ConnectTimeout 10"]
    if runner_netns:
        lines.append(f"  ProxyCommand ip netns exec {runner_netns} {sys.executable} -m restoredrill.lab.guests.relay %h %p")
    path.write_text("\n".join(lines) + "\n")
    return path


def ssh_backend(config: Path, timeout: int = 30) -> SshBackend:
    return SshBackend("drill-guest", ssh_config=str(config), timeout=timeout)


def host_for(backend: BaseBackend) -> testinfra.host.Host:
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
