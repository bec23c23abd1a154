"""The restore plan for a scratch guest, as real PVE needs it (pure; issue 13 points 1-3, 11).

Container volumes are sized from the backup (pve-container ``create_disks`` allocates
exactly the GiB passed), ``protection`` is passed as 0, root-only settings are refused
before any restore, mapped devices and privileged containers name the privilege they
need, and names pass pve-common's ``dns-name`` format.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from restoredrill.checks.guest_rights import Right, missing_rights, needed_rights, root_only_refusals
from restoredrill.checks.isolation import GIB, container_volumes, dns_name, margin_gib, plan_isolation, size_bytes
from restoredrill.lab.proxmox.validate import check_named_format

WHEN = datetime(2026, 1, 1, tzinfo=timezone.utc)


def plan(kind: str, backup: dict[str, str], name: str = "app", snapshot_size: int = 0):
    return plan_isolation(kind, backup, bridge="vmbr-drill", storage="local-zfs", pool="restoredrill",
                          tag="restoredrill", run_id="R1", name=name, expires=WHEN, snapshot_size=snapshot_size)


# --- point 1: container volumes sized from the backup -----------------------------------
@pytest.mark.parametrize(("size", "gib"), [("8G", 8), ("1G", 1), ("1536M", 2), ("2.5G", 3), ("1T", 1024),
                                           ("10737418241", 11), ("512K", 1)])
def test_rootfs_is_sized_from_the_backup_rounded_up_to_whole_gib(size, gib):
    ct = plan("lxc", {"rootfs": f"local-zfs:subvol-120-disk-0,size={size}", "unprivileged": "1"})
    assert ct.create["rootfs"] == f"local-zfs:{gib}"


def test_a_big_container_never_gets_the_old_one_gib_default():
    ct = plan("lxc", {"rootfs": "local-lvm:vm-120-disk-0,size=32G", "unprivileged": "1"})
    assert ct.create["rootfs"] == "local-zfs:32"


@pytest.mark.parametrize("rootfs", ["local-zfs:subvol-120-disk-0,size=0T", "local-zfs:subvol-120-disk-0"])
def test_a_zfs_subvolume_without_size_is_sized_from_the_snapshot_plus_a_margin(rootfs):
    ct = plan("lxc", {"rootfs": rootfs, "unprivileged": "1"}, snapshot_size=10 * GIB)
    assert ct.create["rootfs"] == "local-zfs:12"                      # 10 GiB + 20 %
    assert any("rootfs has no size" in note for note in ct.notes)
    small = plan("lxc", {"rootfs": rootfs, "unprivileged": "1"}, snapshot_size=300 * 1024 ** 2)
    assert small.create["rootfs"] == "local-zfs:2"                    # + at least 1 GiB, rounded up


def test_margin_is_twenty_percent_and_at_least_one_gib():
    assert margin_gib(0) == 1 and margin_gib(GIB) == 2 and margin_gib(5 * GIB) == 6 and margin_gib(20 * GIB) == 24


def test_volume_mount_points_are_passed_sized_and_bind_mounts_are_dropped():
    notes: list[str] = []
    volumes = container_volumes({"rootfs": "local-zfs:subvol-120-disk-0,size=4G",
                                 "mp0": "/srv/media,mp=/mnt/media,backup=0",
                                 "mp1": "local-zfs:subvol-120-disk-1,mp=/var/lib/db,backup=1,size=20G",
                                 "mp2": "volume=local-zfs:subvol-120-disk-2,mp=/data,size=0T,ro=1",
                                 "mp10": "/dev/sdb1,mp=/mnt/disk"}, "scratch", 3 * GIB, notes)
    assert volumes == {"rootfs": "scratch:4", "mp1": "scratch:20,mp=/var/lib/db,backup=1",
                       "mp2": "scratch:4,mp=/data,ro=1"}
    assert any("mp0 (bind mount of /srv/media)" in n for n in notes)
    assert any("mp10 (device mount of /dev/sdb1)" in n for n in notes)


def test_size_parsing_follows_pve_disk_size():
    assert size_bytes("8G") == 8 * GIB and size_bytes("1024") == 1024 and size_bytes("0T") == 0
    assert size_bytes(None) is None and size_bytes("big") is None


# --- point 2: protection ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["qemu", "lxc"])
def test_protection_is_always_switched_off(kind):
    backup = {"protection": "1", "unprivileged": "1", "rootfs": "local-zfs:subvol-1-disk-0,size=1G"}
    assert plan(kind, backup).create["protection"] == 0


# --- point 3: root-only settings, mappings, privileged containers -------------------------
@pytest.mark.parametrize(("key", "value", "words"), [
    ("hostpci0", "0000:01:00.0,pcie=1", "outside the drill pool"),
    ("hostpci1", "host=0000:02:00.0", "outside the drill pool"),
    ("usb0", "host=1-1.2", "outside the drill pool"),
    ("usb1", "host=046d:c52b", "outside the drill pool"),
    ("args", "-cpu host", "only root can set 'args' config"),
    ("ivshmem", "size=32", "only root can set 'ivshmem' config"),
    ("parallel0", "/dev/parport0", "only root can set 'parallel0' config"),
    ("serial0", "/dev/ttyS0", "only root can delete 'serial0' config for real devices"),
    ("hostpci2", "mapping=gpu,romfile=vbios.bin", "only root@pam can set 'romfile'"),
])
def test_root_only_vm_settings_are_refused_naming_the_setting_and_the_fix(key, value, words):
    refusals = plan("qemu", {key: value, "name": "app"}).refusals
    assert len(refusals) == 1 and key in refusals[0] and words in refusals[0]
    assert "production guest" in refusals[0] and "exempt the guest" in refusals[0]


@pytest.mark.parametrize(("key", "value"), [("usb0", "host=spice"), ("usb1", "spice,usb3=1"),
                                            ("serial0", "socket"), ("hostpci0", "mapping=nic-offload,pcie=1"),
                                            ("usb2", "mapping=token-key")])
def test_settings_a_token_may_restore_and_delete_are_not_refused(key, value):
    assert root_only_refusals("qemu", {key: value}) == []


def test_container_device_passthrough_is_refused():
    refusals = plan("lxc", {"dev0": "/dev/ttyUSB0,gid=20", "unprivileged": "1"}).refusals
    assert len(refusals) == 1 and "dev0" in refusals[0] and "device passthrough" in refusals[0]


def test_mapped_devices_and_privileged_containers_need_named_privileges():
    vm = needed_rights("qemu", {"hostpci0": "mapping=nic-offload,pcie=1", "usb0": "mapping=yubikey",
                                "virtiofs0": "share,cache=auto", "rng0": "source=/dev/hwrng", "rng1": "/dev/urandom"})
    assert [(r.path, r.privilege, r.setting) for r in vm] == [
        ("/mapping/pci/nic-offload", "Mapping.Use", "hostpci0"), ("/mapping/hwrng", "Mapping.Use", "rng0"),
        ("/mapping/usb/yubikey", "Mapping.Use", "usb0"), ("/mapping/dir/share", "Mapping.Use", "virtiofs0")]
    assert [(r.path, r.privilege) for r in needed_rights("lxc", {"hostname": "x"})] == [("/", "Sys.Modify")]
    assert [(r.path, r.privilege) for r in needed_rights("lxc", {"unprivileged": "0"})] == [("/", "Sys.Modify")]
    assert needed_rights("lxc", {"unprivileged": "1"}) == []


def test_missing_rights_name_the_mapping_and_the_privilege():
    needed = [Right("/mapping/pci/gpu", "Mapping.Use", "hostpci0", "hostpci0 uses the PCI mapping 'gpu'"),
              Right("/", "Sys.Modify", "unprivileged", "the container is privileged")]
    granted = {"/mapping/pci/gpu": {}, "/": {"Sys.Audit": 1}}
    refusals = missing_rights(needed, granted)
    assert len(refusals) == 2
    assert "PCI mapping 'gpu'" in refusals[0] and "Mapping.Use on /mapping/pci/gpu" in refusals[0]
    assert "privileged" in refusals[1] and "Sys.Modify on /" in refusals[1]
    assert missing_rights(needed, {"/mapping/pci/gpu": {"Mapping.Use": 1}, "/": {"Sys.Modify": 0}}) == []


def test_the_lab_seed_guests_are_not_refused():
    from restoredrill.checks.isolation import parse_config_text
    from restoredrill.lab.proxmox.seed import CT_CONFIG, VM_CONFIG
    vm, ct = plan("qemu", parse_config_text(VM_CONFIG)), plan("lxc", parse_config_text(CT_CONFIG))
    assert vm.refusals == [] and ct.refusals == []
    assert ct.create["rootfs"] == "local-zfs:1" and "mp0" not in ct.create
    assert any("lxc" in note for note in ct.notes)


# --- point 11: names ----------------------------------------------------------------------
HOSTILE = ["app_vm", "app.vm.example", "Ünïcödé-gäst", "日本語", "-lead-and-trail-", "a" * 70,
           "web server #1", "db..primary", "x" * 57 + "_" + "y" * 20, "..", "名-".join("ab") * 30]


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("kind", ["qemu", "lxc"])
def test_names_sent_with_the_restore_pass_the_dns_name_format(kind, name):
    created = plan(kind, {"unprivileged": "1"}, name=name).create
    sent = created["name" if kind == "qemu" else "hostname"]
    assert check_named_format("dns-name", sent) is None, sent
    assert len(sent) <= 63 and not re.search(r"^[-.]|[-.]$", sent) and sent.startswith("drill")


def test_names_keep_what_is_readable():
    assert dns_name("drill-app_vm") == "drill-app-vm"
    assert dns_name("drill-Ünïcödé gäst") == "drill-Unicode-gast"
    assert dns_name("drill-" + "a" * 70) == "drill-" + "a" * 57
    assert dns_name("drill-" + "a" * 56 + "_b") == "drill-" + "a" * 56      # no trailing '-' after the cut
    assert dns_name("___") == "drill"
