"""``NamespaceRuntime``: the Proxmox double's guests as real processes.

Start reads the guest's restored disk (a VM's ext4 image through ``debugfs rdump``, a
container's extracted root folder), creates a network namespace, attaches every netN
on the isolated drill bridge (a netN on any other bridge stays unplugged: the lab has
no production network) and boots the guest (see ``sandbox``). The agent calls run
inside the guest. Each running guest has ``<work>/<vmid>/state.json`` (init pid,
kind) so ``pct exec`` over the node's SSH can reach it (``lab.guests.pct``).
"""
from __future__ import annotations

import itertools
import json
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from restoredrill.lab.guests.image import unpack_ext4_image
from restoredrill.lab.guests.netns import LabNetwork
from restoredrill.lab.guests.sandbox import GuestError as SandboxError
from restoredrill.lab.guests.sandbox import GuestSandbox
from restoredrill.lab.proxmox.guests import AgentNotRunning, Guest, GuestError, split_property_string

QEMU_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3")


def net_settings(value: str) -> dict[str, str]:
    """``virtio=MAC,bridge=B,...`` / ``name=eth0,bridge=B,hwaddr=MAC,ip=...`` as a dict (mac key)."""
    settings = {}
    for key, item in split_property_string(value):
        if key in QEMU_MODELS or key == "hwaddr":
            settings["mac"] = item
        else:
            settings[key] = item
    return settings


