"""Hostile Proxmox API answers and malformed UPIDs through the real clients.

The answers come from a real HTTPS server on loopback (a pinned self-signed certificate,
the real proxmoxer session with restoredrill's PinnedAdapter, token auth): it serves,
per path, the body a compromised or broken PVE/PBS could send. The Proxmox double cannot
send such bodies (its fault switchboard only fails requests), hence this server. Each
answer must end in one of the drill's own error types (ApiError, TaskFailed, UpidError)
with a short message free of control characters and of the token secret: never a
KeyError/TypeError/AttributeError traceback, never a hang.
"""
from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from restoredrill.clients.pbs import PbsClient, snapshot_time
from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint
from restoredrill.clients.pve import PveClient, ScratchGuard, TaskFailed
from restoredrill.clients.upid import UpidError, parse_upid
from restoredrill.lab.proxmox.certs import make_identity

pytestmark = pytest.mark.integration
UPID = "UPID:pve1:0000ABCD:00001234:65000000:qmrestore:9901:root@pam:"
CLEAR_ERRORS = (ApiError, TaskFailed, UpidError)
TOKEN_SECRET = "hostile-api-token-secret-0b6a"


class Answers(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, bytes | tuple[int, bytes]]] = {}     # path -> body, or (HTTP status, body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].removeprefix("/api2/json")
        answer = self.routes.get(path, b'{"data": null}')
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    identity = make_identity(tmp_path_factory.mktemp("hostile-api"), "api", "localhost")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(identity.cert_file, identity.key_file)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, identity
    httpd.shutdown()


def _api(server, service: str) -> ApiChokePoint:
    httpd, identity = server
    return ApiChokePoint(Endpoint(f"https://127.0.0.1:{httpd.server_address[1]}", "drill@pve!hostile",
                                  TOKEN_SECRET, identity.fingerprint(), service=service, timeout=5))


def data(value) -> bytes:
    return json.dumps({"data": value}).encode()


TASK = f"/nodes/pve1/tasks/{UPID}"
LOG = f"{TASK}/log"
STATUS = f"{TASK}/status"


def wait(pve: PveClient, pbs: PbsClient):
    return pve.wait_task("pve1", UPID, deadline=0.5, what="restore of 9901")


def exists(pve: PveClient, pbs: PbsClient):
    return pve.exists(9901)


def newest_snapshot(pve: PveClient, pbs: PbsClient):
    return max(snapshot_time(item) for item in pbs.snapshots("store"))


def start_guest(pve: PveClient, pbs: PbsClient):
    return pve.power("pve1", "qemu", 9901, "start")


def next_id(pve: PveClient, pbs: PbsClient):
    return pve.next_id()


def error(status: int, errors: dict) -> tuple[int, bytes]:
    return status, json.dumps({"data": None, "errors": errors}).encode()


RESOURCES, SNAPSHOTS = "/cluster/resources", "/admin/datastore/store/snapshots"
CONFIG = "/nodes/pve1/qemu/9901/config"
OURS = data([{"vmid": 9901, "pool": "restoredrill", "type": "qemu"}])

# id -> (routes, the call the drill makes with the answer)
INPUTS: dict[str, tuple[dict[str, bytes], Callable]] = {
    "task-status-missing-fields": ({STATUS: data({})}, wait),
    "task-status-stopped-no-exitstatus": ({STATUS: data({"status": "stopped"}), LOG: data([])}, wait),
    "task-status-is-a-list": ({STATUS: data([1, 2])}, wait),
    "task-status-is-a-string": ({STATUS: data("stopped")}, wait),
    "task-status-data-missing": ({STATUS: b"{}"}, wait),
    "task-status-not-json": ({STATUS: b"<html>gateway</html>"}, wait),
    "task-exitstatus-huge": ({STATUS: data({"status": "stopped", "exitstatus": "E" * 1_000_000}), LOG: data([])},
                             wait),
    "task-log-lines-are-strings": ({STATUS: data({"status": "stopped", "exitstatus": "failed"}),
                                    LOG: data(["line one", "line two"])}, wait),
    "task-log-huge": ({STATUS: data({"status": "stopped", "exitstatus": "failed"}),
                       LOG: data([{"n": i, "t": "x" * 1000} for i in range(5000)])}, wait),
    "resources-vmid-not-a-number": ({RESOURCES: data([{"vmid": "abc"}])}, exists),
    "resources-data-null": ({RESOURCES: data(None)}, exists),
    "resources-items-not-objects": ({RESOURCES: data([1, "x", None])}, exists),
    "snapshot-missing-backup-time": ({SNAPSHOTS: data([{"backup-type": "vm", "backup-id": "100"}])},
                                     newest_snapshot),
    "snapshot-backup-time-huge": ({SNAPSHOTS: data([{"backup-time": 10 ** 30}])}, newest_snapshot),
    "snapshot-backup-time-wrong-type": ({SNAPSHOTS: data([{"backup-time": "yesterday"}])}, newest_snapshot),
    "snapshot-list-is-an-object": ({SNAPSHOTS: data({"backup-time": 1})}, newest_snapshot),
    "snapshot-backup-time-negative": ({SNAPSHOTS: data([{"backup-time": -1}])}, newest_snapshot),
    "task-status-html-echoing-the-token": ({STATUS: f"<html>Authorization: PVEAPIToken=drill@pve!hostile="
                                                    f"{TOKEN_SECRET}</html>".encode()}, wait),
    "task-status-nested-deeply": ({STATUS: b"[" * 100_000}, wait),
    "task-exitstatus-with-escapes": ({STATUS: data({"status": "stopped", "exitstatus": "\x1b[2Jfailed\nTASK OK"}),
                                      LOG: data([{"n": 1, "t": "\x1b]0;owned\x07 line"}])}, wait),
    "error-body-is-a-list": ({STATUS: (500, b"[1, 2]")}, wait),
    "error-body-echoes-the-token": ({STATUS: error(500, {"upid": f"token {TOKEN_SECRET} refused"})}, wait),
    "error-body-huge-with-escapes": ({STATUS: error(500, {"upid": "\x1b[2J" + "A" * 100_000})}, wait),
    "resources-vmid-is-a-boolean": ({RESOURCES: data([{"vmid": True}])}, exists),
    "guest-tags-not-a-string": ({RESOURCES: OURS, CONFIG: data({"tags": ["restoredrill"]})}, start_guest),
    "nextid-not-a-number": ({"/cluster/nextid": data("abc")}, next_id),
}


