"""Tokens, ACLs and the per-option privilege rules of qemu-server / pve-container (pure)."""
from __future__ import annotations

import stat

import pytest

from restoredrill.lab.proxmox import homelab
from restoredrill.lab.proxmox.permissions import (AuthFailed, PermissionDenied, TokenRegistry,
                                                  acl, bridge_acl_path, check_lxc_option,
                                                  check_qemu_option, has_privs, require,
                                                  require_vm)


@pytest.fixture
def drill(tmp_path):
    return TokenRegistry("pve").create(homelab.PVE_DRILL_TOKEN, homelab.pve_drill_acl(),
                                       tmp_path)


def test_secrets_live_in_private_files_and_headers_use_the_real_formats(tmp_path):
    pve, pbs = TokenRegistry("pve"), TokenRegistry("pbs")
    one = pve.create("root@pam!admin", [acl("/", "*")], tmp_path)
    two = pbs.create("root@pam!admin", [acl("/", "*")], tmp_path)
    assert stat.S_IMODE(one.secret_file.stat().st_mode) == 0o600
    assert one.secret_file.read_text().strip() == one.secret != two.secret
    assert pve.authenticate(f"PVEAPIToken=root@pam!admin={one.secret}") is one
    assert pbs.authenticate(f"PBSAPIToken=root@pam!admin:{two.secret}") is two
    assert one.secret not in repr(one)
    for header, words in ((None, "No ticket"), (f"PVEAPIToken=root@pam!admin={two.secret}",
                                                "invalid token value!"),
                          (f"PVEAPIToken=root@pam!other={one.secret}", "no such token 'other'"),
                          ("Basic cm9vdDpwYXNz", "invalid token format")):
        with pytest.raises(AuthFailed, match=words):
            pve.authenticate(header)
    with pytest.raises(AuthFailed):
        pbs.authenticate(f"PBSAPIToken=root@pam!admin={two.secret}")   # '=' is PVE's form


def test_pool_acls_reach_member_guests_only(drill):
    assert has_privs(drill, "/vms/9901", ["VM.PowerMgmt"], pools=["restoredrill"])
    assert not has_privs(drill, "/vms/110", ["VM.PowerMgmt"], pools=["prod"])
    assert has_privs(drill, "/vms/110", ["VM.Audit", "VM.Backup"])     # audit and backups
    require_vm(drill, 9901, ["VM.Allocate"], pools=[], pool="restoredrill")
    with pytest.raises(PermissionDenied, match=r"\(/vms/110, VM.PowerMgmt\)"):
        require_vm(drill, 110, ["VM.PowerMgmt"], pools=["prod"])
    with pytest.raises(PermissionDenied, match=r"/sdn/zones/localnetwork/vmbr0, SDN.Use"):
        require(drill, bridge_acl_path("virtio=BC:24:11:00:00:01,bridge=vmbr0"), ["SDN.Use"])
    require(drill, bridge_acl_path("name=eth0,bridge=vmbr-drill"), ["SDN.Use"])


def rules(token, pools=("restoredrill",)):
    seen = []

    def on_guest(privs):
        seen.append(tuple(privs))
        require_vm(token, 9901, privs, list(pools))

    def on_path(path, privs):
        seen.append((path, *privs))
        require(token, path, privs)
    return seen, on_guest, on_path


@pytest.fixture
def configurer(tmp_path):
    """A token with every guest-config privilege on the drill pool (the option rules, not
    the drill token's exact ACL, are under test here)."""
    privs = ("VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network",
             "VM.Config.Options", "VM.Config.HWType", "VM.Allocate")
    return TokenRegistry("pve").create("configurer@pve!t", [
        acl("/pool/restoredrill", *privs), acl("/mapping/pci/nic-offload", "Mapping.Use")],
        tmp_path)


def test_qemu_option_privileges(configurer):
    seen, on_guest, on_path = rules(configurer)
    for option, value in (("name", "x"), ("onboot", "0"), ("net0", "virtio"), ("cores", "2"),
                          ("hostpci0", "mapping=nic-offload,pcie=1"), ("scsi0", "x"),
                          ("tags", "a")):
        check_qemu_option(option, value, on_guest, on_path)
    assert ("VM.Config.Network",) in seen and ("/mapping/pci/nic-offload", "Mapping.Use") in seen
    for option, value, words in (("hookscript", "local:snippets/x", "only root can set"),
                                 ("args", "-cpu host", "only root can set 'args'"),
                                 ("hostpci0", "0000:01:00.0", "non-mapped devices"),
                                 ("startup", "order=1", r"\(/, Sys.Modify\)")):
        with pytest.raises(PermissionDenied, match=words):
            check_qemu_option(option, value, on_guest, on_path)


def test_lxc_option_privileges(configurer):
    _seen, on_guest, _on_path = rules(configurer)
    for option, value in (("hostname", "x"), ("memory", "512"), ("features", "nesting=1"),
                          ("rootfs", "local-zfs:1"), ("onboot", "0")):
        check_lxc_option(option, value, on_guest)
    check_lxc_option("mp0", "/srv/media,mp=/mnt/media", on_guest, deleting=True)
    for option, value, words in (("hookscript", "local:snippets/x", "only allowed for root"),
                                 ("mp0", "/srv/media,mp=/mnt", "mount point type bind"),
                                 ("dev0", "/dev/ttyUSB0", "device passthrough"),
                                 ("features", "fuse=1", "except nesting")):
        with pytest.raises(PermissionDenied, match=words):
            check_lxc_option(option, value, on_guest)


def test_a_production_guest_is_out_of_reach(drill):
    _seen, on_guest, on_path = rules(drill, pools=("prod",))
    with pytest.raises(PermissionDenied):
        check_qemu_option("onboot", "0", on_guest, on_path)
