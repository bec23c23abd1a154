"""The state of the double's Proxmox VE node: guests, pools, storages, bridges, jobs.

Guest configs are also written to ``<root>/etc-pve/nodes/<node>/{qemu-server,lxc}/<vmid>.conf``
(the pmxcfs layout, with the node-local ``lxc`` and ``qemu-server`` links) and pool
membership to ``<root>/etc-pve/user.cfg`` (``pool:`` lines only), so a test, a person or
the node's pct guard (contrib/restoredrill-pct-guard) can read them; disks live under
``<root>/images/<vmid>/``. Every path is built from a validated integer vmid.
"""
from __future__ import annotations

import hashlib
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restoredrill.lab.proxmox.guests import Guest, GuestRuntime, render_config
from restoredrill.lab.proxmox.routing import ApiError
from restoredrill.pbsformat import CryptConfig


@dataclass
class StorageConfig:
    """One entry of storage.cfg (only what the double serves)."""

    storage: str
    type: str                      # "pbs", "zfspool", "dir"
    content: str                   # "backup" / "images,rootdir" ...
    datastore: str | None = None   # pbs: the PBS datastore it points at
    crypt: CryptConfig | None = None   # pbs: the client-side encryption key PVE holds
    fingerprint: str | None = None     # pbs: the PBS server certificate pin
    shared: bool = False

    @property
    def contents(self) -> set[str]:
        return set(self.content.split(","))


@dataclass
class Pool:
    poolid: str
    comment: str = ""
    vmids: set[int] = field(default_factory=set)
    storages: set[str] = field(default_factory=set)


class PveState:
    """Guests and cluster configuration of one node, guarded by one lock."""

    def __init__(self, root: Path, node: str, runtime: GuestRuntime, *,
                 zone: str = "Europe/Berlin"):
        self.root = root
        self.node = node
        self.runtime = runtime
        self.zone = zone
        self.guests: dict[int, Guest] = {}
        self.pools: dict[str, Pool] = {}
        self.storages: dict[str, StorageConfig] = {}
        self.networks: dict[str, dict[str, Any]] = {}
        self.backup_jobs: list[dict[str, Any]] = []
        self.ssl_fingerprint = ""
        self.lock = threading.RLock()
        (root / "images").mkdir(parents=True, exist_ok=True)

    # --- guests ------------------------------------------------------------------------
    def config_path(self, vmid: int, kind: str) -> Path:
        folder = "qemu-server" if kind == "qemu" else "lxc"
        return self.root / "etc-pve" / "nodes" / self.node / folder / f"{int(vmid)}.conf"

    def guest(self, vmid: int, kind: str | None = None) -> Guest:
        """The guest, or PVE's answer for a missing config file (500)."""
        guest = self.guests.get(int(vmid))
        if guest is None or (kind is not None and guest.kind != kind):
            folder = "qemu-server" if kind in (None, "qemu") else "lxc"
            raise ApiError(500, f"Configuration file 'nodes/{self.node}/{folder}/{vmid}.conf' "
                                "does not exist")
        return guest

    def check_vmid_unused(self, vmid: int) -> None:
        existing = self.guests.get(int(vmid))
        if existing is not None:
            label = "VM" if existing.kind == "qemu" else "CT"
            raise ApiError(500, f"{label} {vmid} already exists on node '{self.node}'")

    def add_guest(self, guest: Guest) -> Guest:
        with self.lock:
            self.guests[guest.vmid] = guest
            self.save(guest)
        return guest

    def save(self, guest: Guest) -> None:
        path = self.config_path(guest.vmid, guest.kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_config(guest.config))
        local = self.root / "etc-pve" / path.parent.name        # pmxcfs: /etc/pve/lxc -> nodes/NODE/lxc
        try:
            local.symlink_to(Path("nodes") / self.node / path.parent.name)
        except FileExistsError:
            pass
        self.write_pools()

    def write_pools(self) -> None:
        """``etc-pve/user.cfg`` as PVE writes its pool lines: ``pool:NAME:COMMENT:VMLIST:STORELIST:``
        (pve-access-control src/PVE/AccessControl.pm ``write_user_config``); written whole
        and renamed, so a reader never sees half a file."""
        with self.lock:
            lines = [f"pool:{p.poolid}::{','.join(str(v) for v in sorted(p.vmids))}:"
                     f"{','.join(sorted(p.storages))}:" for p in sorted(self.pools.values(), key=lambda p: p.poolid)]
            target = self.root / "etc-pve" / "user.cfg"
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(".user.cfg.tmp")
            temp.write_text("\n".join(lines) + "\n")
            temp.replace(target)

    def digest(self, guest: Guest) -> str:
        return hashlib.sha1(render_config(guest.config).encode()).hexdigest()

    def remove_guest(self, vmid: int, purge: bool) -> None:
        """Config, disks and pool membership; with purge also backup-job entries."""
        with self.lock:
            guest = self.guests.pop(int(vmid), None)
            if guest is None:
                return
            self.config_path(guest.vmid, guest.kind).unlink(missing_ok=True)
            shutil.rmtree(self.images_dir(guest.vmid), ignore_errors=True)
            for pool in self.pools.values():
                pool.vmids.discard(guest.vmid)
            self.write_pools()
            if purge:
                for job in self.backup_jobs:
                    ids = [v for v in str(job.get("vmid", "")).split(",") if v and
                           v != str(guest.vmid)]
                    job["vmid"] = ",".join(ids)

    def images_dir(self, vmid: int) -> Path:
        return self.root / "images" / str(int(vmid))

    def pools_of(self, vmid: int) -> list[str]:
        return sorted(p.poolid for p in self.pools.values() if int(vmid) in p.vmids)

    def add_to_pool(self, vmid: int, poolid: str | None) -> None:
        if poolid:
            with self.lock:
                self.pools[poolid].vmids.add(int(vmid))
                self.write_pools()

    def check_pool_exists(self, poolid: str | None) -> None:
        if poolid is not None and poolid not in self.pools:
            raise ApiError(500, f"pool '{poolid}' does not exist")

    def next_id(self) -> int:
        with self.lock:
            vmid = 100
            while vmid in self.guests:
                vmid += 1
            return vmid

    def backed_up_vmids(self) -> set[int]:
        found: set[int] = set()
        for job in self.backup_jobs:
            if job.get("enabled", 1) and not job.get("all"):
                found |= {int(v) for v in str(job.get("vmid", "")).split(",") if v.isdigit()}
            elif job.get("all"):
                found |= set(self.guests)
        return found

    # --- storages ----------------------------------------------------------------------
    def storage(self, storage_id: str) -> StorageConfig:
        found = self.storages.get(storage_id)
        if found is None:
            raise ApiError(500, f"storage '{storage_id}' does not exist")
        return found
