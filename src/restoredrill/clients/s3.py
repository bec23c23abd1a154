"""S3 client: the only code that talks to S3 object storage. Read-only by construction.

Every call goes through one boto3 client whose ``before-call`` hook refuses any
operation outside ``READ_OPERATIONS`` (List*, Get*, Head*), so a bug elsewhere cannot
put, copy or delete an object even with credentials that would allow it. There is no
put or delete method here at all. Credentials are secret references resolved when the
client is built (late), handed to boto3 directly and never logged or put in a message.

Reads are bounded twice: a thread pool of at most ``max_workers`` parallel GETs, and
an egress budget in bytes per run (object bodies and listing pages). A GET whose
``Content-Length`` would overrun the budget is not read: it raises
``EgressBudgetExceeded`` so the caller fails clearly instead of passing with less read.

Manual equivalents are named in each docstring (``aws s3api ...`` with
``--endpoint-url ENDPOINT``, path-style addressing).
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ClientError, ConnectTimeoutError,
                                 EndpointConnectionError, NoCredentialsError, ReadTimeoutError,
                                 SSLError)

from restoredrill.pbsformat import MissingObject

log = logging.getLogger("restoredrill.clients.s3")
logging.getLogger("botocore").setLevel(logging.WARNING)
logging.getLogger("boto3").setLevel(logging.WARNING)
logging.getLogger("urllib3").setLevel(logging.WARNING)

READ_OPERATIONS = frozenset({
    "ListObjectsV2", "GetObject", "HeadObject", "HeadBucket", "GetBucketVersioning",
    "GetObjectLockConfiguration", "GetBucketLifecycleConfiguration", "GetObjectRetention",
    "GetObjectLegalHold",
})
DEFAULT_WORKERS = 16
MAX_WORKERS = 64
LIST_PAGE_SIZE = 1000
SCAN_PIECE = 256 * 1024


class S3Error(RuntimeError):
    """An S3 call failed; the message names target, call, bucket/key and the likely cause."""

    def __init__(self, target: str, operation: str, where: str, cause: str, detail: str = ""):
        self.target = target
        self.operation = operation
        self.where = where
        self.cause = cause
        self.detail = detail
        text = f"S3 target {target}: {operation} {where}: {cause}"
        super().__init__(text + (f" ({detail})" if detail else ""))


class EgressBudgetExceeded(S3Error):
    """Reading on would pass the per-run egress budget: stop and fail, never pass short."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime | None = None


@dataclass
class S3Settings:
    """Everything needed to reach one bucket; secrets only as resolvers (called late)."""

    name: str
    endpoint: str
    bucket: str
    access_key: Callable[[], str]
    secret_key: Callable[[], str]
    region: str = "us-east-1"
    ca_file: str | None = None
    egress_budget: int | None = None
    max_workers: int = DEFAULT_WORKERS
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 3


class EgressBudget:
    """Bytes this run may still read from the target; thread-safe."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes from the budget; False (nothing taken) when they do not fit."""
        with self._lock:
            if self.limit is not None and self.used + size > self.limit:
                return False
            self.used += size
            return True

    def charge(self, size: int) -> None:
        """Count bytes already received (listing pages), even past the limit."""
        with self._lock:
            self.used += size

    @property
    def exceeded(self) -> bool:
        return self.limit is not None and self.used > self.limit


# (error code or HTTP status, cause): what an S3 error most likely means
_CAUSES = {
    "InvalidAccessKeyId": "the access key is not known to the server: wrong credentials (check the "
                          "access_key reference)",
    "SignatureDoesNotMatch": "the request signature does not match: wrong secret key for this access key "
                             "(check the secret_key reference)",
    "AccessDenied": "access denied: the drill's key lacks a read permission for this call (it needs "
                    "List and Get on the bucket)",
    "403": "access denied (HTTP 403): wrong credentials or a key without read permission",
    "NoSuchBucket": "the bucket does not exist at this endpoint (check bucket and endpoint)",
    "PermanentRedirect": "the bucket lives in another region or endpoint (check region/endpoint)",
    "AuthorizationHeaderMalformed": "the region does not match the bucket's (check region)",
}


