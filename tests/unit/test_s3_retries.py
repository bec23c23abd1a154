"""S3 reads are retried by botocore's standard mode (bounded), and the error names the tries.
A plain-HTTP server on loopback answers 503 a given number of times, then 200."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from restoredrill.clients.s3 import ReadOnlyBucket, S3Error, S3Settings


class Flaky(BaseHTTPRequestHandler):
    failures = 0
    seen: list[str] = []

    def do_HEAD(self) -> None:
        Flaky.seen.append(self.command)
        status = 503 if len(Flaky.seen) <= Flaky.failures else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def bucket(endpoint: str) -> ReadOnlyBucket:
    return ReadOnlyBucket(S3Settings("offsite", endpoint, "backups", lambda: "AKIDEXAMPLE", lambda: "secret",
                                     retries=2))     # 2 retries: 3 tries in all


def test_a_read_comes_through_after_transient_503s(server):
    Flaky.failures, Flaky.seen = 2, []
    bucket(server).head_bucket()
    assert Flaky.seen == ["HEAD"] * 3


def test_a_read_that_keeps_failing_is_bounded_and_names_the_tries(server):
    Flaky.failures, Flaky.seen = 100, []
    with pytest.raises(S3Error) as failed:
        bucket(server).head_bucket()
    assert len(Flaky.seen) == 3 and "the last of 3 tries" in str(failed.value)
