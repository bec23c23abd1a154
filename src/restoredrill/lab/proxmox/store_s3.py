"""The double's S3-backed datastore, as on PBS 4: a restore reads the snapshot's files and
chunks from the bucket, through a bounded local chunk cache.

PBS 4 keeps an S3 datastore's objects under ``<store>/.cnt/...`` (snapshot files) and
``<store>/.chunks/<hex4>/<digest>`` (chunks, the same raw DataBlob bytes as a local chunk
file), lists snapshots from its local cache and fetches chunks through a local chunk cache
(``../shared/specs/pbs-formats.md``, from proxmox-backup ``pbs-datastore/src/s3.rs``; the
upstream snapshot the search tools hold predates S3 support, so that file could not be read
here). The double does the same for restores: listing, verify, prune, sync and GC keep working
on the store's local copy (its "local cache"), while every object a restore reads (manifest,
config blob, index, chunk) is a GET from the bucket. The chunk cache is bounded (least recently
used chunks are dropped) and empty when the store is attached (every lab start), so a measured
offsite RTO includes the download.

DECLARED DEVIATIONS: content objects (manifests, blobs, indexes) are not cached (PBS 4 keeps
them in its local cache); a chunk enters the cache only when its DataBlob CRC is right, so a
damaged object is never served from the cache after the bucket is repaired. S3 errors: the
client retries throttling, 5xx and timeouts (botocore standard mode: ``max_attempts`` tries
with exponential backoff, per-try connect/read timeouts); what remains fails the restore
naming the object and the S3 error, as PBS fails a restore whose chunk fetch fails.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from restoredrill.pbsformat import MissingObject, check_blob
from restoredrill.pbsformat.datastore import check_key

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


class S3ReadError(OSError):
    """A GET/LIST the bucket did not answer after the client's retries (a read error)."""


class S3CachedSource:
    """An ObjectSource over one bucket; chunk objects (under ``chunk_prefix``) through a
    bounded least-recently-used cache in ``cache_dir`` (emptied on creation)."""

    def __init__(self, client, bucket: str, chunk_prefix: str, cache_dir: Path,
                 max_bytes: int = DEFAULT_CACHE_BYTES):
        import shutil
        self.client, self.bucket, self.chunk_prefix = client, bucket, chunk_prefix
        self.cache_dir, self.max_bytes = Path(cache_dir), max_bytes
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        self.cache_dir.mkdir(parents=True, mode=0o700)
        self._cached: OrderedDict[str, int] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()
        self.gets = self.hits = self.bytes_downloaded = 0

    # --- ObjectSource ------------------------------------------------------------------
    def read(self, key: str) -> bytes:
        check_key(key)
        is_chunk = key.startswith(self.chunk_prefix)
        if is_chunk:
            data = self._from_cache(key)
            if data is not None:
                return data
        data = self._get(key)
        if is_chunk:
            self._to_cache(key, data)
        return data

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"]
        except Exception as exc:            # botocore's ClientError / BotoCoreError
            raise S3ReadError(f"S3 LIST {self.bucket}/{prefix}: {s3_cause(exc)}") from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=check_key(key))
            return True
        except Exception as exc:
            if is_missing(exc):
                return False
            raise S3ReadError(f"S3 HEAD {self.bucket}/{key}: {s3_cause(exc)}") from None

    # --- S3 and the cache ------------------------------------------------------------------
    def _get(self, key: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            data = answer["Body"].read()
        except Exception as exc:
            if is_missing(exc):
                raise MissingObject(f"{key} (S3 bucket {self.bucket}: NoSuchKey)") from None
            raise S3ReadError(f"S3 GET {self.bucket}/{key}: {s3_cause(exc)}") from None
        with self._lock:
            self.gets += 1
            self.bytes_downloaded += len(data)
        return data

    def _path(self, key: str) -> Path:
        return self.cache_dir.joinpath(*key.split("/"))

    def _from_cache(self, key: str) -> bytes | None:
        with self._lock:
            if key not in self._cached:
                return None
            self._cached.move_to_end(key)
            self.hits += 1
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def _to_cache(self, key: str, data: bytes) -> None:
        try:
            if not check_blob(data).crc_ok or len(data) > self.max_bytes:
                return
        except Exception:       # not a DataBlob at all: the reader will say so; never cached
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        with self._lock:
            if key not in self._cached:
                self._used += len(data)
            self._cached[key] = len(data)
            self._cached.move_to_end(key)
            while self._used > self.max_bytes and self._cached:
                old, size = self._cached.popitem(last=False)
                self._used -= size
                self._path(old).unlink(missing_ok=True)

    def clear(self) -> None:
        """Empty the chunk cache (as at lab start: a fresh PBS reads every chunk from S3)."""
        import shutil
        with self._lock:
            self._cached.clear()
            self._used = 0
            shutil.rmtree(self.cache_dir, ignore_errors=True)
            self.cache_dir.mkdir(parents=True, mode=0o700, exist_ok=True)

    @property
    def cached_bytes(self) -> int:
        return self._used


def is_missing(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound")


def s3_cause(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        attempts = response.get("ResponseMetadata", {}).get("RetryAttempts")
        return (f"{error.get('Code', 'error')} (HTTP {status}"
                + (f", after {attempts} retries" if attempts else "") + ")")
    return f"{type(exc).__name__}: {str(exc)[:200]}"
