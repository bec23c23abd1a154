"""Faults injected on the server side only; each can be cleared.

    fault = double.faults.damage_chunk("local", "pbs:backup/vm/110/2024-05-01T02:00:03Z")
    ...                      # verify / restore now meet a corrupt chunk
    fault.clear()            # the chunk's original bytes are back (and any .bad copy gone)

Kinds: a restore task that fails, slow tasks, tasks with a long log (the real error at
its end), a VM start that fails while a restore with start=1 still reports OK, HTTP
500/502/503/504 or a reset connection on the Nth matching call (before the request is
served, or after it was applied), an answer slower than the client waits, a chunk whose
bytes are flipped on disk, a chunk that is missing. ``watch_requests`` only counts. Every
HTTP fault counts the requests it matched (``fault.hits``). The servers and workers ask
``Faults`` through the hook methods at the bottom; nothing on the client side is patched.
"""
from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from restoredrill.lab.proxmox.names import parse_backup_volid
from restoredrill.lab.proxmox.store import PbsStore
from restoredrill.lab.proxmox.tasks import TaskPrelude
from restoredrill.pbsformat import SnapshotRef, parse_snapshot_path


HTTP_KINDS = ("500", "502", "503", "504", "595", "596", "597", "reset")
# AnyEvent::HTTP's own statuses, which pveproxy passes on when it cannot reach the node it
# proxies to (pve-http-server src/PVE/APIServer/AnyEvent.pm ``proxy_request``): 595
# connection establishment, 596 TLS/request/headers, 597 body (AnyEvent::HTTP docs)
PROXY_REASONS = {"595": "Errors during connection establishment, proxy handshake",
                 "596": "Errors during TLS negotiation, request sending and header processing",
                 "597": "Errors during body receiving or processing"}


@dataclass
class Fault:
    fault_id: int
    kind: str
    details: dict[str, Any]
    undo: Callable[[], None] | None = None
    registry: Faults | None = field(default=None, repr=False)

    def clear(self) -> None:
        if self.registry is not None:
            self.registry.clear(self.fault_id)

    @property
    def hits(self) -> int:
        """How many requests this (HTTP) fault matched so far."""
        return self.registry.hits(self.fault_id) if self.registry is not None else 0


