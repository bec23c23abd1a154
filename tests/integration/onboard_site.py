"""A site inventory for the double, as a person writes it before ``restoredrill setup``: the
lab's names, token secrets in files that do not exist yet (shared by the onboarding tests)."""
from __future__ import annotations

from pathlib import Path

import yaml

from restoredrill.lab.proxmox import homelab


def site_inventory(double, folder: Path) -> Path:
    data = {
        "site": {"name": "onboard", "timezone": "Europe/Berlin"},
        "policies": {"retention": {"pbs-local": {"keep_last": 2}}, "rpo": {"daily": {"max_age": "25h"}}},
        "scratch": {"pool": homelab.DRILL_POOL, "bridge": homelab.ISOLATED_BRIDGE,
                    "storage": homelab.SCRATCH_STORAGE},
        "proxmox": {
            "pve": {"url": double.pve_url, "token_id": homelab.PVE_DRILL_TOKEN,
                    "token_secret": f"file:{folder / 'pve-token'}", "fingerprint": double.fingerprint,
                    "nodes": list(double.nodes)},
            "pbs": {"url": double.pbs_url, "token_id": homelab.PBS_AUDIT_TOKEN,
                    "token_secret": f"file:{folder / 'pbs-token'}", "fingerprint": double.pbs_fingerprint,
                    "datastores": [
                        {"name": "local", "role": "local", "pve_storage": "pbs", "retention": "pbs-local"},
                        {"name": "offsite", "role": "offsite", "pve_storage": "pbs-offsite",
                         "namespace": homelab.OFFSITE_NAMESPACE, "retention": "pbs-local"}]}},
        "guests": [
            {"name": "opnsense", "vmid": 100, "type": "qemu", "strategy": "none", "exception": "config export"},
            {"name": "app-vm", "vmid": 110, "type": "qemu", "strategy": "pbs"},
            {"name": "app-ct", "vmid": 120, "type": "lxc", "strategy": "pbs"}],
    }
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
