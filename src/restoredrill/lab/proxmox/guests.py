"""Guests of the double: a config, restored disks, a status, and a pluggable runtime.

A guest here is data: its config (``key: value`` lines as in
``/etc/pve/qemu-server/<vmid>.conf`` or ``/etc/pve/lxc/<vmid>.conf``), the files its
disks were restored into, and a run state. ``GuestRuntime`` is the seam where a later
issue plugs in real processes (network namespaces); ``StateOnlyRuntime`` here DOES NOT
RUN ANYTHING: start/stop only flip a state, and every guest-agent call fails like a guest
whose agent is not running (PVE: HTTP 500 "QEMU guest agent is not running"); no
command output is ever invented.
"""
from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

MAC_PREFIX = "BC:24:11"       # PVE's datacenter default mac_prefix
QEMU_NET_ORDER = ("bridge", "firewall", "link_down", "mtu", "queues", "rate", "tag", "trunks")
QEMU_NET_MODELS = ("e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e",
                   "i82551", "i82557b", "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139",
                   "virtio", "vmxnet3")


class GuestError(Exception):
    """A guest operation failed; the message is what PVE would say."""


class AgentNotRunning(GuestError):
    pass


@dataclass
class Guest:
    vmid: int
    kind: str                                   # "qemu" or "lxc"
    config: dict[str, str]
    status: str = "stopped"
    disks: dict[str, Path] = field(default_factory=dict)   # virtdev -> image file/dir
    started_at: float | None = None
    ha_managed: bool = False

    @property
    def name(self) -> str:
        return self.config.get("name") or self.config.get("hostname") or f"VM{self.vmid}"

    @property
    def protected(self) -> bool:
        return self.config.get("protection") in ("1", 1)

    @property
    def uptime(self) -> int:
        return int(time.time() - self.started_at) if self.started_at else 0

    @property
    def disk_size(self) -> int:
        """Restored image sizes, or the sizes the config declares (production guests)."""
        if self.disks:
            return sum(_size_of(path) for path in self.disks.values())
        return sum(_declared_size(value) for key, value in self.config.items()
                   if re.fullmatch(r"(scsi|virtio|sata|ide)\d+|rootfs", key))


def _declared_size(value: str) -> int:
    match = re.search(r"(?:^|,)size=(\d+)([KMGT]?)", value)
    if not match:
        return 0
    return int(match.group(1)) * 1024 ** " KMGT".index(match.group(2) or " ")


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return 0


# --- config text ------------------------------------------------------------------------
def parse_config(text: str) -> tuple[dict[str, str], list[str]]:
    """Config lines -> (options, ``#qmdump#`` hint lines). Leading ``#`` lines form the
    description; sections (``[snapshot]``, ``[PENDING]``) end the current config."""
    options: dict[str, str] = {}
    hints: list[str] = []
    description: list[str] = []
    for line in text.splitlines():
        if line.startswith("["):
            break
        if line.startswith("#qmdump#") or line.startswith("#vzdump#"):
            hints.append(line)
        elif line.startswith("#"):
            description.append(line[1:])
        elif ":" in line:
            key, _, value = line.partition(":")
            options[key.strip()] = value.strip()
    if description:
        options["description"] = "\n".join(description)
    return options, hints


def render_config(options: dict[str, str], hints: list[str] = ()) -> str:
    lines = [f"#{line}" for line in options.get("description", "").splitlines()]
    lines += [f"{key}: {value}" for key, value in sorted(options.items())
              if key != "description"]
    return "\n".join([*lines, *hints]) + "\n"


def random_mac(rng: random.Random | None = None) -> str:
    rng = rng or random.SystemRandom()
    return MAC_PREFIX + "".join(f":{rng.randrange(256):02X}" for _ in range(3))


def split_property_string(value: str) -> list[tuple[str, str]]:
    return [tuple(p.split("=", 1)) if "=" in p else ("", p) for p in value.split(",") if p]


