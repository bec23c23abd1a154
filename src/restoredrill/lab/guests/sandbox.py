"""One running lab guest: a process tree in its own namespaces, chrooted into the
restored root file system, on an isolated bridge.

Manual equivalents: start is ``ip netns exec NS unshare --mount --pid --fork --uts
--ipc python -m restoredrill.lab.guests.boot ROOT``; exec is ``nsenter -t PID -m -u
-i -n -p -r -w -- CMD``; stop is SIGTERM to the guest's init (its pid namespace
dies with it), SIGKILL after a grace period.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from restoredrill.execute import CommandError, run


GUEST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
             "LANG": "C.UTF-8", "TERM": "dumb"}


class GuestError(RuntimeError):
    pass


@dataclass
class ExecResult:
    exitcode: int
    out: str
    err: str


class GuestSandbox:
    def __init__(self, vmid: int, root: Path, netns: str, hostname: str, log_file: Path):
        self.vmid = vmid
        self.root = root
        self.netns = netns
        self.hostname = hostname
        self.log_file = log_file
        self._launcher: subprocess.Popen | None = None
        self.init_pid: int | None = None

    def start(self, *, configure_network: bool, ready_timeout: float = 20.0) -> None:
        argv = ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--pid", "--fork", "--uts", "--ipc",
                "--kill-child", sys.executable, "-m", "restoredrill.lab.guests.boot", str(self.root), self.hostname]
        if configure_network:
            argv.append("--configure-network")
        log = open(self.log_file, "ab")
        try:
            self._launcher = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                              start_new_session=True)
        finally:
            log.close()
        self.init_pid = self._wait_for_init(ready_timeout)
        self._wait_for_ready(ready_timeout)

    def _wait_for_init(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._launcher.poll() is not None:
                raise GuestError(f"guest {self.vmid} did not start: {self.log_tail()}")
            children = Path(f"/proc/{self._launcher.pid}/task/{self._launcher.pid}/children")
            try:
                pids = children.read_text().split()
            except OSError:
                pids = []
            if pids:
                return int(pids[0])
            time.sleep(0.02)
        raise GuestError(f"guest {self.vmid}: no init process after {timeout:g} s")

    def _wait_for_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        marker = self.root / "run" / "guest-ready"
        while time.monotonic() < deadline:
            if marker.exists():
                return
            if not self.running:
                raise GuestError(f"guest {self.vmid} stopped while booting: {self.log_tail()}")
            time.sleep(0.05)
        raise GuestError(f"guest {self.vmid} did not finish booting within {timeout:g} s")

    @property
    def running(self) -> bool:
        return self._launcher is not None and self._launcher.poll() is None

    def exec(self, argv: list[str], *, input_data: bytes = b"", timeout: float = 60) -> ExecResult:
        """Run a command inside the guest (as the QEMU guest agent or pct exec would)."""
        if not self.running or self.init_pid is None:
            raise GuestError(f"guest {self.vmid} is not running")
        nsenter = ["nsenter", "-t", str(self.init_pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--", *argv]
        try:
            result = run(nsenter, timeout=timeout, check=False, input=input_data, binary=True,
                         env=GUEST_ENV, label=f"guest {self.vmid} exec")
        except CommandError as exc:
            raise GuestError(f"guest {self.vmid}: {exc}") from None
        return ExecResult(result.returncode, result.stdout.decode("utf-8", "replace"), result.stderr)

    def interfaces(self) -> list[dict]:
        """The agent's ``network-get-interfaces`` answer, read from inside the guest."""
        result = self.exec(["ip", "-j", "addr"])
        if result.exitcode != 0:
            raise GuestError(f"guest {self.vmid}: cannot list interfaces: {result.err}")
        return [{"name": link["ifname"], "hardware-address": link.get("address", "00:00:00:00:00:00"),
                 "ip-addresses": [{"ip-address": a["local"], "prefix": a["prefixlen"],
                                   "ip-address-type": "ipv4" if a["family"] == "inet" else "ipv6"}
                                  for a in link.get("addr_info", [])]}
                for link in json.loads(result.out or "[]")]

    def stop(self, grace: float = 5.0) -> None:
        if self._launcher is None:
            return
        if self.init_pid:
            _signal(self.init_pid, signal.SIGTERM)
        try:
            self._launcher.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal(-self._launcher.pid, signal.SIGKILL)
            if self.init_pid:
                _signal(self.init_pid, signal.SIGKILL)
            self._launcher.wait(timeout=10)
        self._launcher = None
        self.init_pid = None
        (self.root / "run" / "guest-ready").unlink(missing_ok=True)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
