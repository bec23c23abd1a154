"""The lab inventory's Proxmox part: the double's endpoints, its guests with their
health checks, and the scratch area on its isolated bridge."""
from __future__ import annotations

from restoredrill.lab.guests.image import CANARY_VALUE, WEB_PORT
from restoredrill.lab.proxmox.homelab import GUEST_NODES, OFFSITE_NAMESPACE


def proxmox_inventory(double, offsite_target: str | None = None) -> dict:
    """Guests sit on their nodes of the double's cluster (``homelab.GUEST_NODES``), so each
    scratch copy is restored on a node other than the first. ``offsite_target``: the offsite.s3 target that holds the double's ``offsite`` store (the
    lab uploads it there); that datastore is then declared ``backend: s3`` naming it."""
    endpoints = double.endpoints()["pve"]
    access = double.guest_access
    vm_checks = [
        {"name": "webapp-running", "kind": "service", "target": "webapp"},
        {"name": "sshd-running", "kind": "service", "target": "sshd"},
        {"name": "web-port", "kind": "port", "target": str(WEB_PORT)},
        {"name": "canary", "kind": "canary", "target": "/srv/app/canary.txt", "expect": f"^{CANARY_VALUE}$"},
        {"name": "db-canary", "kind": "sql", "target": "SELECT value FROM canary",
         "database": "sqlite:/srv/app/app.sqlite", "expect": f"^{CANARY_VALUE}$"},
        {"name": "health-inside", "kind": "http", "target": f"http://127.0.0.1:{WEB_PORT}/health",
         "expect": '"healthy"'},
        {"name": "health-from-runner", "kind": "http", "target": f"http://10.199.0.110:{WEB_PORT}/health",
         "expect": '"healthy"', "from_runner": True},
    ]
    ct_checks = [
        {"name": "webapp-running", "kind": "service", "target": "webapp"},
        {"name": "web-port", "kind": "port", "target": str(WEB_PORT)},
        {"name": "os-release", "kind": "command", "target": "cat /etc/os-release", "expect": "debian"},
        {"name": "health-from-runner", "kind": "http", "target": f"http://10.199.0.120:{WEB_PORT}/health",
         "expect": '"healthy"', "from_runner": True, "show_found": True},   # the e2e reads the body it shows
    ]
    if not endpoints.get("drill_runner_netns"):     # no runner leg (no real guests): no checks by address
        vm_checks = [check for check in vm_checks if not check.get("from_runner")]
        ct_checks = [check for check in ct_checks if not check.get("from_runner")]
    escrow = {"location": "the owner's password manager and a paper copy (lab: the key file)",
              "outside_site": True, "key_file": str(double.escrow_key_file)}
    return {
        "datasets": [
            {"name": "app-data", "copies": [
                {"where": "production", "media": "disk"}, {"where": "borg:app-local", "media": "disk"},
                {"where": "borg:app-offsite", "media": "storage-box", "offsite": True}]},
            {"name": "app-vm", "copies": [
                {"where": "production", "media": "zfs"}, {"where": "pbs:local", "media": "zfs"},
                {"where": "pbs:offsite", "media": "object-storage", "offsite": True}]},
            {"name": "app-ct", "copies": [
                {"where": "production", "media": "zfs"}, {"where": "pbs:local", "media": "zfs"},
                {"where": "pbs:offsite", "media": "object-storage", "offsite": True}]},
        ],
        "policies": {"retention": {"pbs-local": {"keep_last": 2},
                                   "pbs-offsite": {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12,
                                                   "keep_yearly": 2}},
                     "rpo": {"pbs-offsite": {"max_age": "25h", "grace": "3h"}}},
        "scratch": {"vmid_range": [9900, 9999], "pool": "restoredrill", "tag": "restoredrill",
                    "bridge": double.isolated_bridge, "storage": "local-zfs", "boot_timeout": "60s",
                    "runner_netns": endpoints.get("drill_runner_netns"),
                    "guest_ssh": {"user": "root", "key_file": str(access.key_file),
                                  "known_hosts_file": str(access.known_hosts_file)}},
        "proxmox": {
            "pve": {"url": double.pve_url, "token_id": double.drill_token.token_id,
                    "token_secret": f"file:{double.drill_token.secret_file}", "fingerprint": double.fingerprint,
                    "nodes": list(double.nodes),        # pct: each node's own sshd and guard
                    "node_ssh": endpoints.get("node_ssh_by_node") or endpoints.get("node_ssh")},
            "pbs": {"url": double.pbs_url, "token_id": double.pbs_audit_token.token_id,
                    "token_secret": f"file:{double.pbs_audit_token.secret_file}",
                    "fingerprint": double.pbs_fingerprint, "timezone": double.zone,
                    "datastores": [
                        {"name": "local", "role": "local", "pve_storage": "pbs", "retention": "pbs-local",
                         "rpo": "daily", "key_fingerprint": double.key_fingerprint, "encryption_required": True,
                         "key_escrow": escrow},
                        {"name": "offsite", "role": "offsite", "pve_storage": "pbs-offsite",
                         "namespace": OFFSITE_NAMESPACE,
                         "retention": "pbs-offsite", "rpo": "pbs-offsite", "sync_job": "offsite-pull",
                         "key_fingerprint": double.key_fingerprint, "encryption_required": True,
                         "key_escrow": escrow,
                         **({"backend": "s3", "s3_target": offsite_target} if offsite_target else {})}]},
        },
        "guests": [
            {"name": "opnsense", "vmid": 100, "type": "qemu", "node": GUEST_NODES[100], "strategy": "config-export",
             "exception": "a snapshot freezes the firewall and the network; its config is exported to the "
                          "storage box (proven by the offsite config drill)", "config_export": "fw-encrypted"},
            {"name": "app-vm", "vmid": 110, "type": "qemu", "node": GUEST_NODES[110], "strategy": "pbs",
             "snapshot": "latest-verified", "rpo": "daily", "access": "agent", "address": "10.199.0.110/24",
             "health": vm_checks},
            {"name": "app-ct", "vmid": 120, "type": "lxc", "node": GUEST_NODES[120], "strategy": "pbs",
             "snapshot": "latest", "rpo": "daily", "address": "10.199.0.120/24",
             # pct needs the node's SSH (check-inventory refuses it without); a double without real
             # guests has none, and its drills never reach a guest: none (a container has no agent)
             "access": "pct" if endpoints.get("node_ssh") else "none",
             "health": ct_checks if endpoints.get("node_ssh") else
             [check for check in ct_checks if check["kind"] == "http" and check.get("from_runner")]},
        ],
    }
