"""Places where the double answered differently from upstream (issue 25), each read against
the upstream file named in the test, each tested through the wire.

PBS: a snapshot or group list in a namespace that does not exist errors (proxmox-backup
src/api2/admin/datastore.rs ``list_snapshots_blocking`` over pbs-datastore src/hierarchy.rs);
the task list's ``total``, visibility and ``store`` filter (src/api2/node/tasks.rs
``list_tasks``, ``check_job_privs``, ``check_job_store``); the task log's ``success``.
PVE: /cluster/resources and /nodes (pve-manager PVE/API2/Cluster.pm ``resources``,
PVE/API2Tools.pm ``extract_node_stats``, PVE/API2/Nodes.pm); subvol sizes and content
filtering (pve-storage src/PVE/Storage/Plugin.pm ``list_volumes``, ZFSPoolPlugin.pm);
``affinity`` root-only and cloud-init alternatives (qemu-server src/PVE/API2/Qemu.pm
``$check_vm_modify_config_perm``); the protection text of a forced VM restore (Qemu.pm
``create_vm`` with pve-guest-common AbstractConfig.pm ``check_protection``); proxy errors
595-597 (pve-http-server src/PVE/APIServer/AnyEvent.pm ``proxy_request``), which
restoredrill retries.
"""
from __future__ import annotations

import pytest
from proxmoxer import ResourceException

from restoredrill.clients.pbs import PbsClient
from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint
from restoredrill.clients.pve import PveClient, ScratchGuard
from restoredrill.lab.proxmox import ProxmoxDouble, homelab
from restoredrill.lab.proxmox.double import _info
from restoredrill.lab.proxmox.permissions import acl
from restoredrill.lab.proxmox.testing import pbs_api, pve_api, wait_task
from restoredrill.waiting import RetryPolicy

pytestmark = pytest.mark.integration
FAST = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.05)


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("upstream-rules")) as running:
        yield running


def pve_token(double, name: str, *entries):
    return _info(double.pve_tokens.create(f"restoredrill@pve!{name}", list(entries),
                                          double.base_dir / "secrets"))


# --- PBS --------------------------------------------------------------------------------
def test_a_namespace_that_does_not_exist_errors_instead_of_listing_nothing(double):
    store = pbs_api(double).admin.datastore("offsite")
    assert store.snapshots.get(ns=homelab.OFFSITE_NAMESPACE)          # exists: listed
    for call in (lambda: store.snapshots.get(ns="homelba"),
                 lambda: store.snapshots.get(ns="homelba", **{"backup-type": "vm"}),
                 lambda: store.groups.get(ns="homelba")):
        with pytest.raises(ResourceException) as missing:
            call()
        assert missing.value.status_code == 400 and "No such file or directory" in str(missing.value)
    # with backup-id upstream skips the group whose owner it cannot read: empty, no error
    assert store.snapshots.get(ns="homelba", **{"backup-id": "110"}) == []
    token = double.pbs_drill_token                                  # restoredrill's own client
    client = PbsClient(ApiChokePoint(Endpoint(double.pbs_url, token.token_id, token.secret(),
                                              double.pbs_fingerprint, service="PBS"), retry=FAST))
    for call in (lambda: client.snapshots("offsite", ns="homelba"),
                 lambda: client.snapshots("offsite", ns="homelba", backup_id="110"),   # [] upstream: asked again
                 lambda: client.groups("offsite", ns="homelba")):
        with pytest.raises(ApiError, match="PBS datastore 'offsite' has no namespace 'homelba'") as named:
            call()
        assert "\n" not in str(named.value) and named.value.status == 400
    assert client.snapshots("offsite", ns=homelab.OFFSITE_NAMESPACE, backup_id="110")   # a real one still lists