@pytest.mark.parametrize("name", INPUTS)
def test_hostile_api_answer_gives_a_clear_error(server, name: str):
    routes, call = INPUTS[name]
    Answers.routes = routes
    pve = PveClient(_api(server, "PVE"), ScratchGuard(9900, 9999, "restoredrill", "restoredrill"))
    pbs = PbsClient(_api(server, "PBS"))
    with pytest.raises(Exception) as caught:
        call(pve, pbs)
    assert isinstance(caught.value, CLEAR_ERRORS), f"{name}: {type(caught.value).__name__}: {caught.value}"
    message = str(caught.value)
    assert len(message) < 2000, f"{name}: a {len(message)}-character message"
    assert TOKEN_SECRET not in message and TOKEN_SECRET not in repr(vars(caught.value))
    assert not any(ch in message for ch in "\n\r\x1b\x07"), repr(message[:300])


MALFORMED_UPIDS = {
    "empty": "",
    "no-prefix": "pve1:0000ABCD:00001234:65000000:qmrestore:9901:root@pam:",
    "too-few-fields": "UPID:pve1:0000ABCD:65000000:qmrestore:root@pam:",
    "too-many-fields": "UPID:pve1:1:2:3:4:5:6:7:8:9:",
    "no-trailing-colon": "UPID:pve1:0000ABCD:00001234:65000000:qmrestore:9901:root@pam",
    "pid-not-hex": "UPID:pve1:zzzz:00001234:65000000:qmrestore:9901:root@pam:",
    "start-time-overflows": "UPID:pve1:0000ABCD:00001234:FFFFFFFFFFFFFFFF:qmrestore:9901:root@pam:",
    "start-time-5000-digits": "UPID:pve1:0000ABCD:00001234:" + "F" * 5000 + ":qmrestore:9901:root@pam:",
    "start-time-negative": "UPID:pve1:0000ABCD:00001234:-1:qmrestore:9901:root@pam:",
    "hex-with-0x-prefix": "UPID:pve1:0x0000ABCD:00001234:65000000:qmrestore:9901:root@pam:",
    "hex-with-underscores": "UPID:pve1:0000_ABCD:00001234:65000000:qmrestore:9901:root@pam:",
    "hex-with-spaces": "UPID:pve1: ABCD :00001234:65000000:qmrestore:9901:root@pam:",
    "node-with-slash-traversal": "UPID:../../access:0000ABCD:00001234:65000000:qmrestore:9901:root@pam:",
    "node-with-control-chars": "UPID:pve1\n\x1b[2J:0000ABCD:00001234:65000000:qmrestore:9901:root@pam:",
    "node-100k-chars": "UPID:" + "n" * 100_000 + ":0000ABCD:00001234:65000000:qmrestore:9901:root@pam:",
    "non-ascii-digits": "UPID:pve1:\u0661\u0662:00001234:65000000:qmrestore:9901:root@pam:",
    "node-64-chars": "UPID:" + "n" * 64 + ":0000ABCD:00001234:65000000:qmrestore:9901:root@pam:",
    "id-with-slash-traversal": "UPID:pve1:0000ABCD:00001234:65000000:qmrestore:../../access:root@pam:",
    "user-with-query": "UPID:pve1:0000ABCD:00001234:65000000:qmrestore:9901:root@pam?x=1#y:",
    "type-with-escape": "UPID:pve1:0000ABCD:00001234:65000000:qm\x1b[2Jrestore:9901:root@pam:",
    "not-a-string": None,
}


@pytest.mark.parametrize("name", MALFORMED_UPIDS)
def test_malformed_upid_is_refused_clearly(name: str):
    text = MALFORMED_UPIDS[name]
    with pytest.raises(Exception) as caught:
        parse_upid(text)
    assert isinstance(caught.value, UpidError), f"{name}: {type(caught.value).__name__}: {caught.value}"
    message = str(caught.value)
    assert len(message) < 500, f"{name}: a {len(message)}-character message"
    assert not any(ch in message for ch in "\n\r\x1b"), repr(message)
