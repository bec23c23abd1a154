"""The double's HTTPS layer alone (no datastores): tokens, in-code parameter declarations
(the path a clone without the schema files takes), path safety, HTTP faults, clean stop.
Servers on loopback, raw ``http.client`` where proxmoxer/requests would normalize a path.
"""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading

import pytest
import requests

from restoredrill.lab.proxmox.certs import make_identity
from restoredrill.lab.proxmox.double import TokenInfo
from restoredrill.lab.proxmox.faults import Faults
from restoredrill.lab.proxmox.http import ApiServer
from restoredrill.lab.proxmox.permissions import ALL, TokenRegistry, acl
from restoredrill.lab.proxmox.routing import (BOOLEAN, PVE_NODE, PVE_VMID, Call, Router,
                                              declare, optional)
from restoredrill.lab.proxmox.schema import ApiSchemas
from restoredrill.lab.proxmox.testing import connect

pytestmark = pytest.mark.integration


def make_router(api: str) -> Router:
    router = Router(api)

    @router.route("GET", "/nodes/{node}/qemu/{vmid}/config",
                  declare(node=PVE_NODE, vmid=PVE_VMID, current=optional(BOOLEAN)))
    def config(call: Call) -> dict:
        return {"vmid": call.get("vmid"), "current": call.get("current", 0)}

    return router


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    base = tmp_path_factory.mktemp("http")
    started = {}
    for api in ("pve", "pbs"):
        tokens = TokenRegistry(api)
        tokens.create("root@pam!admin", [acl("/", ALL)], base)
        server = ApiServer(api, make_router(api), tokens, make_identity(base, api, "node1"),
                           ApiSchemas(), faults=Faults({}))
        started[api] = server.start()
    yield started
    for server in started.values():
        server.stop()


def header(server: ApiServer) -> dict:
    token = server.tokens.tokens["root@pam!admin"]
    separator = "=" if server.api == "pve" else ":"
    prefix = "PVEAPIToken" if server.api == "pve" else "PBSAPIToken"
    return {"Authorization": f"{prefix}=root@pam!admin{separator}{token.secret}"}


def get(server: ApiServer, path: str, **kwargs) -> requests.Response:
    return requests.get(server.url + "/api2/json" + path, verify=str(server.identity.cert_file),
                        timeout=10, **kwargs)


def raw_get(server: ApiServer, path: str) -> tuple[int, str, bytes]:
    """A request whose path no client library gets to normalize."""
    context = ssl.create_default_context(cafile=str(server.identity.cert_file))
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context,
                                             timeout=10)
    try:
        connection.request("GET", path, headers=header(server))
        response = connection.getresponse()
        return response.status, response.reason, response.read()
    finally:
        connection.close()


def test_tokens_in_the_real_header_formats(servers):
    pve, pbs = servers["pve"], servers["pbs"]
    assert get(pve, "/nodes/node1/qemu/100/config", headers=header(pve)).json() == {
        "data": {"vmid": 100, "current": 0}}
    assert get(pbs, "/nodes/node1/qemu/100/config", headers=header(pbs)).status_code == 200
    missing = get(pve, "/nodes/node1/qemu/100/config")
    assert (missing.status_code, missing.reason) == (401, "No ticket")
    wrong = dict(header(pve))
    wrong["Authorization"] = wrong["Authorization"][:-4] + "0000"
    assert get(pve, "/nodes/node1/qemu/100/config", headers=wrong).reason == \
        "invalid token value!"
    pve_style_on_pbs = {"Authorization": header(pve)["Authorization"]}
    assert get(pbs, "/nodes/node1/qemu/100/config", headers=pve_style_on_pbs).status_code == 401


def test_in_code_declarations_validate_without_schema_files(servers):
    pve = servers["pve"]
    bad = get(pve, "/nodes/node1/qemu/100/config", headers=header(pve),
              params={"current": "perhaps", "colour": "blue"})
    assert bad.status_code == 400 and bad.reason == "Parameter verification failed."
    assert bad.json() == {"data": None, "errors": {
        "current": "type check ('boolean') failed - got 'perhaps'",
        "colour": "property is not defined in schema and the schema does not allow additional "
                  "properties"}}
    assert get(pve, "/nodes/node1/qemu/99/config", headers=header(pve)).json()["errors"] == {
        "vmid": "value must have a minimum value of 100"}
    pbs = servers["pbs"]
    text = get(pbs, "/nodes/node1/qemu/abc/config", headers=header(pbs)).text
    assert text == "parameter verification errors\n\nparameter 'vmid': type check " \
                   "('integer') failed - got 'abc'\n"


@pytest.mark.parametrize("path", [
    "/api2/json/nodes/node1/qemu/../100/config",
    "/api2/json/nodes/../qemu/100/config",
    "/api2/json/nodes/node1/qemu/%2E%2E/config",
    "/api2/json/nodes/node1%2F..%2F..%2Fetc/qemu/100/config",
    "/api2/json/nodes/node1/qemu//config",
])
def test_traversal_in_paths_is_refused_with_400(servers, path):
    status, _reason, body = raw_get(servers["pve"], path)
    assert status == 400, body
    assert json.loads(body)["data"] is None


def test_http_faults_on_the_nth_call(servers):
    pve = servers["pve"]
    fault = pve.faults.http_error(r"/qemu/\d+/config$", nth=2)
    try:
        codes = [get(pve, "/nodes/node1/qemu/100/config", headers=header(pve)).status_code
                 for _ in range(3)]
    finally:
        fault.clear()
    assert codes == [200, 500, 200]
    reset = pve.faults.http_error("/config$", kind="reset")
    try:
        with pytest.raises(requests.ConnectionError):
            get(pve, "/nodes/node1/qemu/100/config", headers=header(pve))
    finally:
        reset.clear()
    assert get(pve, "/nodes/node1/qemu/100/config", headers=header(pve)).status_code == 200


def test_proxmoxer_with_a_ca_bundle_or_a_fingerprint_pin(servers, tmp_path):
    pve = servers["pve"]
    secret_file = tmp_path / "secret"
    secret_file.write_text(pve.tokens.tokens["root@pam!admin"].secret)
    token = TokenInfo("root@pam!admin", secret_file)
    by_ca = connect(pve.url, token, ca_file=pve.identity.cert_file)
    assert by_ca.nodes("node1").qemu(100).config.get()["vmid"] == 100
    pinned = connect(pve.url, token, pin_fingerprint=pve.identity.fingerprint())
    assert pinned.nodes("node1").qemu(101).config.get()["vmid"] == 101
    wrong = connect(pve.url, token, pin_fingerprint="00:" * 31 + "00")
    with pytest.raises(requests.exceptions.SSLError):     # fails in the handshake, before
        wrong.nodes("node1").qemu(102).config.get()       # any header (the token) is sent


def test_stop_leaves_no_thread_or_socket(tmp_path):
    before = set(threading.enumerate())
    tokens = TokenRegistry("pve")
    tokens.create("root@pam!admin", [acl("/", ALL)], tmp_path)
    server = ApiServer("pve", make_router("pve"), tokens, make_identity(tmp_path, "pve", "n1"),
                       ApiSchemas()).start()
    session = requests.Session()                       # a keep-alive connection stays open
    assert session.get(server.url + "/api2/json/nodes/n1/qemu/100/config", headers=header(
        server), verify=str(server.identity.cert_file), timeout=10).status_code == 200
    port = server.port
    server.stop()
    session.close()
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
