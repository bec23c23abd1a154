"""Every route and parameter of the double against the official API schemas (strict mode).

``WIRE_DEVIATIONS`` is THE list of places where the wire differs from the schema files
(the wire wins); each entry names the upstream file that proves it. The walk below calls
every route the double serves; in strict mode the double checks each request and each
response against the schema, and the test allows exactly these deviations (and checks
that each one still occurs, so the list cannot rot). Without the schema files (a clone
without ../shared) the tests fail naming the path; RESTOREDRILL_WITHOUT_SHARED=1 skips them
on purpose (the double then validates from its in-code declarations, which
``test_proxmox_double_http`` covers).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from proxmoxer import ResourceException
from proxmoxer.tools import Tasks

from restoredrill.lab.proxmox import ProxmoxDouble
from restoredrill.lab.proxmox.schema import ApiSchemas, schema_dir
from restoredrill.lab.proxmox.testing import pbs_api, pve_api, wait_task
from restoredrill.lab.proxmox.validate import schema_for
from tests.shared_files import missing_shared

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def schema_files():
    """No schema files: fail naming where they were looked for (skip only on purpose)."""
    if schema_dir() is None:
        missing_shared("the API schema files (../shared/api-schemas or $RESTOREDRILL_API_SCHEMAS)",
                       "the double's routes were not checked against the official schema")


NODE = "pve1"


@dataclass(frozen=True)
class Deviation:
    api: str
    method: str
    template: str
    detail: str          # regex searched in the violation's detail
    wire: str            # what the wire does
    upstream: str        # the upstream file that proves it


WIRE_DEVIATIONS = (
    Deviation("pbs", "GET", "/admin/datastore/{store}/snapshots",
              r"\.files\[\d+\]: \{.*\} is not of type string",
              "each files item is an object {filename, crypt-mode, size}",
              "proxmox-backup pbs-api-types/src/datastore.rs (SnapshotListItem.files: "
              "Vec<BackupContent>)"),
    Deviation("pbs", "POST", "/admin/datastore/{store}/prune", r"\.protected: not in schema",
              "each item also carries protected (bool)",
              "proxmox-backup src/api2/admin/datastore.rs (prune: prune_result items)"),
    Deviation("pbs", "GET", "/nodes/{node}/tasks/{upid}/log", r"schema says null",
              "the schema shows method DOWNLOAD returning null; the wire is GET with data "
              "[{n, t}] and a total attribute",
              "proxmox-backup src/api2/node/tasks.rs (read_task_log is an AsyncHttp handler)"),
    Deviation("pbs", "POST", "/admin/verify/{id}/run", r"schema says null",
              "answers the UPID of the started job task",
              "proxmox-backup src/api2/admin/verify.rs (run_verification_job -> "
              "Result<String, Error>)"),
    Deviation("pbs", "POST", "/admin/sync/{id}/run", r"schema says null",
              "answers the UPID of the started job task",
              "proxmox-backup src/api2/admin/sync.rs (run_sync_job -> Result<String, Error>)"),
    Deviation("pbs", "POST", "/admin/prune/{id}/run", r"schema says null",
              "answers the UPID of the started job task",
              "proxmox-backup src/api2/admin/prune.rs (run_prune_job -> Result<String, Error>)"),
    Deviation("pve", "GET", "/cluster/nextid", r"'\d+' is not of type integer",
              "the id is a JSON string although typed integer",
              "pve-manager PVE/API2/Cluster.pm (nextid returns the id as a string)"),
    Deviation("pve", "GET", "/nodes/{node}/storage/{storage}/content",
              r"\.(subtype|content): not in schema",
              "backup volumes also carry subtype (qemu/lxc) and content (backup)",
              "pve-storage src/PVE/Storage/PBSPlugin.pm (list_volumes) and "
              "src/PVE/API2/Storage/Content.pm (index passes items through)"),
    Deviation("pve", "GET", "/nodes/{node}/network/{iface}",
              r"\.(active|autostart|bridge_fd|bridge_stp|comments|families|method6|priority|"
              r"exists|bridge_ports|address|netmask|cidr|gateway): not in schema",
              "the whole parsed interface (the schema lists only type and method)",
              "pve-manager PVE/API2/Network.pm (network_config returns $ifaces->{$iface})"),
    Deviation("pve", "GET", "/nodes", r"\.(id|type): not in schema",
              "each node carries id (node/NAME) and type (node)",
              "pve-manager PVE/API2/Nodes.pm (NodeIndex index -> PVE/API2Tools.pm extract_node_stats)"),
    Deviation("pve", "GET", "/nodes/{node}/network", r"\.(bridge_fd|bridge_stp): not in schema",
              "the whole parsed interface", "pve-manager PVE/API2/Network.pm (index returns "
              "the parsed interfaces file entries)"),
    Deviation("pve", "GET", "/nodes/{node}/status", r"\.cpuinfo\.(flags|hvm|mhz|user_hz): not in schema",
              "cpuinfo is read_cpuinfo's whole hash",
              "pve-common src/PVE/ProcFSTools.pm (read_cpuinfo: user_hz, model, sockets, cpus, mhz, hvm, flags)"),
    Deviation("pve", "GET", "/storage", r"\.(type|content|digest|nodes|shared|path|pool|sparse|datastore|"
              r"server|username|fingerprint|namespace): not in schema",
              "each item is the storage's storage.cfg section with its digest",
              "pve-storage src/PVE/API2/Storage/Config.pm (index: the section config, sensitive "
              "properties dropped)"),
    Deviation("pve", "GET", "/cluster/tasks", r"\.(node|pid|pstart|starttime|type|id|user|tokenid|"
              r"endtime|status): not in schema", "each item is pmxcfs's whole task entry",
              "pve-manager PVE/API2/Cluster.pm (tasks returns PVE::Cluster::get_tasklist items)"),
    Deviation("pve", "GET", "/cluster/ha/resources",
              r"\.(type|digest|state|max_restart|max_relocate|failback): not in schema",
              "each item is the resource's config with sid, type and digest",
              "pve-ha-manager src/PVE/API2/HA/Resources.pm ($api_copy_config)"),
    Deviation("pve", "GET", "/cluster/ha/rules",
              r"\.(type|digest|resources|nodes|strict|disable): not in schema",
              "each item is the rule's config with rule and digest",
              "pve-ha-manager src/PVE/API2/HA/Rules.pm ($get_api_ha_rule)"),
    Deviation("pve", "GET", "/nodes/{node}/qemu/{vmid}/status/current", r"\.disk: not in schema",
              "qemu status carries disk (always 0)",
              "qemu-server src/PVE/QemuServer.pm (vmstatus: $d->{disk} = 0)"),
    Deviation("pve", "GET", "/nodes/{node}/qemu", r"\[\d+\]\.disk: not in schema",
              "each VM carries disk (always 0), the list is built by vmstatus too",
              "qemu-server src/PVE/QemuServer.pm (vmstatus: $d->{disk} = 0), "
              "src/PVE/API2/Qemu.pm (vmlist)"),
)


def unexpected(violations) -> tuple[list[str], set[Deviation]]:
    seen: set[Deviation] = set()
    left = []
    for violation in violations:
        match = next((d for d in WIRE_DEVIATIONS if (d.api, d.method, d.template) == (
            violation.api, violation.method, violation.template) and re.search(
            d.detail, violation.detail)), None)
        if match is None:
            left.append(str(violation))
        else:
            seen.add(match)
    return left, seen


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("strict"), strict_schema=True) as running:
        yield running


def test_every_route_and_declared_parameter_is_in_the_schema(double):
    schemas, problems = ApiSchemas.load(), []
    for api, server in double.servers.items():
        for route in server.router.routes:
            described = schemas.method(api, route.template, route.method)
            if described is None:
                problems.append(f"{api} {route.method} {route.template}: not in the schema")
                continue
            documented = described.get("parameters", {}).get("properties", {})
            for name, declared in route.params["properties"].items():
                found = documented.get(name) or schema_for(documented, name.replace("[n]", "0"))
                if found is None:
                    problems.append(f"{api} {route.method} {route.template}: {name} undocumented")
                elif found.get("type", "string") != declared.get("type", "string"):
                    problems.append(f"{api} {route.method} {route.template}: {name} is "
                                    f"{declared.get('type')}, schema {found.get('type')}")
    assert problems == []


def walk_pve(double: ProxmoxDouble) -> None:
    pve, admin = pve_api(double), pve_api(double, double.admin_token)
    node = pve.nodes(NODE)
    pve.version.get(), pve.cluster.resources.get(), pve.cluster.resources.get(type="vm")
    pve.access.permissions.get(), pve.access.permissions.get(path="/pool/restoredrill")
    pve.cluster.nextid.get(), pve.cluster.nextid.get(vmid=9990)
    pve.cluster("backup-info")("not-backed-up").get(), pve.cluster.backup.get()
    pve.cluster.notifications.targets.get()
    pve.nodes.get(), node.network("vmbr-drill").get(), node.network("vmbr0").get()
    node.storage.get(), node.storage.get(content="backup")
    node.storage("local-zfs").content.get()
    backups = node.storage("pbs").content.get(content="backup")
    vm = max((b for b in backups if b["vmid"] == 110 and b["subtype"] == "qemu"), key=lambda b: b["ctime"])
    ct = max((b for b in backups if b["vmid"] == 120 and b["size"] != 1), key=lambda b: b["ctime"])
    node.vzdump.extractconfig.get(volume=vm["volid"])
    vm_node, ct_node = pve.nodes("pve2"), pve.nodes("pve3")     # the guests' own nodes
    vm_node.qemu(110).config.get(), ct_node.lxc(120).config.get()  # raw lxc.* keys as pairs
    node.qemu(100).status.current.get(), ct_node.lxc(120).status.current.get()
    admin.pools.post(poolid="drill-extra", comment="walk")
    admin.pools.put(poolid="drill-extra", comment="walked")
    pve.pools.get(), pve.pools.get(poolid="restoredrill"), pve.pools("restoredrill").get()
    pve.storage.get(), node.network.get(type="any_bridge")                 # restoredrill init
    admin.access.users.post(userid="walk@pve", comment="walk")              # restoredrill setup --apply
    admin.access.users("walk@pve").token("walk").post(privsep=1, comment="walk")
    admin.access.roles.post(roleid="Walk", privs="VM.Audit")
    admin.access.roles("Walk").put(privs="VM.Audit,Sys.Audit")
    admin.access.acl.put(path="/vms", roles="Walk", users="walk@pve", tokens="walk@pve!walk", propagate=1)

    def wait(upid: str) -> dict:
        return Tasks.blocking_status(pve, upid, timeout=60, polling_interval=0.05)
    wait(node.qemu.post(vmid=9911, archive=vm["volid"], storage="local-zfs", pool="restoredrill",
                        net0="virtio,bridge=vmbr-drill", onboot=0))
    wait(node.lxc.post(vmid=9912, ostemplate=ct["volid"], restore=1, storage="local-zfs",
                       pool="restoredrill", rootfs="local-zfs:1",
                       net0="name=eth0,bridge=vmbr-drill"))
    node.storage("local-zfs").content.get(vmid=9911)
    for kind, vmid in (("qemu", 9911), ("lxc", 9912)):
        guest = getattr(node, kind)(vmid)
        getattr(node, kind).get(), guest.config.get(), guest.status.current.get()
        guest.config.put(description="walked", tags="restoredrill")
        wait(guest.status.start.post())
        if kind == "qemu":
            for call in (lambda: guest.agent.ping.post(),
                         lambda: guest.agent("network-get-interfaces").get(),
                         lambda: guest.agent.exec.post(command=["true"]),
                         lambda: guest.agent("exec-status").get(pid=1)):
                with pytest.raises(ResourceException):
                    call()
        wait(guest.status.shutdown.post())
        wait(guest.status.start.post()), wait(guest.status.stop.post())
        wait(guest.delete(purge=1))
    tasks = node.tasks.get(limit=0, source="all")
    node.tasks(tasks[0]["upid"]).status.get(), node.tasks(tasks[0]["upid"]).log.get(limit=0)


def walk_pbs(double: ProxmoxDouble) -> None:
    pbs, admin = pbs_api(double), pbs_api(double, double.pbs_admin_token)
    pbs.version.get(), pbs.admin.datastore.get()
    pbs.config.datastore.get(), pbs.config.remote.get()                     # restoredrill init
    admin.access.users.post(userid="walk@pbs", comment="walk")              # restoredrill setup --apply
    admin.access.users("walk@pbs").token("walk").post(comment="walk")
    admin.access.acl.put(path="/datastore", role="DatastoreAudit", propagate=1, **{"auth-id": "walk@pbs!walk"})
    pbs.config.notifications.targets.get()
    pbs.access.permissions.get(path="/datastore/local")                     # restoredrill preflight
    store = pbs.admin.datastore("local")
    store.status.get(verbose=1), store.groups.get(), store.snapshots.get()
    newest = max((s for s in store.snapshots.get(**{"backup-type": "ct", "backup-id": "120"})
                  if "size" in s), key=lambda s: s["backup-time"])     # not the seed's unfinished one
    raw = store.download.get(**{"backup-type": "ct", "backup-id": "120",     # a DOWNLOAD method:
                                "backup-time": newest["backup-time"],         # the body is the file
                                "file-name": "index.json.blob"})
    assert isinstance(raw["errors"], bytes) and raw["errors"][:8].hex() == "31b958426fb6a37f"
    admin.admin.datastore("local").prune.post(**{"backup-type": "vm", "backup-id": "110",
                                                 "keep-last": 1, "dry-run": 1})
    upids = [admin.admin.datastore("local").verify.post(**{"backup-type": "ct", "backup-id": "120"}),
             admin.admin.datastore("offsite").gc.post(),
             admin.admin.verify("offsite-verify").run.post(),
             admin.admin.sync("offsite-pull").run.post(),
             admin.admin.prune("local-keep-last").run.post()]
    for upid in upids:
        wait_task(admin, "localhost", upid)
    pbs.admin.verify.get(), pbs.admin.prune.get(), pbs.admin.gc.get()
    pbs.admin.sync.get(**{"sync-direction": "all"})
    tasks = admin.nodes("localhost").tasks.get(limit=0)   # the drill token sees only its own
    admin.nodes(double.pbs_node).tasks(tasks[0]["upid"]).status.get()
    admin.nodes("localhost").tasks(tasks[0]["upid"]).log.get(limit=0)


def walk_monitoring(double: ProxmoxDouble) -> None:
    """What monitoring clients read (tests/integration/test_outside_clients.py runs them)."""
    admin, pbs = pve_api(double, double.admin_token), pbs_api(double, double.pbs_admin_token)
    node = admin.nodes(NODE)
    admin.cluster.status.get(), admin.cluster.tasks.get(), admin.cluster.config.qdevice.get()
    admin.cluster.ha.resources.get(), admin.cluster.ha.resources.get(type="ct")
    admin.cluster.ha.groups.get(), admin.cluster.ha.rules.get(resource="ct:120")
    admin.cluster.ha.status.manager_status.get()
    admin.access.acl.get(), admin.access.users.get(full=1), admin.access.groups.get()
    admin.access.roles.get()
    node.status.get(), node.version.get(), node.subscription.get(), node.replication.get()
    node.network.get(), node.network.get(type="any_bridge")
    admin.storage.get(), admin.storage("pbs").get()
    node.storage("local-zfs").content.get(content="rootdir")
    pbs.nodes("localhost").status.get()


def test_walk_every_route_in_strict_mode(double):
    walk_pve(double)
    walk_pbs(double)
    walk_monitoring(double)
    routes = {(api, r.method, r.template) for api, s in double.servers.items()
              for r in s.router.routes}
    assert routes - set(double.served) == set(), "routes the walk did not reach"
    left, seen = unexpected(double.violations)
    assert left == [], "schema departures that are not documented wire deviations:\n" + "\n".join(left)
    assert set(WIRE_DEVIATIONS) - seen == set(), "listed deviations that no longer occur"


def test_bad_parameters_answer_like_pve(double):
    pve = pve_api(double)
    with pytest.raises(ResourceException) as unknown:
        pve.cluster.resources.get(colour="blue")
    assert unknown.value.status_code == 400
    assert unknown.value.errors == {"colour": "property is not defined in schema and the "
                                              "schema does not allow additional properties"}
    with pytest.raises(ResourceException) as wrong:
        pve.nodes(NODE).storage("pbs").content.get(vmid="abc")
    assert wrong.value.errors == {"vmid": "type check ('integer') failed - got 'abc'"}
    with pytest.raises(ResourceException) as enum:
        pve.cluster.resources.get(type="pool")
    assert "does not have a value in the enumeration 'vm, storage, node, sdn'" in \
        enum.value.errors["type"]
    with pytest.raises(ResourceException) as boolean:    # the drill token may not destroy 110:
        pve.nodes(NODE).qemu(110).delete(purge="maybe")   # permissions come before parameters
    assert boolean.value.status_code == 403                # (pve-manager PVE/HTTPServer.pm)
    with pytest.raises(ResourceException) as boolean:
        pve_api(double, double.admin_token).nodes(NODE).qemu(110).delete(purge="maybe")
    assert boolean.value.errors == {"purge": "type check ('boolean') failed - got 'maybe'"}
    with pytest.raises(ResourceException) as low:
        pve.cluster.nextid.get(vmid=99)
    assert low.value.errors == {"vmid": "value must have a minimum value of 100"}


def test_bad_parameters_answer_like_pbs(double):
    pbs = pbs_api(double)
    with pytest.raises(ResourceException) as unknown:
        pbs.admin.datastore("local").snapshots.get(colour="blue")
    assert unknown.value.status_code == 400
    assert "parameter 'colour'" in str(unknown.value)
    with pytest.raises(ResourceException) as pattern:
        pbs.admin.datastore("local").snapshots.get(**{"backup-id": "../110"})
    assert "value does not match the regex pattern" in str(pattern.value)


def test_unknown_paths_and_methods_are_not_implemented(double):
    pve, pbs = pve_api(double), pbs_api(double)
    with pytest.raises(ResourceException) as unknown:
        pve.nodes(NODE).foo.get()
    assert (unknown.value.status_code, unknown.value.content) == (
        501, "Method 'GET /nodes/pve1/foo' not implemented")
    with pytest.raises(ResourceException) as unserved:      # a real path, not served here
        pve.nodes(NODE).qemu(110).snapshot.get()
    assert unserved.value.content == "Method 'GET /nodes/pve1/qemu/110/snapshot' not implemented"
    with pytest.raises(ResourceException) as pbs_unknown:
        pbs.admin.foo.get()
    assert pbs_unknown.value.status_code == 404
    assert "Path '/api2/json/admin/foo' not found." in str(pbs_unknown.value)
    assert {(v.api, v.where) for v in double.violations if v.where == "route"} >= {
        ("pve", "route"), ("pbs", "route")}
