"""Proxmox VE client: the only code that talks to the PVE API.

There is no raw post/put/delete. Every call that changes a guest (restore, config
PUT, start, stop, shutdown, agent exec, destroy) is checked by :class:`ScratchGuard`
before it is sent: the VMID lies in the scratch range, and (for an existing guest)
the guest carries the drill tag and sits in the drill pool. Restores never send
``force=1`` and refuse a VMID that exists.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError
from restoredrill.clients.upid import parse_upid

KINDS = ("qemu", "lxc")


class GuardError(PermissionError):
    """A call would touch a guest the harness did not make; it was not sent."""


class TaskFailed(RuntimeError):
    def __init__(self, message: str, upid: str, exitstatus: str, log_tail: list[str]):
        super().__init__(message)
        self.upid = upid
        self.exitstatus = exitstatus
        self.log_tail = log_tail


class TaskTimeout(TaskFailed):
    pass


@dataclass(frozen=True)
class ScratchGuard:
    first: int
    last: int
    tag: str
    pool: str

    def check_vmid(self, vmid: int, action: str) -> None:
        if not self.first <= int(vmid) <= self.last:
            raise GuardError(f"refusing to {action} guest {vmid}: it lies outside the scratch range "
                             f"{self.first}-{self.last}; restoredrill only touches guests it made")

    def check_guest(self, vmid: int, action: str, *, tags: str | None, pool: str | None) -> None:
        self.check_vmid(vmid, action)
        tag_list = [t for t in (tags or "").replace(",", ";").split(";") if t]
        if self.tag not in tag_list:
            raise GuardError(f"refusing to {action} guest {vmid}: it does not carry the drill tag "
                             f"{self.tag!r} (tags: {tags or 'none'})")
        if pool != self.pool:
            raise GuardError(f"refusing to {action} guest {vmid}: it is not in the drill pool {self.pool!r} "
                             f"(pool: {pool or 'none'})")


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"guest kind must be qemu or lxc, not {kind!r}")
    return kind


class PveClient:
    def __init__(self, api: ApiChokePoint, guard: ScratchGuard):
        self.api = api
        self.guard = guard

    # --- read side --------------------------------------------------------------------
    def version(self) -> dict:
        """``pvesh get /version``"""
        return self.api.call("get", "/version")

    def resources(self, type_: str | None = "vm") -> list[dict]:
        """``pvesh get /cluster/resources --type vm``"""
        return self.api.call("get", "/cluster/resources", **({"type": type_} if type_ else {}))

    def next_id(self) -> int:
        """``pvesh get /cluster/nextid`` (a JSON string on the wire)."""
        return int(self.api.call("get", "/cluster/nextid"))

    def not_backed_up(self) -> list[dict]:
        """``pvesh get /cluster/backup-info/not-backed-up``"""
        return self.api.call("get", "/cluster/backup-info/not-backed-up")

    def storages(self, node: str, content: str | None = None) -> list[dict]:
        """``pvesh get /nodes/{node}/storage [--content backup]``: storage ids, types, usage."""
        return self.api.call("get", f"/nodes/{node}/storage", **({"content": content} if content else {}))

    def notification_targets(self) -> list[dict]:
        """``pvesh get /cluster/notifications/targets``: name, type, origin, disable."""
        return self.api.call("get", "/cluster/notifications/targets")

    def network_interface(self, node: str, iface: str) -> dict:
        """``pvesh get /nodes/{node}/network/{iface}``"""
        return self.api.call("get", f"/nodes/{node}/network/{iface}")

    def backups(self, node: str, storage: str, vmid: int | None = None) -> list[dict]:
        """``pvesh get /nodes/{node}/storage/{storage}/content --content backup [--vmid N]``"""
        params = {"content": "backup", **({"vmid": vmid} if vmid is not None else {})}
        return self.api.call("get", f"/nodes/{node}/storage/{storage}/content", **params)

    def extract_config(self, node: str, volid: str) -> str:
        """``pvesh get /nodes/{node}/vzdump/extractconfig --volume VOLID``"""
        return self.api.call("get", f"/nodes/{node}/vzdump/extractconfig", volume=volid)

    def config(self, node: str, kind: str, vmid: int) -> dict:
        """``pvesh get /nodes/{node}/{qemu|lxc}/{vmid}/config``"""
        return self.api.call("get", f"/nodes/{node}/{_kind(kind)}/{vmid}/config", guest=f"guest {vmid}")

    def status(self, node: str, kind: str, vmid: int) -> dict:
        """``pvesh get /nodes/{node}/{qemu|lxc}/{vmid}/status/current``"""
        return self.api.call("get", f"/nodes/{node}/{_kind(kind)}/{vmid}/status/current", guest=f"guest {vmid}")

    def exists(self, vmid: int) -> bool:
        return any(int(r.get("vmid", -1)) == int(vmid) for r in self.resources("vm"))

    def pool_of(self, vmid: int) -> str | None:
        for resource in self.resources("vm"):
            if int(resource.get("vmid", -1)) == int(vmid):
                return resource.get("pool")
        return None

    # --- guarded: everything that changes a guest -------------------------------------
    def _guard_existing(self, node: str, kind: str, vmid: int, action: str) -> None:
        self.guard.check_vmid(vmid, action)       # before any request about the guest
        config = self.config(node, kind, vmid)
        self.guard.check_guest(vmid, action, tags=config.get("tags"), pool=self.pool_of(vmid))

    def restore(self, node: str, kind: str, vmid: int, volid: str, storage: str, overrides: dict) -> str:
        """``qmrestore`` / ``pct restore``: POST /nodes/{node}/qemu (archive=) or /lxc (ostemplate=, restore=1).

        Overrides must set the drill tag and pool; ``force`` is never sent. Returns the UPID.
        """
        action = "restore into"
        self.guard.check_vmid(vmid, action)
        if self.exists(vmid):
            raise GuardError(f"refusing to restore into guest {vmid}: it exists (restoredrill never "
                             f"overwrites a guest; reap it or pick another scratch VMID)")
        tags = str(overrides.get("tags", ""))
        if self.guard.tag not in tags.replace(",", ";").split(";") or overrides.get("pool") != self.guard.pool:
            raise GuardError(f"refusing to restore into guest {vmid} without the drill tag and pool")
        params = {k: v for k, v in overrides.items() if k != "force"}
        params.update(vmid=vmid, storage=storage)
        if kind == "qemu":
            params["archive"] = volid
        else:
            params.update(ostemplate=volid, restore=1)
        return self.api.call("post", f"/nodes/{node}/{_kind(kind)}", guest=f"guest {vmid}", **params)

    def update_config(self, node: str, kind: str, vmid: int, **params) -> object:
        """``pvesh set /nodes/{node}/{kind}/{vmid}/config`` (PUT; ``delete=a,b`` removes keys)."""
        self._guard_existing(node, kind, vmid, "change the config of")
        return self.api.call("put", f"/nodes/{node}/{_kind(kind)}/{vmid}/config", guest=f"guest {vmid}", **params)

    def power(self, node: str, kind: str, vmid: int, action: str) -> str:
        """``pvesh create /nodes/{node}/{kind}/{vmid}/status/{start|stop|shutdown}`` -> UPID"""
        if action not in ("start", "stop", "shutdown"):
            raise ValueError(f"unknown power action {action!r}")
        self._guard_existing(node, kind, vmid, action)
        return self.api.call("post", f"/nodes/{node}/{_kind(kind)}/{vmid}/status/{action}", guest=f"guest {vmid}")

    def destroy(self, node: str, kind: str, vmid: int) -> str:
        """``pvesh delete /nodes/{node}/{kind}/{vmid} --purge 1 --destroy-unreferenced-disks 1`` -> UPID"""
        self._guard_existing(node, kind, vmid, "destroy")
        params = {"purge": 1, "destroy-unreferenced-disks": 1}
        if kind == "lxc":
            params = {"purge": 1, "force": 1}
        return self.api.call("delete", f"/nodes/{node}/{_kind(kind)}/{vmid}", guest=f"guest {vmid}", **params)

    def agent_ping(self, node: str, vmid: int) -> object:
        """``pvesh create /nodes/{node}/qemu/{vmid}/agent/ping``"""
        self._guard_existing(node, "qemu", vmid, "ping the agent of")
        return self.api.call("post", f"/nodes/{node}/qemu/{vmid}/agent/ping", guest=f"guest {vmid}")

    def agent_interfaces(self, node: str, vmid: int) -> list[dict]:
        """``pvesh get /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces``"""
        self.guard.check_vmid(vmid, "query the agent of")
        answer = self.api.call("get", f"/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces",
                               guest=f"guest {vmid}")
        return answer.get("result", answer) if isinstance(answer, dict) else answer

    def agent_exec(self, node: str, vmid: int, command: list[str], input_data: str | None = None) -> int:
        """``pvesh create /nodes/{node}/qemu/{vmid}/agent/exec --command ...`` -> pid"""
        self._guard_existing(node, "qemu", vmid, "run a command in")
        params: dict = {"command": list(command)}
        if input_data is not None:
            params["input-data"] = input_data
        return int(self.api.call("post", f"/nodes/{node}/qemu/{vmid}/agent/exec", guest=f"guest {vmid}",
                                 **params)["pid"])

    def agent_exec_status(self, node: str, vmid: int, pid: int) -> dict:
        """``pvesh get /nodes/{node}/qemu/{vmid}/agent/exec-status --pid N``"""
        self.guard.check_vmid(vmid, "query the agent of")
        return self.api.call("get", f"/nodes/{node}/qemu/{vmid}/agent/exec-status", guest=f"guest {vmid}", pid=pid)

    # --- tasks -----------------------------------------------------------------------
    def task_status(self, node: str, upid: str) -> dict:
        """``pvesh get /nodes/{node}/tasks/{upid}/status``"""
        return self.api.call("get", f"/nodes/{node}/tasks/{upid}/status")

    def task_log(self, node: str, upid: str, limit: int = 500) -> list[str]:
        """``pvesh get /nodes/{node}/tasks/{upid}/log``"""
        return [line.get("t", "") for line in self.api.call("get", f"/nodes/{node}/tasks/{upid}/log", limit=limit)]

    def wait_task(self, node: str, upid: str, *, deadline: float, what: str) -> dict:
        """Poll until the task stops (0.1 s, growing to 1 s); raise on failure or deadline."""
        return wait_for_task(lambda: self.task_status(node, upid), lambda: self.task_log(node, upid),
                             upid, deadline=deadline, what=what)


def wait_for_task(status, log, upid: str, *, deadline: float, what: str) -> dict:
    parse_upid(upid)
    interval, end = 0.1, time.monotonic() + deadline
    while True:
        current = status()
        if current.get("status") == "stopped":
            exit_status = str(current.get("exitstatus", "unknown"))
            if exit_status == "OK" or exit_status.startswith("WARNINGS"):
                return current
            tail = log()[-20:]
            last = "; ".join(line for line in tail[-4:] if line and line != exit_status)
            raise TaskFailed(f"{what}: task {upid} failed: {exit_status}" + (f" (log: {last})" if last else ""),
                             upid, exit_status, tail)
        if time.monotonic() >= end:
            raise TaskTimeout(f"{what}: task {upid} still running after {deadline:g} s", upid, "running", log()[-20:])
        time.sleep(interval)
        interval = min(interval * 1.5, 1.0)


__all__ = ["ApiError", "GuardError", "PveClient", "ScratchGuard", "TaskFailed", "TaskTimeout", "wait_for_task"]
