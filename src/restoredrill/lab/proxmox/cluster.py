"""The state of the double's Proxmox VE cluster: nodes, guests, pools, storages, bridges, jobs.

The cluster has several nodes (``nodes``; ``node`` is the first). VMIDs are cluster-wide
(pmxcfs ``vmlist``); each guest lives on one node (``placement``), whose config file is
``<root>/etc-pve/nodes/<node>/{qemu-server,lxc}/<vmid>.conf`` (the pmxcfs layout). Each
node sees the cluster file system through its own view ``<root>/node-view/<node>/``: the
shared ``nodes`` and ``user.cfg`` plus the node-local links ``lxc``, ``qemu-server`` and
``local`` to ``nodes/<node>/...`` (pmxcfs ``cfs_plug_link``: ``/etc/pve/lxc`` is
``nodes/<this node>/lxc``), so the node's pct guard (contrib/restoredrill-pct-guard) sees
only that node's containers; ``<root>/etc-pve`` itself carries the first node's links.
Pool membership goes to ``etc-pve/user.cfg`` (``pool:`` lines only); disks live under
``<root>/images/<vmid>/``. Every path is built from a validated integer vmid.

An API request is served "on" the node of its path (PVE's ``proxyto => 'node'``): the
service marks that node for the request's thread (``serve_on``) and a task inherits it,
so a guest created by a request lands on the request's node and a config read on another
node fails as PVE's ``load_config`` does.
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
    namespace: str | None = None       # pbs: the PBS namespace it lists and restores from (PBSPlugin)
    shared: bool = False
    nodes: tuple[str, ...] = ()        # storage.cfg ``nodes``: available only there (empty: everywhere)

    def available_on(self, node: str) -> bool:
        """pve-storage src/PVE/Storage.pm ``storage_check_node``: a storage with ``nodes``
        is usable only on those nodes."""
        return not self.nodes or node in self.nodes

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
    """Guests and cluster configuration of every node, guarded by one lock."""

    def __init__(self, root: Path, node: str, runtime: GuestRuntime, *,
                 zone: str = "Europe/Berlin", nodes: tuple[str, ...] = ()):
        self.root = root
        self.nodes = list(nodes) or [node]
        if node not in self.nodes:
            self.nodes.insert(0, node)
        self.node = node                         # the first node (where a caller says none)
        self.runtime = runtime
        self.zone = zone
        self.guests: dict[int, Guest] = {}
        self.placement: dict[int, str] = {}      # vmid -> the node the guest lives on
        self.pools: dict[str, Pool] = {}
        self.storages: dict[str, StorageConfig] = {}
        self.node_networks: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in self.nodes}
        self.backup_jobs: list[dict[str, Any]] = []
        self.ssl_fingerprint = ""
        # corosync/pmxcfs membership as /cluster/status reports it (faults switch these)
        self.cluster_name = "homelab"
        self.offline: set[str] = set()           # members that are not online
        self.quorate = True
        # pve-ha-manager: ha/resources.cfg (sid "vm:110" -> its options) and ha/rules.cfg
        self.ha_resources: dict[str, dict[str, Any]] = {}
        self.ha_rules: dict[str, dict[str, Any]] = {}
        self.user_groups: dict[str, tuple[str, ...]] = {}    # user.cfg groups -> members
        self.lock = threading.RLock()
        self._serving = threading.local()
        (root / "images").mkdir(parents=True, exist_ok=True)
        for each in self.nodes:
            self._make_node_view(each)

    # --- nodes ---------------------------------------------------------------------------
    def serve_on(self, node: str) -> None:
        """The node the current thread's request (or task) runs on."""
        self._serving.node = node

    def serving_node(self) -> str:
        return getattr(self._serving, "node", None) or self.node

    def online(self, node: str) -> bool:
        return node in self.nodes and node not in self.offline

    def ha_sid(self, vmid: int) -> str | None:
        """The HA resource id of a guest (``vm:N`` / ``ct:N``) when HA manages it."""
        for sid in (f"vm:{int(vmid)}", f"ct:{int(vmid)}"):
            if sid in self.ha_resources:
                return sid
        return None

    def ha_digest(self) -> str:
        """The HA config files' digest (SHA-1 of their content, as cfs_read_file gives)."""
        text = repr(sorted(self.ha_resources.items())) + repr(sorted(self.ha_rules.items()))
        return hashlib.sha1(text.encode()).hexdigest()

    def node_of(self, vmid: int) -> str:
        return self.placement.get(int(vmid), self.node)

    def node_view(self, node: str) -> Path:
        """``/etc/pve`` as ``node`` sees it (for that node's pct guard)."""
        return self.root / "node-view" / node

    def networks_of(self, node: str) -> dict[str, dict[str, Any]]:
        """``/etc/network/interfaces`` of ``node`` as pve-common reads it (node-local)."""
        return self.node_networks.setdefault(node, {})

    def _make_node_view(self, node: str) -> None:
        etc = self.root / "etc-pve"
        for folder in ("lxc", "qemu-server"):
            (etc / "nodes" / node / folder).mkdir(parents=True, exist_ok=True)
        view = self.node_view(node)
        view.mkdir(parents=True, exist_ok=True)
        links = {"nodes": Path("../../etc-pve/nodes"), "user.cfg": Path("../../etc-pve/user.cfg"),
                 "local": Path("nodes") / node, "lxc": Path("nodes") / node / "lxc",
                 "qemu-server": Path("nodes") / node / "qemu-server"}
        for name, target in links.items():
            if not (view / name).is_symlink():
                (view / name).symlink_to(target)
        if node == self.node:        # etc-pve itself: as the first node sees it
            for name in ("local", "lxc", "qemu-server"):
                if not (etc / name).is_symlink():
                    (etc / name).symlink_to(links[name])

    # --- guests ------------------------------------------------------------------------
    def config_path(self, vmid: int, kind: str, node: str | None = None) -> Path:
        folder = "qemu-server" if kind == "qemu" else "lxc"
        return self.root / "etc-pve" / "nodes" / (node or self.node_of(vmid)) / folder / \
            f"{int(vmid)}.conf"

    def guest(self, vmid: int, kind: str | None = None, node: str | None = None) -> Guest:
        """The guest, or PVE's answer for a missing config file (500). Asked on ``node``,
        a guest on another node is missing too: qemu-server/pve-container routes run on the
        node of the path (``proxyto => 'node'``) and pve-guest-common
        src/PVE/AbstractConfig.pm ``load_config`` reads ``nodes/<that node>/...conf``
        (``die "Configuration file '$cfspath' does not exist"``); nothing is forwarded to
        the guest's own node."""
        guest = self.guests.get(int(vmid))
        where = node or (self.node_of(vmid) if guest is not None else self.serving_node())
        if guest is None or (kind is not None and guest.kind != kind) or \
                (node is not None and self.node_of(vmid) != node):
            folder = "qemu-server" if kind in (None, "qemu") else "lxc"
            raise ApiError(500, f"Configuration file 'nodes/{where}/{folder}/{vmid}.conf' "
                                "does not exist")
        return guest

    def check_vmid_unused(self, vmid: int) -> None:
        """pve-cluster ``check_vmid_unused``: VMIDs are cluster-wide; the message names the
        node the existing guest lives on."""
        existing = self.guests.get(int(vmid))
        if existing is not None:
            label = "VM" if existing.kind == "qemu" else "CT"
            raise ApiError(500, f"{label} {vmid} already exists on node '{self.node_of(vmid)}'")

    def add_guest(self, guest: Guest, node: str | None = None) -> Guest:
        """A new guest on ``node`` (default: the node the current request runs on)."""
        with self.lock:
            self.guests[guest.vmid] = guest
            self.placement[guest.vmid] = node or self.serving_node()
            self.save(guest)
        return guest

    def save(self, guest: Guest) -> None:
        path = self.config_path(guest.vmid, guest.kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_config(guest.config))
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
            guest = self.guests.get(int(vmid))
            if guest is None:
                return
            self.config_path(guest.vmid, guest.kind).unlink(missing_ok=True)
            del self.guests[guest.vmid]
            self.placement.pop(guest.vmid, None)
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

    def storage_on_node(self, storage_id: str, node: str | None = None) -> StorageConfig:
        """pve-storage src/PVE/Storage.pm ``storage_check_node`` (called by
        ``storage_check_enabled`` and so by ``activate_storage``): ``die "storage
        '$storeid' is not available on node '$node'"`` (the local node when none is given)."""
        found = self.storage(storage_id)
        node = node or self.serving_node()
        if not found.available_on(node):
            raise ApiError(500, f"storage '{storage_id}' is not available on node '{node}'")
        return found


