"""What the PVE routes share: the node state, tasks, the PBS stores behind PBS storages.

Holds the checks every PVE handler repeats (node name, guest lookup, volume access)
so that privilege logic stays in ``permissions`` and path/name safety in ``names``.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from restoredrill.lab.proxmox import permissions as perms
from restoredrill.lab.proxmox.cluster import PveState, StorageConfig
from restoredrill.lab.proxmox.faults import Faults
from restoredrill.lab.proxmox.guests import Guest
from restoredrill.lab.proxmox.permissions import TokenRegistry
from restoredrill.lab.proxmox.names import BackupVolume, check_node, check_vmid, parse_backup_volid
from restoredrill.lab.proxmox.restore import Restorer
from restoredrill.lab.proxmox.routing import ApiError, Call, param_error
from restoredrill.lab.proxmox.store import PbsStore
from restoredrill.lab.proxmox.tasks import Task, TaskRegistry, parse_upid
from restoredrill.pbsformat import SnapshotRef

PVE_VERSION = {"version": "9.1.1", "release": "9.1", "repoid": "42f0cb1b", "console": "html5"}


@dataclass
class PveService:
    state: PveState
    registries: dict[str, TaskRegistry]     # node -> its tasks (task logs are node-local files)
    stores: dict[str, PbsStore]
    restorer: Restorer
    faults: Faults
    version: dict[str, str] = field(default_factory=lambda: dict(PVE_VERSION))
    tokens: TokenRegistry | None = None     # the tokens the server accepts (access reads)

    @property
    def node(self) -> str:
        """The node the current request runs on (the first node outside a request)."""
        return self.state.serving_node()

    @property
    def tasks(self) -> TaskRegistry:
        """The task registry of the node the current request runs on."""
        return self.registries[self.node]

    def check_node(self, call: Call) -> str:
        """The path's node, which must be a cluster member (pve-manager resolves a node
        name through the cluster's node list, then DNS: an unknown name fails the
        address lookup); the request then runs on it (``proxyto => 'node'``)."""
        node = check_node(call.get("node"))
        if node == "localhost":
            # pve-http-server src/PVE/APIServer/AnyEvent.pm: 'localhost' is never proxied, the
            # answering node (the first one here, ``local`` in /cluster/status) serves it
            node = self.state.node
        if node not in self.state.nodes:
            raise ApiError(500, f"hostname lookup '{node}' failed - failed to get address info "
                                f"for: {node}: Name or service not known")
        if not self.state.online(node):
            # pveproxy forwards the call (``proxyto``) to the node's address and passes on
            # AnyEvent::HTTP's status and reason (pve-http-server APIServer/AnyEvent.pm
            # ``proxy_request``): 595 for a connection that cannot be made, the errno text
            raise ApiError(595, "No route to host")
        self.state.serve_on(node)
        return node

    def check_quorum(self) -> None:
        """pve-cluster src/PVE/Cluster.pm ``check_cfs_quorum``: without quorum /etc/pve is
        read-only and a guest cannot be created (qemu-server API2/Qemu.pm ``create_vm``,
        pve-container API2/LXC.pm ``create_vm`` call it first)."""
        if not self.state.quorate:
            raise ApiError(500, "cluster not ready - no quorum?")

    def guest(self, call: Call, kind: str) -> Guest:
        node = self.check_node(call)
        return self.state.guest(check_vmid(call.get("vmid")), kind, node)

    def require_vm(self, call: Call, vmid: int, privs: list[str], pool: str | None = None,
                   any_of: bool = False) -> None:
        perms.require_vm(call.token, vmid, privs, self.state.pools_of(vmid), pool, any_of)

    # --- backups on PBS storages -------------------------------------------------------
    def backup_volume(self, call: Call, param: str = "volume") -> BackupVolume:
        return parse_backup_volid(call.get(param), param)

    def pbs_storage(self, volume: BackupVolume) -> tuple[StorageConfig, PbsStore]:
        config = self.state.storage(volume.storage)
        store = self.stores.get(config.datastore or "")
        if config.type != "pbs" or store is None:
            raise ApiError(500, f"unable to parse PBS volume name '{volume.volname}'")
        return config, store

    def check_volume_access(self, call: Call, volume: BackupVolume,
                            vmid: int | None = None) -> None:
        """pve-storage ``check_volume_access`` for a backup volume."""
        if perms.has_privs(call.token, f"/storage/{volume.storage}", ["Datastore.Allocate"]):
            return
        owner = int(volume.backup_id) if volume.backup_id.isdigit() else None
        if owner is not None and vmid is not None and owner == vmid:
            return
        perms.require(call.token, f"/storage/{volume.storage}", ["Datastore.AllocateSpace"])
        if owner is not None:
            perms.require(call.token, f"/vms/{owner}", ["VM.Backup"])

    def backup_entries(self, storage: StorageConfig, vmid: int | None) -> list[dict[str, Any]]:
        """PBSPlugin ``list_volumes``: the PBS snapshot list turned into PVE volumes. It asks
        PBS for ``backup-id`` only (so ``vm/N`` and ``ct/N`` both come back) in the storage's
        ``namespace`` (``ns``); an unfinished snapshot has no size: ``$item->{size} // 1``."""
        store = self.stores[storage.datastore]
        result = []
        for info in store.snapshot_infos(backup_id=str(vmid) if vmid is not None else None,
                                         ns=storage.namespace):
            if info.backup_type not in ("vm", "ct") or not info.backup_id.isdigit():
                continue
            item = store.snapshot_entry(info)
            volume = BackupVolume(storage.storage, info.backup_type, info.backup_id,
                                  info.backup_time)
            entry = {"volid": volume.volid, "format": f"pbs-{info.backup_type}",
                     "size": item.get("size", 1), "content": "backup",
                     "vmid": int(info.backup_id), "ctime": info.epoch,
                     "subtype": "qemu" if info.backup_type == "vm" else "lxc"}
            if "verification" in item:
                entry["verification"] = item["verification"]
            if "comment" in item:
                entry["notes"] = item["comment"]
            if item.get("protected"):
                entry["protected"] = 1
            if "fingerprint" in item:
                entry["encrypted"] = item["fingerprint"]
            elif any(f.get("crypt-mode") == "encrypt" for f in item.get("files", [])):
                entry["encrypted"] = "1"
            result.append(entry)
        return result

    def snapshot_ref(self, volume: BackupVolume) -> SnapshotRef:
        """The snapshot a volid names, in its storage's namespace (PBSPlugin passes ``ns``)."""
        namespace = self.state.storage(volume.storage).namespace
        return SnapshotRef(namespace, volume.backup_type, volume.backup_id, volume.backup_time)

    # --- tasks -------------------------------------------------------------------------
    def task(self, call: Call) -> Task:
        self.check_node(call)
        text = call.get("upid")
        try:
            upid = parse_upid(text)
        except ValueError as exc:   # upstream: 500; refused before any file is opened
            raise param_error("upid", str(exc)) from None
        task = self.tasks.get(text)     # the path's node only: task logs are node-local files
        if task is None or upid.task_id is not None:
            raise ApiError(500, "unable to open file - No such file or directory")
        if upid.authid != call.authid:
            perms.require(call.token, f"/nodes/{self.node}", ["Sys.Audit"])
        return task

    def start_task(self, call: Call, worker_type: str, worker_id: str, work) -> str:
        """A task on the request's node: its UPID names that node, and the worker runs
        "on" it (a guest it creates or a storage it activates is that node's)."""
        node, state = self.node, self.state

        def on_node(task):
            state.serve_on(node)
            return work(task)
        return self.registries[node].start(worker_type, worker_id, call.authid, on_node).text


