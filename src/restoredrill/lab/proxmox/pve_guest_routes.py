"""The PVE API of the double, guest part: list, status, power, config, agent, destroy.

Manual equivalents: ``qm list``, ``qm status``, ``qm start|stop|shutdown``, ``qm config``,
``qm set --delete``, ``qm guest cmd VMID ping``, ``qm guest exec``, ``qm destroy --purge``
(``pct`` likewise). Creation from a backup is in ``pve_restore_routes``. Power and agent
calls go through the ``GuestRuntime``; the built-in one runs nothing.
"""
from __future__ import annotations

import re
from typing import Any

from restoredrill.lab.proxmox import permissions as perms
from restoredrill.lab.proxmox.guest_options import (LXC_OPTIONS, QEMU_OPTIONS, option_known,
                                                    typed_config)
from restoredrill.lab.proxmox.guests import (Guest, GuestError, lxc_net_with_mac,
                                             qemu_net_with_mac)
from restoredrill.lab.proxmox.names import check_config_key
from restoredrill.lab.proxmox.pve_restore_routes import add_restore_routes
from restoredrill.lab.proxmox.pve_service import PveService
from restoredrill.lab.proxmox.routing import (BOOLEAN, INTEGER, PVE_NODE, PVE_VMID, STRING,
                                              ApiError, Call, Router, declare, optional,
                                              param_error)

KINDS = {"qemu": ("VM", QEMU_OPTIONS), "lxc": ("CT", LXC_OPTIONS)}
POWER_TASKS = {("qemu", "start"): "qmstart", ("qemu", "stop"): "qmstop",
               ("qemu", "shutdown"): "qmshutdown", ("lxc", "start"): "vzstart",
               ("lxc", "stop"): "vzstop", ("lxc", "shutdown"): "vzshutdown"}
GUEST = {"node": PVE_NODE, "vmid": PVE_VMID}


def guest_resource(service: PveService, guest: Guest) -> dict[str, Any]:
    """A guest as ``/cluster/resources`` and pool members show it."""
    entry: dict[str, Any] = {
        "id": f"{guest.kind}/{guest.vmid}", "type": guest.kind, "vmid": guest.vmid,
        "name": guest.name, "node": service.state.node_of(guest.vmid),
        "status": service.state.runtime.status(guest),
        "maxcpu": int(guest.config.get("cores", "1") or 1), "cpu": 0.0,
        "maxmem": memory_bytes(guest), "mem": 0, "maxdisk": max(guest.disk_size, 0), "disk": 0,
        "uptime": guest.uptime, "template": 0, "netin": 0, "netout": 0, "diskread": 0,
        "diskwrite": 0}
    pools = service.state.pools_of(guest.vmid)
    if pools:
        entry["pool"] = pools[0]
    for key in ("tags", "lock"):
        if key in guest.config:
            entry[key] = guest.config[key]
    return entry


def memory_bytes(guest: Guest) -> int:
    match = re.match(r"(?:current=)?(\d+)", guest.config.get("memory", "512"))
    return int(match.group(1)) * 1024 * 1024 if match else 512 * 1024 * 1024


def add_guest_routes(router: Router, service: PveService) -> None:
    for kind in KINDS:
        _listing_route(router, service, kind)
        _status_routes(router, service, kind)
        _config_routes(router, service, kind)
        _destroy_route(router, service, kind)
    _agent_routes(router, service)
    add_restore_routes(router, service)


def _listing_route(router: Router, service: PveService, kind: str) -> None:
    extra = {"full": optional(BOOLEAN)} if kind == "qemu" else {}

    @router.route("GET", f"/nodes/{{node}}/{kind}", declare({"node": PVE_NODE, **extra}))
    def listing(call: Call) -> list[dict[str, Any]]:
        node = service.check_node(call)     # the node's own guests (qemu-server vmlist)
        found = []
        for guest in sorted(service.state.guests.values(), key=lambda g: g.vmid):
            if guest.kind == kind and service.state.node_of(guest.vmid) == node and perms.has_privs(
                    call.token, f"/vms/{guest.vmid}", ["VM.Audit"],
                    pools=service.state.pools_of(guest.vmid)):
                entry = guest_resource(service, guest)
                for key in ("id", "type", "node", "maxcpu", "template", "pool"):
                    entry.pop(key, None)
                entry["cpus"] = int(guest.config.get("cores", "1") or 1)
                found.append(entry)
        return found


def _status_routes(router: Router, service: PveService, kind: str) -> None:
    label = KINDS[kind][0]

    @router.route("GET", f"/nodes/{{node}}/{kind}/{{vmid}}/status/current", declare(GUEST))
    def current(call: Call) -> dict[str, Any]:
        guest = service.guest(call, kind)
        service.require_vm(call, guest.vmid, ["VM.Audit"])
        status = service.state.runtime.status(guest)
        result = {"vmid": guest.vmid, "status": status, "name": guest.name,
                  "cpus": int(guest.config.get("cores", "1") or 1), "cpu": 0.0,
                  "maxmem": memory_bytes(guest), "mem": 0, "maxdisk": guest.disk_size,
                  "disk": 0, "uptime": guest.uptime, "netin": 0, "netout": 0, "diskread": 0,
                  "diskwrite": 0, "ha": {"managed": int(guest.ha_managed)}}
        if kind == "qemu":
            result["qmpstatus"] = status
            if re.match(r"(enabled=)?1\b", guest.config.get("agent", "0")):
                result["agent"] = 1
        for key in ("lock", "tags"):
            if key in guest.config:
                result[key] = guest.config[key]
        return result

    for action in ("start", "stop", "shutdown"):
        _power_route(router, service, kind, label, action)


