"""What a backup's config demands of the drill token, decided before any restore (pure).

An API token is never ``root@pam`` (pve-access-control: ``get_user`` is ``user@realm!token``),
so a setting only root may hold breaks a drill in one of two ways:

* the restore itself fails. qemu-server ``check_restore_permissions`` ->
  ``check_mapping_access`` (src/PVE/QemuServer.pm) dies "only root can set 'hostpciN' config
  for non-mapped devices" / "... 'usbN' config for real devices" for a raw host device.
  Since qemu-server 8.0 (commit 621edb2b, June 2023) it runs early, before the disks are
  written, when the backup's config can be extracted; before that, and as the "real check",
  after the disks were written (``restore_proxmox_backup_archive``). Either way the task
  ends before ``add_vm_to_pool``: the VM is left behind OUTSIDE the drill pool, where the
  pool guard (rightly) refuses to destroy it.
* the restore succeeds, but the delete before the first start fails: ``args``, ``ivshmem``,
  ``parallelN`` ("only root can set 'args' config", ``$check_vm_modify_config_perm`` in
  src/PVE/API2/Qemu.pm), a ``serialN`` that is not ``socket`` ("only root can delete
  'serial0' config for real devices", ``update_vm_api``), a mapped ``hostpciN`` with
  ``romfile`` (``check_hostpci_perm``), a container's ``devN`` ("configuring device
  passthrough is only allowed for root@pam", pve-container ``check_ct_modify_config_perm``).

Both are refused here with the setting named. Mapped devices need ``Mapping.Use`` on
``/mapping/{pci,usb,dir}/<id>`` (``check_mapping_access``, also for ``virtiofsN`` and an
``rng0`` from ``/dev/hwrng``), a privileged container ``Sys.Modify`` on ``/`` (pve-container
src/PVE/API2/LXC.pm ``create_vm``: "implicit privileged change, or creating a new privileged
container"): :func:`needed_rights` lists them, :func:`missing_rights` compares them with
what ``GET /access/permissions`` answered.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

EXEMPT = "exempt the guest from restore drills (a strategy other than pbs, with an exception reason)"


@dataclass(frozen=True)
class Right:
    path: str           # ACL path, e.g. /mapping/pci/nic-offload
    privilege: str      # e.g. Mapping.Use
    setting: str        # the config key that needs it
    why: str


def property_string(value: str, default_key: str) -> dict[str, str]:
    """A PVE property string (``[host=]0000:01:00.0,pcie=1``) as a dict; the first item
    without ``=`` is the default key."""
    parts: dict[str, str] = {}
    for number, item in enumerate(p for p in value.split(",") if p):
        key, sep, text = item.partition("=")
        if sep:
            parts[key.strip()] = text.strip()
        elif number == 0:
            parts[default_key] = item.strip()
    return parts


def _refuse_restore(key: str, value: str, what: str, fix: str) -> str:
    return (f"the backup's config has {key} {value!r} ({what}): PVE lets only root@pam restore it, so the "
            f"restore with an API token fails and leaves the VM outside the drill pool (qemu-server "
            f"check_restore_permissions); {fix}, or {EXEMPT}")


def _refuse_delete(key: str, value: str, rule: str) -> str:
    return (f"the backup's config has {key} {value!r}: the restore keeps it, but only root@pam may remove it "
            f"({rule}), so the scratch guest cannot be made safe before its first start; remove {key} from "
            f"the production guest, or {EXEMPT}")


def root_only_refusals(kind: str, config: Mapping[str, str]) -> list[str]:
    """Why a token cannot restore (or then isolate) this guest; empty when it can."""
    refusals: list[str] = []
    for key, value in sorted(config.items()):
        value = str(value)
        if kind == "qemu":
            refusals += _qemu_refusals(key, value)
        elif re.fullmatch(r"dev\d+", key):
            refusals.append(_refuse_delete(key, value, "pve-container check_ct_modify_config_perm: configuring "
                                                       "device passthrough is only allowed for root@pam"))
    return refusals


def _qemu_refusals(key: str, value: str) -> list[str]:
    if re.fullmatch(r"hostpci\d+", key):
        device = property_string(value, "host")
        if "mapping" not in device:
            return [_refuse_restore(key, value, "a host PCI device given by address, not by a resource mapping",
                                    f"map the device (Datacenter > Resource Mappings) and use {key}: mapping=<id> "
                                    f"in the production guest")]
        if "romfile" in device:
            return [_refuse_delete(key, value, "qemu-server check_hostpci_perm: only root@pam can set 'romfile'")]
    if re.fullmatch(r"usb\d+", key):
        device = property_string(value, "host")
        if "mapping" not in device and device.get("host", "").lower() != "spice":
            return [_refuse_restore(key, value, "a host USB device, not spice and not a resource mapping",
                                    f"map the device (Datacenter > Resource Mappings) and use {key}: mapping=<id> "
                                    f"in the production guest")]
    if key in ("args", "ivshmem") or re.fullmatch(r"parallel\d+", key):
        return [_refuse_delete(key, value, f"qemu-server $check_vm_modify_config_perm: only root can set '{key}' "
                                           f"config")]
    if re.fullmatch(r"serial\d+", key) and value != "socket":
        return [_refuse_delete(key, value, f"qemu-server update_vm: only root can delete '{key}' config for real "
                                           f"devices")]
    return []


def needed_rights(kind: str, config: Mapping[str, str]) -> list[Right]:
    """Privileges beyond the guest ones that the restore (and the deletes after it) check."""
    rights: list[Right] = []
    for key, value in sorted(config.items()):
        value = str(value)
        if kind == "qemu" and re.fullmatch(r"(hostpci|usb)\d+", key):
            mapping = property_string(value, "host").get("mapping")
            if mapping:
                family = "pci" if key.startswith("hostpci") else "usb"
                rights.append(Right(f"/mapping/{family}/{mapping}", "Mapping.Use", key,
                                    f"{key} uses the {family.upper()} mapping {mapping!r}"))
        elif kind == "qemu" and re.fullmatch(r"virtiofs\d+", key):
            dirid = property_string(value, "dirid").get("dirid", "")
            rights.append(Right(f"/mapping/dir/{dirid}", "Mapping.Use", key, f"{key} uses the directory mapping "
                                                                              f"{dirid!r}"))
        elif kind == "qemu" and re.fullmatch(r"rng\d+", key) and \
                property_string(value, "source").get("source") == "/dev/hwrng":
            rights.append(Right("/mapping/hwrng", "Mapping.Use", key, f"{key} reads the host's /dev/hwrng"))
    if kind == "lxc" and str(config.get("unprivileged", "0")) not in ("1", "true", "yes", "on"):
        rights.append(Right("/", "Sys.Modify", "unprivileged", "the container is privileged (no unprivileged: 1); "
                                                               "pve-container lets only holders of Sys.Modify "
                                                               "on / create a privileged container"))
    return rights


def missing_rights(needed: list[Right], granted: Mapping[str, Mapping[str, object]]) -> list[str]:
    """Refusals for each needed privilege that ``granted`` (``GET /access/permissions``:
    path -> privilege -> propagate) does not hold on its path."""
    refusals = []
    for right in needed:
        if right.privilege in granted.get(right.path, {}):
            continue
        refusals.append(f"{right.why}: the restore needs {right.privilege} on {right.path} and the drill token "
                        f"lacks it; grant it (pveum acl modify {right.path} --tokens <token> --roles <role with "
                        f"{right.privilege}>), or {EXEMPT}")
    return refusals