def test_pbs_task_list_visibility_store_filter_and_virtual_total(double):
    admin = pbs_api(double, double.pbs_admin_token).nodes("localhost")
    every = admin.tasks.get(limit=0)
    seed_types = {t["worker_type"] for t in every}
    assert {"garbage_collection", "prunejob", "syncjob", "verificationjob"} <= seed_types
    # the audit token (Datastore.Modify, no Sys.Audit on /system/tasks) sees the GC and
    # prune-job tasks it could run itself, not verification or sync (check_job_privs)
    audit = pbs_api(double, double.pbs_audit_token).nodes("localhost").tasks.get(limit=0)
    assert {t["worker_type"] for t in audit} == {"garbage_collection", "prunejob"}
    drill = pbs_api(double, double.pbs_drill_token).nodes("localhost").tasks.get(limit=0)
    assert [t for t in drill if t["user"] == "root@pam"] == []
    # store= keeps the sync job that WRITES into the store (its local store)
    offsite = {t["worker_type"] for t in admin.tasks.get(limit=0, store="offsite")}
    local = {t["worker_type"] for t in admin.tasks.get(limit=0, store="local")}
    assert "syncjob" in offsite and "syncjob" not in local
    # total: items before the page + the page + one "virtual" entry when the page is full
    api = pbs_api(double, double.pbs_admin_token)
    answer = api._store["session"].request(
        "GET", f"{double.pbs_url}/api2/json/nodes/localhost/tasks", params={"limit": 2, "start": 1},
        verify=str(double.pbs_ca_file)).json()
    assert len(answer["data"]) == 2 and answer["total"] == 4 < len(every)
    log = api._store["session"].request(
        "GET", f"{double.pbs_url}/api2/json/nodes/localhost/tasks/{every[0]['upid']}/log",
        verify=str(double.pbs_ca_file)).json()
    assert log["success"] == 1 and log["total"] >= 1


# --- PVE cluster reads --------------------------------------------------------------------
def test_resources_keep_nodes_without_stats_and_sum_pools(double):
    plain = pve_api(double, pve_token(double, "vmaudit", acl("/vms", "VM.Audit")))
    nodes = [r for r in plain.cluster.resources.get() if r["type"] == "node"]
    assert [n["node"] for n in nodes] == list(double.nodes)
    for entry in nodes:
        assert entry["id"] == f"node/{entry['node']}" and entry["status"] == "online"
        assert not {"cpu", "mem", "maxmem", "maxcpu", "uptime", "disk"} & set(entry)
    admin = pve_api(double, double.admin_token)
    everything = admin.cluster.resources.get()
    [prod] = [r for r in everything if r["type"] == "pool" and r["pool"] == "prod"]
    members = [r for r in everything if r.get("pool") == "prod" and r["type"] in ("qemu", "lxc")]
    assert prod["maxmem"] == sum(m["maxmem"] for m in members if m["uptime"])
    assert prod["maxcpu"] == sum(m["maxcpu"] for m in members if m["uptime"]) and prod["uptime"] > 0
    for entry in admin.nodes.get():
        assert entry["id"] == f"node/{entry['node']}" and entry["type"] == "node"
    # storages: Datastore.Audit only; the drill token's AllocateSpace on pbs lists it per node
    # (/nodes/{node}/storage, Status.pm) but not in /cluster/resources (Cluster.pm)
    drill = pve_api(double)
    assert [r for r in drill.cluster.resources.get(type="storage")] == []
    assert "pbs" in {s["storage"] for s in drill.nodes("pve1").storage.get()}


def test_content_filtering_and_subvol_size(double):
    admin = pve_api(double, double.admin_token).nodes("pve3").storage("local-zfs").content
    assert admin.get(content="images") == []                          # CT 120 lives on pve3
    [rootfs] = admin.get(content="rootdir")
    assert (rootfs["volid"], rootfs["format"], rootfs["size"]) == (
        "local-zfs:subvol-120-disk-0", "subvol", 1024 ** 3)          # size=1G: the refquota
    assert admin.get() == [rootfs]


def test_localhost_is_the_answering_node(double):
    admin = pve_api(double, double.admin_token)
    assert admin.nodes("localhost").version.get()["version"] == double.pve_version["version"]
    assert admin.nodes("localhost").qemu.get()[0]["vmid"] == 100           # pve1's guest
    [local] = [n for n in admin.cluster.status.get() if n.get("local")]
    assert local["name"] == double.node == "pve1"


