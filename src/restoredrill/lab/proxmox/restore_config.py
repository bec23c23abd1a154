"""How a restore turns a backed-up guest config into the new guest's config (pure).

QEMU (qemu-server ``restore_update_config_line`` + ``restore_merge_config``): the
backup's lines are rewritten (``#qmdump#``/``lock``/``unusedN``/``parent`` dropped, each
restored drive pointed at its new volume, a fresh ``vmgenid``, with ``unique`` a new MAC
for every netN and a new smbios1 uuid), then every option passed beside ``archive``
REPLACES the backup's. Drive options beside ``archive`` are refused earlier.

LXC (pve-container ``sanitize_and_merge_config``): the options you pass are the base;
the backup fills only what you left unset, never ``rootfs``/``mpN``/``unusedN``/
``unprivileged``; raw ``lxc.*`` keys are skipped with a warning for anyone but root;
and with ``unique`` every netN of the backup gets a new MAC and OVERWRITES the netN you
passed (the gotcha: do not combine ``unique=1`` with a netN override).
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from restoredrill.lab.proxmox.guests import lxc_net_with_mac, qemu_net_with_mac, random_mac

QMDUMP_MAP_RE = re.compile(r"#qmdump#map:(\S+):(\S+):(\S*):(\S*):")
DRIVE_KEY_RE = re.compile(r"(ide|sata|scsi|virtio|efidisk|tpmstate)\d+")
API_ONLY_QEMU = ("node", "vmid", "archive", "bwlimit", "force", "pool", "start", "ha-managed",
                 "storage", "unique", "live-restore", "import-working-storage")
API_ONLY_LXC = ("node", "vmid", "ignore-unpack-errors", "bwlimit", "start", "ha-managed",
                "unprivileged", "restore", "unique", "force", "password", "ssh-public-keys",
                "pool", "ostemplate", "storage")


@dataclass(frozen=True)
class DriveHint:
    """``#qmdump#map:<virtdev>:<devname>:<storeid>:<format>:`` of a vzdump config."""

    virtdev: str        # scsi0
    devname: str        # drive-scsi0 (archive drive-scsi0.img.fidx)
    storage: str
    format: str

    @property
    def archive(self) -> str:
        return f"{self.devname}.img.fidx"


def parse_drive_hints(hints: list[str]) -> list[DriveHint]:
    found = []
    for line in hints:
        match = QMDUMP_MAP_RE.fullmatch(line.strip())
        if match:
            virtdev, devname, storage, fmt = match.groups()
            found.append(DriveHint(virtdev, devname, storage or "local", fmt or "raw"))
    return found


def drive_options(params: Mapping[str, object]) -> list[str]:
    return sorted(key for key in params if DRIVE_KEY_RE.fullmatch(key))


def qemu_overrides(params: Mapping[str, object]) -> dict[str, str]:
    """What is left of the create parameters once the API-only ones are taken out."""
    return {key: _config_text(value) for key, value in params.items()
            if key not in API_ONLY_QEMU}


def lxc_options(params: Mapping[str, object]) -> dict[str, str]:
    return {key: _config_text(value) for key, value in params.items()
            if key not in API_ONLY_LXC}


def _config_text(value: object) -> str:
    return str(int(value)) if isinstance(value, bool) or (
        isinstance(value, float) and value.is_integer()) else str(value)


def add_random_macs(options: dict[str, str], kind: str) -> dict[str, str]:
    """A passed netN without a MAC gets a new random one (``parse_net``/``print_net``)."""
    result = dict(options)
    for key, value in options.items():
        if re.fullmatch(r"net\d+", key):
            result[key] = qemu_net_with_mac(value) if kind == "qemu" else lxc_net_with_mac(value)
    return result


def restore_qemu_config(backup: Mapping[str, str], volumes: Mapping[str, str], *,
                        unique: bool) -> dict[str, str]:
    """``restore_update_config_line`` for each option of the backed-up VM config."""
    result: dict[str, str] = {}
    for key, value in backup.items():
        if key in ("lock", "parent") or key.startswith("unused"):
            continue
        if DRIVE_KEY_RE.fullmatch(key):
            result[key] = _point_drive(value, volumes.get(key))
        elif re.fullmatch(r"net\d+", key) and unique:
            result[key] = qemu_net_with_mac(value, random_mac())
        elif key == "vmgenid":
            result[key] = value if value == "0" else str(uuid.uuid4())
        elif key == "smbios1" and unique:
            result[key] = re.sub(r"uuid=[^,]+", f"uuid={uuid.uuid4()}", value)
        else:
            result[key] = value
    return result


def _point_drive(value: str, volid: str | None) -> str:
    if volid is None:
        return value
    parts = [p for p in value.split(",") if not p.startswith("format=")]
    if parts and "=" not in parts[0]:
        parts[0] = volid
    else:
        parts = [f"file={volid}" if p.startswith("file=") else p for p in parts]
    return ",".join(parts)


def merge_overrides(config: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """``restore_merge_config``: every passed option replaces the backup's value."""
    return {**config, **overrides}


@dataclass
class LxcMerge:
    config: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def merge_lxc_config(passed: Mapping[str, str], backup: Mapping[str, str], *,
                     unique: bool, restricted: bool = True) -> LxcMerge:
    """``sanitize_and_merge_config``: see the module docstring."""
    merged = LxcMerge(dict(passed))
    raw_lxc = {k: v for k, v in backup.items() if k.startswith("lxc.")}
    for key, value in backup.items():
        if key in ("digest", "rootfs", "snapshots", "unprivileged", "parent", "template") or \
                re.fullmatch(r"(mp|unused)\d+", key) or key.startswith("lxc."):
            continue
        if unique and re.fullmatch(r"net\d+", key):
            merged.config[key] = lxc_net_with_mac(value, random_mac())
            continue
        merged.config.setdefault(key, value)
    if raw_lxc and restricted:
        listing = "".join(f"{k}: {v}\n" for k, v in raw_lxc.items())
        merged.warnings.append("skipping custom lxc options, restore manually as root:\n"
                               f"--------------------------------\n{listing}"
                               "--------------------------------")
    elif raw_lxc:
        merged.config.update(raw_lxc)
    return merged


def split_mount_points(config: Mapping[str, str]) -> dict[str, str]:
    """The ``rootfs`` and ``mpN`` options of a container config."""
    return {k: v for k, v in config.items() if k == "rootfs" or re.fullmatch(r"mp\d+", k)}


def size_in_gib(value: str) -> float:
    """``size=8G`` of a mount point -> 8.0 (what create_disks expects)."""
    match = re.search(r"(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)", value)
    if not match:
        raise ValueError("unable to detect disk size")
    factor = {"": 1 / 1024 ** 3, "K": 1 / 1024 ** 2, "M": 1 / 1024, "G": 1, "T": 1024}
    return float(match.group(1)) * factor[match.group(2)]