def qemu_net_with_mac(value: str, mac: str | None = None) -> str:
    """``parse_net`` + ``print_net``: model=MAC first, a MAC made when none (or ``mac``)."""
    pairs = split_property_string(value)
    model, macaddr, rest = None, None, {}
    for key, item in pairs:
        if key in QEMU_NET_MODELS:
            model, macaddr = key, item
        elif key in ("model", ""):
            model = item
        elif key == "macaddr":
            macaddr = item
        else:
            rest[key] = item
    model = model or "virtio"
    macaddr = mac or macaddr or random_mac()
    ordered = [f"{model}={macaddr}"] + [f"{k}={rest[k]}" for k in QEMU_NET_ORDER if k in rest]
    ordered += [f"{k}={v}" for k, v in rest.items() if k not in QEMU_NET_ORDER]
    return ",".join(ordered)


def lxc_net_with_mac(value: str, mac: str | None = None) -> str:
    """``parse_lxc_network`` + print: ``hwaddr`` made when none (or replaced by ``mac``)."""
    pairs = [(k, v) for k, v in split_property_string(value) if k]
    if mac is not None or not any(k == "hwaddr" for k, _ in pairs):
        pairs = [(k, v) for k, v in pairs if k != "hwaddr"] + [("hwaddr", mac or random_mac())]
    name = [p for p in pairs if p[0] == "name"]
    rest = sorted(p for p in pairs if p[0] != "name")
    return ",".join(f"{k}={v}" for k, v in name + rest)


def net_mac(value: str) -> str | None:
    for key, item in split_property_string(value):
        if key in QEMU_NET_MODELS or key in ("macaddr", "hwaddr"):
            return item
    return None


# --- the runtime seam -------------------------------------------------------------------
class GuestRuntime(Protocol):
    """What runs a guest. Implementations raise GuestError with PVE's wording."""

    def start(self, guest: Guest) -> None: ...
    def stop(self, guest: Guest) -> None: ...
    def status(self, guest: Guest) -> str: ...
    def agent_ping(self, guest: Guest) -> dict[str, Any]: ...
    def agent_network_interfaces(self, guest: Guest) -> list[dict[str, Any]]: ...
    def agent_exec(self, guest: Guest, command: list[str], input_data: str | None) -> int: ...
    def agent_exec_status(self, guest: Guest, pid: int) -> dict[str, Any]: ...


class StateOnlyRuntime:
    """Tracks run state only. It does NOT run anything: no process, no network, no agent.

    ``start_failure(vmid)`` (the fault hook) may return an error text that makes start
    fail the way a real ``vm_start`` failure would.
    """

    def __init__(self, start_failure: Callable[[int], str | None] = lambda _vmid: None):
        self.start_failure = start_failure
        self._lock = threading.Lock()

    def start(self, guest: Guest) -> None:
        with self._lock:
            if guest.status == "running":
                raise GuestError(f"VM {guest.vmid} already running")
            failure = self.start_failure(guest.vmid)
            if failure:
                raise GuestError(failure)
            guest.status, guest.started_at = "running", time.time()

    def stop(self, guest: Guest) -> None:
        with self._lock:
            guest.status, guest.started_at = "stopped", None

    def status(self, guest: Guest) -> str:
        return guest.status

    def _agent(self, guest: Guest) -> None:
        if guest.status != "running":
            raise GuestError(f"VM {guest.vmid} is not running")
        if not re.match(r"(enabled=)?1\b", guest.config.get("agent", "0")):
            raise GuestError("No QEMU guest agent configured")
        raise AgentNotRunning("QEMU guest agent is not running")

    def agent_ping(self, guest: Guest) -> dict[str, Any]:
        self._agent(guest)
        return {}

    def agent_network_interfaces(self, guest: Guest) -> list[dict[str, Any]]:
        self._agent(guest)
        return []

    def agent_exec(self, guest: Guest, command: list[str], input_data: str | None) -> int:
        self._agent(guest)
        return 0

    def agent_exec_status(self, guest: Guest, pid: int) -> dict[str, Any]:
        self._agent(guest)
        return {}
