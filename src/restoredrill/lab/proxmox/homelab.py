"""The homelab the double models: its tokens and ACLs, storages, bridges, pools, guests
and PBS jobs. Pure configuration plus the seeding order; no servers here.

PVE cluster of three nodes ``pve1``, ``pve2``, ``pve3`` (as inventory/example-homelab.yaml):
production guests 100 ``opnsense`` on pve1 (no backup: its config is exported instead),
110 ``app-vm`` on pve2 and 120 ``app-ct`` on pve3 (daily vzdump to the ``pbs`` storage);
on every node the bridges ``vmbr0`` (production: ports, address) and ``vmbr-drill`` (no
ports, no address); storages ``local`` and ``local-zfs`` are node-local (``local-zfs``
listed for all three nodes), the PBS ones shared; pools ``restoredrill`` (scratch guests,
empty) and ``prod``.
PBS node ``pbs1``: datastores ``local`` (keep-last 2) and ``offsite`` (7/4/12/2, fed by
the ``offsite-pull`` sync job).
Notification targets on both: the built-in ``mail-to-root`` and ``mail-admin`` (SMTP, job
failures to the admin), as ``notifications.pve_targets`` names them.

The drill tokens hold exactly the privileges of the README's "Token privileges" table
(``pve_drill_acl``, ``pbs_drill_acl``, ``pbs_audit_acl``): the PVE one may allocate,
configure, power and run commands in guests of pool ``restoredrill`` only, audit guests
and the node, read backups (VM.Backup + Datastore.AllocateSpace on the PBS storages), use
only the drill bridge and the one PCI mapping the app VM's backup carries; the PBS ones may
audit and read datastores (the audit one also Datastore.Modify for the prune dry-run).
"""
from __future__ import annotations

import time
from typing import Any

from restoredrill.lab.proxmox.cluster import Pool, PveState, StorageConfig, interface_entry
from restoredrill.lab.proxmox.guests import Guest, parse_config
from restoredrill.lab.proxmox.pbs_jobs import Job, PbsJobs
from restoredrill.lab.proxmox.permissions import ALL, AclEntry, acl
from restoredrill.lab.proxmox.tasks import TaskRegistry
from restoredrill.lab.proxmox.seed import (CT_CONFIG, LOCAL_POLICY, OFFSITE_POLICY,
                                           OPNSENSE_CONFIG, VM_CONFIG)
from restoredrill.pbsformat import CryptConfig

PVE_NODE, PBS_NODE = "pve1", "pbs1"
PVE_NODES = ("pve1", "pve2", "pve3")
GUEST_NODES = {100: "pve1", 110: "pve2", 120: "pve3"}     # as inventory/example-homelab.yaml
DRILL_POOL = "restoredrill"
ISOLATED_BRIDGE = "vmbr-drill"
OFFSITE_NAMESPACE = "homelab"     # the offsite datastore: the sync job pulls into it, pbs-offsite reads it
SCRATCH_STORAGE = "local-zfs"
ADMIN_TOKEN = "root@pam!restoredrill-admin"
PVE_DRILL_TOKEN = "restoredrill@pve!drill"
PBS_DRILL_TOKEN = "restoredrill@pbs!drill"
PBS_AUDIT_TOKEN = "restoredrill@pbs!audit"
# Exactly the README's "Token privileges" table (tests/integration/test_privileges_table.py
# compares both ways and drops each privilege to see the drill fail). The drill's restore
# sends name/onboot/description/tags (VM.Config.Options) and netN (VM.Config.Network),
# a container's rootfs (VM.Config.Disk), deletes mapped host devices (VM.Config.HWType), starts/stops (VM.PowerMgmt), runs
# commands through the agent (VM.GuestAgent.Unrestricted; PVE 8: VM.Monitor) and destroys
# (VM.Allocate); the pool guard reads the scratch guest's pool (Pool.Audit).
GUEST_PRIVS = ("VM.Allocate", "VM.PowerMgmt", "VM.Config.Disk", "VM.Config.Network",
               "VM.Config.Options", "VM.Config.HWType", "VM.GuestAgent.Unrestricted",
               "Pool.Audit")
GUEST_PRIVS_PVE8 = tuple(p for p in GUEST_PRIVS if not p.startswith("VM.GuestAgent.")) + (
    "VM.Monitor",)     # qemu-server before 9.0.3: every agent command needs VM.Monitor


