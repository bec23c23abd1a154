"""The PVE double's cluster-wide reads: membership, resources, nodes, tasks, HA.

What monitoring clients read first (prometheus-pve-exporter, pvecontrol) and what
restoredrill's restore preflight reads: ``pvesh get /cluster/status``, ``/cluster/resources``,
``/nodes``, ``/cluster/tasks``, ``/cluster/ha/resources``, ``/cluster/ha/rules``,
``/cluster/ha/status/manager_status``, ``/cluster/config/qdevice``. Each answer follows the
upstream handler named beside it; node offline and quorum loss come from ``PveState``
(``offline``, ``quorate``), which the faults switch.
"""
from __future__ import annotations

import os
from typing import Any

from restoredrill.lab.proxmox import permissions as perms
from restoredrill.lab.proxmox.pve_guest_routes import guest_resource
from restoredrill.lab.proxmox.pve_service import PveService, storage_status
from restoredrill.lab.proxmox.routing import STRING, Call, Router, declare, optional

HA_TYPES = {"qemu": "vm", "lxc": "ct"}


def add_cluster_routes(router: Router, service: PveService) -> None:
    state = service.state

    @router.route("GET", "/cluster/status")
    def status(call: Call) -> list[dict[str, Any]]:
        """pve-manager PVE/API2/Cluster.pm ``get_status``: the cluster entry (pmxcfs clinfo:
        nodes counts offline members too, quorate 0/1) then one entry per member; ``local``
        marks the answering node, ``level`` only for a node with stats (online)."""
        perms.require(call.token, "/", ["Sys.Audit"])
        answer: list[dict[str, Any]] = [{
            "type": "cluster", "id": "cluster", "name": state.cluster_name,
            "nodes": len(state.nodes), "version": 3 + len(state.nodes),
            "quorate": int(state.quorate)}]
        for number, node in enumerate(state.nodes):
            entry = {"type": "node", "id": f"node/{node}", "name": node, "nodeid": number + 1,
                     "local": int(node == state.node), "online": int(state.online(node)),
                     "ip": node_ip(number)}
            if state.online(node):
                entry["level"] = ""
            answer.append(entry)
        return answer

    @router.route("GET", "/cluster/resources", declare(type=optional(
        STRING, enum=["vm", "storage", "node", "sdn"])))
    def resources(call: Call) -> list[dict[str, Any]]:
        """pve-manager PVE/API2/Cluster.pm ``resources``: pools first (uptime/mem/maxmem/cpu/
        maxcpu summed over their running guests, whether or not the caller may see them),
        guests with VM.Audit (``pool`` dropped without Pool.Audit; ``hastate`` from the HA
        config), every node (PVE/API2Tools.pm ``extract_node_stats``: without Sys.Audit on
        /nodes/<node> the entry has no stats; an offline member is ``offline``), storages the
        caller holds Datastore.Audit on (AllocateSpace alone is not enough here)."""
        kind, found = call.get("type"), []
        pools: dict[str, dict[str, Any]] = {}
        if kind is None:
            for pool in sorted(state.pools.values(), key=lambda p: p.poolid):
                if perms.has_privs(call.token, f"/pool/{pool.poolid}", ["Pool.Audit"]):
                    pools[pool.poolid] = {"id": f"/pool/{pool.poolid}", "type": "pool",
                                          "pool": pool.poolid}
                    found.append(pools[pool.poolid])
        if kind in (None, "vm"):
            for guest in sorted(state.guests.values(), key=lambda g: g.vmid):
                entry = guest_resource(service, guest)
                if not state.online(entry["node"]):
                    entry["status"] = "unknown"
                if "pool" in entry and entry["pool"] in pools and entry.get("uptime"):
                    _add_to_pool(pools[entry["pool"]], entry)
                if not perms.has_privs(call.token, f"/vms/{guest.vmid}", ["VM.Audit"],
                                       pools=state.pools_of(guest.vmid)):
                    continue
                if "pool" in entry and not perms.has_privs(call.token, f"/pool/{entry['pool']}",
                                                           ["Pool.Audit"]):
                    del entry["pool"]
                sid = f"{HA_TYPES[guest.kind]}:{guest.vmid}"
                if sid in state.ha_resources:
                    entry["hastate"] = state.ha_resources[sid].get("state", "started")
                found.append(entry)
        if kind in (None, "node"):
            found += [node_entry(service, node, audit=perms.has_privs(
                call.token, f"/nodes/{node}", ["Sys.Audit"])) for node in state.nodes]
        if kind in (None, "storage"):     # one entry per node the storage is available on
            for node in state.nodes:      # Cluster.pm: Datastore.Audit only (not AllocateSpace)
                for storage in sorted(state.storages.values(), key=lambda s: s.storage):
                    if storage.available_on(node) and perms.has_privs(
                            call.token, f"/storage/{storage.storage}", ["Datastore.Audit"]):
                        usage = storage_status(service, storage)
                        found.append({"id": f"storage/{node}/{storage.storage}",
                                      "type": "storage", "storage": storage.storage,
                                      "node": node, "status": "available" if state.online(node)
                                      else "unknown", "content": storage.content,
                                      "plugintype": storage.type, "shared": int(storage.shared),
                                      "disk": usage["used"], "maxdisk": usage["total"]})
        return found

    @router.route("GET", "/nodes")
    def nodes(call: Call) -> list[dict[str, Any]]:
        """pve-manager PVE/API2/Nodes.pm ``index`` (NodeIndex): ``extract_node_stats`` per
        member (so ``id`` and ``type`` too, stats only with Sys.Audit on the node) plus the
        certificate fingerprint; the double serves all from one address and certificate."""
        return [{**node_entry(service, node, audit=perms.has_privs(
                    call.token, f"/nodes/{node}", ["Sys.Audit"]), disk=False),
                 "ssl_fingerprint": state.ssl_fingerprint} for node in state.nodes]

    @router.route("GET", "/cluster/tasks")
    def tasks(call: Call) -> list[dict[str, Any]]:
        """pve-manager PVE/API2/Cluster.pm ``tasks``: pmxcfs's task list of every node; a
        token's ``user`` is split into ``user`` and ``tokenid``; without Sys.Audit on / only
        the caller's own tasks (compared with the whole token id, so a token sees none)."""
        audit = perms.has_privs(call.token, "/", ["Sys.Audit"])
        answer = []
        for node in state.nodes:
            for task in service.registries[node].listing():
                item = task_item(task)
                if "!" in item["user"]:
                    item["user"], item["tokenid"] = item["user"].split("!", 1)
                if audit or item["user"] == call.authid:
                    answer.append(item)
        return sorted(answer, key=lambda t: (t["starttime"], t["upid"]), reverse=True)

    @router.route("GET", "/cluster/config/qdevice")
    def qdevice(call: Call) -> dict[str, Any]:
        """pve-cluster src/PVE/API2/ClusterConfig.pm ``status`` (qdevice): ``{}`` when no
        corosync-qdevice socket exists (the lab has no QDevice)."""
        perms.require(call.token, "/", ["Sys.Audit"])
        return {}

    _ha_routes(router, service)