class ReadOnlyBucket:
    """One bucket, read-only: list, read, exists (an ``ObjectSource``) plus bucket settings."""

    def __init__(self, settings: S3Settings, *, budget: EgressBudget | None = None):
        if not 1 <= settings.max_workers <= MAX_WORKERS:
            raise ValueError(f"max_workers must be 1..{MAX_WORKERS}, not {settings.max_workers}")
        self.settings = settings
        self.name = settings.name
        self.bucket = settings.bucket
        self.budget = budget or EgressBudget(settings.egress_budget)
        self.calls: dict[str, int] = {}
        self._calls_lock = threading.Lock()
        self._botocore = botocore.session.get_session()
        self._client = self._make_client(self._botocore)
        self._listing_client = None

    # --- the choke point --------------------------------------------------------------
    def _untimed_client(self):
        """A second client whose answers keep timestamps as the server's text, for listings
        that never read ``LastModified`` (the chunk listing: 100 k chunks listed in about
        0.6 of the time). botocore parses every timestamp of a page with dateutil, the top
        cost of a listing; the parser comes from the session's ``response_parser_factory``
        for every response (botocore/endpoint.py ``_get_response``), whose
        ``set_parser_defaults(timestamp_parser=...)`` (botocore/parsers.py) is the public
        switch. Its own session shares the first one's loaded API models."""
        if self._listing_client is None:
            untimed = botocore.session.get_session()
            untimed.register_component("data_loader", self._botocore.get_component("data_loader"))
            untimed.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
            self._listing_client = self._make_client(untimed)
        return self._listing_client

    def _make_client(self, botocore_session):
        s = self.settings
        config = Config(
            region_name=s.region, signature_version="s3v4",
            s3={"addressing_style": "path"},
            # botocore "standard" retry mode: transient errors (HTTP 500/502/503/504, throttling,
            # connection resets and timeouts) are tried again with backoff, ``retries`` times after
            # the first try (botocore/config.py: ``max_attempts`` counts retries, not the first
            # request); every operation here is a read (the before-call guard), so a retry is safe
            # and no tenacity loop is added on top. The tries made are named in S3Error.
            retries={"max_attempts": s.retries, "mode": "standard"},
            connect_timeout=s.connect_timeout, read_timeout=s.read_timeout,
            max_pool_connections=max(s.max_workers, 10),
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session(botocore_session=botocore_session)
        client = session.client(
            "s3", endpoint_url=s.endpoint, aws_access_key_id=s.access_key(),
            aws_secret_access_key=s.secret_key(), verify=s.ca_file if s.ca_file else True,
            config=config)
        client.meta.events.register("before-call.s3", self._guard_and_count)
        client.meta.events.register("after-call.s3.ListObjectsV2", self._charge_listing)
        return client

    def _guard_and_count(self, model, **_kwargs) -> None:
        """Refuse every operation that could change the bucket (the second line of defence)."""
        if model.name not in READ_OPERATIONS:
            raise PermissionError(f"S3 {model.name} is not allowed: restoredrill only reads the bucket")
        with self._calls_lock:
            self.calls[model.name] = self.calls.get(model.name, 0) + 1

    def _charge_listing(self, http_response, **_kwargs) -> None:
        self.budget.charge(len(http_response.content or b""))

    def _fail(self, operation: str, key: str | None, exc: Exception) -> S3Error:
        where = f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"
        where += f" at {self.settings.endpoint}"
        if isinstance(exc, SSLError):
            trust = f"the CA bundle {self.settings.ca_file}" if self.settings.ca_file else \
                "the system's CA bundle (set ca_file for a private CA)"
            return S3Error(self.name, operation, where,
                           f"TLS verification failed: the server's certificate is not trusted by {trust} "
                           "or does not name this host", _short(exc))
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
            return S3Error(self.name, operation, where, "the endpoint is unreachable", _short(exc))
        if isinstance(exc, ReadTimeoutError):
            return S3Error(self.name, operation, where, "the endpoint stopped answering (read timeout)",
                           _short(exc))
        if isinstance(exc, NoCredentialsError):
            return S3Error(self.name, operation, where, "no credentials were given")
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            cause = _CAUSES.get(code) or _CAUSES.get(status) or f"the server answered {code or status}"
            message = exc.response.get("Error", {}).get("Message", "")
            retried = exc.response.get("ResponseMetadata", {}).get("RetryAttempts") or 0
            tries = f"; the last of {retried + 1} tries" if retried else ""
            return S3Error(self.name, operation, where, cause, f"{code or status}: {message}"[:300] + tries)
        return S3Error(self.name, operation, where, "the S3 call failed", _short(exc))

    def _call(self, operation: str, key: str | None, *, client=None, **params):
        method = getattr(client or self._client, _snake(operation))
        try:
            return method(Bucket=self.bucket, **params)
        except PermissionError:
            raise
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(operation, key, exc) from None

    # --- objects ----------------------------------------------------------------------
    def list_objects(self, prefix: str, *, times: bool = True) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (all pages; no delimiter), streamed page by page.
        ``times=False`` leaves ``last_modified`` None and skips parsing it (chunk listings).

        ``aws s3api list-objects-v2 --bucket B --prefix P``
        """
        client = self._client if times else self._untimed_client()
        token = None
        while True:
            params = {"Prefix": prefix, "MaxKeys": LIST_PAGE_SIZE}
            if token:
                params["ContinuationToken"] = token
            page = self._call("ListObjectsV2", prefix or None, client=client, **params)
            self._check_budget("ListObjectsV2", prefix)
            for item in page.get("Contents", ()):
                yield ObjectInfo(item["Key"], int(item.get("Size", 0)), item.get("LastModified") if times else None)
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise S3Error(self.name, "ListObjectsV2", f"s3://{self.bucket}/{prefix}",
                              "the server said the listing is truncated but gave no continuation token")

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` (the ``ObjectSource`` protocol)."""
        return (info.key for info in self.list_objects(prefix))

    def _check_budget(self, operation: str, key: str) -> None:
        if self.budget.exceeded:
            raise EgressBudgetExceeded(
                self.name, operation, f"s3://{self.bucket}/{key}",
                f"egress budget exceeded: {self.budget.used:,} bytes read, budget {self.budget.limit:,} "
                "(egress_budget); reading stopped")

    def read(self, key: str) -> bytes:
        """The whole object, counted against the egress budget; ``MissingObject`` if absent.

        ``aws s3api get-object --bucket B --key K OUTFILE``
        """
        response, size = self._get_within_budget(key)
        body = response["Body"]
        try:
            data = body.read()
        except BotoCoreError as exc:
            raise self._fail("GetObject", key, exc) from None
        finally:
            body.close()
        if len(data) != size:
            raise S3Error(self.name, "GetObject", f"s3://{self.bucket}/{key}",
                          f"short read: {len(data):,} of {size:,} bytes")
        return data

    def _get_within_budget(self, key: str) -> tuple[dict, int]:
        """GET; take the body's size from the budget before reading a byte of it."""
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                raise MissingObject(key) from None
            raise self._fail("GetObject", key, exc) from None
        except BotoCoreError as exc:
            raise self._fail("GetObject", key, exc) from None
        size = int(response.get("ContentLength", 0))
        if not self.budget.reserve(size):
            response["Body"].close()
            raise EgressBudgetExceeded(
                self.name, "GetObject", f"s3://{self.bucket}/{key}",
                f"egress budget exceeded: reading this {size:,}-byte object would pass the budget of "
                f"{self.budget.limit:,} bytes ({self.budget.used:,} already read); reading stopped")
        return response, size

    def exists(self, key: str) -> bool:
        """``aws s3api head-object --bucket B --key K``"""
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise self._fail("HeadObject", key, exc) from None
        except BotoCoreError as exc:
            raise self._fail("HeadObject", key, exc) from None

    def scan(self, key: str, scanner) -> object:
        """Stream the object into ``scanner.feed(piece)`` (256 KiB pieces) and return
        ``scanner.finish()``: checks run while the bytes are in cache and the whole object is
        never held. Budget and errors as ``read``.

        ``aws s3api get-object --bucket B --key K /dev/stdout | CHECK``
        """
        response, size = self._get_within_budget(key)
        body, received = response["Body"], 0
        try:
            while piece := body.read(SCAN_PIECE):
                received += len(piece)
                scanner.feed(piece)
        except BotoCoreError as exc:
            raise self._fail("GetObject", key, exc) from None
        finally:
            body.close()
        if received != size:
            raise S3Error(self.name, "GetObject", f"s3://{self.bucket}/{key}",
                          f"short read: {received:,} of {size:,} bytes")
        return scanner.finish()

    def read_many(self, keys: Iterable[str], *, workers: int | None = None,
                  process: Callable[[str, bytes], object] | None = None
                  ) -> Iterator[tuple[str, object]]:
        """Read objects with at most ``workers`` parallel GETs, yielding as they complete.

        Yields ``(key, data)``, or ``(key, process(key, data))`` when ``process`` is given
        (it runs in the worker thread). A missing object is yielded as a ``MissingObject``
        (the caller records it and goes on); any other error (credentials, TLS, budget)
        stops the reading and is raised.
        """
        def work(key: str) -> object:
            data = self.read(key)
            return process(key, data) if process is not None else data
        return self._parallel(keys, work, workers)

    def scan_many(self, keys: Iterable[str], make_scanner: Callable[[str], object], *,
                  workers: int | None = None) -> Iterator[tuple[str, object]]:
        """``scan`` every key with a fresh ``make_scanner(key)``, in parallel, as ``read_many``."""
        return self._parallel(keys, lambda key: self.scan(key, make_scanner(key)), workers)

    def _parallel(self, keys: Iterable[str], work: Callable[[str], object], workers: int | None
                  ) -> Iterator[tuple[str, object]]:
        """At most ``workers`` calls at once and ``2 * workers`` results waiting; completion order."""
        workers = min(workers or self.settings.max_workers, self.settings.max_workers)
        todo = iter(keys)
        running: dict[Future, str] = {}

        def guarded(key: str) -> object:
            try:
                return work(key)
            except MissingObject as missing:
                return missing

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"s3-{self.name}") as pool:
            try:
                while True:
                    for key in itertools.islice(todo, 2 * workers - len(running)):
                        running[pool.submit(guarded, key)] = key
                    if not running:
                        return
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield running.pop(future), future.result()
            finally:
                for future in running:
                    future.cancel()

    # --- bucket settings ----------------------------------------------------------------
    def head_bucket(self) -> None:
        """``aws s3api head-bucket --bucket B``: the bucket exists and the key may use it."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if status == "404":
                raise S3Error(self.name, "HeadBucket", f"s3://{self.bucket} at {self.settings.endpoint}",
                              _CAUSES["NoSuchBucket"]) from None
            if status == "403":  # a HEAD answer has no body: ask a GET for the error code
                self._call("ListObjectsV2", None, MaxKeys=1)
            raise self._fail("HeadBucket", None, exc) from None
        except BotoCoreError as exc:
            raise self._fail("HeadBucket", None, exc) from None

    def versioning(self) -> dict:
        """``aws s3api get-bucket-versioning --bucket B`` -> {"Status": "Enabled"|"Suspended"} or {}."""
        response = self._call("GetBucketVersioning", None)
        return {k: v for k, v in response.items() if k in ("Status", "MFADelete")}

    def object_lock(self) -> dict | None:
        """``aws s3api get-object-lock-configuration --bucket B``; None when lock is not configured."""
        try:
            response = self._client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound"):
                return None
            raise self._fail("GetObjectLockConfiguration", None, exc) from None
        except BotoCoreError as exc:
            raise self._fail("GetObjectLockConfiguration", None, exc) from None
        return response.get("ObjectLockConfiguration") or None

    def lifecycle_rules(self) -> list[dict]:
        """``aws s3api get-bucket-lifecycle-configuration --bucket B``; [] when there is none."""
        try:
            response = self._client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchLifecycleConfiguration":
                return []
            raise self._fail("GetBucketLifecycleConfiguration", None, exc) from None
        except BotoCoreError as exc:
            raise self._fail("GetBucketLifecycleConfiguration", None, exc) from None
        return list(response.get("Rules", []))

    def object_retention(self, key: str) -> dict | None:
        """``aws s3api get-object-retention --bucket B --key K``; None when the object has none."""
        try:
            response = self._client.get_object_retention(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError",
                        "InvalidRequest") or _is_missing(exc):
                return None
            raise self._fail("GetObjectRetention", key, exc) from None
        except BotoCoreError as exc:
            raise self._fail("GetObjectRetention", key, exc) from None
        return response.get("Retention") or None


def _is_missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("NoSuchKey", "404", "NotFound") or (status == 404 and code != "NoSuchBucket")


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]