def _power_route(router, service: PveService, kind: str, label: str, action: str) -> None:
    params = {"start": {"skiplock": optional(BOOLEAN)},
              "stop": {"skiplock": optional(BOOLEAN), "overrule-shutdown": optional(BOOLEAN)},
              "shutdown": {"forceStop": optional(BOOLEAN),
                           "timeout": optional(INTEGER, minimum=0)}}[action]
    if kind == "qemu" and action != "start":
        params["timeout"] = optional(INTEGER, minimum=0)

    @router.route("POST", f"/nodes/{{node}}/{kind}/{{vmid}}/status/{action}",
                  declare({**GUEST, **params}))
    def power(call: Call) -> str:
        guest = service.guest(call, kind)
        service.require_vm(call, guest.vmid, ["VM.PowerMgmt"])
        if call.get("skiplock") and call.authid != "root@pam":
            raise param_error("skiplock", "Only root may use this option.")

        def work(task) -> None:
            runtime = service.state.runtime
            if action == "start":
                if "lock" in guest.config:
                    raise GuestError(f"{label} is locked ({guest.config['lock']})")
                if runtime.status(guest) == "running":
                    raise GuestError(f"{label} {guest.vmid} already running")
                runtime.start(guest)
            elif action == "shutdown" and runtime.status(guest) != "running":
                raise GuestError(f"{label} {guest.vmid} not running")
            else:
                runtime.stop(guest)
        return service.start_task(call, POWER_TASKS[(kind, action)], str(guest.vmid), work)


def _config_routes(router: Router, service: PveService, kind: str) -> None:
    label, options = KINDS[kind]
    extra = {"current": optional(BOOLEAN), "snapshot": optional(STRING)}

    @router.route("GET", f"/nodes/{{node}}/{kind}/{{vmid}}/config", declare({**GUEST, **extra}))
    def read_config(call: Call) -> dict[str, Any]:
        guest = service.guest(call, kind)
        service.require_vm(call, guest.vmid, ["VM.Audit"])
        return {**typed_config(guest.config, kind), "digest": service.state.digest(guest)}

    put_params = {**GUEST, **options, "delete": optional(STRING, format="pve-configid-list"),
                  "digest": optional(STRING, maxLength=40), "revert": optional(STRING)}
    if kind == "qemu":
        put_params.update({"skiplock": optional(BOOLEAN), "force": optional(BOOLEAN)})

    @router.route("PUT", f"/nodes/{{node}}/{kind}/{{vmid}}/config", declare(put_params))
    def update_config(call: Call) -> None:
        guest = service.guest(call, kind)
        changes = {k: _text(v) for k, v in call.params.items()
                   if k not in ("node", "vmid", "delete", "digest", "revert", "skiplock",
                                "force")}
        deletes = [check_config_key(k) for k in re.split(r"[,;\s]+", call.get("delete") or "")
                   if k]
        if call.get("skiplock") and call.authid != "root@pam":
            raise param_error("skiplock", "Only root may use this option.")
        if not changes and not deletes and not call.get("revert"):
            raise ApiError(500, "no options specified")
        for key in deletes:
            if key in changes:
                raise param_error("delete", f"you can't use '-{key}' and -delete {key}' at "
                                            "the same time")
            if not option_known(key, options):
                raise param_error("delete", f"unknown option '{key}'")
        check_config_privileges(service, call, guest, changes, deletes)
        with service.state.lock:
            if call.get("digest") and call.get("digest") != service.state.digest(guest):
                raise ApiError(500, "checksum mismatch (file change by other user?)")
            if "lock" in guest.config:
                raise ApiError(500, f"{label} is locked ({guest.config['lock']})")
            for key in deletes:
                guest.config.pop(key, None)
            guest.config.update(changes)
            service.state.save(guest)
        return None


def check_config_privileges(service: PveService, call: Call, guest: Guest,
                            changes: dict[str, str], deletes: list[str]) -> None:
    """Upstream's per-option rules (``permissions``), then new MACs for netN without one."""
    def on_guest(privs: list[str]) -> None:
        service.require_vm(call, guest.vmid, privs)

    def on_path(path: str, privs: list[str]) -> None:
        perms.require(call.token, path, privs)

    for key in deletes:     # upstream checks the current value of what a token deletes
        if guest.kind == "qemu":
            perms.check_qemu_option(key, guest.config.get(key), on_guest, on_path, deleting=True)
        else:
            perms.check_lxc_option(key, guest.config.get(key), on_guest, deleting=True)
    for key, value in sorted(changes.items()):
        if guest.kind == "qemu":
            perms.check_qemu_option(key, value, on_guest, on_path)
        else:
            perms.check_lxc_option(key, value, on_guest)
        if re.fullmatch(r"net\d+", key):
            if path := perms.bridge_acl_path(value):
                on_path(path, ["SDN.Use"])
            changes[key] = qemu_net_with_mac(value) if guest.kind == "qemu" else \
                lxc_net_with_mac(value)


