"""Restore override semantics of qemu-server and pve-container, on plain configs (pure)."""
from __future__ import annotations

import re

from restoredrill.lab.proxmox.guests import net_mac, parse_config
from restoredrill.lab.proxmox.restore_config import (add_random_macs, drive_options,
                                                     merge_lxc_config, merge_overrides,
                                                     parse_drive_hints, qemu_overrides,
                                                     restore_qemu_config, size_in_gib)
from restoredrill.lab.proxmox.seed import CT_CONFIG, VM_CONFIG

VM_BACKUP, VM_HINTS = parse_config(VM_CONFIG + "lock: backup\nunused0: local-zfs:vm-110-disk-9\n")
CT_BACKUP, _ = parse_config(CT_CONFIG)
MAC_RE = re.compile(r"BC:24:11(:[0-9A-F]{2}){3}")


def test_vzdump_drive_hints_name_the_archives():
    (hint,) = parse_drive_hints(VM_HINTS)
    assert (hint.virtdev, hint.archive, hint.storage, hint.format) == (
        "scsi0", "drive-scsi0.img.fidx", "local-zfs", "raw")


def test_restored_qemu_config_points_at_new_volumes():
    restored = restore_qemu_config(VM_BACKUP, {"scsi0": "local-zfs:vm-9901-disk-0"},
                                   unique=False)
    assert restored["scsi0"] == "local-zfs:vm-9901-disk-0,iothread=1,size=16M"
    assert "lock" not in restored and "unused0" not in restored
    assert restored["vmgenid"] != VM_BACKUP["vmgenid"]          # always a fresh vmgenid
    assert restored["net0"] == VM_BACKUP["net0"]                # same MAC without unique
    unique = restore_qemu_config(VM_BACKUP, {}, unique=True)
    assert net_mac(unique["net0"]) != net_mac(VM_BACKUP["net0"])
    assert unique["smbios1"] != VM_BACKUP["smbios1"]


def test_qemu_options_beside_archive_replace_the_backups():
    params = {"node": "pve1", "vmid": 9901, "archive": "pbs:backup/vm/110/x", "unique": 1,
              "pool": "restoredrill", "name": "drill", "onboot": 0,
              "net0": "virtio,bridge=vmbr-drill"}
    overrides = add_random_macs(qemu_overrides(params), "qemu")
    assert set(overrides) == {"name", "onboot", "net0"}
    assert overrides["net0"].startswith("virtio=BC:24:11:") and \
        overrides["net0"].endswith(",bridge=vmbr-drill")
    merged = merge_overrides(restore_qemu_config(VM_BACKUP, {}, unique=True), overrides)
    assert merged["name"] == "drill" and merged["onboot"] == "0"
    assert merged["net0"] == overrides["net0"]              # the override wins over unique
    assert merged["cores"] == VM_BACKUP["cores"]  # untouched options stay


def test_drive_options_are_detected():
    assert drive_options({"scsi1": "x", "efidisk0": "y", "net0": "z", "name": "n"}) == [
        "efidisk0", "scsi1"]


def test_lxc_passed_options_win_and_the_backup_fills_the_rest():
    passed = {"hostname": "drill", "net0": "name=eth0,bridge=vmbr-drill,hwaddr=BC:24:11:00:00:01"}
    merged = merge_lxc_config(passed, CT_BACKUP, unique=False)
    assert merged.config["hostname"] == "drill" and merged.config["net0"] == passed["net0"]
    assert merged.config["features"] == "nesting=1" and merged.config["onboot"] == "1"
    assert "mp0" not in merged.config and "rootfs" not in merged.config
    assert "unprivileged" not in merged.config
    assert "lxc.cgroup2.devices.allow" not in merged.config
    assert merged.warnings and "skipping custom lxc options" in merged.warnings[0]


def test_lxc_unique_lets_the_backup_overwrite_your_net():
    passed = {"net0": "name=eth0,bridge=vmbr-drill"}
    merged = merge_lxc_config(passed, CT_BACKUP, unique=True)
    assert "bridge=vmbr0" in merged.config["net0"]          # the gotcha
    assert MAC_RE.search(merged.config["net0"])
    assert net_mac(merged.config["net0"]) != net_mac(CT_BACKUP["net0"])


def test_root_keeps_raw_lxc_keys():
    merged = merge_lxc_config({}, CT_BACKUP, unique=False, restricted=False)
    assert merged.config["lxc.cgroup2.devices.allow"] == "c 10:200 rwm" and not merged.warnings


def test_mount_point_sizes():
    assert size_in_gib("local-zfs:subvol-120-disk-0,size=1G") == 1
    assert size_in_gib("local-zfs:x,size=512M") == 0.5
