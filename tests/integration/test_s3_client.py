"""The read-only S3 client against a real SeaweedFS over HTTPS (one server for the module):
reads and listings, the egress budget, bounded parallelism, the write guard, and the
failures a drill must name: wrong credentials, a missing bucket, an untrusted certificate."""
from __future__ import annotations

import threading
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from restoredrill.clients.s3 import (EgressBudgetExceeded, ReadOnlyBucket, S3Error, S3Settings)
from restoredrill.lab.offsite import create_locked_bucket
from restoredrill.lab.seaweed import SeaweedError, SeaweedServer, find_weed, write_tls_files
from restoredrill.pbsformat import MissingObject

pytestmark = pytest.mark.integration

BUCKET = "client-tests"
MANY = 1005                      # more than one listing page (1000)


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    try:
        find_weed()
    except SeaweedError as exc:
        pytest.fail(str(exc), pytrace=False)
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"), https=True).start()
    try:
        admin = server.client("admin", workers=32)
        create_locked_bucket(admin, BUCKET, days=1)
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: admin.put_object(Bucket=BUCKET, Key=f"many/{i:05d}", Body=b"%05d" % i),
                          range(MANY)))
        for i in range(8):
            admin.put_object(Bucket=BUCKET, Key=f"big/{i}", Body=bytes([i]) * 100_000)
        yield server
    finally:
        server.stop()


def settings(server: SeaweedServer, **changes) -> S3Settings:
    access, secret = server.credentials("drill")
    values = dict(name="lab-s3", endpoint=server.endpoint, bucket=BUCKET, access_key=lambda: access,
                  secret_key=lambda: secret, ca_file=str(server.ca_file), retries=1)
    values.update(changes)
    return S3Settings(**values)


@pytest.fixture
def bucket(seaweed) -> ReadOnlyBucket:
    return ReadOnlyBucket(settings(seaweed))


def test_listing_pages_through_every_object(bucket):
    keys = list(bucket.list("many/"))
    assert len(keys) == MANY and keys == sorted(keys)
    infos = list(bucket.list_objects("big/"))
    assert [i.size for i in infos] == [100_000] * 8 and all(i.last_modified for i in infos)
    assert bucket.calls["ListObjectsV2"] == 3
    assert bucket.budget.used > 0          # listing pages count against the budget


def test_a_listing_without_times_is_the_same_listing_unparsed(bucket):
    """Issue 26: chunk listings skip botocore's timestamp parse (a second client whose parser
    keeps the text); keys and sizes are the same, ``last_modified`` is None, and the default
    listing still gives aware datetimes. Both clients count every call and keep the guard."""
    timed = list(bucket.list_objects("many/"))
    untimed = list(bucket.list_objects("many/", times=False))
    assert [(i.key, i.size) for i in untimed] == [(i.key, i.size) for i in timed] and len(untimed) == MANY
    assert all(i.last_modified is None for i in untimed)
    assert all(i.last_modified.tzinfo is not None for i in timed)
    assert bucket.calls["ListObjectsV2"] == 4
    with pytest.raises(PermissionError, match="only reads"):
        bucket._untimed_client().delete_object(Bucket=BUCKET, Key="many/00001")


def test_read_exists_and_missing(bucket):
    assert bucket.read("many/00007") == b"00007"
    assert bucket.exists("many/00007") and not bucket.exists("many/nope")
    with pytest.raises(MissingObject):
        bucket.read("many/nope")


def test_read_many_reports_missing_runs_checks_and_caps_parallel_gets(seaweed):
    bucket = ReadOnlyBucket(settings(seaweed, max_workers=3))
    in_flight, peak, lock = [0], [0], threading.Lock()

    def started(**_):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.02)

    def finished(**_):
        with lock:
            in_flight[0] -= 1

    bucket._client.meta.events.register("before-call.s3.GetObject", started)
    bucket._client.meta.events.register("after-call.s3.GetObject", finished)
    keys = [f"many/{i:05d}" for i in range(30)] + ["many/absent"]
    results = dict(bucket.read_many(keys, workers=10))
    assert sorted(results) == sorted(keys)
    assert results["many/00005"] == b"00005" and isinstance(results["many/absent"], MissingObject)
    assert peak[0] == 3
    checked = dict(bucket.read_many(keys[:4], process=lambda key, data: (key, len(data))))
    assert checked["many/00002"] == ("many/00002", 5)


