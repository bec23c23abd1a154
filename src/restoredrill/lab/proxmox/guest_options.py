"""Guest config options as the double declares them in code (the fallback when the
schema files are absent), and how ``GET .../config`` types their values on the wire.

Only the options the harness and the seeded guests use are declared; with the schema
files present every documented option is accepted (the schema is used instead).
"""
from __future__ import annotations

from typing import Any

from restoredrill.lab.proxmox.routing import BOOLEAN, INTEGER, NUMBER, STRING, optional

_S, _I, _B = optional(STRING), optional(INTEGER), optional(BOOLEAN)
VOLUME = optional(STRING, format="pve-volume-id")

QEMU_OPTIONS: dict[str, dict[str, Any]] = {
    "agent": _S, "args": _S, "audio0": _S, "balloon": optional(INTEGER, minimum=0), "bios": _S,
    "boot": _S, "ivshmem": _S, "parallel[n]": _S, "rng0": _S, "virtiofs[n]": _S,
    "cores": optional(INTEGER, minimum=1), "cpu": _S, "cpulimit": optional(NUMBER),
    "cpuunits": _I, "description": optional(STRING, maxLength=8192),
    "efidisk0": _S, "hookscript": VOLUME, "hostpci[n]": _S, "ide[n]": _S, "machine": _S,
    "memory": _S, "name": optional(STRING, format="dns-name"), "net[n]": _S, "numa": _B,
    "onboot": _B, "ostype": _S, "protection": _B, "sata[n]": _S, "scsi[n]": _S, "scsihw": _S,
    "serial[n]": _S, "smbios1": _S, "sockets": optional(INTEGER, minimum=1),
    "startup": optional(STRING, format="pve-startup-order"),
    "tags": optional(STRING, format="pve-tag-list"), "tpmstate0": _S, "usb[n]": _S,
    "vga": _S, "virtio[n]": _S, "vmgenid": _S,
}
LXC_OPTIONS: dict[str, dict[str, Any]] = {
    "arch": _S, "cores": optional(INTEGER, minimum=1), "cpulimit": optional(NUMBER),
    "cpuunits": _I, "description": optional(STRING, maxLength=8192), "dev[n]": _S,
    "features": _S, "hookscript": VOLUME, "hostname": optional(STRING, format="dns-name"),
    "memory": optional(INTEGER, minimum=16), "mp[n]": _S, "nameserver": _S, "net[n]": _S,
    "onboot": _B, "ostype": _S, "protection": _B, "rootfs": _S, "searchdomain": _S,
    "startup": optional(STRING, format="pve-startup-order"),
    "swap": optional(INTEGER, minimum=0), "tags": optional(STRING, format="pve-tag-list"),
    "timezone": _S, "tty": optional(INTEGER, minimum=0, maximum=6), "unprivileged": _B,
}
NUMERIC_KEYS = {
    "qemu": {"balloon", "cores", "cpulimit", "cpuunits", "migrate_downtime", "migrate_speed",
             "shares", "smp", "sockets", "vcpus", "acpi", "allow-ksm", "autostart", "freeze",
             "keephugepages", "kvm", "localtime", "numa", "onboot", "protection", "reboot",
             "tablet", "tdf", "template"},
    "lxc": {"cores", "cpulimit", "cpuunits", "memory", "swap", "tty", "console", "debug",
            "onboot", "protection", "template", "unprivileged"},
}


def typed_config(config: dict[str, str], kind: str) -> dict[str, Any]:
    """Config values as PVE answers them: numbers and booleans (0/1) as JSON numbers;
    raw ``lxc.*`` keys as the ``lxc`` list of [key, value] pairs."""
    result: dict[str, Any] = {}
    raw_lxc = []
    for key, value in config.items():
        if key.startswith("lxc."):
            raw_lxc.append([key, value])
        elif key in NUMERIC_KEYS[kind]:
            result[key] = _number(value)
        else:
            result[key] = value
    if raw_lxc:
        result["lxc"] = raw_lxc
    return result


def _number(value: str) -> int | float | str:
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def option_known(key: str, options: dict[str, dict[str, Any]]) -> bool:
    if key in options:
        return True
    stem = key.rstrip("0123456789")
    return stem != key and f"{stem}[n]" in options
