"""The local lab: a throwaway site with real Borg repositories (one local, one on an SSH
storage box) and the inventory and endpoints that describe it.

Layout under the lab folder: ``source/`` (the live app data), ``repos/`` (local
repository), ``box/`` (the storage box: sshd files) and ``box-data/`` (what it
stores), ``secrets/`` (0600 files), ``state/`` (the lab's own state database),
``scratch/`` (extracts), ``inventory.yaml``, ``endpoints.json``.
"""
from __future__ import annotations

import json
import os
import secrets as pysecrets
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from restoredrill.lab.lifecycle import StartStop
from restoredrill.lab.borg_history import LAB_POLICY, BorgBuilder, LabRepo, build_history
from restoredrill.lab.dataset import KUMA_DB_FILE, build_dataset, data_checks
from restoredrill.lab.kuma import LabKuma
from restoredrill.lab.offsite import merge_fragment, setup_offsite
from restoredrill.lab.proxmox import ProxmoxDouble
from restoredrill.lab.proxmox_inventory import proxmox_inventory
from restoredrill.lab.storagebox import StorageBox
from restoredrill.secrets import write_private

MARKER = ".restoredrill-lab"
LAB_ZONE = "Europe/Berlin"
OWNED = ("source", "repos", "box", "box-data", "secrets", "state", "scratch", "builder", "offsite", "proxmox",
         "kuma", "inventory.yaml", "endpoints.json", MARKER)


class LabError(RuntimeError):
    pass


def prepare_dir(path: Path) -> Path:
    """An empty folder (mode 0700), or one a previous lab left; never someone's data."""
    path = path.resolve()
    if path.exists() and any(path.iterdir()) and not (path / MARKER).exists():
        raise LabError(f"{path} is not empty and not a restoredrill lab folder; give an empty or new "
                       f"folder to --dir so that nothing of yours is touched")
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    for name in OWNED:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    (path / MARKER).write_text("made by restoredrill lab; deleted when the lab stops\n")
    return path


