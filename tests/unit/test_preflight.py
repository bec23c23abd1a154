"""Preflight building blocks (issue 22, section 3): TCP and TLS probes against loopback sockets,
the privileges table for an inventory, which drill cases an endpoint blocks, the line format."""
from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from restoredrill.inventory import parse_inventory
from restoredrill.lab.proxmox import homelab
from restoredrill.lab.proxmox.certs import make_identity
from restoredrill.preflight import privileges
from restoredrill.preflight.blocking import blocked_by, needs
from restoredrill.preflight.model import Line, probe
from restoredrill.preflight.net import Stop, check_tls, tcp_reach


@pytest.fixture
def closed_port():
    """A port held by this test (bound, not listening): connecting is refused, nobody else gets it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def tls_server(tmp_path):
    identity = make_identity(tmp_path, "server", "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(identity.cert_file, identity.key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], identity
    stop.set()
    thread.join()
    listener.close()


def test_a_closed_port_is_named_as_such(closed_port):
    with pytest.raises(Stop, match=rf"TCP 127.0.0.1:{closed_port}: connection refused \(nothing listens"):
        tcp_reach("127.0.0.1", closed_port)


def test_tls_shows_the_presented_fingerprint_next_to_the_pin_and_its_form(tls_server):
    port, identity = tls_server
    assert check_tls("127.0.0.1", port, pin=identity.fingerprint(upper=False), verify=True) == \
        f"TLS pinned {identity.fingerprint()} matches"
    wrong = ":".join(["AB"] * 32)
    with pytest.raises(Stop) as stop:
        check_tls("127.0.0.1", port, pin=wrong, verify=True, key="proxmox.pve.fingerprint")
    assert f"the server presents {identity.fingerprint()}, the inventory pins {wrong}" in str(stop.value)
    assert "32 hex pairs joined by colons" in str(stop.value)


def test_an_untrusted_certificate_without_a_pin_says_what_to_pin(tls_server):
    port, identity = tls_server
    with pytest.raises(Stop) as stop:
        check_tls("127.0.0.1", port, pin=None, verify=True, key="proxmox.pbs.fingerprint")
    assert "not trusted" in str(stop.value) and f'pin it as proxmox.pbs.fingerprint: "{identity.fingerprint()}"' \
        in str(stop.value)
    assert "trusted" in check_tls("127.0.0.1", port, pin=None, verify=True, ca_file=str(identity.cert_file))


def test_a_probe_that_breaks_unexpectedly_ends_in_its_line_not_a_traceback():
    def steps(line):
        line.steps.append("TCP ok")
        raise KeyError("surprise")
    line = probe(Line("pve", "PVE API", "https://pve:8006"), steps)
    assert str(line) == "FAIL  pve                https://pve:8006  TCP ok; KeyError: 'surprise'"
    assert not line.ok


LAB_LIKE = """\
site: {name: x}
scratch: {pool: restoredrill, storage: local-zfs, bridge: vmbr-drill}
policies: {retention: {r: {keep_last: 2}}}
proxmox:
  pve: {url: "https://pve:8006", token_id: a@pve!t, token_secret: env:T}
  pbs:
    url: https://pbs:8007
    token_id: a@pbs!t
    token_secret: env:T
    datastores:
      - {name: local, role: local, retention: r, pve_storage: pbs}
      - {name: offsite, role: offsite, retention: r, pve_storage: pbs-offsite}
notifications: {pve_targets: [mail-admin]}
"""


@pytest.mark.parametrize("release", [(9, 1), (8, 4)])
def test_the_privileges_for_a_lab_like_inventory_are_the_labs_acl(release):
    """The README's table (= homelab's ACLs, tests/integration/test_privileges_table.py) for this
    inventory; /mapping/pci rows depend on the backup's config, which only the restore sees."""
    inv = parse_inventory(LAB_LIKE, Path("i.yaml")).model
    found = {(row.path, row.privilege) for row in privileges.pve_privileges(inv, release)}
    acl = {(e.path, p) for e in homelab.pve_drill_acl(release) for p in e.privs} - {
        ("/mapping/pci/nic-offload", "Mapping.Use")}
    assert found == acl
    assert {(row.path, row.privilege) for row in privileges.pbs_privileges(inv)} == {
        (e.path, p) for e in homelab.pbs_audit_acl() for p in e.privs}


def test_missing_privileges_are_found_per_path():
    inv = parse_inventory(LAB_LIKE, Path("i.yaml")).model
    needed = privileges.pbs_privileges(inv)
    granted = {"/datastore": {"Datastore.Audit": True, "Datastore.Read": True, "Datastore.Modify": True},
               "/remote": {}, "/system/notifications": {"Sys.Audit": True}}
    assert [(r.path, r.privilege) for r in privileges.missing(needed, granted)] == [("/remote", "Remote.Audit")]


def item(kind: str, name: str = "test_x", **params):
    marker = SimpleNamespace(args=(kind,))
    return SimpleNamespace(get_closest_marker=lambda _name: marker, callspec=SimpleNamespace(params=params),
                           originalname=name)


def test_which_endpoint_each_kind_of_case_needs():
    repo, target, export = (SimpleNamespace(name="photos"), SimpleNamespace(name="wasabi"),
                            SimpleNamespace(storage_box="hetzner"))
    guest = parse_inventory("site: {name: x}\nproxmox:\n  pve: {url: 'https://p:8006', token_id: a@pve!t, "
                            "token_secret: env:T, node_ssh: {host: h, user: u, key_file: k, known_hosts_file: "
                            "h}}\nguests: [{name: ct, vmid: 120, type: lxc, strategy: pbs, access: pct}]\n",
                            Path("i.yaml")).model.guests[0]
    assert needs(item("borg", borg_repo=repo)) == ["borg:photos"]
    assert needs(item("pbs", pbs_guest=guest)) == ["pve", "pbs", "node:"]
    assert needs(item("offsite", s3_target=target)) == ["s3:wasabi"]
    assert needs(item("offsite", "test_cross_copy", s3_target=target)) == ["s3:wasabi", "pbs"]
    assert needs(item("offsite", config_export=export)) == ["box:hetzner"]
    # the site-loss drill needs the bucket alone: PVE and PBS are assumed gone
    assert needs(item("offsite", "test_site_loss", site_loss_guest=SimpleNamespace(target=target))) == ["s3:wasabi"]
    assert needs(item("monitoring")) == ["kuma"]
    assert needs(item("lint")) == []          # a rule over the inventory alone needs no endpoint
    assert needs(item("lint", escrowed_copy=SimpleNamespace(label="borg:photos"))) == ["borg:photos"]
    assert needs(item("lint", escrowed_copy=SimpleNamespace(label="pbs:local"))) == []    # the key file alone
    assert needs(item("lint", escrowed_pbs_copy=SimpleNamespace(label="pbs:local"))) == ["pbs"]
    failed = [{"key": "node:pve2", "what": "SSH to node pve2", "where": "root@pve2:22", "cause": "refused"}]
    assert blocked_by(item("pbs", pbs_guest=guest), failed) == failed
    assert blocked_by(item("borg", borg_repo=repo), failed) == []