class Faults:
    """The fault switchboard of one double (per test, or in the lab)."""

    def __init__(self, stores: dict[str, PbsStore]):
        self.stores = stores
        self.active: dict[int, Fault] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._hits: dict[int, int] = {}
        self.pve_state = None      # the PVE cluster state (node and quorum faults), once started

    def _add(self, kind: str, undo: Callable[[], None] | None = None, **details: Any) -> Fault:
        with self._lock:
            fault = Fault(next(self._ids), kind, details, undo, self)
            self.active[fault.fault_id] = fault
        return fault

    def clear(self, fault_id: int | None = None) -> None:
        """Clear one fault (or all), undoing what it changed on disk."""
        with self._lock:
            chosen = [self.active.pop(fault_id)] if fault_id in self.active else \
                ([] if fault_id is not None else list(self.active.values()))
            if fault_id is None:
                self.active.clear()
        for fault in chosen:
            if fault.undo:
                fault.undo()

    def hits(self, fault_id: int) -> int:
        with self._lock:
            return self._hits.get(fault_id, 0)

    def _matching(self, kind: str) -> list[Fault]:
        with self._lock:
            return [f for f in self.active.values() if f.kind == kind]

    # --- switching faults on -----------------------------------------------------------
    def fail_restore(self, vmid: int | None = None,
                     message: str = "reading file \"/dev/sda\" failed: Input/output error"
                     ) -> Fault:
        """The data part of a restore into ``vmid`` (any when None) fails with ``message``."""
        return self._add("restore", vmid=vmid, message=message)

    def slow_tasks(self, seconds: float, worker_type: str | None = None) -> Fault:
        """Every task (or those of ``worker_type``, e.g. ``qmrestore``) waits first."""
        return self._add("slow", seconds=float(seconds), worker_type=worker_type)

    def fail_start(self, vmid: int | None = None,
                   message: str = "start failed: QEMU exited with code 1") -> Fault:
        """Starting ``vmid`` fails; a QEMU restore with start=1 still ends TASK OK."""
        return self._add("start", vmid=vmid, message=message)

    def broken_service(self, service: str, vmid: int | None = None) -> Fault:
        """The guest's ``service`` fails to start (its init script exits 1) when ``vmid``
        (any when None) boots; the guest itself starts."""
        return self._add("service", vmid=vmid, service=service)

    def broken_services(self, vmid: int) -> list[str]:
        return [f.details["service"] for f in self._matching("service") if f.details["vmid"] in (None, vmid)]

    def silent_agent(self, vmid: int | None = None) -> Fault:
        """The guest agent of ``vmid`` (any when None) never answers."""
        return self._add("agent", vmid=vmid)

    def long_task_logs(self, lines: int = 1500, worker_type: str | None = None) -> Fault:
        """Every task (or those of ``worker_type``) first logs ``lines`` progress lines, as
        pbs-restore does per percent and disk: the real error is far past the first page."""
        filler = tuple(f"progress {number * 100 // lines}% (read {number * 4194304} bytes, zeroes = 0% "
                       f"(0 bytes), duration {number // 50} sec)" for number in range(1, lines + 1))
        return self._add("chatter", lines=filler, worker_type=worker_type)

    def http_error(self, path_pattern: str, *, api: str = "pve", nth: int = 1,
                   kind: str = "500", method: str | None = None, times: int = 1,
                   after: bool = False) -> Fault:
        """The ``nth`` request whose API path matches ``path_pattern`` (a regex searched in
        e.g. ``/nodes/pve1/qemu``) gets HTTP ``kind`` (500, 502, 503, 504; 595, 596, 597 as
        pveproxy relays a proxied call that failed, see ``PROXY_REASONS``) or a reset
        connection (kind "reset"), for ``times`` consecutive matching calls. ``after``: the
        request is served first (a POST is applied) and only its answer is replaced, as a
        proxy in front of the API does when it gives up waiting. 502/503/504 and ``after``
        need the server to ask :meth:`on_request` / :meth:`after_request` for them."""
        if kind not in HTTP_KINDS:
            raise ValueError(f"kind is one of {', '.join(HTTP_KINDS)}")
        return self._add("http", api=api, pattern=re.compile(path_pattern), nth=int(nth),
                         action=kind, method=method, times=int(times), after=bool(after))

    def slow_answer(self, path_pattern: str, seconds: float, *, api: str = "pve",
                    method: str | None = None, nth: int = 1, times: int = 1) -> Fault:
        """Matching requests wait ``seconds`` before they are served: a client with a shorter
        timeout gives up, and the server applies the request all the same."""
        return self._add("http", api=api, pattern=re.compile(path_pattern), nth=int(nth),
                         action="slow", method=method, times=int(times), after=False,
                         seconds=float(seconds))

    def watch_requests(self, path_pattern: str, *, api: str = "pve", method: str | None = None) -> Fault:
        """Changes nothing; ``fault.hits`` counts the matching requests (retries included)."""
        return self._add("http", api=api, pattern=re.compile(path_pattern), nth=1,
                         action="watch", method=method, times=0, after=False)

    def node_offline(self, node: str) -> Fault:
        """Cluster member ``node`` goes offline: ``/cluster/status`` shows it ``online`` 0,
        ``/cluster/resources`` ``offline`` (its guests ``unknown``), and calls to it fail
        with 595 as pveproxy's do. Clear brings it back."""
        state = self._cluster()
        if node not in state.nodes:
            raise ValueError(f"no cluster member {node!r}")
        state.offline.add(node)
        return self._add("node", lambda: state.offline.discard(node), node=node)

    def quorum_lost(self) -> Fault:
        """The cluster loses quorum: ``/cluster/status`` says quorate 0 and creating a guest
        (a restore) fails as pve-cluster ``check_cfs_quorum`` does. Clear restores it."""
        state = self._cluster()
        state.quorate = False
        return self._add("quorum", lambda: setattr(state, "quorate", True))

    def _cluster(self):
        if self.pve_state is None:
            raise ValueError("the PVE side of the double is not started")
        return self.pve_state

    def damage_chunk(self, store: str, snapshot: SnapshotRef | str, archive: str | None = None,
                     position: int = 0) -> Fault:
        """Flip bytes in one chunk the snapshot references (on disk); clear restores them."""
        pbs, key = self._chunk_key(store, snapshot, archive, position)
        path = pbs.backend.path(key)
        original = path.read_bytes()
        damaged = bytearray(original)
        for offset in range(min(len(damaged) - 1, 64), len(damaged), max(1, len(damaged) // 7)):
            damaged[offset] ^= 0xFF
        path.write_bytes(bytes(damaged))
        return self._add("damage", lambda: _restore_chunk(pbs, key, original),
                         store=store, chunk=key)

    def remove_chunk(self, store: str, snapshot: SnapshotRef | str, archive: str | None = None,
                     position: int = 0) -> Fault:
        """Move one referenced chunk away; clear puts it back."""
        pbs, key = self._chunk_key(store, snapshot, archive, position)
        original = pbs.backend.read(key)
        pbs.backend.delete(key)
        return self._add("missing", lambda: _restore_chunk(pbs, key, original),
                         store=store, chunk=key)

    def _chunk_key(self, store: str, snapshot: SnapshotRef | str, archive: str | None,
                   position: int) -> tuple[PbsStore, str]:
        pbs = self.stores[store]
        ref = snapshot if isinstance(snapshot, SnapshotRef) else _snapshot_ref(snapshot)
        digests = [d for name, d in pbs.archive_digests(ref) if archive in (None, name)]
        if not digests:
            raise ValueError(f"{ref} has no chunks in {archive or 'any archive'}")
        return pbs, pbs.chunk_key(digests[position])

    # --- hooks the servers and workers ask ---------------------------------------------
    def restore_failure(self, vmid: int) -> str | None:
        return next((f.details["message"] for f in self._matching("restore")
                     if f.details["vmid"] in (None, vmid)), None)

    def start_failure(self, vmid: int) -> str | None:
        return next((f.details["message"] for f in self._matching("start")
                     if f.details["vmid"] in (None, vmid)), None)

    def agent_silent(self, vmid: int) -> bool:
        return any(f.details["vmid"] in (None, vmid) for f in self._matching("agent"))

    def task_delay(self, worker_type: str) -> float | TaskPrelude:
        """The wait before a task's work, with the filler lines of a long log when asked."""
        seconds = max((f.details["seconds"] for f in self._matching("slow")
                       if f.details["worker_type"] in (None, worker_type)), default=0.0)
        lines = next((f.details["lines"] for f in self._matching("chatter")
                      if f.details["worker_type"] in (None, worker_type)), ())
        return TaskPrelude(seconds, lines) if lines else seconds

    def on_request(self, api: str, method: str, path: str) -> str | None:
        """"500", "502", "503", "504", "reset" or None for this request, before it is served
        (counts matching calls per fault; a slow-answer fault waits here, then None)."""
        return self._act(api, method, path, after=False)

    def after_request(self, api: str, method: str, path: str) -> str | None:
        """The status ("502"...) or "reset" that replaces the answer of a request already
        served (applied), or None."""
        return self._act(api, method, path, after=True)

    def _act(self, api: str, method: str, path: str, *, after: bool) -> str | None:
        chosen = None
        for fault in self._matching("http"):
            d = fault.details
            if d["after"] != after or d["api"] != api or (d["method"] and d["method"] != method) or \
                    not d["pattern"].search(path):
                continue
            with self._lock:
                count = self._hits[fault.fault_id] = self._hits.get(fault.fault_id, 0) + 1
            if chosen is None and d["nth"] <= count < d["nth"] + d["times"]:
                chosen = d
        if chosen is not None and chosen["action"] == "slow":
            time.sleep(chosen["seconds"])
            return None
        return chosen["action"] if chosen is not None and chosen["action"] != "watch" else None


def _restore_chunk(store: PbsStore, key: str, original: bytes) -> None:
    for number in range(10):
        store.backend.delete(f"{key}.{number}.bad")
    store.backend.write(key, original)


def _snapshot_ref(text: str) -> SnapshotRef:
    """A PVE volid (``pbs:backup/vm/110/<time>``) or a snapshot path (``vm/110/<time>``)."""
    if ":" in text.split("/", 1)[0]:
        volume = parse_backup_volid(text)
        return SnapshotRef(None, volume.backup_type, volume.backup_id, volume.backup_time)
    return parse_snapshot_path(text)
