"""The restore plan meets the rules of real PVE, through the real PveClient and the double
(issue 13 points 1, 2, 3, 11). Each test fails if the client ignored the behaviour:

* a container gets the rootfs/mount-point sizes of its backup (the old ``rootfs=<storage>:1``
  makes the double's restore fail: the data does not fit, as pve-container's create_disks
  allocates exactly what is passed);
* a backup with ``protection: 1`` becomes a scratch guest that can be destroyed;
* root-only settings and missing mapping/Sys.Modify privileges are refused before any
  restore (without the refusal the double leaves a VM outside the drill pool, or the delete
  before the first start fails);
* hostile guest names are sent as valid ``dns-name`` values (the double validates them).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from itertools import count

import pytest

from restoredrill.checks.isolation import parse_config_text, plan_isolation
from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint
from restoredrill.clients.pve import GuardError, PveClient, ScratchGuard, TaskFailed
from restoredrill.fixtures.pbs_restore import ScratchGuest
from restoredrill.inventory.model import Guest
from restoredrill.lab.proxmox import ProxmoxDouble, homelab, seed
from restoredrill.lab.proxmox.double import _info
from restoredrill.lab.pxarwrite import Node, encode
from restoredrill.lab.proxmox.permissions import acl
from restoredrill.lab.proxmox.testing import pve_api, restore_drill_inventory, wait_task
from restoredrill.lab.proxmox.validate import check_named_format
from restoredrill.plan import PlanError

pytestmark = pytest.mark.integration
MIB = 1024 ** 2
VMIDS = count(700)      # production-side VMIDs of the backups written here
SCRATCH = range(9900, 10000)


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("restore-rules")) as running:
        yield running


@pytest.fixture(scope="module")
def inventory(double, tmp_path_factory):
    return restore_drill_inventory(double, tmp_path_factory.mktemp("inventory"), "rules")


def token_acl(*extra):
    """The drill token's ACL plus VM.Config.Disk (a container restore passes rootfs/mpN:
    pve-container check_ct_modify_config_perm) and whatever a test adds."""
    return homelab.pve_drill_acl() + [acl(f"/pool/{homelab.DRILL_POOL}", "VM.Config.Disk"), *extra]


def client_for(double, token) -> PveClient:
    endpoint = Endpoint(double.pve_url, token.token_id, token.secret(), double.fingerprint, True, "PVE")
    return PveClient(ApiChokePoint(endpoint), ScratchGuard(SCRATCH.start, SCRATCH.stop - 1, "restoredrill",
                                                           homelab.DRILL_POOL))


@pytest.fixture(scope="module")
def pve(double) -> PveClient:
    token = double.pve_tokens.create("restoredrill@pve!rules", token_acl(), double.base_dir / "secrets")
    return client_for(double, _info(token))


@pytest.fixture(scope="module")
def pve_sys_modify(double) -> PveClient:
    token = double.pve_tokens.create("restoredrill@pve!rules-root", token_acl(acl("/", "Sys.Modify")),
                                     double.base_dir / "secrets")
    return client_for(double, _info(token))


@pytest.fixture(scope="module")
def admin(double):
    return pve_api(double, double.admin_token)


@pytest.fixture(autouse=True)
def scratch_left_clean(double, admin):
    """Every test ends with nothing in the scratch range (the admin sweeps what PVE left)."""
    yield
    for vmid in [v for v in list(double.pve_state.guests) if v in SCRATCH]:
        kind = double.pve_state.guests[vmid].kind
        getattr(admin.nodes(double.node), kind)(vmid).config.put(protection=0)
        wait_task(admin, double.node, getattr(admin.nodes(double.node), kind)(vmid).delete(purge=1))


# --- backups written for these tests -------------------------------------------------------
def write_backup(double, kind: str, config: str, files: dict[str, bytes] | None = None,
                 ct_archives: dict[str, bytes] | None = None) -> int:
    """A finished snapshot of a new production VMID in the ``pbs`` storage's datastore."""
    vmid = next(VMIDS)
    when = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    storage = double.pve_state.storages["pbs"]
    if kind == "qemu":
        config += f"scsi0: local-zfs:vm-{vmid}-disk-0,size=1M\n#qmdump#map:scsi0:drive-scsi0:local-zfs:raw:\n"
        archives = {"qemu-server.conf.blob": config.encode(), "drive-scsi0.img.fidx": b"\0" * 65536}
    else:
        archives = {"pct.conf.blob": config.encode(),
                    **(ct_archives or seed.make_pxar_of(files or {"etc/hostname": b"ct\n"}, when))}
    double.stores[storage.datastore].writer(seed.BACKUP_OWNER).write_snapshot(
        getattr(storage, "namespace", None), "vm" if kind == "qemu" else "ct", str(vmid), when, archives,
        crypt=storage.crypt if kind == "qemu" else None, dynamic_avg_size=seed.CT_CHUNK_AVG)
    return vmid


