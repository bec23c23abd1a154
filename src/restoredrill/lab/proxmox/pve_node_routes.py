"""The PVE double's per-node reads and the storage configuration (what monitoring reads).

Manual equivalents: ``pvesh get /nodes/{node}/status``, ``.../version``,
``.../subscription``, ``.../replication``, ``.../network``, ``pvesh get /storage``,
``pvesh get /storage/{storage}``. A call to an offline node fails in ``check_node`` (595).
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
from typing import Any

from restoredrill.lab.proxmox import permissions as perms
from restoredrill.lab.proxmox.cluster import StorageConfig
from restoredrill.lab.proxmox.pve_service import PveService
from restoredrill.lab.proxmox.routing import (PVE_NODE, PVE_STORAGE, PVE_VMID, STRING,
                                              Call, Router, declare, optional)

NETWORK_TYPES = ["bridge", "bond", "eth", "alias", "vlan", "fabric", "OVSBridge", "OVSBond",
                 "OVSPort", "OVSIntPort", "vnet", "any_bridge", "any_local_bridge",
                 "include_sdn"]


def add_node_routes(router: Router, service: PveService) -> None:
    @router.route("GET", "/nodes/{node}/version", declare(node=PVE_NODE))
    def version(call: Call) -> dict[str, Any]:
        """pve-manager PVE/API2/Nodes.pm ``version``: ``PVE::pvecfg::version_info`` (version,
        release, repoid)."""
        service.check_node(call)
        return {key: service.version[key] for key in ("version", "release", "repoid")}

    @router.route("GET", "/nodes/{node}/status", declare(node=PVE_NODE))
    def status(call: Call) -> dict[str, Any]:
        """pve-manager PVE/API2/Nodes.pm ``status`` (Sys.Audit on the node): uptime, loadavg as
        strings, kernel, boot mode, cpu info, memory, swap, root file system, pveversion."""
        node = service.check_node(call)
        perms.require(call.token, f"/nodes/{node}", ["Sys.Audit"])
        uname, disk = platform.uname(), shutil.disk_usage("/")
        total, free = 16 * 1024 ** 3, 14 * 1024 ** 3
        return {
            "uptime": 86400 * 12, "idle": 0, "wait": 0.001, "cpu": 0.02,
            "loadavg": [f"{value:.2f}" for value in os.getloadavg()],
            "kversion": f"{uname.system} {uname.release} {uname.version}",
            "current-kernel": {"sysname": uname.system, "release": uname.release,
                               "version": uname.version, "machine": uname.machine},
            "boot-info": {"mode": "efi", "secureboot": 0},
            "cpuinfo": {"model": "QEMU Virtual CPU", "cpus": os.cpu_count() or 2,
                        "cores": os.cpu_count() or 2, "sockets": 1, "mhz": "2400.000",
                        "hvm": "1", "flags": "fpu sse2 lm", "user_hz": 100},
            "memory": {"total": total, "used": total - free, "free": free,
                       "available": free},
            "swap": {"total": 0, "used": 0, "free": 0},
            "ksm": {"shared": 0},
            "rootfs": {"total": disk.total, "used": disk.used, "free": disk.free,
                       "avail": disk.free},
            "pveversion": f"pve-manager/{service.version['version']}/{service.version['repoid']}"}

    @router.route("GET", "/nodes/{node}/subscription", declare(node=PVE_NODE))
    def subscription(call: Call) -> dict[str, Any]:
        """pve-manager PVE/API2/Subscription.pm ``get``: no key -> status ``notfound`` with the
        shop URL, ``serverid`` only for a caller with Sys.Audit on the node."""
        node = service.check_node(call)
        answer = {"status": "notfound", "message": "There is no subscription key",
                  "url": "https://www.proxmox.com/en/proxmox-virtual-environment/pricing"}
        if perms.has_privs(call.token, f"/nodes/{node}", ["Sys.Audit"]):
            answer["serverid"] = hashlib.md5(node.encode()).hexdigest().upper()
        return answer

    @router.route("GET", "/nodes/{node}/replication", declare(
        node=PVE_NODE, guest=optional(PVE_VMID)))
    def replication(call: Call) -> list[dict[str, Any]]:
        """pve-manager PVE/API2/Replication.pm ``status``: the node's replication jobs (the
        lab's ZFS storages are node-local without replication jobs: none)."""
        service.check_node(call)
        return []

    @router.route("GET", "/nodes/{node}/network", declare(
        node=PVE_NODE, type=optional(STRING, enum=NETWORK_TYPES)))
    def network(call: Call) -> list[dict[str, Any]]:
        """pve-manager PVE/API2/Network.pm ``index``: each parsed interface with its name as
        ``iface``; ``type`` filters (``any_bridge``: Linux and OVS bridges)."""
        node = service.check_node(call)
        wanted = call.get("type")
        kinds = {"any_bridge": {"bridge", "OVSBridge"},
                 "any_local_bridge": {"bridge", "OVSBridge"}}.get(wanted, {wanted})
        return [{**entry, "iface": name}
                for name, entry in sorted(service.state.networks_of(node).items())
                if wanted in (None, "include_sdn") or entry.get("type") in kinds]

    @router.route("GET", "/storage", declare(type=optional(STRING)))
    def storages(call: Call) -> list[dict[str, Any]]:
        """pve-storage src/PVE/API2/Storage/Config.pm ``index``: entries the caller holds
        Datastore.Audit or Datastore.AllocateSpace on, each with the config's digest."""
        return [storage_config(s) for s in sorted(service.state.storages.values(),
                                                  key=lambda s: s.storage)
                if call.get("type") in (None, s.type) and perms.has_privs(
                    call.token, f"/storage/{s.storage}",
                    ["Datastore.Audit", "Datastore.AllocateSpace"], any_of=True)]

    @router.route("GET", "/storage/{storage}", declare(storage=PVE_STORAGE))
    def storage(call: Call) -> dict[str, Any]:
        """pve-storage Config.pm ``read``: Datastore.Allocate on /storage/{storage}."""
        storage_id = call.get("storage")
        perms.require(call.token, f"/storage/{storage_id}", ["Datastore.Allocate"])
        return storage_config(service.state.storage(storage_id))


def storage_config(config: StorageConfig) -> dict[str, Any]:
    """One storage.cfg section as the API shows it; secrets (the PBS password and encryption
    key live in priv/storage/) are never part of it."""
    entry: dict[str, Any] = {"storage": config.storage, "type": config.type,
                             "content": config.content, "shared": int(config.shared)}
    if config.nodes:
        entry["nodes"] = ",".join(config.nodes)
    if config.type == "zfspool":
        entry.update(pool="rpool/data", sparse=1)
    elif config.type == "dir":
        entry["path"] = "/var/lib/vz"
    elif config.type == "pbs":
        entry.update(datastore=config.datastore, server="192.168.1.20",
                     username="root@pam", fingerprint=config.fingerprint)
        if config.namespace:
            entry["namespace"] = config.namespace
    entry["digest"] = hashlib.sha1(repr(sorted(entry.items())).encode()).hexdigest()
    return entry

