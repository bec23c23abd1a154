"""Restore workers: a PBS snapshot becomes a guest of the double (``qmrestore``/``vzrestore``).

The data really comes back: each ``drive-*.img.fidx`` is reassembled chunk by chunk
through ``DatastoreReader.restore_fixed`` (magic, CRC and digest checked; decrypted with
the key the PVE storage holds) into the new guest's image file; a container's pxar
archive (``root.pxar.didx``, or the split ``root.mpxar.didx`` + ``root.ppxar.didx``)
through ``restore_dynamic``, then read and extracted with the streaming pxar reader
(``ct_archive.py``). The sequence and the messages in the task log follow qemu-server
``restore_proxmox_backup_archive`` and pve-container ``API2::LXC::create_vm``,
including both gotchas: a QEMU restore with start=1 whose start fails still ends
``TASK OK``, and an LXC restore with unique=1 lets the backup's netN overwrite yours.

Container volumes get exactly the size passed (pve-container ``create_disks``:
``<storage>:<GiB>``; 0 is a ZFS subvolume without quota), and the archive must fit them:
DECLARED DEVIATION: the double compares each mount point's files (their sizes in the
pxar metadata, apparent sizes) with its volume before extracting, where real pxar fails
mid-extraction with ENOSPC/EDQUOT and writes zero runs as holes (``sparse_copy``), so a
sparse file fits on real PVE that the double refuses.
A raw host device (``hostpciN``/``usbN``) fails the QEMU restore for a token
(``check_restore_permissions``): from qemu-server 8.0 early, before the disks are written,
before that after them; both before ``add_vm_to_pool``. A privileged container needs
Sys.Modify on ``/``.
"""
from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from restoredrill.lab.proxmox import permissions as perms
from restoredrill.lab.proxmox import restore_config as rc
from restoredrill.lab.proxmox.cluster import PveState, StorageConfig
from restoredrill.lab.proxmox.ct_archive import (CT_ARCHIVE, CT_ARCHIVE_FORMAT, archive_overflow,
                                                 ct_archives, extract_ct_archive)
from restoredrill.lab.proxmox.faults import Faults
from restoredrill.lab.proxmox.guests import Guest, GuestError, parse_config
from restoredrill.lab.proxmox.names import BackupVolume
from restoredrill.lab.proxmox.permissions import ApiToken
from restoredrill.lab.proxmox.store import PbsStore
from restoredrill.lab.proxmox.tasks import Task, TaskFailed
from restoredrill.pbsformat import FormatError, MissingObject, SnapshotRef



@dataclass
class RestoreRequest:
    kind: str                       # "qemu" or "lxc"
    vmid: int
    volume: BackupVolume
    token: ApiToken
    storage: str | None = None
    pool: str | None = None
    unique: bool = False
    start: bool = False
    options: dict[str, str] = field(default_factory=dict)        # overrides / passed options
    mount_points: dict[str, str] = field(default_factory=dict)   # lxc: passed rootfs/mpN
    existed: bool = False
    unprivileged: bool | None = None    # lxc: the passed ``unprivileged`` (None: the backup's)
    early_checks: bool = True           # qemu-server >= 8.0: mapping checks before the disks


@dataclass(frozen=True)
class RestoreStat:
    vmid: int
    archive: str
    bytes: int
    seconds: float