def lifecycle(double, inventory, pve, kind: str, vmid: int, name: str = "rules-guest") -> ScratchGuest:
    guest = Guest(name="rules-guest", vmid=vmid, type=kind, node=double.node, strategy="pbs", snapshot="latest")
    if name != guest.name:
        guest = guest.model_copy(update={"name": name})     # hostile names never pass the inventory
    return ScratchGuest(guest, inventory, pve, "R1", lambda _text: None)


def facts_of(double, pve, scratch: ScratchGuest, kind: str, vmid: int) -> dict:
    """The part of ``preflight`` these tests need (the only snapshot of ``vmid``, its config,
    a free scratch VMID), so that they exercise ``restore()`` alone."""
    [snapshot] = [item for item in pve.backups(double.node, "pbs", vmid) if item.get("subtype") == kind]
    scratch.vmid = scratch.free_vmid()
    return {"snapshot": snapshot, "config": parse_config_text(pve.extract_config(double.node, snapshot["volid"]))}


def restore(double, inventory, pve, kind: str, vmid: int, name: str = "rules-guest") -> ScratchGuest:
    scratch = lifecycle(double, inventory, pve, kind, vmid, name)
    facts = facts_of(double, pve, scratch, kind, vmid)
    scratch.restore(facts["snapshot"], facts["config"])
    return scratch


def raw_restore(double, inventory, pve, kind: str, vmid: int, **change) -> tuple[int, str]:
    """The restore the old client would have sent: the plan's overrides without its refusals."""
    scratch = lifecycle(double, inventory, pve, kind, vmid)
    facts = facts_of(double, pve, scratch, kind, vmid)
    plan = plan_isolation(kind, facts["config"], bridge=inventory.scratch.bridge, storage="local-zfs",
                          pool=homelab.DRILL_POOL, tag="restoredrill", run_id="R1", name="old",
                          expires=datetime.now(timezone.utc) + timedelta(hours=1),
                          snapshot_size=int(facts["snapshot"].get("size", 0)))
    overrides = {k: v for k, v in {**plan.create, **change}.items() if v is not None}
    upid = pve.restore(double.node, kind, scratch.vmid, facts["snapshot"]["volid"], "local-zfs", overrides)
    return scratch.vmid, upid


def scratch_vmids(double) -> list[int]:
    return sorted(v for v in double.pve_state.guests if v in SCRATCH)


CT = "arch: amd64\nhostname: rules\nmemory: 256\nostype: debian\nunprivileged: 1\n"
VM = "memory: 512\nname: rules\nostype: l26\n"


# --- GET /access/permissions ---------------------------------------------------------------
def test_permissions_name_what_the_token_holds_on_each_path(pve):
    """With ``path`` the path is always in the answer, propagated ACLs (``/``) included."""
    mapping = pve.permissions("/mapping/pci/nic-offload")
    assert list(mapping) == ["/mapping/pci/nic-offload"] and mapping["/mapping/pci/nic-offload"]["Mapping.Use"] == 1
    gpu = pve.permissions("/mapping/pci/gpu")
    assert list(gpu) == ["/mapping/pci/gpu"] and "Mapping.Use" not in gpu["/mapping/pci/gpu"]
    assert "Sys.Modify" not in pve.permissions("/")["/"]
    whole = pve.permissions()
    assert "VM.Allocate" in whole[f"/pool/{homelab.DRILL_POOL}"] and "Mapping.Use" in whole["/mapping/pci/nic-offload"]


# --- point 1: sizes -------------------------------------------------------------------------
def test_the_rootfs_gets_the_size_of_the_backup(double, inventory, pve):
    vmid = write_backup(double, "lxc", CT + "rootfs: local-zfs:subvol-1-disk-0,size=6G\n")
    scratch = restore(double, inventory, pve, "lxc", vmid)
    assert re.search(r"(^|,)size=6G(,|$)", pve.config(double.node, "lxc", scratch.vmid)["rootfs"])


