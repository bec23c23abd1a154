"""``POST /nodes/{node}/qemu`` with ``archive`` and ``POST /nodes/{node}/lxc`` with
``ostemplate`` + ``restore=1``: the synchronous checks of the API call, then a
``qmrestore`` / ``vzrestore`` task (see ``restore``).

The checks run in upstream's order (qemu-server / pve-container ``create_vm``): pool,
storage and start privileges, VM.Allocate on the VMID or the pool (or VM.Backup for a
forced restore over an existing guest), drive options refused beside ``archive``,
access to the backup volume, the per-option privileges of everything else, then the
VMID (``force=1`` overwrites an existing guest). The double only creates guests from
backups: without ``archive`` / ``restore=1`` it answers 400 (documented limit).
"""
from __future__ import annotations

import re

from restoredrill.lab.proxmox import permissions as perms
from restoredrill.lab.proxmox import restore_config as rc
from restoredrill.lab.proxmox.guest_options import LXC_OPTIONS, QEMU_OPTIONS
from restoredrill.lab.proxmox.guests import Guest
from restoredrill.lab.proxmox.names import check_storage_id, check_vmid, parse_backup_volid
from restoredrill.lab.proxmox.permissions import PermissionDenied
from restoredrill.lab.proxmox.pve_service import PveService
from restoredrill.lab.proxmox.restore import RestoreRequest
from restoredrill.lab.proxmox.routing import (BOOLEAN, INTEGER, NUMBER, PVE_NODE, PVE_POOL,
                                              PVE_STORAGE, PVE_VMID, STRING, ApiError, Call,
                                              Router, declare, optional, param_error)

QEMU_CREATE = {"node": PVE_NODE, "vmid": PVE_VMID, **QEMU_OPTIONS,
               "archive": optional(STRING, maxLength=255), "storage": optional(PVE_STORAGE),
               "pool": optional(PVE_POOL), "unique": optional(BOOLEAN, requires="archive"),
               "start": optional(BOOLEAN), "force": optional(BOOLEAN, requires="archive"),
               "bwlimit": optional(INTEGER, minimum=0), "live-restore": optional(BOOLEAN)}
LXC_CREATE = {"node": PVE_NODE, "vmid": PVE_VMID, **LXC_OPTIONS,
              "ostemplate": {"type": "string", "maxLength": 255},
              "restore": optional(BOOLEAN), "storage": optional(PVE_STORAGE),
              "pool": optional(PVE_POOL), "unique": optional(BOOLEAN, requires="restore"),
              "start": optional(BOOLEAN), "force": optional(BOOLEAN),
              "bwlimit": optional(NUMBER, minimum=0),
              "ignore-unpack-errors": optional(BOOLEAN)}


def add_restore_routes(router: Router, service: PveService) -> None:
    @router.route("POST", "/nodes/{node}/qemu", declare(QEMU_CREATE))
    def create_vm(call: Call) -> str:
        return restore_vm(service, call)

    @router.route("POST", "/nodes/{node}/lxc", declare(LXC_CREATE))
    def create_ct(call: Call) -> str:
        return restore_ct(service, call)


def check_allocate(service: PveService, call: Call, vmid: int, pool: str | None,
                   forced_restore: bool) -> None:
    """VM.Allocate on /vms/<vmid> or /pool/<pool>, or VM.Backup for a forced restore."""
    token, pools = call.token, service.state.pools_of(vmid)
    if perms.has_privs(token, f"/vms/{vmid}", ["VM.Allocate"], pools=pools):
        return
    if pool and perms.has_privs(token, f"/pool/{pool}", ["VM.Allocate"]):
        return
    if forced_restore and perms.has_privs(token, f"/vms/{vmid}", ["VM.Backup"], pools=pools):
        return
    raise PermissionDenied("Permission check failed")


def restore_vm(service: PveService, call: Call) -> str:
    """``qm create VMID --archive VOLID`` / ``qmrestore``."""
    service.check_node(call)
    service.check_quorum()
    vmid, pool, storage = check_vmid(call.get("vmid")), call.get("pool"), call.get("storage")
    if call.get("archive") is None:
        raise param_error("archive", "the test double creates VMs only from a backup "
                                     "(give 'archive')")
    if call.get("live-restore"):
        raise param_error("live-restore", "live-restore is not supported by the test double")
    service.state.check_pool_exists(pool)
    if storage is not None:
        perms.require(call.token, f"/storage/{check_storage_id(storage)}",
                      ["Datastore.AllocateSpace"])
    if call.get("start"):
        service.require_vm(call, vmid, ["VM.PowerMgmt"], pool)
    exists = vmid in service.state.guests
    check_allocate(service, call, vmid, pool, bool(call.get("force")) and exists)
    overrides = rc.qemu_overrides(call.params)
    for drive in rc.drive_options(overrides):
        raise param_error(drive, "option conflicts with option 'archive'")
    volume = parse_backup_volid(call.get("archive"), "archive")
    service.pbs_storage(volume)
    service.check_volume_access(call, volume, vmid)
    for key, value in sorted(overrides.items()):
        perms.check_qemu_option(key, value, lambda privs: service.require_vm(
            call, vmid, privs, pool), lambda path, privs: perms.require(call.token, path, privs))
        if re.fullmatch(r"net\d+", key) and (path := perms.bridge_acl_path(value)):
            perms.require(call.token, path, ["SDN.Use"])
    overrides = rc.add_random_macs(overrides, "qemu")
    create_and_lock(service, vmid, "qemu", bool(call.get("force")))
    if exists:
        # qemu-server src/PVE/API2/Qemu.pm create_vm: $emsg is "unable to restore VM $vmid -"
        # and $restorefn (run before the worker forks) calls check_protection($conf, $emsg),
        # which appends " - protection mode enabled" (pve-guest-common AbstractConfig.pm):
        # upstream's double dash; then "$emsg vm is running". The lock stays set, as there.
        guest = service.state.guests[vmid]
        if guest.protected:
            raise ApiError(500, f"unable to restore VM {vmid} - - protection mode enabled")
        if service.state.runtime.status(guest) == "running":
            raise ApiError(500, f"unable to restore VM {vmid} - vm is running")
    request = RestoreRequest("qemu", vmid, volume, call.token, storage=storage, pool=pool,
                             unique=bool(call.get("unique")), start=bool(call.get("start")),
                             options=overrides, existed=exists,
                             early_checks=early_restore_checks(service))
    return service.start_task(call, "qmrestore", str(vmid),
                              service.restorer.qemu_worker(request))