class NamespaceRuntime:
    def __init__(self, network: LabNetwork, work_dir: Path,
                 start_failure: Callable[[int], str | None] = lambda _vmid: None,
                 agent_silent: Callable[[int], bool] = lambda _vmid: False,
                 broken_services: Callable[[int], list[str]] = lambda _vmid: []):
        self.network = network
        self.work_dir = work_dir
        self.start_failure = start_failure
        self.agent_silent = agent_silent
        self.broken_services = broken_services
        self._lock = threading.Lock()
        self._sandboxes: dict[int, GuestSandbox] = {}
        self._namespaces: dict[int, str] = {}
        self._exec: dict[tuple[int, int], dict[str, Any]] = {}
        self._pids = itertools.count(1000)

    # --- power -------------------------------------------------------------------------
    def start(self, guest: Guest) -> None:
        with self._lock:
            if guest.vmid in self._sandboxes:
                raise GuestError(f"VM {guest.vmid} already running")
            failure = self.start_failure(guest.vmid)
            if failure:
                raise GuestError(failure)
            sandbox = self._boot(guest)
            self._sandboxes[guest.vmid] = sandbox
            guest.status, guest.started_at = "running", time.time()
            self._write_state(guest, sandbox)

    def _boot(self, guest: Guest) -> GuestSandbox:
        folder = self.work_dir / str(guest.vmid)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        root = self._root_of(guest, folder)
        netns = self.network.add_guest_namespace(guest.vmid)
        self._namespaces[guest.vmid] = netns
        address = None
        for key in sorted(k for k in guest.config if re.fullmatch(r"net\d+", k)):
            settings = net_settings(guest.config[key])
            if settings.get("bridge") != self.network.bridge or key != "net0":
                continue              # only the drill bridge exists in the lab
            address = settings.get("ip") if guest.kind == "lxc" else None
            self.network.attach(netns, address if address and address != "dhcp" else None,
                                mac=settings.get("mac"), link_down=settings.get("link_down") == "1")
        for service in self.broken_services(guest.vmid):     # a fault: this service fails to start
            script = root / "etc" / "init.d" / service
            if script.is_file():
                text = script.read_text().replace("  start)\n", "  start)\n    echo 'start failed' >&2; exit 1\n", 1)
                script.write_text(text)
        hostname = guest.config.get("hostname") or guest.config.get("name") or f"guest{guest.vmid}"
        sandbox = GuestSandbox(guest.vmid, root, netns, hostname, folder / "console.log")
        try:
            sandbox.start(configure_network=guest.kind == "qemu")
            self.network.forget_neighbours()   # as a guest's gratuitous ARP would: its MAC is new
        except SandboxError as exc:
            self.network.remove_namespace(netns)
            self._namespaces.pop(guest.vmid, None)
            raise GuestError(f"start failed: {exc}") from None
        return sandbox

    def _root_of(self, guest: Guest, folder: Path) -> Path:
        if guest.kind == "lxc":
            root = guest.disks.get("rootfs")
            if root is None or not Path(root).is_dir():
                raise GuestError(f"CT {guest.vmid}: no root file system")
            return Path(root)
        disk = next((path for dev, path in sorted(guest.disks.items()) if Path(path).is_file()), None)
        if disk is None:
            raise GuestError(f"VM {guest.vmid}: no bootable disk")
        root = folder / "root"
        try:
            unpack_ext4_image(Path(disk), root)
        except RuntimeError as exc:
            raise GuestError(f"VM {guest.vmid}: the disk does not boot: {exc}") from None
        if not (root / "init").exists():
            raise GuestError(f"VM {guest.vmid}: no operating system found on the disk")
        return root

    def _write_state(self, guest: Guest, sandbox: GuestSandbox) -> None:
        state = {"vmid": guest.vmid, "kind": guest.kind, "init_pid": sandbox.init_pid, "status": "running"}
        (self.work_dir / str(guest.vmid) / "state.json").write_text(json.dumps(state))

    def stop(self, guest: Guest) -> None:
        with self._lock:
            sandbox = self._sandboxes.pop(guest.vmid, None)
            if sandbox is not None:
                sandbox.stop()
            netns = self._namespaces.pop(guest.vmid, None)
            if netns:
                self.network.remove_namespace(netns)
            (self.work_dir / str(guest.vmid) / "state.json").unlink(missing_ok=True)
            if guest.kind == "qemu":
                shutil.rmtree(self.work_dir / str(guest.vmid) / "root", ignore_errors=True)
            guest.status, guest.started_at = "stopped", None

    def status(self, guest: Guest) -> str:
        sandbox = self._sandboxes.get(guest.vmid)
        if sandbox is not None and not sandbox.running:   # the guest died on its own
            self.stop(guest)
        return guest.status

    def stop_all(self) -> None:
        for vmid in list(self._sandboxes):
            self.stop(Guest(vmid, "qemu", {}))

    # --- agent -------------------------------------------------------------------------
    def _agent(self, guest: Guest) -> GuestSandbox:
        sandbox = self._sandboxes.get(guest.vmid)
        if sandbox is None or guest.status != "running":
            raise GuestError(f"VM {guest.vmid} is not running")
        if not re.match(r"(enabled=)?1\b", guest.config.get("agent", "0")):
            raise GuestError("No QEMU guest agent configured")
        if self.agent_silent(guest.vmid):
            raise AgentNotRunning("QEMU guest agent is not running")
        return sandbox

    def agent_ping(self, guest: Guest) -> dict[str, Any]:
        self._agent(guest)
        return {}

    def agent_network_interfaces(self, guest: Guest) -> list[dict[str, Any]]:
        try:
            return self._agent(guest).interfaces()
        except SandboxError as exc:
            raise AgentNotRunning(str(exc)) from None

    def agent_exec(self, guest: Guest, command: list[str], input_data: str | None) -> int:
        sandbox = self._agent(guest)
        pid = next(self._pids)
        record: dict[str, Any] = {"exited": 0}
        self._exec[(guest.vmid, pid)] = record

        def work() -> None:
            try:
                result = sandbox.exec(list(command), input_data=(input_data or "").encode())
                record.update({"exitcode": result.exitcode, "out-data": result.out, "err-data": result.err})
            except SandboxError as exc:
                record.update({"exitcode": 127, "err-data": str(exc)})
            record["exited"] = 1
        threading.Thread(target=work, daemon=True, name=f"agent-exec-{guest.vmid}-{pid}").start()
        return pid

    def agent_exec_status(self, guest: Guest, pid: int) -> dict[str, Any]:
        self._agent(guest)
        record = self._exec.get((guest.vmid, int(pid)))
        if record is None:
            raise GuestError("Agent error: Invalid parameter 'pid'")
        return {k: v for k, v in record.items() if v != "" or k == "exited"}