def test_data_larger_than_the_old_volume_fails_it_and_fits_the_plan(double, inventory, pve):
    """The old default rootfs was 1 GiB; pxar has no sparse files (the tar stand-in's 2 GiB
    sparse member cannot be written), so the same story is told 1000x smaller: 2 MiB of data
    against a ``local-zfs:0.001`` volume (create_disks: int(0.001 * 1024) MiB = 1 MiB)."""
    vmid = write_backup(double, "lxc", CT + "rootfs: local-zfs:subvol-1-disk-0,size=3G\n",
                        {"etc/hostname": b"ct\n", "srv/data.img": b"\0" * (2 * MIB)})
    old, upid = raw_restore(double, inventory, pve, "lxc", vmid, rootfs="local-zfs:0.001")
    with pytest.raises(TaskFailed, match=r"Disk quota exceeded|failed: exit code 255") as failed:
        pve.wait_task(double.node, upid, deadline=60, what="old restore")
    assert any("Disk quota exceeded" in line for line in failed.value.log_tail)
    assert old not in double.pve_state.guests          # pve-container destroys a new CT that failed
    scratch = restore(double, inventory, pve, "lxc", vmid)
    assert "size=3G" in pve.config(double.node, "lxc", scratch.vmid)["rootfs"]


@pytest.mark.parametrize(("split", "name", "problem"), [
    (False, b"..", "pxar: file name '..' at '/..'"),
    (True, b"\x1b[2Jx/y", "pxar: file name with '/' at '/\\x1b[2Jx/y'"),
])
def test_a_hostile_ct_archive_fails_the_restore_and_leaves_no_guest(double, inventory, pve, split, name, problem):
    tree = Node("dir", children={b"etc": Node("dir", children={b"hostname": Node("file", data=b"ct\n")}),
                                 name: Node("file", data=b"pwned")})
    meta, payload = encode(tree, split=split, unchecked=True)
    archives = {seed.CT_META_ARCHIVE: meta, seed.CT_PAYLOAD_ARCHIVE: payload} if split else {seed.CT_ARCHIVE: meta}
    vmid = write_backup(double, "lxc", CT + "rootfs: local-zfs:subvol-1-disk-0,size=1G\n", ct_archives=archives)
    new, upid = raw_restore(double, inventory, pve, "lxc", vmid)
    with pytest.raises(TaskFailed, match="failed: exit code 255") as failed:
        pve.wait_task(double.node, upid, deadline=60, what="hostile restore")
    assert f"Error: error extracting archive - {problem}" in failed.value.log_tail
    assert new not in double.pve_state.guests
    assert not (double.pve_state.images_dir(new)).exists() or not any(double.pve_state.images_dir(new).rglob("*"))


def test_volumes_without_size_are_sized_from_the_snapshot(double, inventory, pve):
    vmid = write_backup(double, "lxc", CT + "rootfs: local-zfs:subvol-1-disk-0,size=0T\n"
                                           "mp0: local-zfs:subvol-1-disk-1,mp=/var/lib/data,backup=1\n"
                                           "mp1: /srv/media,mp=/mnt/media,backup=0\n")
    # storage-only mode (no rootfs passed): pve-container dies on the volume without a size
    _old, upid = raw_restore(double, inventory, pve, "lxc", vmid, rootfs=None, mp0=None, mp1=None)
    with pytest.raises(TaskFailed, match=re.escape("unable to detect disk size - please specify mp0 (size)")):
        pve.wait_task(double.node, upid, deadline=60, what="storage-only restore")
    scratch = restore(double, inventory, pve, "lxc", vmid)
    config = pve.config(double.node, "lxc", scratch.vmid)
    assert "size=2G" in config["rootfs"] and "size=2G" in config["mp0"] and "mp=/var/lib/data" in config["mp0"]
    assert "mp1" not in config                          # the bind mount never comes back


# --- point 2: protection ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["qemu", "lxc"])
def test_a_protected_backup_becomes_a_destroyable_scratch_guest(double, inventory, pve, kind):
    base = VM if kind == "qemu" else CT + "rootfs: local-zfs:subvol-1-disk-0,size=1G\n"
    vmid = write_backup(double, kind, base + "protection: 1\n")
    unprotected, upid = raw_restore(double, inventory, pve, kind, vmid, protection=None)
    pve.wait_task(double.node, upid, deadline=60, what="restore without protection 0")
    with pytest.raises(ApiError, match=r"can't remove (VM|CT) \d+ - protection mode enabled"):
        pve.destroy(double.node, kind, unprotected)
    scratch = restore(double, inventory, pve, kind, vmid)
    assert pve.config(double.node, kind, scratch.vmid).get("protection", 0) == 0
    scratch.destroy()
    assert not pve.exists(scratch.vmid)


