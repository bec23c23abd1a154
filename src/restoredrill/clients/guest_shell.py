"""testinfra hosts for scratch guests, the three ways the harness reaches them:

- ``AgentBackend``: the QEMU guest agent through the PVE API (``agent/exec`` +
  ``exec-status``; no network path to the guest needed);
- ``PctBackend``: ``pct exec VMID -- sh -c CMD`` over SSH to the node (its key is
  limited by contrib/restoredrill-pct-guard to the scratch range);
- SSH on the drill network with strict host keys: testinfra's own ``ssh`` backend
  with an ssh_config this module writes, ALWAYS with a ``ProxyCommand`` through the
  runner's network namespace (``scratch.runner_netns``, whose path to the guest
  ``clients.runner_check`` proves first). Never a direct connection: the restored
  guest keeps production's address and host key, so from the runner's own network
  strict host-key checking would pass against production itself.

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


NO_RUNNER_NETNS = ("access ssh reaches the scratch guest by the address its OS configures, which is production's; "
                   "without scratch.runner_netns (a namespace whose only route is the drill bridge) it would "
                   "reach production, whose host key the restored copy carries. Set scratch.runner_netns, or use "
                   "access agent (VMs) or pct (containers)")


def proxy_command(runner_netns: str) -> str:
    """ssh's ``ProxyCommand``: a TCP relay started inside the runner's namespace."""
    return f"ip netns exec {runner_netns} {sys.executable} -m restoredrill.lab.guests.relay %h %p"


def write_ssh_config(path: Path, *, address: str, user: str, key_file: str, known_hosts_file: str,
                     runner_netns: str | None) -> Path:
    """The guest's ssh_config; refuses without a runner namespace (never a direct connection).
    ``ControlPath none``: no multiplexed connection outlives this guest (testinfra asks for
    ``ControlMaster=auto``; without a path ssh multiplexes nothing)."""
    if not runner_netns:
        raise GuestUnreachable(NO_RUNNER_NETNS)
    lines = ["Host drill-guest", f"  HostName {address}", f"  User {user}", f"  IdentityFile {key_file}",
             "  IdentitiesOnly yes", f"  UserKnownHostsFile {known_hosts_file}", "  GlobalKnownHostsFile /dev/null",
             "  StrictHostKeyChecking yes", "  BatchMode yes", "  ConnectTimeout 10", "  ControlPath none",
             f"  ProxyCommand {proxy_command(runner_netns)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def ssh_backend(config: Path, timeout: int = 30) -> SshBackend:
    """testinfra's ssh backend on a config of :func:`write_ssh_config`; any other config
    (no ProxyCommand into a namespace: a direct connection) is refused."""
    text = Path(config).read_text()
    if not any(line.strip().startswith("ProxyCommand ip netns exec ") for line in text.splitlines()):
        raise GuestUnreachable(f"{config}: {NO_RUNNER_NETNS}")
    return SshBackend("drill-guest", ssh_config=str(config), timeout=timeout)


def host_for(backend: BaseBackend) -> testinfra.host.Host:
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