def pve_drill_acl(release: tuple[int, int] = (9, 1)) -> list[AclEntry]:
    """The PVE drill token; ``release`` picks the agent privilege (PVE 8: VM.Monitor)."""
    return [acl("/", "Sys.Audit", "VM.Audit"),
            acl("/vms", "VM.Backup"),
            acl(f"/pool/{DRILL_POOL}", *(GUEST_PRIVS if release >= (9, 0) else GUEST_PRIVS_PVE8)),
            acl(f"/storage/{SCRATCH_STORAGE}", "Datastore.AllocateSpace"),
            acl("/storage/pbs", "Datastore.AllocateSpace"),
            acl("/storage/pbs-offsite", "Datastore.AllocateSpace"),
            acl(f"/sdn/zones/localnetwork/{ISOLATED_BRIDGE}", "SDN.Use"),
            acl("/mapping/pci/nic-offload", "Mapping.Use"),
            acl("/mapping/notifications", "Mapping.Audit")]


def pbs_drill_acl() -> list[AclEntry]:
    """The read-only PBS token: snapshot lists, status, job lists (sync jobs also need
    Remote.Audit on their remote), notification targets, raw downloads (offsite drill)."""
    return [acl("/datastore", "Datastore.Audit", "Datastore.Read"),
            acl("/remote", "Remote.Audit"), acl("/system/notifications", "Sys.Audit")]


def pbs_audit_acl() -> list[AclEntry]:
    """The audit token: the drill token's privileges plus Datastore.Modify, which PBS demands
    even for a prune dry-run (the retention cross-check); restoredrill's PBS client can only
    send dry-run=1."""
    return pbs_drill_acl() + [acl("/datastore", "Datastore.Modify")]


def notification_targets() -> list[dict[str, Any]]:
    """``GET /cluster/notifications/targets`` (PVE) and ``/config/notifications/targets`` (PBS):
    the built-in sendmail target and the admin's SMTP target for job failures."""
    return [{"name": "mail-admin", "type": "smtp", "origin": "user-created",
             "comment": "job failures, verification and storage health to the admin"},
            {"name": "mail-to-root", "type": "sendmail", "origin": "builtin",
             "comment": "Send mails to root@pam's email address"}]


def admin_acl() -> list[AclEntry]:
    return [acl("/", ALL)]


def configure_pve(state: PveState, crypt: CryptConfig | None, pbs_fingerprint: str) -> None:
    state.storages = {
        "local": StorageConfig("local", "dir", "backup,iso,snippets,vztmpl"),
        SCRATCH_STORAGE: StorageConfig(SCRATCH_STORAGE, "zfspool", "images,rootdir",
                                       nodes=tuple(state.nodes)),
        "pbs": StorageConfig("pbs", "pbs", "backup", datastore="local", crypt=crypt,
                             fingerprint=pbs_fingerprint),
        "pbs-offsite": StorageConfig("pbs-offsite", "pbs", "backup", datastore="offsite",
                                     crypt=crypt, fingerprint=pbs_fingerprint,
                                     namespace=OFFSITE_NAMESPACE),
    }
    for number, node in enumerate(state.nodes):
        state.node_networks[node] = node_networks(number)
    state.pools = {DRILL_POOL: Pool(DRILL_POOL, "restore drills: scratch guests only"),
                   "prod": Pool("prod", "production guests", {110, 120})}
    for vmid, kind, text in ((100, "qemu", OPNSENSE_CONFIG), (110, "qemu", VM_CONFIG),
                             (120, "lxc", CT_CONFIG)):
        config, _hints = parse_config(text)
        guest = state.add_guest(Guest(vmid, kind, config), GUEST_NODES.get(vmid, state.node))
        # production guests are modelled as running; the lab runs only restored guests
        guest.status, guest.started_at = "running", time.time() - 3 * 86400   # up 3 days
    state.backup_jobs = [{"id": "backup-9d0c6a1f-5e2b", "schedule": "01:00",
                          "storage": "pbs", "vmid": "110,120", "mode": "snapshot",
                          "enabled": 1, "notes-template": "{{guestname}}",
                          "comment": "daily to PBS local"}]
    state.notification_targets = notification_targets()
    state.user_groups = {"drill-operators": (PVE_DRILL_TOKEN.split("!")[0],)}
    # HA manages the app container (pve-ha-manager ha/resources.cfg ``ct: 120``), kept on
    # pve2/pve3 by a node-affinity rule (PVE 9 rules.cfg)
    state.ha_resources = {"ct:120": {"state": "started", "max_restart": 1, "max_relocate": 1,
                                     "failback": 1}}
    state.ha_rules = {"app-ct-nodes": {"type": "node-affinity", "resources": "ct:120",
                                       "nodes": "pve2,pve3", "strict": 0, "disable": 0}}