# --- point 3: root-only settings, both timings ------------------------------------------------
@pytest.mark.parametrize(("key", "value"), [("hostpci0", "0000:01:00.0,pcie=1"), ("usb0", "host=1-1.2")])
def test_a_raw_host_device_is_refused_before_any_restore(double, inventory, pve, key, value):
    vmid = write_backup(double, "qemu", VM + f"{key}: {value}\n")
    with pytest.raises(PlanError, match=rf"{key} .*outside the drill pool.*mapping=<id>"):
        restore(double, inventory, pve, "qemu", vmid)
    assert scratch_vmids(double) == []


@pytest.mark.parametrize("release", ["9.1.1", "7.4.17"])
def test_without_the_refusal_pve_leaves_the_vm_outside_the_pool(double, inventory, pve, release):
    """qemu-server 8.0+ checks before writing the disks, older releases after: both end
    before add_vm_to_pool, so the drill token cannot remove what is left."""
    vmid = write_backup(double, "qemu", VM + "hostpci0: 0000:01:00.0,pcie=1\n")
    saved = dict(double.pve_version)
    double.pve_version["version"] = release
    try:
        left, upid = raw_restore(double, inventory, pve, "qemu", vmid)
        with pytest.raises(TaskFailed, match="only root can set 'hostpci0' config for non-mapped devices") as failed:
            pve.wait_task(double.node, upid, deadline=60, what="restore of a raw host device")
    finally:
        double.pve_version.update(saved)
    wrote_disks = any("restore proxmox backup image" in line for line in failed.value.log_tail)
    assert wrote_disks == (release.startswith("7")) and "NOT cleaned up" in " ".join(failed.value.log_tail)
    assert left in double.pve_state.guests and double.pve_state.pools_of(left) == []
    with pytest.raises(GuardError, match=r"drill tag|drill pool"):
        pve.destroy(double.node, "qemu", left)


@pytest.mark.parametrize(("kind", "key", "value", "words"), [
    ("qemu", "args", "-cpu host", "only root can set 'args' config"),
    ("qemu", "ivshmem", "size=32", "only root can set 'ivshmem' config"),
    ("qemu", "parallel0", "/dev/parport0", "only root can set 'parallel0' config"),
    ("qemu", "serial0", "/dev/ttyS0", "only root can delete 'serial0' config for real devices"),
    ("lxc", "dev0", "/dev/ttyUSB0,gid=20", "device passthrough is only allowed for root@pam")])
def test_settings_only_root_may_delete_are_refused_and_would_stay(double, inventory, pve, kind, key, value, words):
    base = VM if kind == "qemu" else CT + "rootfs: local-zfs:subvol-1-disk-0,size=1G\n"
    vmid = write_backup(double, kind, base + f"{key}: {value}\n")
    with pytest.raises(PlanError, match=rf"{key} .*only root@pam may remove it"):
        restore(double, inventory, pve, kind, vmid)
    assert scratch_vmids(double) == []
    kept, upid = raw_restore(double, inventory, pve, kind, vmid)      # the restore itself succeeds
    pve.wait_task(double.node, upid, deadline=60, what="restore")
    assert key in pve.config(double.node, kind, kept)
    with pytest.raises(ApiError, match=re.escape(words)):
        pve.update_config(double.node, kind, kept, delete=key)


def test_a_mapping_the_token_may_not_use_is_refused_naming_it(double, inventory, pve):
    vmid = write_backup(double, "qemu", VM + "hostpci0: mapping=gpu,pcie=1\n")
    with pytest.raises(PlanError, match=r"PCI mapping 'gpu'.*Mapping.Use on /mapping/pci/gpu"):
        restore(double, inventory, pve, "qemu", vmid)
    assert scratch_vmids(double) == []
    left, upid = raw_restore(double, inventory, pve, "qemu", vmid)
    with pytest.raises(TaskFailed, match=re.escape("Permission check failed (/mapping/pci/gpu, Mapping.Use)")):
        pve.wait_task(double.node, upid, deadline=60, what="restore of a mapped device")
    assert double.pve_state.pools_of(left) == []


