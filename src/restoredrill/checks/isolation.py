"""What a scratch guest must not keep from its backup, as pure functions.

From the backup's config (``vzdump/extractconfig``) compute the options passed with
the restore (they replace the backup's values) and the keys to delete before the
first start; and refuse to start what cannot be made safe (a hookscript, which runs
on the host and only root@pam may remove; the root-only settings of
:mod:`restoredrill.checks.guest_rights`).

A container's rootfs and volume mount points are sized from the backup's own config
(pve-container ``create_disks`` allocates exactly the GiB passed); ``protection`` is
always passed as 0 (the backup's value is kept otherwise, and a protected scratch guest
can never be destroyed); names are made valid ``dns-name`` values.
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from restoredrill.checks.guest_rights import property_string, root_only_refusals

QEMU_NET_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3")
QEMU_DELETE = (r"hostpci\d+", r"usb\d+", r"virtiofs\d+", r"serial\d+", r"parallel\d+", "ivshmem", "args",
               "audio0")
LXC_DELETE = (r"dev\d+", r"mp\d+")
EXPIRY_MARK = "restoredrill-expires:"
# Config keys whose values never reach evidence (JUnit, HTML, the bundle, state.db): the
# cloud-init credentials and user data of qemu-server (PVE/QemuServer.pm, cipassword is
# a crypt hash; sshkeys the authorized keys), notes (``description``: the ``#`` lines of
# the config file, free text), raw QEMU ``args`` and raw ``lxc.*`` keys (pve-container
# src/PVE/LXC/Config.pm: anything, lxc.environment included). Their keys still show.
REDACTED_KEYS = re.compile(r"cipassword|sshkeys|ciuser|cicustom|description|args|lxc\..+")
REDACTED = "<redacted>"


@dataclass
class IsolationPlan:
    create: dict[str, object]              # options passed with the restore
    delete: list[str]                      # config keys removed before the first start
    refusals: list[str] = field(default_factory=list)   # why the guest must not start
    notes: list[str] = field(default_factory=list)


def parse_config_text(text: str) -> dict[str, str]:
    """A guest config as extractconfig returns it (``key: value`` lines; comments and
    snapshot sections left out)."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("["):
            break
        if not line.strip() or line.startswith("#"):
            continue
        key, _, value = line.partition(":")
        config[key.strip()] = value.strip()
    return config


def isolated_net(kind: str, value: str, bridge: str) -> str:
    """netN moved onto the isolated bridge: model and addresses kept, MAC dropped (a new
    one is made), firewall/tag/rate settings dropped."""
    parts = dict(item.split("=", 1) if "=" in item else (item, "") for item in value.split(",") if item)
    if kind == "qemu":
        model = next((m for m in QEMU_NET_MODELS if m in parts), "virtio")
        return f"{model},bridge={bridge}"
    keep = {k: parts[k] for k in ("name", "ip", "ip6", "type") if k in parts}
    keep.setdefault("name", "eth0")
    keep["bridge"] = bridge
    return ",".join(f"{k}={v}" for k, v in keep.items())


def plan_isolation(kind: str, backup: dict[str, str], *, bridge: str, storage: str, pool: str, tag: str,
                   run_id: str, name: str, expires: datetime, snapshot_size: int = 0) -> IsolationPlan:
    """``snapshot_size``: the backup's size in bytes as PVE lists it (the sum of the PBS
    snapshot's files); sizes a container volume whose config has none."""
    tags = f"{tag};run-{re.sub(r'[^a-z0-9_-]', '-', run_id.lower())}"
    # protection: qemu-server restore_update_config_line keeps the backup's line, pve-container
    # sanitize_and_merge_config merges it; destroy then dies "can't remove VM N - protection
    # mode enabled" (check_protection). A passed option wins over the backup's in both.
    create: dict[str, object] = {"pool": pool, "tags": tags, "onboot": 0, "protection": 0,
                                 "description": f"restoredrill scratch guest of {name}; "
                                                f"{EXPIRY_MARK} {expires.isoformat(timespec='seconds')}"}
    nets = {key: value for key, value in backup.items() if re.fullmatch(r"net\d+", key)}
    for key, value in nets.items():
        create[key] = isolated_net(kind, value, bridge)
    patterns = QEMU_DELETE if kind == "qemu" else LXC_DELETE
    delete = [key for key in backup if any(re.fullmatch(p, key) for p in patterns)]
    plan = IsolationPlan(create, delete)
    if kind == "qemu":
        create["name"] = dns_name(f"drill-{name}")
        create["unique"] = 1
    else:
        create["hostname"] = dns_name(f"drill-{name}")
        # rootfs passed: pve-container leaves storage-only mode, so only the volumes passed
        # here come back (sanitize_and_merge_config: "don't recover mountpoints")
        create.update(container_volumes(backup, storage, snapshot_size, plan.notes))
        plan.delete = [k for k in plan.delete if not re.fullmatch(r"mp\d+", k)]
        if "features" in backup:
            plan.notes.append(f"features={backup['features']} kept (a token may not change them)")
        if any(key.startswith("lxc.") for key in backup):
            plan.notes.append("raw lxc.* keys are not restored for an API token (pve-container "
                              "sanitize_and_merge_config: 'skipping custom lxc options, restore manually as root')")
    plan.refusals += root_only_refusals(kind, backup)
    if "hookscript" in backup:
        plan.refusals.append(f"the backup's config has hookscript {backup['hookscript']!r}: it runs on the host "
                             f"when the guest starts, and only root@pam can remove it; remove it from the "
                             f"production guest or exempt the guest")
    if "startup" in backup:
        plan.notes.append("startup order kept: inert with onboot 0 (deleting it needs Sys.Modify on /)")
    if backup.get("ha-managed") or backup.get("ha"):
        plan.notes.append("HA state is not restored with the guest")
    return plan


GIB = 1024 ** 3
SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)([KMGT]?)")
DNS_LABEL_MAX = 63      # one DNS label (RFC 1035); also under the kernel's 64-byte hostname


