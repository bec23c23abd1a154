"""Proxmox VE client: the only code that talks to the PVE API.

There is no raw post/put/delete. Every call that changes a guest (restore, config
PUT, start, stop, shutdown, agent exec, destroy) is checked by :class:`ScratchGuard`
before it is sent: the VMID lies in the scratch range, and (for an existing guest)
the guest carries the drill tag and sits in the drill pool. Restores never send
``force=1`` and refuse a VMID that exists.

Answers are read through the typed accessors of ``proxmox_api``: a malformed answer ends
in an ApiError naming the call, and server text in a task failure is clipped.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from restoredrill.clients.proxmox_api import (ApiChokePoint, ApiError, answer_list, answer_object, as_kind, clip,
                                              field, shape_error)
from restoredrill.clients.upid import parse_upid
from restoredrill.waiting import DeadlineExceeded, wait_until

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
    def _get(self, path: str, shape: Callable, /, *, guest: str = "", **params):
        """GET ``path``; the answer checked by ``shape`` (answer_list, answer_object...)."""
        return shape(self.api.call("get", path, guest=guest, **params), _label("GET", path, guest))

    def version(self) -> dict:
        """``pvesh get /version``"""
        return self._get("/version", answer_object)

    def permissions(self, path: str | None = None) -> dict[str, dict[str, int]]:
        """``pveum user token permissions USER TOKEN [--path PATH]`` (GET /access/permissions):
        path -> privilege -> propagate (1/0) of the calling token; with ``path`` only that path,
        present even when nothing is granted there (pve-access-control API2/AccessControl.pm)."""
        params = {"path": path} if path else {}
        return self._get("/access/permissions", answer_object, **params)

    def resources(self, type_: str | None = "vm") -> list[dict]:
        """``pvesh get /cluster/resources --type vm``; a ``vmid`` is an int, a ``pool`` a string."""
        call = _label("GET", "/cluster/resources")
        items = self._get("/cluster/resources", answer_list, **({"type": type_} if type_ else {}))
        return [_resource(item, call) for item in items]

    def next_id(self) -> int:
        """``pvesh get /cluster/nextid`` (a JSON string on the wire)."""
        return self._get("/cluster/nextid", lambda answer, call: as_kind(answer, int, call=call))

    def not_backed_up(self) -> list[dict]:
        """``pvesh get /cluster/backup-info/not-backed-up``"""
        return self._get("/cluster/backup-info/not-backed-up", answer_list)

    def storages(self, node: str, content: str | None = None) -> list[dict]:
        """``pvesh get /nodes/{node}/storage [--content backup]``: storage ids, types, usage."""
        return self._get(f"/nodes/{node}/storage", answer_list, **({"content": content} if content else {}))

    def notification_targets(self) -> list[dict]:
        """``pvesh get /cluster/notifications/targets``: name, type, origin, disable."""
        return self._get("/cluster/notifications/targets", answer_list)

    def network_interface(self, node: str, iface: str) -> dict:
        """``pvesh get /nodes/{node}/network/{iface}``"""
        return self._get(f"/nodes/{node}/network/{iface}", answer_object)

    def backups(self, node: str, storage: str, vmid: int | None = None) -> list[dict]:
        """``pvesh get /nodes/{node}/storage/{storage}/content --content backup [--vmid N]``"""
        params = {"content": "backup", **({"vmid": vmid} if vmid is not None else {})}
        return self._get(f"/nodes/{node}/storage/{storage}/content", answer_list, **params)

    def extract_config(self, node: str, volid: str) -> str:
        """``pvesh get /nodes/{node}/vzdump/extractconfig --volume VOLID``"""
        return self._get(f"/nodes/{node}/vzdump/extractconfig", lambda answer, call: as_kind(answer, str, call=call),
                         volume=volid)

    def config(self, node: str, kind: str, vmid: int) -> dict:
        """``pvesh get /nodes/{node}/{qemu|lxc}/{vmid}/config``"""
        return self._get(f"/nodes/{node}/{_kind(kind)}/{vmid}/config", answer_object, guest=f"guest {vmid}")

    def status(self, node: str, kind: str, vmid: int) -> dict:
        """``pvesh get /nodes/{node}/{qemu|lxc}/{vmid}/status/current``"""
        return self._get(f"/nodes/{node}/{_kind(kind)}/{vmid}/status/current", answer_object, guest=f"guest {vmid}")

    def exists(self, vmid: int) -> bool:
        return any(r.get("vmid") == int(vmid) for r in self.resources("vm"))

    def pool_of(self, vmid: int) -> str | None:
        for resource in self.resources("vm"):
            if resource.get("vmid") == int(vmid):
                return resource.get("pool")
        return None

    def node_of(self, vmid: int) -> str | None:
        """The node guest ``vmid`` lives on (``node`` of its /cluster/resources item), None
        when the token does not see it. Every call about a guest must go to that node:
        qemu-server and pve-container run ``/nodes/{node}/{qemu|lxc}/{vmid}/...`` on the node
        of the path (``proxyto => 'node'``), whose ``load_config`` reads only its own
        ``nodes/<node>/...conf`` ("Configuration file ... does not exist" elsewhere)."""
        for resource in self.resources("vm"):
            if resource.get("vmid") == int(vmid):
                node = resource.get("node")
                return node if isinstance(node, str) and node else None
        return None

    def cluster_status(self) -> list[dict]:
        """``pvecm status`` / ``pvesh get /cluster/status`` (Sys.Audit on /): one ``cluster``
        item (name, nodes, quorate) and one ``node`` item per member (name, online, local);
        a node that is no cluster member answers only its own ``node`` item (pve-manager
        PVE/API2/Cluster.pm ``get_status``)."""
        return self._get("/cluster/status", answer_list)

    def ha_resources(self) -> list[dict]:
        """``ha-manager config`` / ``pvesh get /cluster/ha/resources`` (Sys.Audit on /): the
        guests HA manages, as ``sid`` ``vm:N`` / ``ct:N``. Read only: restoredrill never
        adds, changes or removes an HA resource."""
        return self._get("/cluster/ha/resources", answer_list)

    def nodes(self) -> list[str]:
        """``pvesh get /nodes``: the names of the cluster's nodes."""
        return sorted(str(item["node"]) for item in self._get("/nodes", answer_list)
                      if isinstance(item, dict) and item.get("node"))

    # --- guarded: everything that changes a guest -------------------------------------
    def _guard_existing(self, node: str, kind: str, vmid: int, action: str) -> None:
        self.guard.check_vmid(vmid, action)       # before any request about the guest
        config = self.config(node, kind, vmid)    # fails on any node but the guest's own
        tags = field(config, "tags", str, call=_label("GET", f"/nodes/{node}/{kind}/{vmid}/config"), required=False)
        self.guard.check_guest(vmid, action, tags=tags, pool=self.pool_of(vmid))

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
        path = f"/nodes/{node}/qemu/{vmid}/agent/exec"
        call = _label("POST", path, f"guest {vmid}")
        answer = answer_object(self.api.call("post", path, guest=f"guest {vmid}", **params), call)
        return field(answer, "pid", int, call=call)

    def agent_exec_status(self, node: str, vmid: int, pid: int) -> dict:
        """``pvesh get /nodes/{node}/qemu/{vmid}/agent/exec-status --pid N``"""
        self.guard.check_vmid(vmid, "query the agent of")
        return self._get(f"/nodes/{node}/qemu/{vmid}/agent/exec-status", answer_object, guest=f"guest {vmid}",
                         pid=pid)

    # --- tasks -----------------------------------------------------------------------
    def task_status(self, node: str, upid: str) -> dict:
        """``pvesh get /nodes/{node}/tasks/{upid}/status`` (the UPID checked first: it is a path segment)."""
        parse_upid(upid)
        return self._get(f"/nodes/{node}/tasks/{upid}/status", task_status_answer)

    def task_log(self, node: str, upid: str, lines: int | None = None) -> list[str]:
        """The last ``lines`` lines of a task's log, where the error is:
        ``pvesh get /nodes/{node}/tasks/{upid}/log --start S --limit N`` (see :func:`read_log_tail`)."""
        parse_upid(upid)
        path = f"/nodes/{node}/tasks/{upid}/log"
        return read_log_tail(lambda start, limit: self.api.call("get", path, envelope=True, start=start, limit=limit),
                             _label("GET", path), lines or LOG_TAIL_LINES)

    def wait_task(self, node: str, upid: str, *, deadline: float, what: str) -> dict:
        """Poll until the task stops (0.1 s, growing to 1 s); raise on failure or deadline."""
        return wait_for_task(lambda: self.task_status(node, upid), lambda: self.task_log(node, upid),
                             upid, deadline=deadline, what=what)