def test_a_usable_mapping_restores(double, inventory, pve):
    vmid = write_backup(double, "qemu", VM + "hostpci0: mapping=nic-offload,pcie=1\nusb0: host=spice\n")
    scratch = restore(double, inventory, pve, "qemu", vmid)
    assert pve.pool_of(scratch.vmid) == homelab.DRILL_POOL


def test_a_privileged_container_needs_sys_modify(double, inventory, pve, pve_sys_modify):
    vmid = write_backup(double, "lxc", CT.replace("unprivileged: 1\n", "") + "rootfs: local-zfs:s,size=1G\n")
    with pytest.raises(PlanError, match=r"privileged.*Sys.Modify on /"):
        restore(double, inventory, pve, "lxc", vmid)
    old, upid = raw_restore(double, inventory, pve, "lxc", vmid)
    with pytest.raises(TaskFailed, match=re.escape("Permission check failed (/, Sys.Modify)")):
        pve.wait_task(double.node, upid, deadline=60, what="restore of a privileged container")
    assert old not in double.pve_state.guests
    scratch = restore(double, inventory, pve_sys_modify, "lxc", vmid)
    assert pve.pool_of(scratch.vmid) == homelab.DRILL_POOL


# --- point 11: names ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["qemu", "lxc"])
def test_hostile_guest_names_are_sent_as_dns_names(double, inventory, pve, kind):
    base = VM if kind == "qemu" else CT + "rootfs: local-zfs:subvol-1-disk-0,size=1G\n"
    vmid = write_backup(double, kind, base)
    hostile = "Ünïcödé_app.vm " + "x" * 70 + "-"
    scratch = restore(double, inventory, pve, kind, vmid, name=hostile)
    sent = pve.config(double.node, kind, scratch.vmid)["name" if kind == "qemu" else "hostname"]
    assert check_named_format("dns-name", sent) is None and sent.startswith("drill-Unicode-app-vm-")
    assert len(sent) <= 63 and not sent.endswith("-")


@pytest.mark.parametrize("bad", ["drill-app_vm", "drill-app.", "-drill"])
def test_the_double_refuses_a_name_that_is_no_dns_name(double, inventory, pve, bad):
    vmid = write_backup(double, "qemu", VM)
    with pytest.raises(ApiError, match="valid DNS name"):
        raw_restore(double, inventory, pve, "qemu", vmid, name=bad)
    assert scratch_vmids(double) == []



# --- issue 20 §5: the drill tag is a whole tag, never a substring -----------------------------
LOOKALIKE_TAGS = ["restoredrill-old", "xrestoredrill", "restoredrill2"]


@pytest.mark.parametrize("tags", LOOKALIKE_TAGS)
def test_a_restore_with_a_lookalike_drill_tag_is_never_sent(double, inventory, pve, tags):
    """The overrides' tags are a list: a tag that merely contains the drill tag is no drill tag.
    Without the guard the double accepts the restore (the tag is a valid pve-tag)."""
    vmid = write_backup(double, "qemu", VM)
    with pytest.raises(GuardError, match="without the drill tag and pool"):
        raw_restore(double, inventory, pve, "qemu", vmid, tags=tags)
    assert scratch_vmids(double) == []


@pytest.mark.parametrize("tags", [*LOOKALIKE_TAGS, "prod;restoredrill-old,xrestoredrill"])
def test_a_scratch_guest_retagged_with_a_lookalike_is_no_drill_guest(double, inventory, pve, admin, tags):
    """A guest in the scratch range and the drill pool whose tags (as PVE stores them, set here
    through the API) only contain the drill tag is refused for every change, and stays."""
    scratch = restore(double, inventory, pve, "qemu", write_backup(double, "qemu", VM))
    admin.nodes(double.node).qemu(scratch.vmid).config.put(tags=tags)
    stored = pve.config(double.node, "qemu", scratch.vmid)["tags"]
    assert pve.pool_of(scratch.vmid) == homelab.DRILL_POOL
    for change in (lambda: pve.power(double.node, "qemu", scratch.vmid, "start"),
                   lambda: pve.update_config(double.node, "qemu", scratch.vmid, onboot=0),
                   lambda: pve.agent_exec(double.node, scratch.vmid, ["true"]),
                   lambda: pve.destroy(double.node, "qemu", scratch.vmid)):
        with pytest.raises(GuardError, match="does not carry the drill tag 'restoredrill'"):
            change()
    guest = double.pve_state.guests[scratch.vmid]
    assert guest.status == "stopped" and pve.config(double.node, "qemu", scratch.vmid)["tags"] == stored