def _text(value: Any) -> str:
    return str(int(value)) if isinstance(value, (bool, float)) and float(value).is_integer() \
        else str(value)


def _destroy_route(router: Router, service: PveService, kind: str) -> None:
    params = {"purge": optional(BOOLEAN), "destroy-unreferenced-disks": optional(BOOLEAN)}
    params.update({"skiplock": optional(BOOLEAN)} if kind == "qemu" else
                  {"force": optional(BOOLEAN)})

    @router.route("DELETE", f"/nodes/{{node}}/{kind}/{{vmid}}", declare({**GUEST, **params}))
    def destroy(call: Call) -> str:
        guest = service.guest(call, kind)
        service.require_vm(call, guest.vmid, ["VM.Allocate"])
        if call.get("skiplock") and call.authid != "root@pam":
            raise param_error("skiplock", "Only root may use this option.")

        def early_checks() -> None:
            label = "VM" if kind == "qemu" else "CT"
            if guest.protected:
                raise ApiError(500, f"can't remove {label} {guest.vmid} - protection mode enabled")
            if guest.ha_managed and not call.get("purge"):
                raise ApiError(500, f"unable to remove {label} {guest.vmid} - used in HA "
                                    "resources and purge parameter not set.")
            if service.state.runtime.status(guest) == "running":
                if kind == "qemu":
                    raise ApiError(500, f"VM {guest.vmid} is running - destroy failed")
                if not call.get("force"):
                    raise ApiError(500, f"unable to destroy CT {guest.vmid} - container is "
                                        "running")
        early_checks()

        def work(task) -> None:
            early_checks()
            if kind == "lxc" and call.get("force"):
                service.state.runtime.stop(guest)
            service.state.remove_guest(guest.vmid, purge=bool(call.get("purge")))
            if call.get("purge"):
                task.log(f"purging {'VM' if kind == 'qemu' else 'CT'} {guest.vmid} from "
                         "related configurations..")
        worker = "qmdestroy" if kind == "qemu" else "vzdestroy"
        return service.start_task(call, worker, str(guest.vmid), work)


def pve_release(service: PveService) -> tuple[int, int]:
    """(major, minor) of the PVE the double plays (``GET /version``)."""
    major, minor = service.version["version"].split(".")[:2]
    return int(major), int(minor)


def _agent_routes(router: Router, service: PveService) -> None:
    base = "/nodes/{node}/qemu/{vmid}/agent"
    audit = ["VM.GuestAgent.Audit", "VM.GuestAgent.Unrestricted"]

    def agent_guest(call: Call, privs: list[str]) -> Guest:
        """qemu-server before 9.0.3 (PVE 8) checks every agent command with VM.Monitor
        (src/PVE/API2/Qemu/Agent.pm ``$perm //= 'VM.Monitor'``); from 9.0.3 on the
        VM.GuestAgent.* privileges (commit b92a40ce)."""
        guest = service.guest(call, "qemu")
        if pve_release(service) < (9, 0):
            privs = ["VM.Monitor"]
        service.require_vm(call, guest.vmid, privs, any_of=True)
        return guest

    def agent_call(function, *args) -> Any:
        try:
            return function(*args)
        except GuestError as exc:
            raise ApiError(500, str(exc)) from None

    @router.route("POST", f"{base}/ping", declare(GUEST))
    def ping(call: Call) -> dict[str, Any]:
        guest = agent_guest(call, audit)
        return {"result": agent_call(service.state.runtime.agent_ping, guest)}

    @router.route("GET", f"{base}/network-get-interfaces", declare(GUEST))
    def interfaces(call: Call) -> dict[str, Any]:
        guest = agent_guest(call, audit)
        return {"result": agent_call(service.state.runtime.agent_network_interfaces, guest)}

    @router.route("POST", f"{base}/exec", declare({**GUEST, "command": {
        "type": "array", "items": {"type": "string"}}, "input-data": optional(
            STRING, maxLength=65536)}))
    def execute(call: Call) -> dict[str, Any]:
        guest = agent_guest(call, ["VM.GuestAgent.Unrestricted"])
        command = call.get("command") or []
        if not command and call.get("input-data") is None:
            raise ApiError(500, "command or input-data (or both) required")
        pid = agent_call(service.state.runtime.agent_exec, guest, command,
                         call.get("input-data"))
        return {"pid": pid}

    @router.route("GET", f"{base}/exec-status", declare({**GUEST, "pid": INTEGER}))
    def exec_status(call: Call) -> dict[str, Any]:
        guest = agent_guest(call, ["VM.GuestAgent.Unrestricted"])
        return agent_call(service.state.runtime.agent_exec_status, guest, call.get("pid"))