def test_the_egress_budget_stops_reading_and_says_so(seaweed):
    bucket = ReadOnlyBucket(settings(seaweed, egress_budget=350_000))
    got = []
    with pytest.raises(EgressBudgetExceeded, match="egress budget exceeded") as caught:
        for key, _data in bucket.read_many([f"big/{i}" for i in range(8)], workers=1):
            got.append(key)
    assert len(got) == 3 and bucket.budget.used <= 350_000
    assert "big/3" in str(caught.value) and "350,000" in str(caught.value)
    exact = ReadOnlyBucket(settings(seaweed, egress_budget=200_000))
    assert [len(exact.read(f"big/{i}")) for i in range(2)] == [100_000, 100_000]


def test_listing_past_the_budget_fails_too(seaweed):
    bucket = ReadOnlyBucket(settings(seaweed, egress_budget=5_000))
    with pytest.raises(EgressBudgetExceeded, match="ListObjectsV2"):
        list(bucket.list("many/"))


def test_bucket_settings_are_readable_with_the_read_only_key(bucket):
    assert bucket.versioning()["Status"] == "Enabled"
    assert bucket.object_lock()["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 1}
    assert bucket.lifecycle_rules() == []
    assert bucket.object_retention("big/0")["Mode"] == "GOVERNANCE"
    bucket.head_bucket()


def test_the_client_refuses_every_write_operation(bucket):
    with pytest.raises(PermissionError, match="PutObject is not allowed"):
        bucket._client.put_object(Bucket=BUCKET, Key="x", Body=b"x")
    with pytest.raises(PermissionError, match="DeleteObject is not allowed"):
        bucket._client.delete_object(Bucket=BUCKET, Key="big/0")
    assert not any(name.startswith(("Put", "Delete", "Copy", "Create")) for name in dir(ReadOnlyBucket))


def test_the_drill_identity_cannot_write_even_without_the_guard(seaweed):
    access, secret = seaweed.credentials("drill")
    raw = boto3.session.Session().client(
        "s3", endpoint_url=seaweed.endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
        verify=str(seaweed.ca_file), config=Config(region_name="us-east-1", s3={"addressing_style": "path"}))
    for call in (lambda: raw.put_object(Bucket=BUCKET, Key="x", Body=b"x"),
                 lambda: raw.delete_object(Bucket=BUCKET, Key="big/0"),
                 lambda: raw.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={
                     "Rules": [{"ID": "x", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}]})):
        with pytest.raises(ClientError, match="AccessDenied"):
            call()


def test_a_wrong_secret_key_is_named(seaweed):
    bucket = ReadOnlyBucket(settings(seaweed, secret_key=lambda: "not-the-secret"))
    with pytest.raises(S3Error, match="wrong secret key") as caught:
        list(bucket.list("many/"))
    assert "not-the-secret" not in str(caught.value) and f"s3://{BUCKET}" in str(caught.value)


def test_an_unknown_access_key_is_named(seaweed):
    bucket = ReadOnlyBucket(settings(seaweed, access_key=lambda: "AKNOBODY"))
    with pytest.raises(S3Error, match="wrong credentials"):
        bucket.read("many/00001")


def test_a_missing_bucket_is_named(seaweed):
    bucket = ReadOnlyBucket(settings(seaweed, bucket="no-such-bucket"))
    with pytest.raises(S3Error, match="bucket does not exist") as caught:
        bucket.head_bucket()
    assert "s3://no-such-bucket" in str(caught.value)
    with pytest.raises(S3Error, match="bucket does not exist"):
        list(bucket.list(""))


def test_an_untrusted_certificate_fails_tls(seaweed, tmp_path):
    write_tls_files(tmp_path / "other", name="some other CA")
    other = ReadOnlyBucket(settings(seaweed, ca_file=str(tmp_path / "other" / "ca.pem")))
    with pytest.raises(S3Error, match="TLS verification failed") as caught:
        other.head_bucket()
    assert "some other CA" not in str(caught.value) and str(tmp_path / "other" / "ca.pem") in str(caught.value)
    system = ReadOnlyBucket(settings(seaweed, ca_file=None))
    with pytest.raises(S3Error, match="system's CA bundle"):
        system.read("many/00001")


def test_an_unreachable_endpoint_is_named(seaweed):
    from restoredrill.lab.seaweed import free_ports
    bucket = ReadOnlyBucket(settings(seaweed, endpoint=f"http://127.0.0.1:{free_ports(1)[0]}",
                                     connect_timeout=2))
    with pytest.raises(S3Error, match="unreachable"):
        bucket.head_bucket()
