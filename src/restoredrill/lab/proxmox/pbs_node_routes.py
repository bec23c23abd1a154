"""The PBS double's node status (``proxmox-backup-manager node status`` / the dashboard):
what pbs-exporter and other monitoring read from ``/nodes/{node}/status``.

proxmox-backup accepts ``localhost`` for the node everywhere (pbs-api-types ``NODE_SCHEMA``:
"Node name (or 'localhost')"); the double also accepts its own node name.
"""
from __future__ import annotations

import os
import platform
import shutil
from typing import TYPE_CHECKING, Any

from restoredrill.lab.proxmox.permissions import require
from restoredrill.lab.proxmox.routing import PBS_NODE, Call, Router, declare

if TYPE_CHECKING:
    from restoredrill.lab.proxmox.pbs_routes import PbsService


def add_pbs_node_routes(router: Router, service: PbsService) -> None:
    @router.route("GET", "/nodes/{node}/status", declare(node=PBS_NODE))
    def status(call: Call) -> dict[str, Any]:
        """proxmox-backup src/api2/node/status.rs ``get_status`` (Sys.Audit on
        /system/status): memory and swap counters, the root file system's usage as ``root``,
        uptime, numeric loadavg, kernel, cpu info, boot mode and the certificate
        fingerprint under ``info``."""
        require(call.token, "/system/status", ["Sys.Audit"], api="pbs")
        uname, disk = platform.uname(), shutil.disk_usage("/")
        total, free = 8 * 1024 ** 3, 6 * 1024 ** 3
        return {
            "memory": {"total": total, "used": total - free, "free": free},
            "swap": {"total": 0, "used": 0, "free": 0},
            "root": {"total": disk.total, "used": disk.used, "avail": disk.free},
            "uptime": 86400 * 12, "loadavg": list(os.getloadavg()),
            "kversion": f"{uname.system} {uname.release} {uname.version}",
            "current-kernel": {"sysname": uname.system, "release": uname.release,
                               "version": uname.version, "machine": uname.machine},
            "cpuinfo": {"model": "QEMU Virtual CPU", "sockets": 1, "cpus": os.cpu_count() or 2},
            "cpu": 0.02, "wait": 0.001,
            "info": {"fingerprint": service.fingerprint},
            "boot-info": {"mode": "efi", "secureboot": False}}
