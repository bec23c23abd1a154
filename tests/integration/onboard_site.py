"""Shared by the onboarding tests: a site inventory for the double as a person writes it
before ``restoredrill setup`` (the lab's names, token secrets in files that do not exist yet),
and the real borgmatic from PyPI in a throwaway virtualenv."""
from __future__ import annotations

import subprocess
import sys
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
            {"name": "app-ct", "vmid": 120, "type": "lxc", "strategy": "pbs", "access": "none"}],
        "notifications": {"pve_targets": ["mail-to-root"]},    # the audit reads them: Mapping.Audit granted
    }
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def install_borgmatic(venv: Path, release: str) -> Path:
    """``pip install borgmatic==release`` into a new virtualenv; its ``borgmatic`` program. A
    failed install fails the test (it needs PyPI; pip's cache makes the next run fast)."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                                f"borgmatic=={release}"], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, (f"pip could not install borgmatic {release} from PyPI (this test "
                                       f"needs PyPI): {installed.stderr[-1500:]}")
    return venv / "bin" / "borgmatic"


def borgmatic_writes(program: Path, destination: Path, source: Path | None = None) -> None:
    """``borgmatic config generate`` (merging ``source`` in), then ``config validate``."""
    args = [str(program), "config", "generate", "-d", str(destination)]
    if source is not None:
        args += ["-s", str(source)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and destination.is_file(), done.stdout + done.stderr
    valid = subprocess.run([str(program), "config", "validate", "-c", str(destination)], capture_output=True,
                           text=True, timeout=120)
    assert valid.returncode == 0, valid.stdout + valid.stderr