def _ha_routes(router: Router, service: PveService) -> None:
    state = service.state

    @router.route("GET", "/cluster/ha/resources", declare(type=optional(
        STRING, enum=["ct", "vm"])))
    def ha_resources(call: Call) -> list[dict[str, Any]]:
        """pve-ha-manager src/PVE/API2/HA/Resources.pm ``index``: each resource's config with
        ``sid``, ``type`` and the config's ``digest``."""
        perms.require(call.token, "/", ["Sys.Audit"])
        return [{**config, "sid": sid, "type": sid.split(":")[0], "digest": state.ha_digest()}
                for sid, config in sorted(state.ha_resources.items())
                if call.get("type") in (None, sid.split(":")[0])]

    @router.route("GET", "/cluster/ha/groups")
    def ha_groups(call: Call) -> list[dict[str, Any]]:
        """pve-ha-manager src/PVE/API2/HA/Groups.pm ``index``; the lab has no groups (PVE 9
        migrates them to rules)."""
        perms.require(call.token, "/", ["Sys.Audit"])
        return []

    @router.route("GET", "/cluster/ha/rules", declare(
        resource=optional(STRING), type=optional(STRING, enum=["node-affinity",
                                                               "resource-affinity"])))
    def ha_rules(call: Call) -> list[dict[str, Any]]:
        """pve-ha-manager src/PVE/API2/HA/Rules.pm ``index`` (sorted, filtered by type and
        resource)."""
        perms.require(call.token, "/", ["Sys.Audit"])
        wanted = call.get("resource")
        return [{**rule, "rule": name, "digest": state.ha_digest()}
                for name, rule in sorted(state.ha_rules.items())
                if call.get("type") in (None, rule.get("type")) and
                (wanted is None or wanted in rule.get("resources", "").split(","))]

    @router.route("GET", "/cluster/ha/status/manager_status")
    def manager_status(call: Call) -> dict[str, Any]:
        """pve-ha-manager src/PVE/API2/HA/Status.pm ``manager_status``: the CRM's status
        (master, node_status, service_status), the answering node's quorum, each node's LRM."""
        perms.require(call.token, "/", ["Sys.Audit"])
        node_status = {n: "online" if state.online(n) else "unknown" for n in state.nodes}
        services = {sid: {"node": state.node_of(int(sid.split(":")[1])),
                          "state": config.get("state", "started")}
                    for sid, config in state.ha_resources.items()}
        return {"manager_status": {"master_node": state.node, "node_status": node_status,
                                   "service_status": services},
                "quorum": {"node": state.node, "quorate": int(state.quorate)},
                "lrm_status": {n: {"mode": "active", "state": "active" if state.online(n)
                                   else "wait_for_agent_lock"} for n in state.nodes}}


