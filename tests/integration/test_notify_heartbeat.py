"""Heartbeat pings against a real HTTP receiver on 127.0.0.1 (Uptime Kuma and healthchecks styles)."""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from restoredrill.notify import mask_url, scrub
from restoredrill.notify.heartbeat import Heartbeat, HeartbeatError

pytestmark = pytest.mark.integration
TOKEN = "Zq8sSECRETtok3n"


@dataclass
class Ping:
    method: str
    path: str
    query: dict
    body: str


class Receiver:
    """A push-monitor stand-in: records every request, answers with ``status``."""

    def __init__(self, status: int = 200):
        self.pings: list[Ping] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                parts = urlsplit(self.path)
                receiver.pings.append(Ping(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                                           body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = _record

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def test_healthchecks_style_start_success_and_failure(receiver):
    beat = Heartbeat(f"{receiver.base}/ping/{TOKEN}")
    assert beat.style == "healthchecks"
    assert beat.start() is True
    beat.success("PASS demo: 3 checks passed")
    beat.failure("FAIL demo: borg:app extract: expected 59 files; found 0")
    assert [(p.method, p.path) for p in receiver.pings] == [
        ("POST", f"/ping/{TOKEN}/start"), ("POST", f"/ping/{TOKEN}"), ("POST", f"/ping/{TOKEN}/fail")]
    assert receiver.pings[1].body == "PASS demo: 3 checks passed"
    assert "expected 59 files; found 0" in receiver.pings[2].body


def test_uptime_kuma_push_replaces_status_msg_and_ping(receiver):
    beat = Heartbeat(f"{receiver.base}/api/push/{TOKEN}?status=up&msg=OK&ping=")
    assert beat.style == "uptime-kuma"
    assert beat.start() is False and receiver.pings == []          # Kuma has no "started" state
    beat.success("PASS demo")
    beat.failure("FAIL demo: borg:app fresh:\nexpected <1 day; found 3 days " + "x" * 500)
    up, down = receiver.pings
    assert (up.method, up.path) == ("GET", f"/api/push/{TOKEN}")
    assert up.query == {"status": ["up"], "msg": ["PASS demo"], "ping": [""]}
    assert down.query["status"] == ["down"] and down.query["msg"][0].startswith("FAIL demo: borg:app fresh: expected")
    assert len(down.query["msg"][0]) == 200 and "\n" not in down.query["msg"][0]


def test_unreachable_endpoint_fails_with_a_masked_message():
    url = f"http://127.0.0.1:{free_port()}/ping/{TOKEN}"
    beat = Heartbeat(url, timeout=2, attempts=1)
    with pytest.raises(HeartbeatError) as caught:
        beat.failure("FAIL")
    message = str(caught.value)
    assert TOKEN not in message and "/ping/" not in message
    assert message.startswith(f"heartbeat failure ping (healthchecks, POST) to {mask_url(url)} failed: ")
    assert "refused" in message.lower()


def test_server_error_is_retried_then_reported_without_the_token():
    with Receiver(status=503) as failing:
        beat = Heartbeat(f"{failing.base}/api/push/{TOKEN}?status=up", attempts=2)
        with pytest.raises(HeartbeatError) as caught:
            beat.success("PASS")
        assert len(failing.pings) == 2
    assert "HTTP 503" in str(caught.value) and TOKEN not in str(caught.value)


def test_a_bad_url_is_refused_without_showing_it():
    with pytest.raises(HeartbeatError) as caught:
        Heartbeat(f"ftp://monitor.example/{TOKEN}")
    assert TOKEN not in str(caught.value) and "ftp://monitor.example/***" in str(caught.value)


def test_mask_and_scrub():
    assert mask_url(f"https://user:pw@hc.example:8443/ping/{TOKEN}?x=1") == "https://hc.example:8443/***"
    url = f"https://hc.example/ping/{TOKEN}?key=another-secret"
    assert scrub(f"failed on {url} and {TOKEN} and another-secret", url) == "failed on *** and *** and ***"
