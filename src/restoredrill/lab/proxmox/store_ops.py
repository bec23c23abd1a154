"""What PBS workers do to a datastore: verify, prune, garbage collection, sync.

Verify reads every chunk through ``DatastoreReader.verify_snapshot`` (magic, CRC and,
for unencrypted chunks, the digest; a server without the key checks encrypted chunks
by CRC only, as PBS does), renames a corrupt chunk to ``<digest>.<n>.bad`` and records
``verify_state {state, upid}`` in the manifest. Prune decides with the PBS engine
(``retention.simulate_pbs``) and removes snapshot directories. Sync copies finished
snapshots (raw files and missing chunks) from one store to another. All functions take
a ``Task`` to log into, as a PBS worker does.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from restoredrill import retention
from restoredrill.lab.proxmox.store import PbsStore
from restoredrill.lab.proxmox.tasks import Task, TaskFailed, parse_upid
from restoredrill.pbsformat import (MANIFEST_BLOB_NAME, DatastoreWriter, MissingObject,
                                    SnapshotInfo, SnapshotRef, parse_index)

GC_GRACE_SECONDS = 24 * 3600 + 300     # PBS keeps chunks touched in the last 24h5m


def needs_verify(store: PbsStore, info: SnapshotInfo, ignore_verified: bool,
                 outdated_after: int | None) -> bool:
    """PBS ``verify_filter``: with ignore-verified, any earlier verify (ok or failed) counts
    until ``outdated-after`` whole days have passed since that verify task started."""
    if not ignore_verified:
        return True
    document = store.read_manifest_document(info.ref)
    state = ((document or {}).get("unprotected") or {}).get("verify_state")
    if not isinstance(state, dict):
        return True
    if outdated_after is None:
        return False
    try:
        started = parse_upid(state.get("upid", "")).starttime
    except ValueError:
        return True
    return (int(time.time()) - started) // 86400 > outdated_after


def verify_snapshots(store: PbsStore, infos: list[SnapshotInfo], task: Task, *,
                     ignore_verified: bool = True, outdated_after: int | None = None) -> None:
    """Verify each snapshot; the task fails when any of them fails."""
    seen: set[bytes] = set()
    failed: list[str] = []
    task.log(f"verify datastore {store.name}")
    for info in sorted(infos, key=lambda i: (i.backup_type, i.backup_id, i.epoch)):
        if not info.finished:
            continue
        if not needs_verify(store, info, ignore_verified, outdated_after):
            task.log(f"SKIPPED: verify {store.name}:{info.path} (recently verified)")
            continue
        if not verify_one(store, info, task, seen):
            failed.append(info.path)
    if failed:
        task.log("Failed to verify the following snapshots/groups:")
        for path in failed:
            task.log(f"\t{path}")
        raise TaskFailed("verification failed - please check the log for details")


def verify_one(store: PbsStore, info: SnapshotInfo, task: Task, seen: set[bytes]) -> bool:
    task.log(f"  verify {store.name}:{info.path}")
    started = time.monotonic()
    report = store.reader.verify_snapshot(info.ref, None, verified_chunks=seen)
    for problem in report.problems:
        task.log(f"  {problem}")
        if problem.path.startswith(store.layout.chunk_prefix) and "missing" not in problem.message:
            rename_corrupt_chunk(store, problem.path, task)
    state = "ok" if report.ok else "failed"
    task.log(f"  {report.summary()} in {time.monotonic() - started:.2f} seconds")
    try:
        store.set_verify_state(info.ref, state, task.text)
    except (MissingObject, ValueError) as exc:
        task.log(f"  unable to update verify state of {info.path} - {exc}")
    return report.ok


def rename_corrupt_chunk(store: PbsStore, key: str, task: Task) -> None:
    """PBS: ``<digest>.<n>.bad`` with the first free n in 0..9."""
    for number in range(10):
        target = f"{key}.{number}.bad"
        if not store.backend.exists(target):
            try:
                store.backend.rename(key, target)
            except FileNotFoundError:
                return
            task.log(f"corrupted chunk renamed to \"{store.backend.path(target)}\"")
            return


def prune_group(store: PbsStore, backup_type: str, backup_id: str, keep: Mapping[str, int], *,
                ns: str | None = None, dry_run: bool = True, zone: str = "Europe/Berlin",
                task: Task | None = None) -> list[dict[str, Any]]:
    """``compute_prune_info`` for one group; removes snapshots unless ``dry_run``.

    Answers newest first with ``keep`` and ``protected`` per snapshot, as PBS does.
    """
    infos = sorted(store.snapshot_infos(backup_type, backup_id, ns), key=lambda i: i.epoch,
                   reverse=True)
    points = [retention.Point(time=info.backup_time, name=info.path, protected=info.protected,
                              unfinished=not info.finished) for info in infos]
    policy = retention.Policy.from_mapping(dict(keep))
    decisions = retention.simulate_pbs(points, policy, zone)
    result = []
    for info, decision in zip(infos, decisions):
        result.append({"backup-type": info.backup_type, "backup-id": info.backup_id,
                       "backup-time": info.epoch, "keep": decision.keep,
                       "protected": info.protected})
        if task is not None:
            task.log(f"{info.path} {'keep' if decision.keep else 'remove'}")
        if not dry_run and not decision.keep and not info.protected:
            store.remove_snapshot(info.ref)
    return result


def in_scope(ns: str | None, base: str | None, max_depth: int | None) -> bool:
    """Namespace ``ns`` is ``base`` or below it within ``max_depth`` levels (None: all), as
    prune, verify and sync jobs recurse (pbs-api-types NS_MAX_DEPTH_SCHEMA)."""
    ns, base = ns or "", base or ""
    if base and ns != base and not ns.startswith(base + "/"):
        return False
    depth = (len(ns.split("/")) if ns else 0) - (len(base.split("/")) if base else 0)
    return max_depth is None or depth <= int(max_depth)


def prune_store(store: PbsStore, keep: Mapping[str, int], task: Task, zone: str, *,
                ns: str | None = None, max_depth: int | None = None) -> None:
    """A prune job: every group in its namespace ``ns`` and below (``max-depth``)."""
    task.log(f"prune job on datastore '{store.name}'" + (f", namespace '{ns}'" if ns else ""))
    groups = sorted({(i.ns or "", i.backup_type, i.backup_id) for i in store.all_snapshot_infos()
                     if in_scope(i.ns, ns, max_depth)})
    for group_ns, backup_type, backup_id in groups:
        task.log(f"Pruning group {group_ns + '/' if group_ns else ''}{backup_type}/{backup_id}")
        prune_group(store, backup_type, backup_id, keep, ns=group_ns or None, dry_run=False,
                    zone=zone, task=task)


def garbage_collect(store: PbsStore, task: Task) -> dict[str, Any]:
    """Mark chunks referenced by any index, then sweep: unreferenced chunks older than
    24h5m are removed, younger ones stay pending; ``.bad`` chunks are counted."""
    task.log(f"starting garbage collection on store {store.name}")
    referenced: set[str] = set()
    index_files = index_bytes = 0
    for info in store.all_snapshot_infos():
        for name in info.files:
            if name.endswith((".fidx", ".didx")):
                index = parse_index(store.backend.read(store.key(info.ref, name)))
                referenced |= {store.chunk_key(d) for d in index.digests}
                index_files += 1
                index_bytes += index.size
    status = {key: 0 for key in ("disk-bytes", "disk-chunks", "pending-bytes", "pending-chunks",
                                 "removed-bad", "removed-bytes", "removed-chunks", "still-bad")}
    cutoff = time.time() - GC_GRACE_SECONDS
    for key in list(store.chunk_keys()):
        path = store.backend.path(key)
        stat = path.stat()
        if key.endswith(".bad"):
            status["still-bad"] += 1
        elif key in referenced:
            status["disk-chunks"] += 1
            status["disk-bytes"] += stat.st_size
        elif stat.st_mtime < cutoff:
            store.backend.delete(key)
            status["removed-chunks"] += 1
            status["removed-bytes"] += stat.st_size
        else:
            status["pending-chunks"] += 1
            status["pending-bytes"] += stat.st_size
    status.update({"index-file-count": index_files, "index-data-bytes": index_bytes,
                   "upid": task.text, "cache-stats": {"hits": 0, "misses": len(referenced)}})
    task.log(f"Removed chunks: {status['removed-chunks']}, pending: {status['pending-chunks']}, "
             f"on disk: {status['disk-chunks']}")
    store.gc_status = status
    return status


def sync_stores(source: PbsStore, target: PbsStore, task: Task, owner: str, *,
                remote_ns: str | None = None, ns: str | None = None) -> int:
    """Pull every finished snapshot ``target`` lacks from ``source``; returns how many. A sync
    job's ``remote-ns`` (source) maps onto its ``ns`` (target), sub-namespaces alike
    (pbs-api-types SyncJobConfig ``ns``/``remote-ns``)."""
    task.log(f"sync datastore '{target.name}' from '{source.name}'"
             + (f", namespace '{remote_ns or ''}' -> '{ns or ''}'" if remote_ns or ns else ""))
    writer = target.writer(owner)
    have = {(i.ns or "", i.backup_type, i.backup_id, i.epoch) for i in target.all_snapshot_infos()}
    copied = 0
    for info in sorted(source.all_snapshot_infos(), key=lambda i: i.epoch):
        if not info.finished or not in_scope(info.ns, remote_ns, None):
            continue
        mapped = map_namespace(info.ns, remote_ns, ns)
        if (mapped or "", info.backup_type, info.backup_id, info.epoch) in have:
            continue
        task.log(f"sync snapshot {info.path}")
        copy_snapshot(source, target, writer, info, target_ns=mapped)
        copied += 1
    task.log(f"Finished syncing: {copied} new snapshot(s)")
    return copied


def map_namespace(ns: str | None, remote_ns: str | None, target_ns: str | None) -> str | None:
    """``remote-ns/x/y`` on the source is ``ns/x/y`` on the target."""
    rest = (ns or "")[len(remote_ns or ""):].lstrip("/")
    return "/".join(p for p in (target_ns or "", rest) if p) or None


def copy_snapshot(source: PbsStore, target: PbsStore, writer: DatastoreWriter,
                  info: SnapshotInfo, target_ns: str | None | bool = False) -> None:
    """Chunks first, then the archives, the manifest last (as a pull sync writes them);
    into ``target_ns`` when given, else the same namespace."""
    ref = info.ref if target_ns is False else SnapshotRef(target_ns or None, info.backup_type,
                                                         info.backup_id, info.epoch)
    manifest = source.reader.read_manifest(info.ref)
    files = {}
    for entry in manifest.files:
        raw = source.backend.read(source.key(info.ref, entry.filename))
        if entry.filename.endswith((".fidx", ".didx")):
            for digest in dict.fromkeys(parse_index(raw).digests):
                if not writer.has_chunk(digest):
                    writer.write_chunk(source.backend.read(source.chunk_key(digest)), digest)
        files[entry.filename] = raw
    owner_key = target.layout.content_key(f"{ref.group_path}/owner")
    if not target.backend.exists(owner_key):
        target.backend.write(owner_key, f"{writer.owner}\n".encode())
    for name, raw in files.items():
        target.backend.write(target.key(ref, name), raw)
    if info.protected:
        target.backend.write(target.key(ref, ".protected"), b"")
    target.backend.write(target.key(ref, MANIFEST_BLOB_NAME),
                         source.backend.read(source.key(info.ref, MANIFEST_BLOB_NAME)))
