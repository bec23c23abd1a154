"""Faults injected on the server side only; each can be cleared.

    fault = double.faults.damage_chunk("local", "pbs:backup/vm/110/2024-05-01T02:00:03Z")
    ...                      # verify / restore now meet a corrupt chunk
    fault.clear()            # the chunk's original bytes are back (and any .bad copy gone)

Kinds: a restore task that fails, slow tasks, a VM start that fails while a restore
with start=1 still reports OK, HTTP 500 or a reset connection on the Nth matching call,
a chunk whose bytes are flipped on disk, a chunk that is missing. The servers and
workers ask ``Faults`` through the hook methods at the bottom; nothing on the client
side is patched.
"""
from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from restoredrill.lab.proxmox.names import parse_backup_volid
from restoredrill.lab.proxmox.store import PbsStore
from restoredrill.pbsformat import SnapshotRef, parse_snapshot_path


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


class Faults:
    """The fault switchboard of one double (per test, or in the lab)."""

    def __init__(self, stores: dict[str, PbsStore]):
        self.stores = stores
        self.active: dict[int, Fault] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._hits: dict[int, int] = {}

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

    def http_error(self, path_pattern: str, *, api: str = "pve", nth: int = 1,
                   kind: str = "500", method: str | None = None, times: int = 1) -> Fault:
        """The ``nth`` request whose API path matches ``path_pattern`` (a regex searched in
        e.g. ``/nodes/pve1/qemu``) gets HTTP 500 (kind "500") or a reset connection
        (kind "reset"), for ``times`` consecutive matching calls."""
        if kind not in ("500", "reset"):
            raise ValueError("kind is '500' or 'reset'")
        return self._add("http", api=api, pattern=re.compile(path_pattern), nth=int(nth),
                         action=kind, method=method, times=int(times))

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

    def task_delay(self, worker_type: str) -> float:
        return max((f.details["seconds"] for f in self._matching("slow")
                    if f.details["worker_type"] in (None, worker_type)), default=0.0)

    def on_request(self, api: str, method: str, path: str) -> str | None:
        """"500", "reset" or None for this request (counts matching calls per fault)."""
        for fault in self._matching("http"):
            d = fault.details
            if d["api"] != api or (d["method"] and d["method"] != method) or \
                    not d["pattern"].search(path):
                continue
            with self._lock:
                count = self._hits[fault.fault_id] = self._hits.get(fault.fault_id, 0) + 1
            if d["nth"] <= count < d["nth"] + d["times"]:
                return d["action"]
        return None


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