def restore_ct(service: PveService, call: Call) -> str:
    """``pct restore VMID VOLID`` / ``pct create --restore 1``."""
    service.check_node(call)
    service.check_quorum()
    vmid, pool = check_vmid(call.get("vmid")), call.get("pool")
    if not call.get("restore"):
        raise param_error("restore", "the test double creates containers only from a backup "
                                     "(give 'restore=1')")
    force = bool(call.get("force"))
    existing = service.state.guests.get(vmid)
    if not (existing is not None and force):
        service.state.check_vmid_unused(vmid)
    else:
        if service.state.runtime.status(existing) == "running":
            raise ApiError(500, "can't overwrite running container")
        if existing.protected:
            raise ApiError(500, f"unable to restore CT {vmid} - protection mode enabled")
    service.state.check_pool_exists(pool)
    check_allocate(service, call, vmid, pool, force and existing is not None)
    storage = check_storage_id(call.get("storage") or "local")
    options = rc.lxc_options(call.params)
    for key, value in sorted(options.items()):
        perms.check_lxc_option(key, value, lambda privs: service.require_vm(
            call, vmid, privs, pool))
        if re.fullmatch(r"net\d+", key) and (path := perms.bridge_acl_path(value)):
            perms.require(call.token, path, ["SDN.Use"])
    volume = parse_backup_volid(call.get("ostemplate"), "ostemplate")
    service.pbs_storage(volume)
    service.check_volume_access(call, volume, vmid)
    mount_points = {k: (f"{storage}:{v}" if re.fullmatch(r"\d+(\.\d+)?", v) else v)
                    for k, v in rc.split_mount_points(options).items()}
    plain = {k: v for k, v in options.items() if k not in mount_points}
    check_ct_storages(service, call, mount_points, storage)
    create_and_lock(service, vmid, "lxc", force)
    request = RestoreRequest("lxc", vmid, volume, call.token, storage=storage, pool=pool,
                             unique=bool(call.get("unique")), start=bool(call.get("start")),
                             options=rc.add_random_macs(plain, "lxc"),
                             mount_points=mount_points, existed=existing is not None,
                             unprivileged=None if call.get("unprivileged") is None
                             else bool(call.get("unprivileged")))
    return service.start_task(call, "vzrestore", str(vmid),
                              service.restorer.lxc_worker(request))


def early_restore_checks(service: PveService) -> bool:
    """qemu-server commit 621edb2b (June 2023, PVE 8.0): ``check_restore_permissions`` also
    runs on the extracted backup config before the disks are written; earlier releases
    check only after the restore (the VM's disks written, the VM outside the pool)."""
    return int(str(service.version.get("version", "9")).split(".")[0]) >= 8


def check_ct_storages(service: PveService, call: Call, mount_points: dict[str, str],
                      default_storage: str) -> None:
    if mount_points and "rootfs" not in mount_points:
        raise ApiError(500, "mount points configured, but 'rootfs' not set - aborting")
    storages = set()
    for value in mount_points.values():
        if perms.mount_point_type(value) != "volume":
            raise ApiError(500, "Only root can pass arbitrary filesystem paths.")
        storages.add(value.split(",")[0].removeprefix("volume=").split(":")[0])
    if "rootfs" not in mount_points:
        storages.add(default_storage)
    for storage in sorted(storages):
        config = service.state.storages.get(check_storage_id(storage))
        if config is None:
            raise ApiError(500, f"storage '{storage}' does not exist")
        if "rootdir" not in config.contents:
            raise param_error("storage", f"storage '{storage}' does not support container "
                                         "directories")
        perms.require(call.token, f"/storage/{storage}", ["Datastore.AllocateSpace"])


def create_and_lock(service: PveService, vmid: int, kind: str, force: bool) -> None:
    """``create_and_lock_config``: a new guest with ``lock: create``, or (force) lock the
    existing one of the same kind."""
    state = service.state
    emsg = f"unable to restore {'VM' if kind == 'qemu' else 'CT'} {vmid} -"
    with state.lock:
        existing = state.guests.get(vmid)
        if existing is None:
            state.add_guest(Guest(vmid, kind, {"lock": "create"}))
            return
        label = "VM" if existing.kind == "qemu" else "CT"
        if not force or existing.kind != kind:
            raise ApiError(500, f"{emsg} {label} {vmid} already exists on node '{state.node}'")
        if "lock" in existing.config:
            raise ApiError(500, f"{emsg} {label} is locked ({existing.config['lock']})")
        existing.config["lock"] = "create"
        state.save(existing)