def interface_entry(iface_type: str, *, families: tuple[str, ...] = ("inet",),
                    comments: str | None = None, **options: Any) -> dict[str, Any]:
    """One interface as ``GET /nodes/{node}/network/{iface}`` answers it: pve-common
    src/PVE/Network/Interfaces.pm ``__read_etc_network_interfaces``. Options are the
    stanza's lines (``bridge_ports``, ``ovs_ports``, ``address``, ``netmask``, ``gateway``;
    an ``inet6`` stanza's as ``address6``, ``netmask6``, ``gateway6``, ``method6``). As
    upstream: an ``address`` with a mask becomes ``address`` + ``netmask`` + ``cidr``
    (without one ``cidr`` is ``/32``), ``address6`` gives ``cidr6`` (``/128``), ``method``
    and ``method6`` default to manual, a Linux bridge gets ``bridge_stp`` off and
    ``bridge_fd`` 0, an OVS bridge's ``type`` is its ``ovs_type`` (OVSBridge)."""
    entry: dict[str, Any] = {"type": iface_type, "families": list(families), "autostart": 1,
                             "active": 1, **options}
    for suffix, host_mask in (("", 32), ("6", 128)):
        address = entry.get(f"address{suffix}")
        if not address:
            continue
        if "/" in address:
            entry[f"address{suffix}"], entry[f"netmask{suffix}"] = address.split("/", 1)
            entry[f"cidr{suffix}"] = address
        elif entry.get(f"netmask{suffix}"):
            entry[f"cidr{suffix}"] = f"{address}/{entry[f'netmask{suffix}']}"
        else:
            entry[f"cidr{suffix}"] = f"{address}/{host_mask}"
    entry.setdefault("method", "static" if entry.get("address") else "manual")
    entry.setdefault("method6", "static" if entry.get("address6") else "manual")
    if iface_type == "bridge":
        entry.setdefault("bridge_stp", "off")
        entry.setdefault("bridge_fd", "0")
    elif iface_type == "OVSBridge":
        entry["ovs_type"] = "OVSBridge"
    if comments:
        entry["comments"] = comments
    return entry