class Restorer:
    def __init__(self, state: PveState, stores: dict[str, PbsStore], faults: Faults):
        self.state = state
        self.stores = stores
        self.faults = faults
        self.stats: list[RestoreStat] = []

    # --- shared ------------------------------------------------------------------------
    def source(self, volume: BackupVolume) -> tuple[PbsStore, SnapshotRef, StorageConfig]:
        config = self.state.storage(volume.storage)
        store = self.stores.get(config.datastore or "")
        if config.type != "pbs" or store is None:
            raise TaskFailed(f"storage '{volume.storage}' is not a PBS storage")
        return store, SnapshotRef(config.namespace, volume.backup_type, volume.backup_id,
                                  volume.backup_time), config      # PBSPlugin passes the storage's ns

    def read_backup_config(self, volume: BackupVolume, blob: str) -> str:
        store, ref, config = self.source(volume)
        try:
            return store.restore_reader.read_blob_archive(ref, blob, config.crypt).decode()
        except MissingObject:
            raise TaskFailed(f"unable to find snapshot '{ref.path}' on datastore "
                             f"'{store.name}'") from None
        except (OSError, FormatError) as exc:       # an S3-backed store's GET that failed
            raise TaskFailed(f"unable to read '{blob}' of '{ref.path}' on datastore '{store.name}': "
                             f"{exc}") from None

    def check_restore_permissions(self, token: ApiToken, config: dict[str, str]) -> None:
        """qemu-server src/PVE/QemuServer.pm ``check_restore_permissions``: bridges
        (``check_bridge_access``: SDN.Use) and ``check_mapping_access`` (only Mapping.Use on
        a mapping; a raw host PCI/USB device only for root@pam)."""
        for key, value in sorted(config.items()):
            if re.fullmatch(r"net\d+", key) and (path := perms.bridge_acl_path(value)):
                perms.require(token, path, ["SDN.Use"])
            elif mapping := restore_mapping(key, value):
                perms.require(token, mapping, ["Mapping.Use"])

    def restore_image(self, task: Task, store: PbsStore, ref: SnapshotRef, config: StorageConfig,
                      archive: str, target: Path, vmid: int, dynamic: bool = False) -> None:
        started = time.monotonic()
        try:
            failure = self.faults.restore_failure(vmid)
            if failure:
                raise FormatError(failure)
            with target.open("wb") as out:
                reader = store.restore_reader      # the bucket, for an S3-backed store (store_s3.py)
                restore = reader.restore_dynamic if dynamic else reader.restore_fixed
                written = restore(ref, archive, out, config.crypt)
        except (FormatError, MissingObject, OSError) as exc:
            task.log(f"restore failed: {exc}")
            raise TaskFailed(f"command '{pbs_restore_command(config, ref, archive, target)}' "
                             "failed: exit code 255") from None
        seconds = max(time.monotonic() - started, 1e-6)
        self.stats.append(RestoreStat(vmid, archive, written, seconds))
        task.log(f"progress 100% (read {written} bytes, duration {int(seconds)} sec)")
        task.log(f"restore image complete (bytes={written}, duration={seconds:.2f}s, "
                 f"speed={written / seconds / 1024 ** 2:.2f}MB/s)")

    # --- QEMU --------------------------------------------------------------------------
    def qemu_worker(self, request: RestoreRequest):
        def run(task: Task) -> None:
            guest = self.state.guest(request.vmid, "qemu")
            emsg = f"unable to restore VM {request.vmid} -"
            if guest.protected:
                raise TaskFailed(f"{emsg} protection mode enabled")
            if guest.status == "running":
                raise TaskFailed(f"{emsg} vm is running")
            try:
                self._restore_qemu(task, request, guest)
            except Exception:
                guest.config.pop("lock", None)
                self.state.save(guest)
                task.log("error before or during data restore, some or all disks were not "
                         f"completely restored. VM {request.vmid} state is NOT cleaned up.")
                raise
            if request.start:
                task.log("Execute autostart")
                try:  # upstream: eval { vm_start }; warn $@ -- a plain warning, TASK OK
                    self.state.runtime.start(guest)
                except GuestError as exc:
                    task.log(str(exc))
        return run

    def _restore_qemu(self, task: Task, request: RestoreRequest, guest: Guest) -> None:
        store, ref, config = self.source(request.volume)
        backup_text = self.read_backup_config(request.volume, "qemu-server.conf.blob")
        backup, hints = parse_config(backup_text)
        if request.early_checks:    # "best effort, real check is after restoring!" (API2/Qemu.pm)
            self.check_restore_permissions(request.token, rc.merge_overrides(backup,
                                                                             request.options))
        manifest = store.restore_reader.read_manifest(ref)
        drives = rc.parse_drive_hints(hints)
        volumes, paths = self._allocate_qemu(task, request, drives, manifest)
        guest.config = {"memory": "128", "lock": "create"}
        self.state.save(guest)
        self._destroy_disks(guest)
        try:
            for drive in drives:
                task.log("restore proxmox backup image: " + pbs_restore_command(
                    config, ref, drive.archive, paths[drive.virtdev]))
                self.restore_image(task, store, ref, config, drive.archive,
                                   paths[drive.virtdev], request.vmid)
        except Exception:
            for virtdev, path in paths.items():
                path.unlink(missing_ok=True)
                task.log(f"temporary volume '{volumes[virtdev]}' successfully removed")
            raise
        restored = rc.restore_qemu_config(backup, volumes, unique=request.unique)
        merged = rc.merge_overrides(restored, request.options)
        # the "real check": the disks are written, the config is not, the pool not joined
        self.check_restore_permissions(request.token, merged)
        guest.config, guest.disks = merged, dict(paths)
        self.state.save(guest)
        self.state.add_to_pool(request.vmid, request.pool)

    def _allocate_qemu(self, task, request, drives, manifest):
        names = {entry.filename for entry in manifest.files}
        if "qemu-server.conf.blob" not in names:
            raise TaskFailed("backup does not look like a qemu-server backup (missing "
                             "'qemu-server.conf' file)")
        volumes, paths = {}, {}
        folder = self.state.images_dir(request.vmid)
        folder.mkdir(parents=True, exist_ok=True)
        for number, drive in enumerate(drives):
            if drive.archive not in names:
                raise TaskFailed(f"archive does not contain data for drive '{drive.virtdev}'")
            storage = request.storage or drive.storage
            self._check_target_storage(request, storage, "images")
            volumes[drive.virtdev] = f"{storage}:vm-{request.vmid}-disk-{number}"
            paths[drive.virtdev] = folder / f"vm-{request.vmid}-disk-{number}.raw"
            task.log(f"new volume ID is '{volumes[drive.virtdev]}'")
        return volumes, paths

    def _check_target_storage(self, request: RestoreRequest, storage: str, content: str) -> None:
        config = self.state.storages.get(storage)
        if config is None:
            raise TaskFailed(f"storage '{storage}' does not exist")
        if content not in config.contents:
            raise TaskFailed(f"Content type '{content}' is not available on storage '{storage}'")
        perms.require(request.token, f"/storage/{storage}", ["Datastore.AllocateSpace"])

    def _destroy_disks(self, guest: Guest) -> None:
        for path in guest.disks.values():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        guest.disks = {}

    # --- LXC ---------------------------------------------------------------------------
    def lxc_worker(self, request: RestoreRequest):
        def run(task: Task) -> None:
            guest = self.state.guest(request.vmid, "lxc")
            emsg = f"unable to restore CT {request.vmid} -"
            try:
                self._restore_lxc(task, request, guest)
            except Exception as exc:
                self._destroy_disks(guest)
                if not request.existed:
                    self.state.remove_guest(request.vmid, purge=False)
                else:
                    guest.config.pop("lock", None)
                    self.state.save(guest)
                raise TaskFailed(f"{emsg} {exc}") from None
            if request.start:
                self.state.runtime.start(guest)
        return run

    def _restore_lxc(self, task: Task, request: RestoreRequest, guest: Guest) -> None:
        if guest.status == "running":
            raise TaskFailed("can't overwrite running container")
        store, ref, config = self.source(request.volume)
        task.log(f"recovering backed-up configuration from '{request.volume.volid}'")
        backup, _ = parse_config(self.read_backup_config(request.volume, "pct.conf.blob"))
        for key, value in backup.items():
            if re.fullmatch(r"net\d+", key) and key not in request.options and \
                    (path := perms.bridge_acl_path(value)):
                perms.require(request.token, path, ["SDN.Use"])
        unprivileged = request.unprivileged if request.unprivileged is not None else \
            backup.get("unprivileged") in ("1", "true", "yes", "on")
        if not unprivileged:    # "creating a new privileged container is checked here"
            perms.require(request.token, "/", ["Sys.Modify"])
        mount_points = dict(request.mount_points) or self._backup_mount_points(request, backup)
        if "rootfs" not in mount_points:
            raise TaskFailed("rootfs configuration could not be recovered, please check and "
                             "specify manually!")
        self._destroy_disks(guest)
        rootfs_dir, volumes = self._create_ct_disks(request, mount_points)
        guest.disks = {"rootfs": rootfs_dir}
        task.log(f"restoring '{request.volume.volid}' now..")
        archives = ct_archives({entry.filename for entry in store.restore_reader.read_manifest(ref).files})
        if archives is None:
            raise TaskFailed("backup does not contain a container archive (root.pxar)")
        with tempfile.TemporaryDirectory(dir=rootfs_dir.parent) as scratch:
            meta = Path(scratch) / archives[0].removesuffix(".didx")
            self.restore_image(task, store, ref, config, archives[0], meta, request.vmid, dynamic=True)
            payload = Path(scratch) / archives[1].removesuffix(".didx") if archives[1] else None
            try:
                problem = archive_overflow(meta, volume_limits(volumes))
                if problem is None:
                    if payload is not None:
                        self.restore_image(task, store, ref, config, archives[1], payload,
                                           request.vmid, dynamic=True)
                    extract_ct_archive(meta, payload, rootfs_dir)
            except FormatError as exc:      # PxarError: a damaged or hostile archive
                problem = str(exc)
            if problem:
                task.log(f"Error: error extracting archive - {problem}")
                raise TaskFailed(f"command '/usr/bin/proxmox-backup-client restore {ref.path} "
                                 f"root.pxar /var/lib/lxc/{request.vmid}/rootfs "
                                 "--allow-existing-dirs' failed: exit code 255")
        task.log("merging backed-up and given configuration..")
        merged = rc.merge_lxc_config(request.options, backup, unique=request.unique)
        for warning in merged.warnings:
            task.warn(warning)
        final = {**merged.config, **volumes}
        final.setdefault("hostname", f"CT{request.vmid}")
        final.setdefault("memory", "512")
        final.setdefault("swap", "512")
        if unprivileged:
            final["unprivileged"] = "1"
        elif "unprivileged" in backup:
            final.setdefault("unprivileged", backup["unprivileged"])
        guest.config = final
        self.state.save(guest)
        self.state.add_to_pool(request.vmid, request.pool)

    def _backup_mount_points(self, request: RestoreRequest, backup: dict[str, str]):
        """Storage-only mode: the backup's mount points, volumes re-created on ``storage``."""
        storage = request.storage or "local"
        found = {}
        for key, value in rc.split_mount_points(backup).items():
            kind = perms.mount_point_type(value)
            if kind == "volume":
                try:
                    found[key] = f"{storage}:{rc.size_in_gib(value):g}"
                except ValueError:
                    raise TaskFailed(f"unable to detect disk size - please specify {key} "
                                     "(size)") from None
            elif key == "rootfs":
                raise TaskFailed(f"restoring rootfs to {kind} mount is only possible by "
                                 "specifying -rootfs manually!")
            else:  # only root@pam may restore bind/device mount points; tokens never are root
                raise TaskFailed(f"restoring '{key}' to {kind} mount is only possible for root")
        return found

    def _create_ct_disks(self, request: RestoreRequest, mount_points: dict[str, str]):
        folder = self.state.images_dir(request.vmid)
        volumes, rootfs_dir = {}, None
        for number, (key, value) in enumerate(sorted(mount_points.items(),
                                                     key=lambda kv: kv[0] != "rootfs")):
            volume, _, rest = value.partition(",")
            storage, _, size = volume.partition(":")
            self._check_target_storage(request, storage, "rootdir")
            name = f"subvol-{request.vmid}-disk-{number}"
            path = folder / name
            path.mkdir(parents=True, exist_ok=True)
            # create_disks: $size_kb = int($size_gb * 1024) * 1024, written as size=<format_size>
            size_text = f"size={format_size(int(float(size) * 1024) * 1024 ** 2)}" \
                if re.fullmatch(r"\d+(\.\d+)?", size) else ""
            volumes[key] = ",".join(p for p in (f"{storage}:{name}", rest, size_text) if p)
            if key == "rootfs":
                rootfs_dir = path
        return rootfs_dir, volumes