def storage_status(service: PveService, config: StorageConfig) -> dict[str, int]:
    """total/used/avail: from the PBS datastore for PBS storages, else the images dir fs."""
    if config.type == "pbs" and config.datastore in service.stores:
        total, used, avail = service.stores[config.datastore].backend.usage()
    else:
        usage = shutil.disk_usage(service.state.root)
        total, used, avail = usage.total, usage.used, usage.free
    return {"total": total, "used": used, "avail": avail}


def guest_volumes(service: PveService, storage: str, vmid: int | None,
                  content: str | None = None) -> list[dict[str, Any]]:
    """Images/rootdir volumes of the double's guests on a local storage (a storage that is
    not ``shared`` holds only the volumes of the node's own guests). pve-storage
    src/PVE/Storage/Plugin.pm ``list_volumes``: a volume's content is ``rootdir`` when its
    owner is a container, else ``images``, and an item whose content differs from the one
    asked for is skipped (``next if $type ne $item->{content}``). Sizes as
    ZFSPoolPlugin.pm ``list_images`` reports them: a zvol's volsize, a subvol's refquota
    (the config's ``size=``), not what a file on this machine happens to hold."""
    result, shared = [], service.state.storage(storage).shared
    for guest in service.state.guests.values():
        if (vmid is not None and guest.vmid != vmid) or \
                (not shared and service.state.node_of(guest.vmid) != service.node):
            continue
        kind = "images" if guest.kind == "qemu" else "rootdir"
        if content not in (None, kind):
            continue
        for key, value in guest.config.items():
            if not (re.fullmatch(r"(scsi|virtio|sata|ide|mp)\d+|rootfs", key) and
                    value.startswith(f"{storage}:")):
                continue
            volid = value.split(",", 1)[0]
            size = config_size(value)
            if size is None:
                path = guest.disks.get(key) or guest.disks.get("rootfs")
                size = path.stat().st_size if path is not None and path.is_file() else 0
            result.append({"volid": volid, "vmid": guest.vmid, "size": size,
                           "format": "raw" if guest.kind == "qemu" else "subvol",
                           "content": kind})
    return result


def config_size(value: str) -> int | None:
    """Bytes of a drive/mount point's ``size=`` option (``8G``, ``512M``, ``32``: GiB)."""
    match = re.search(r"(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)(?:,|$)", value)
    if match is None:
        return None
    unit = {"K": 1, "M": 2, "G": 3, "T": 4}.get(match.group(2), 3)
    return int(float(match.group(1)) * 1024 ** unit)