# --- PVE privilege rules ------------------------------------------------------------------
def test_affinity_is_root_only_and_cloud_init_takes_either_privilege(double):
    admin = pve_api(double, double.admin_token)
    node = admin.nodes("pve1")
    backup = node.storage("pbs").content.get(content="backup", vmid=110)
    volid = max((b for b in backup if b["size"] > 1), key=lambda b: b["ctime"])["volid"]
    wait_task(admin, "pve1", node.qemu.post(vmid=9951, archive=volid, storage="local-zfs",
                                            pool=homelab.DRILL_POOL))
    try:
        cpu = pve_api(double, pve_token(double, "cpu", acl("/vms/9951", "VM.Config.CPU")))
        cpu.nodes("pve1").qemu(9951).config.put(cores=2)
        with pytest.raises(ResourceException, match="only root can set 'affinity' config"):
            cpu.nodes("pve1").qemu(9951).config.put(affinity="0-1")
        network = pve_api(double, pve_token(double, "net", acl("/vms/9951", "VM.Config.Network")))
        network.nodes("pve1").qemu(9951).config.put(ipconfig0="ip=dhcp")
        options = pve_api(double, pve_token(double, "opt", acl("/vms/9951", "VM.Config.Options")))
        with pytest.raises(ResourceException) as neither:
            options.nodes("pve1").qemu(9951).config.put(ciuser="drill")
        assert "(/vms/9951, VM.Config.Cloudinit|VM.Config.Network)" in str(neither.value)
        # a forced restore over a protected VM: qemu-server's $emsg ends in "-" and
        # check_protection adds " - protection mode enabled"
        node.qemu(9951).config.put(protection=1)
        with pytest.raises(ResourceException) as protected:
            node.qemu.post(vmid=9951, archive=volid, storage="local-zfs", force=1)
        assert "unable to restore VM 9951 - - protection mode enabled" in str(protected.value)
    finally:
        guest = double.pve_state.guests.get(9951)
        if guest is not None:
            guest.config.pop("lock", None), guest.config.pop("protection", None)
            wait_task(admin, "pve1", node.qemu(9951).delete(purge=1))


# --- proxy errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind,reason", [
    ("595", "Errors during connection establishment"),
    ("596", "Errors during TLS negotiation"),
    ("597", "Errors during body receiving")])
def test_proxy_errors_are_injected_and_retried(double, kind, reason):
    admin = pve_api(double, double.admin_token)
    fault = double.faults.http_error(r"^/cluster/status$", kind=kind)
    try:
        with pytest.raises(ResourceException) as raw:
            admin.cluster.status.get()
        assert raw.value.status_code == int(kind) and reason in str(raw.value)
    finally:
        fault.clear()
    token = double.drill_token
    client = PveClient(ApiChokePoint(Endpoint(double.pve_url, token.token_id, token.secret(),
                                              double.fingerprint, service="PVE"), retry=FAST),
                       ScratchGuard(9900, 9999, "restoredrill", homelab.DRILL_POOL))
    twice = double.faults.http_error(r"^/cluster/status$", kind=kind, times=2)
    try:
        assert client.cluster_status()[0]["type"] == "cluster"
        assert twice.hits == 3
    finally:
        twice.clear()


def test_a_refused_privilege_reads_as_pbs_text_with_a_pbs_hint(double):
    """PBS answers a failed privilege check with a plain-text body ("permission check failed",
    proxmox-rest-server); proxmoxer hands it back as bytes. The message carries the text, not
    b'...', and the hint is PBS's (no PVE pool there)."""
    token = double.pbs_drill_token                      # no Datastore.Modify: the prune dry-run is refused
    client = PbsClient(ApiChokePoint(Endpoint(double.pbs_url, token.token_id, token.secret(),
                                              double.pbs_fingerprint, service="PBS"), retry=FAST))
    with pytest.raises(ApiError) as refused:
        client.prune_dry_run("local", "vm", "110", {"keep-last": 1})
    text = str(refused.value)
    assert refused.value.status == 403 and "HTTP 403 Forbidden: permission check failed" in text, text
    assert "b'" not in text and "drill pool" not in text and "README, Token privileges" in text