class Lab(StartStop):
    def __init__(self, root: Path, versions: dict[str, str] | None = None):
        """``versions``: ``pve_version`` / ``pbs_version`` the double answers as."""
        self.root = prepare_dir(root)
        self.versions = dict(versions or {})
        self.box: StorageBox | None = None
        self.offsite = None
        self.double = None
        self.kuma: LabKuma | None = None
        self.repos: list[LabRepo] = []
        self.timings: dict[str, float] = {}
        self.facts: dict = {}

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> "Lab":
        started = time.monotonic()
        for sub in ("source", "repos", "box", "box-data/borg", "secrets", "state", "scratch", "builder"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "secrets", 0o700)
        build_dataset(self.root / "source")
        mark = time.monotonic()      # Kuma first: the Borg history backs up its database (lint: monitoring-restorable)
        self.kuma = LabKuma(self.root / "kuma")     # set before start: stop() ends a half-started Kuma
        self.kuma.start()
        self.kuma.backup_database(self.root / "source" / KUMA_DB_FILE)
        self.timings["kuma"] = time.monotonic() - mark
        self.box = StorageBox(self.root / "box").start()
        self.box.authorize_borg(self.box.borg_key_file.with_suffix(".pub"), self.root / "box-data" / "borg")
        self.timings["storage_box"] = time.monotonic() - started - self.timings["kuma"]
        self.repos = [self._repo("app-local", str(self.root / "repos" / "app-local"), None),
                      self._repo("app-offsite", self.box.repo_url(self.root / "box-data" / "borg" / "app-offsite"),
                                 self.box.borg_rsh())]
        newest = (datetime.now(timezone.utc) - timedelta(hours=2)).replace(second=0, microsecond=0)
        builder = BorgBuilder(self.root / "builder", LAB_ZONE)
        self.facts = build_history(builder, self.repos, self.root / "source", newest)
        self.timings["borg_history"] = (time.monotonic() - started - self.timings["storage_box"]
                                        - self.timings["kuma"])
        mark = time.monotonic()
        self.double = ProxmoxDouble(self.root / "proxmox", real_guests=True, **self.versions).start()
        self.timings["proxmox"] = time.monotonic() - mark
        mark = time.monotonic()      # the bucket holds the double's offsite datastore: double first
        self.offsite = setup_offsite(self.root / "offsite", self.box, self.double, zone=LAB_ZONE)
        self.timings["offsite"] = time.monotonic() - mark
        self.write_inventory()
        self.write_endpoints()
        self.timings["total"] = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self.kuma is not None:
            self.kuma.stop()
            self.kuma = None
        if self.double is not None:
            self.double.stop()
            self.double = None
        if self.offsite is not None:
            self.offsite.stop()
            self.offsite = None
        self.double = None
        if self.box is not None:
            self.box.stop()
            self.box = None

    def remove(self) -> None:
        self.stop()
        for name in OWNED:
            target = self.root / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            elif target.exists():
                target.unlink()

    def _repo(self, name: str, location: str, rsh: str | None) -> LabRepo:
        secret_file = self.root / "secrets" / f"{name}.pass"
        write_private(secret_file, pysecrets.token_urlsafe(24))
        return LabRepo(name, location, secret_file, rsh)

    # --- descriptions ------------------------------------------------------------------
    @property
    def inventory_path(self) -> Path:
        return self.root / "inventory.yaml"

    @property
    def endpoints_path(self) -> Path:
        return self.root / "endpoints.json"

    def inventory_data(self) -> dict:
        box = self.box
        repos = []
        for repo in self.repos:
            entry = {
                "name": repo.name, "location": repo.location, "passphrase": f"file:{repo.passphrase_file}",
                "retention": "lab", "prune_timezone": LAB_ZONE, "retention_glob": "app-*", "rpo": "daily",
                "encryption_required": True, "lock_wait": "1m", "verify_data": {"every_runs": 3},
                "key_escrow": {"location": "the owner's password manager (lab: an exported key file)",
                               "outside_site": True, "key_file": str(repo.passphrase_file.with_suffix(".key"))},
                "checks": {**data_checks(), "spot_check": {
                    "source": str(self.root / "source" / "app"), "archive_path": "app", "sample": 20}},
            }
            if repo.location.startswith("ssh://"):
                entry["storage_box"] = "lab-box"
            repos.append(entry)
        data = {
            "version": 1,
            "site": {"name": "restoredrill-lab", "timezone": LAB_ZONE},
            "policies": {"retention": {"lab": dict(LAB_POLICY)},
                         "rpo": {"daily": {"max_age": "25h", "grace": "2h"}}},
            "scratch": {"work_dir": str(self.root / "scratch"), "min_free": "64MiB"},
            "borg": {"repositories": repos},
            "offsite": {"storage_boxes": [{
                "name": "lab-box", "host": box.host, "port": box.port, "user": box.user,
                "key_file": str(box.borg_key_file), "known_hosts_file": str(box.known_hosts_file)}]},
        }
        if self.double is not None:
            data = merge_fragment(data, proxmox_inventory(
                self.double, self.offsite.target_name if self.offsite else None))
        data = merge_fragment(data, self.offsite.inventory_fragment()) if self.offsite else data
        return with_kuma(data, self.kuma.inventory_fragment()) if self.kuma else data

    def write_inventory(self) -> None:
        header = ("# Inventory of a restoredrill lab (generated; deleted when the lab stops).\n"
                  "# Run: restoredrill run --inventory THIS_FILE\n")
        self.inventory_path.write_text(header + yaml.safe_dump(self.inventory_data(), sort_keys=False))

    def endpoints(self) -> dict:
        box = self.box
        data = {
            "storage_box": {"host": box.host, "port": box.port, "user": box.user,
                            "key_file": str(box.borg_key_file), "known_hosts_file": str(box.known_hosts_file),
                            "host_key_fingerprint": box.host_key_fingerprint},
            "borg_repositories": [{"name": r.name, "location": r.location,
                                   "passphrase_file": str(r.passphrase_file)} for r in self.repos],
            "inventory": str(self.inventory_path),
            "source_dir": str(self.root / "source"),
        }
        if self.double is not None:
            data.update(self.double.endpoints())
        data = merge_fragment(data, self.offsite.endpoints_fragment()) if self.offsite else data
        return merge_fragment(data, self.kuma.endpoints_fragment()) if self.kuma else data

    def write_endpoints(self) -> None:
        self.endpoints_path.write_text(json.dumps(self.endpoints(), indent=2) + "\n")
        os.chmod(self.endpoints_path, 0o600)


def with_kuma(data: dict, fragment: dict) -> dict:
    """The lab inventory with its Uptime Kuma: the monitoring section, the heartbeat push
    URL, and each guest's monitor_host / monitored endpoints."""
    fragment = dict(fragment)
    per_guest = fragment.pop("guest_monitoring", {})
    data = merge_fragment(data, fragment)
    data["guests"] = [{**guest, **per_guest.get(guest["name"], {})} for guest in data.get("guests", [])]
    return data