def _label(method: str, path: str, guest: str = "") -> str:
    """How a message names a PVE call: 'PVE GET /cluster/resources[ for guest 9901]'."""
    return f"PVE {method} {path}" + (f" for {guest}" if guest else "")


def _resource(item: dict, call: str) -> dict:
    """A /cluster/resources item whose ``vmid`` (an int) and ``pool`` (a string) the guard can
    trust; a null one is dropped, as if absent."""
    checked = dict(item)
    for name, kind in (("vmid", int), ("pool", str)):
        value = field(item, name, kind, call=call, required=False)
        if value is None:
            checked.pop(name, None)
        else:
            checked[name] = value
    return checked


def task_status_answer(answer: object, call: str) -> dict:
    """A task's status (PVE and PBS alike): an object whose ``status`` is a string
    ('running'/'stopped') and whose ``exitstatus``, when there, is a string."""
    current = answer_object(answer, call)
    field(current, "status", str, call=call)
    field(current, "exitstatus", str, call=call, required=False)
    return current


def task_log_answer(answer: object, call: str) -> list[str]:
    """A task's log lines: a list of ``{"n": N, "t": TEXT}`` objects, read as the texts."""
    return [field(line, "t", str, call=call, required=False) or "" for line in answer_list(answer, call)]


# --- task logs: paged from the start, read from the end --------------------------------
# GET /nodes/{node}/tasks/{upid}/log takes ``start`` (default 0) and ``limit`` (default 50;
# 0 = to the end) and answers the lines FROM THE START, numbered ``n`` from 1, with the
# log's line count ``total`` beside ``data``:
# * PVE: pve-manager PVE/API2/Tasks.pm ``read_task_log`` calls pve-common
#   src/PVE/Tools.pm ``dump_logfile`` (``next if $count++ < $start``; an empty log is one
#   line "no content") and ``$rpcenv->set_result_attrib('total', $count)``; pve-http-server
#   src/PVE/APIServer/Formatter/Standard.pm ``prepare_response_data`` copies ``total``
#   beside ``data``.
# * PBS: proxmox-backup src/api2/node/tasks.rs ``read_task_log`` answers
#   ``{"data": lines, "total": count, "success": 1}``, but skips with ``count += 1; if count
#   < start``: ``start=S`` begins at line S, not S+1 (one line earlier than PVE).
# proxmoxer returns ``data`` only, so the client asks for the whole answer (``envelope``).
# The tail is then read from ``start = total - N`` with ``limit = N + 1``: on PVE that gives
# lines total-N+1..total, on PBS total-N..total; the last N are kept either way (with
# ``limit = N``, PBS would drop the last line, the "TASK ERROR: ...").
LOG_TAIL_LINES = 50


