"""A PBS datastore of the double: real PBS format on disk, listed as the PBS API lists it.

Everything goes through a ``pbsformat.Layout`` (which keys) and a ``StoreBackend`` (an
``ObjectSource`` that can also write, rename and delete), so the offsite store can later
live in an S3 bucket: only the backend changes. The server holds no encryption key, as
a real PBS: encrypted snapshots are listed with their key fingerprint and verified by
CRC only.
"""
from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restoredrill.pbsformat import (MANIFEST_BLOB_NAME, DatastoreReader, DatastoreWriter,
                                    FormatError, Layout, LocalSource, MissingObject,
                                    SnapshotInfo, SnapshotRef, UnsafeName, decode_manifest_blob,
                                    encode_manifest_blob, make_layout)

ARCHIVE_SUFFIXES = (".fidx", ".didx", ".blob")


class LocalBackend(LocalSource):
    """An ObjectSource over a directory that can also write, rename and delete objects."""

    def write(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp_{os.getpid()}_{threading.get_ident()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def rename(self, key: str, new_key: str) -> None:
        os.replace(self.path(key), self.path(new_key))

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        """Remove a whole snapshot directory (``prefix`` ends with '/')."""
        shutil.rmtree(self.path(prefix.rstrip("/")), ignore_errors=True)

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            raise MissingObject(key) from None

    def usage(self) -> tuple[int, int, int]:
        stat = os.statvfs(self.root)
        total = stat.f_blocks * stat.f_frsize
        avail = stat.f_bavail * stat.f_frsize
        return total, total - stat.f_bfree * stat.f_frsize, avail


@dataclass
class PbsStore:
    name: str
    root: Path
    comment: str = ""
    layout: Layout = field(default_factory=Layout.local)
    backend_type: str = "filesystem"
    gc_status: dict[str, Any] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        self.backend = LocalBackend(self.root)
        self.reader = DatastoreReader(self.backend, layout=self.layout)
        self.s3_source = None      # set by attach_s3: restores then read the bucket
        self.restore_reader = self.reader

    def attach_s3(self, source) -> None:
        """PBS 4 S3 backend: restores read every object from ``source`` (``store_s3.S3CachedSource``,
        keys in the S3 layout under this store's name); the local copy stays the listing cache."""
        self.s3_source = source
        self.restore_reader = DatastoreReader(source, layout=Layout.s3(self.name))
        self.backend_type = "s3"

    @classmethod
    def create(cls, name: str, root: Path, comment: str = "", layout: str = "local") -> PbsStore:
        root.mkdir(parents=True, exist_ok=True)
        return cls(name, root, comment, make_layout(layout, name))

    def writer(self, owner: str) -> DatastoreWriter:
        """Writes in the real format; 65536 chunk dirs are NOT precreated (seconds)."""
        return DatastoreWriter(self.root, precreate_chunk_dirs=False, layout=self.layout,
                               store=self.layout.store, owner=owner)

    # --- keys --------------------------------------------------------------------------
    def key(self, ref: SnapshotRef, filename: str) -> str:
        return self.layout.content_key(ref.file_path(filename))

    def snapshot_prefix(self, ref: SnapshotRef) -> str:
        return self.layout.content_key(ref.path) + "/"

    def chunk_key(self, digest: bytes) -> str:
        return self.layout.chunk_key(digest)

    # --- listing -----------------------------------------------------------------------
    def snapshot_infos(self, backup_type: str | None = None, backup_id: str | None = None,
                       ns: str | None = None) -> list[SnapshotInfo]:
        return [info for info in self.reader.list_snapshots()
                if (backup_type is None or info.backup_type == backup_type)
                and (backup_id is None or info.backup_id == backup_id)
                and (info.ns or None) == (ns or None)]

    def all_snapshot_infos(self) -> list[SnapshotInfo]:
        """Every snapshot of every namespace (GC, verify and counts walk them all)."""
        return list(self.reader.list_snapshots())

    def find(self, backup_type: str, backup_id: str, epoch: int,
             ns: str | None = None) -> SnapshotInfo | None:
        for info in self.snapshot_infos(backup_type, backup_id, ns):
            if info.epoch == epoch:
                return info
        return None

    def owner(self, backup_type: str, backup_id: str, ns: str | None = None) -> str | None:
        ref = SnapshotRef(ns, backup_type, backup_id, 0)
        try:
            raw = self.backend.read(self.layout.content_key(f"{ref.group_path}/owner"))
        except MissingObject:
            return None
        return raw.decode("utf-8", "replace").strip() or None

    def read_snapshot_file(self, ref: SnapshotRef, filename: str) -> bytes:
        """The raw bytes of one file of a snapshot directory (``proxmox-backup-client
        restore --ignore-...`` / the API's ``download``). Only a plain file name directly in
        the snapshot directory: no separator, no leading dot (so no ``..``, no ``.protected``),
        and the resolved path must stay inside that directory."""
        if not filename or "/" in filename or "\\" in filename or "\0" in filename \
                or filename.startswith("."):
            raise UnsafeName(f"invalid file name {filename!r}")
        key = self.key(ref, filename)
        folder = self.backend.path(self.snapshot_prefix(ref).rstrip("/")).resolve()
        target = self.backend.path(key).resolve()
        if target.parent != folder:
            raise UnsafeName(f"file name {filename!r} leaves the snapshot directory")
        with self.lock:
            return self.backend.read(key)

    def read_manifest_document(self, ref: SnapshotRef) -> dict[str, Any] | None:
        try:
            return self.reader.read_manifest(ref).document
        except (MissingObject, FormatError):
            return None

    def snapshot_entry(self, info: SnapshotInfo) -> dict[str, Any]:
        """One item of ``GET /admin/datastore/{store}/snapshots`` as PBS answers it."""
        entry: dict[str, Any] = {"backup-type": info.backup_type, "backup-id": info.backup_id,
                                 "backup-time": info.epoch, "protected": info.protected}
        owner = self.owner(info.backup_type, info.backup_id, info.ns)
        if owner:
            entry["owner"] = owner
        document = self.read_manifest_document(info.ref) if info.finished else None
        files = [name for name in info.files if name.endswith(ARCHIVE_SUFFIXES)]
        if document is None:
            entry["files"] = [{"filename": name} for name in files]
            return entry
        listed = [{"filename": f["filename"], "crypt-mode": f.get("crypt-mode", "none"),
                   "size": f["size"]} for f in document["files"]]
        listed.append({"filename": MANIFEST_BLOB_NAME,
                       "crypt-mode": "sign-only" if document.get("signature") else "none",
                       "size": self.backend.size(self.key(info.ref, MANIFEST_BLOB_NAME))})
        known = {item["filename"] for item in listed}
        listed += [{"filename": name} for name in files if name not in known]
        entry["files"] = listed
        entry["size"] = sum(item.get("size", 0) for item in listed)
        unprotected = document.get("unprotected") or {}
        if isinstance(unprotected.get("notes"), str) and unprotected["notes"]:
            entry["comment"] = unprotected["notes"].splitlines()[0]
        if isinstance(unprotected.get("verify_state"), dict):
            entry["verification"] = dict(unprotected["verify_state"])
        if isinstance(unprotected.get("key-fingerprint"), str):
            entry["fingerprint"] = unprotected["key-fingerprint"]
        return entry

    def group_entries(self, ns: str | None = None) -> list[dict[str, Any]]:
        groups: dict[tuple[str, str], list[SnapshotInfo]] = {}
        for info in self.snapshot_infos(ns=ns):
            groups.setdefault((info.backup_type, info.backup_id), []).append(info)
        result = []
        for (kind, ident), infos in sorted(groups.items()):
            last = max(infos, key=lambda i: i.epoch)
            entry = {"backup-type": kind, "backup-id": ident, "backup-count": len(infos),
                     "last-backup": last.epoch,
                     "files": [n for n in last.files if n.endswith(ARCHIVE_SUFFIXES)]}
            owner = self.owner(kind, ident, ns)
            if owner:
                entry["owner"] = owner
            result.append(entry)
        return result

    def counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, Any]] = {}
        for info in self.all_snapshot_infos():      # every namespace (PBS 2.2 changelog)
            bucket = counts.setdefault(info.backup_type, {"groups": set(), "snapshots": 0})
            bucket["groups"].add(info.backup_id)
            bucket["snapshots"] += 1
        return {kind: {"groups": len(v["groups"]), "snapshots": v["snapshots"]}
                for kind, v in counts.items()}

    # --- changes -----------------------------------------------------------------------
    def set_verify_state(self, ref: SnapshotRef, state: str, upid: str) -> None:
        """Record ``verify_state`` in the manifest's unprotected part, as PBS verify does
        (the signature does not cover ``unprotected``, so it stays valid)."""
        with self.lock:
            key = self.key(ref, MANIFEST_BLOB_NAME)
            document = decode_manifest_blob(self.backend.read(key)).document
            document.setdefault("unprotected", {})["verify_state"] = {"state": state,
                                                                      "upid": upid}
            self.backend.write(key, encode_manifest_blob(document))

    def remove_snapshot(self, ref: SnapshotRef) -> None:
        with self.lock:
            self.backend.delete_prefix(self.snapshot_prefix(ref))

    def chunk_keys(self) -> Iterator[str]:
        yield from self.backend.list(self.layout.chunk_prefix)

    def archive_digests(self, ref: SnapshotRef) -> list[tuple[str, bytes]]:
        """(archive, digest) of every chunk the snapshot references, in file order."""
        manifest = self.reader.read_manifest(ref)
        found = []
        for entry in manifest.files:
            if entry.filename.endswith((".fidx", ".didx")):
                index = self.reader.read_archive_index(ref, entry.filename)
                found += [(entry.filename, digest) for digest in index.digests]
        return found