def dns_name(text: str) -> str:
    """``text`` as one label of pve-common's ``dns-name`` format (``pve_verify_dns_name``:
    ``[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`` per label): accents folded to ASCII, every
    other character (``_``, ``.``, spaces, other scripts) a ``-``, runs collapsed, no ``-`` at
    either end, at most 63 characters."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    label = re.sub(r"[^A-Za-z0-9]+", "-", folded).strip("-")[:DNS_LABEL_MAX].rstrip("-")
    return label or "drill"


def size_bytes(text: str | None) -> int | None:
    """A PVE ``disk-size`` (``8G``, ``512M``, ``1073741824``; no unit = bytes) in bytes."""
    match = SIZE_RE.fullmatch((text or "").strip())
    if not match:
        return None
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2) or " "))


def margin_gib(snapshot_size: int) -> int:
    """The snapshot's size plus 20 % (at least 1 GiB), in whole GiB rounded up."""
    return math.ceil((snapshot_size + max(snapshot_size * 0.2, GIB)) / GIB)


def container_volumes(backup: dict[str, str], storage: str, snapshot_size: int, notes: list[str]) -> dict[str, str]:
    """``rootfs`` and every volume ``mpN`` as new volumes on ``storage`` (``<storage>:<GiB>``,
    pve-container ``$NEW_DISK_RE``), sized from the backup's ``size=`` rounded up to whole GiB;
    where the config has none (a ZFS subvolume: ``size=0T`` or no size; PVE itself dies "unable
    to detect disk size - please specify mp0 (size)"), from the snapshot plus a margin. Bind
    and device mount points are not passed (only root@pam may; they would expose host paths)."""
    volumes: dict[str, str] = {}
    keys = ["rootfs"] + sorted((k for k in backup if re.fullmatch(r"mp\d+", k)), key=lambda k: int(k[2:]))
    for key in keys:
        options = property_string(backup.get(key, ""), "volume")
        volume = options.get("volume", "")
        if key != "rootfs" and volume.startswith("/"):
            notes.append(f"{key} ({'device' if volume.startswith('/dev/') else 'bind'} mount of {volume}) not "
                         f"restored: only root@pam may, and it would expose a host path")
            continue
        size = size_bytes(options.get("size"))
        if size:
            gib = math.ceil(size / GIB)
        else:
            gib = margin_gib(snapshot_size)
            notes.append(f"{key} has no size in the backup's config: sized {gib} GiB from the snapshot "
                         f"({snapshot_size} bytes) plus a margin")
        kept = [f"{k}={options[k]}" for k in ("mp", "ro", "backup", "acl", "mountoptions") if k in options]
        volumes[key] = ",".join([f"{storage}:{gib}"] + (kept if key != "rootfs" else []))
    return volumes


def unsafe_keys(kind: str, config: dict[str, str], bridge: str) -> list[str]:
    """What still endangers the site in a scratch guest's config (checked before start)."""
    problems = []
    for key, value in config.items():
        if re.fullmatch(r"net\d+", key) and f"bridge={bridge}" not in value:
            problems.append(f"{key} is not on the isolated bridge {bridge}: {value}")
        if key == "onboot" and str(value) not in ("0", ""):
            problems.append("onboot is set")
        if key == "hookscript":
            problems.append(f"hookscript {value} would run on the host")
        if kind == "qemu" and any(re.fullmatch(p, key) for p in QEMU_DELETE[:5]):
            problems.append(f"{key} passes host hardware through: {value}")
        if kind == "lxc" and re.fullmatch(r"mp\d+|dev\d+", key) and ("/" in value.split(",")[0] and
                                                                    ":" not in value.split(",")[0]):
            problems.append(f"{key} exposes a host path: {value}")
        if key.startswith("lxc."):
            problems.append(f"raw {key} kept")
    return problems


def shown_value(key: str, value: object) -> str:
    """A config value as evidence may show it: secrets and free text as ``<redacted>``."""
    return REDACTED if REDACTED_KEYS.fullmatch(key) else str(value)


def config_diff(before: dict[str, object], after: dict[str, object]) -> dict[str, list]:
    """Backup config against the scratch guest's: changed keys with both values (redacted
    where :data:`REDACTED_KEYS` says), removed and added keys by name only."""
    keys = sorted(set(before) | set(after))
    return {"changed": [[k, shown_value(k, before[k]), shown_value(k, after[k])] for k in keys
                        if k in before and k in after and str(before[k]) != str(after[k])],
            "removed": [k for k in keys if k in before and k not in after],
            "added": [k for k in keys if k not in before and k in after]}


def expiry_of(description: str | None) -> datetime | None:
    match = re.search(rf"{EXPIRY_MARK}\s*(\S+)", description or "")
    if not match:
        return None
    try:
        return datetime.fromisoformat(match.group(1))
    except ValueError:
        return None