def task_log_page(document: object, call: str) -> tuple[int, list[str]]:
    """One page of a task log: the log's line count ``total`` and the page's texts."""
    answer = answer_object(document, call)
    total = field(answer, "total", int, call=call)
    if total < 0:
        raise shape_error(call, f"answer field 'total' is {total}, not a line count")
    return total, task_log_answer(answer.get("data"), call)


def read_log_tail(fetch: Callable[[int, int], object], call: str, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a task log; ``fetch(start, limit)`` is one GET of the log
    answering the whole answer object. A short log takes one request, a long one two."""
    total, texts = task_log_page(fetch(0, lines), call)
    if total > len(texts):
        total, texts = task_log_page(fetch(max(0, total - lines), lines + 1), call)
    return texts[-lines:]


def _tail(lines: list[str]) -> list[str]:
    """The last 20 log lines, each clipped: the server's text, kept for messages and reports."""
    return [clip(line) for line in lines[-20:]]


class _StillRunning(Exception):
    """A poll found the task not stopped yet."""


def _keep_polling(exc: BaseException) -> bool:
    """Polling goes on while the task runs and after a transient failure of the status read."""
    return isinstance(exc, _StillRunning) or (isinstance(exc, ApiError) and exc.transient)


def _read_tail(log: Callable[[], list[str]]) -> tuple[list[str], str]:
    """The clipped log tail, and why it could not be read (the task's outcome matters more)."""
    try:
        return _tail(log()), ""
    except ApiError as exc:
        return [], clip(str(exc), 300)


def wait_for_task(status, log, upid: str, *, deadline: float, what: str) -> dict:
    """Poll ``status()`` until the task stops (pauses of 0.1 s growing to 1 s); an OK or
    WARNINGS end returns the status; a failed task raises :class:`TaskFailed` with the last
    lines of its log; the deadline raises :class:`TaskTimeout` naming it and the last error."""
    parse_upid(upid)
    started = time.monotonic()

    def poll() -> dict:
        current = status()
        if current.get("status") != "stopped":
            raise _StillRunning(f"the task's status is {clip(current.get('status'), 40)!r}")
        return current

    try:
        current = wait_until(poll, seconds=deadline, first=0.1, longest=1.0, retry_on=_keep_polling)
    except DeadlineExceeded as late:
        tail, unreadable = _read_tail(log)
        raise TaskTimeout(f"{what}: task {upid} still running after the deadline of {deadline:g} s "
                          f"({time.monotonic() - started:.1f} s, {late.attempts} polls; last: {late.last_error})"
                          + (f"; its log could not be read: {unreadable}" if unreadable else ""),
                          upid, "running", tail) from None
    exit_status = str(current.get("exitstatus") or "unknown")
    if exit_status == "OK" or exit_status.startswith("WARNINGS"):
        return current
    tail, unreadable = _read_tail(log)
    shown = clip(exit_status)
    errors = [line for line in tail if line and line not in (shown, f"TASK ERROR: {shown}")]
    last = clip("; ".join(errors[-4:]), 600)
    raise TaskFailed(f"{what}: task {upid} failed: {shown}" + (f" (log: {last})" if last else "")
                     + (f" (its log could not be read: {unreadable})" if unreadable else ""),
                     upid, shown, tail)


__all__ = ["ApiError", "GuardError", "PveClient", "ScratchGuard", "TaskFailed", "TaskTimeout", "wait_for_task"]