def node_ip(number: int) -> str:
    """The member's address (its ``vmbr0`` address in ``homelab.node_networks``)."""
    return f"192.168.1.{10 + number}"


def node_entry(service: PveService, node: str, *, audit: bool = True,
               disk: bool = True) -> dict[str, Any]:
    """PVE/API2Tools.pm ``extract_node_stats``: ``id``, ``node``, ``type``, ``status``;
    uptime/cpu/mem/disk only when online and audited, the maxima when audited."""
    entry: dict[str, Any] = {"id": f"node/{node}", "node": node, "type": "node",
                             "status": "online" if service.state.online(node) else "offline",
                             "level": ""}
    if audit:
        entry.update(maxcpu=os.cpu_count() or 2, maxmem=16 * 1024 ** 3)
        if disk:
            entry["maxdisk"] = 64 * 1024 ** 3
        if service.state.online(node):
            entry.update(uptime=86400 * 12, cpu=0.02, mem=2 * 1024 ** 3)
            if disk:
                entry["disk"] = 8 * 1024 ** 3
    return entry


def task_item(task) -> dict[str, Any]:
    """A task as PVE lists it (``/nodes/{node}/tasks``, ``/cluster/tasks``)."""
    upid = task.upid
    item = {"upid": task.text, "node": upid.node, "pid": upid.pid, "pstart": upid.pstart,
            "starttime": upid.starttime, "type": upid.worker_type, "id": upid.worker_id,
            "user": upid.authid}
    if task.exitstatus is not None:
        item["endtime"], item["status"] = task.endtime, task.exitstatus
    return item


def _add_to_pool(pool: dict[str, Any], guest: dict[str, Any]) -> None:
    """Cluster.pm: a running member raises the pool's uptime to its own and adds its mem,
    maxmem and cpu weighted by maxcpu."""
    pool["uptime"] = max(pool.get("uptime", 0), guest["uptime"])
    pool["mem"] = pool.get("mem", 0) + guest["mem"]
    pool["maxmem"] = pool.get("maxmem", 0) + guest["maxmem"]
    cpu, maxcpu = pool.get("cpu", 0), pool.get("maxcpu", 0)
    pool["cpu"] = (cpu * maxcpu + guest["cpu"] * guest["maxcpu"]) / (maxcpu + guest["maxcpu"])
    pool["maxcpu"] = maxcpu + guest["maxcpu"]