def record_nightly_backups(state: PveState, registries: dict[str, TaskRegistry],
                           nights: int = 3) -> None:
    """The backup job's vzdump tasks of the last ``nights`` nights (01:00, as its schedule),
    finished OK, in the task list of the node each backed-up guest lives on: a node with a
    nightly vzdump has tasks (``/nodes/{node}/tasks``, ``/cluster/tasks``)."""
    today = time.time() - time.time() % 86400
    for job in state.backup_jobs:
        nodes = sorted({state.node_of(int(v)) for v in str(job.get("vmid", "")).split(",")
                        if v.isdigit() and int(v) in state.guests})
        for night in range(nights, 0, -1):
            start = int(today - night * 86400 + 3600)
            for node in nodes:
                vmids = [v for v in job["vmid"].split(",") if state.node_of(int(v)) == node]
                lines = [f"INFO: starting new backup job: vzdump {' '.join(vmids)} "
                         f"--storage {job['storage']} --mode {job['mode']}"]
                lines += [f"INFO: Finished Backup of VM {v} (00:01:0{i})" for i, v in enumerate(vmids)]
                lines += ["INFO: Backup job finished successfully", "TASK OK"]
                worker_id = vmids[0] if len(vmids) == 1 else ""   # PVE/API2/VZDump.pm taskid
                registries[node].record("vzdump", worker_id, "root@pam", start, start + 95, lines)


def node_networks(number: int) -> dict[str, dict[str, Any]]:
    """``/etc/network/interfaces`` of the cluster's ``number``-th node: production bridge
    ``vmbr0`` on ``eno1`` with the node's address, and the drill bridge without uplink or
    address (IPv4 or IPv6)."""
    return {
        "vmbr0": interface_entry("bridge", bridge_ports="eno1", address=f"192.168.1.{10 + number}",
                                 netmask="24", gateway="192.168.1.1", priority=4),
        ISOLATED_BRIDGE: interface_entry("bridge", priority=5,
                                         comments="restore drills: no uplink, no address\n"),
        "eno1": {"type": "eth", "method": "manual", "method6": "manual", "families": ["inet"],
                 "active": 1, "exists": 1, "priority": 3},
    }


def configure_pbs_jobs(jobs: PbsJobs) -> None:
    jobs.add(Job("prune", "local-keep-last", "local", "02:30", dict(LOCAL_POLICY)))
    jobs.add(Job("sync", "offsite-pull", "offsite", "03:00", {
        "remote": "pbs1-self", "remote-store": "local", "ns": OFFSITE_NAMESPACE, "remove-vanished": False,
        "owner": "root@pam",
        "sync-direction": "pull"}, comment="local -> offsite (S3 in production), through a remote that "
        "points at this host: listing it needs Remote.Audit"))
    jobs.add(Job("prune", "offsite-retention", "offsite", "04:00", {**OFFSITE_POLICY, "ns": OFFSITE_NAMESPACE}))
    jobs.add(Job("verify", "local-verify", "local", "05:00",
                 {"ignore-verified": True, "outdated-after": 30}))
    jobs.add(Job("verify", "offsite-verify", "offsite", "sat 06:00",
                 {"ignore-verified": True, "outdated-after": 90}))
    for store in ("local", "offsite"):
        jobs.add(Job("gc", store, store, "daily"))


SEED_RUNS = (("prune", "local-keep-last"), ("sync", "offsite-pull"),
             ("prune", "offsite-retention"), ("verify", "local-verify"), ("verify", "offsite-verify"),
             ("gc", "local"), ("gc", "offsite"))


def run_seed_jobs(jobs: PbsJobs) -> None:
    """The night's jobs, in order; each must end OK or the lab is not what it claims."""
    for kind, job_id in SEED_RUNS:
        task = jobs.run_and_wait(kind, job_id)
        if task.exitstatus != "OK":
            raise RuntimeError(f"seed job {kind}/{job_id} ended {task.exitstatus!r}: "
                               + " | ".join(task.lines[-5:]))