def restore_mapping(key: str, value: str) -> str | None:
    """``check_mapping_access`` for one option: the mapping ACL path it needs, None when
    none; a raw host PCI / non-spice USB device raises (only root@pam)."""
    if re.fullmatch(r"hostpci\d+", key):
        if perms.device_part(value, "host", "mapping") is None:
            raise TaskFailed(f"only root can set '{key}' config for non-mapped devices")
        return f"/mapping/pci/{perms.device_part(value, 'host', 'mapping')}"
    if re.fullmatch(r"usb\d+", key):
        host = perms.device_part(value, "host")
        if host is not None:
            if host.lower() != "spice":
                raise TaskFailed(f"only root can set '{key}' config for real devices")
            return None
        return f"/mapping/usb/{perms.device_part(value, 'host', 'mapping')}"
    if re.fullmatch(r"rng\d+", key) and perms.device_part(value, "source") == "/dev/hwrng":
        return "/mapping/hwrng"
    if re.fullmatch(r"virtiofs\d", key):
        return f"/mapping/dir/{perms.device_part(value, 'dirid')}"
    return None


def format_size(size: int) -> str:
    """pve-common ``PVE::JSONSchema::format_size``: the largest exact unit (0 -> ``0T``)."""
    for unit in ("", "K", "M", "G"):
        if size % 1024:
            return f"{size}{unit}"
        size //= 1024
    return f"{size}T"


def volume_limits(volumes: dict[str, str]) -> list[tuple[str, int]]:
    """(mount path, bytes) of each allocated volume, deepest path first; 0 = no quota."""
    limits = []
    for key, value in volumes.items():
        size = re.search(r"(?:^|,)size=(\d+)([KMGT]?)", value)
        path = "/" if key == "rootfs" else (re.search(r"(?:^|,)mp=([^,]+)", value) or [None, ""])[1]
        if size:
            limits.append((path.rstrip("/") or "/", int(size.group(1)) * 1024 ** " KMGT".index(
                size.group(2) or " ")))
    return sorted(limits, key=lambda item: -len(item[0]))


def pbs_restore_command(config: StorageConfig, ref: SnapshotRef, archive: str,
                        target: Path) -> str:
    keyfile = f" --keyfile /etc/pve/priv/storage/{config.storage}.enc" if config.crypt else ""
    return (f"/usr/bin/pbs-restore --repository restoredrill@pbs@127.0.0.1:{config.datastore} "
            f"{ref.path} {archive} {target} --verbose --format raw{keyfile}")
