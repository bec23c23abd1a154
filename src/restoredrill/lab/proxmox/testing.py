"""Helpers for tests and the lab that drive the double with proxmoxer 2.3.

proxmoxer quirks handled here: ``verify_ssl`` goes to requests as ``verify`` (so the
double's certificate file works as a CA bundle); or ``pin_fingerprint`` mounts an
HTTPAdapter that hands ``assert_fingerprint`` to urllib3, so a token is never sent to a
server that fails the pin. proxmoxer's ``Tasks`` parses 9-field (PVE) UPIDs only, so
PBS tasks are waited for with ``wait_task``. proxmoxer's logger logs POST bodies at
INFO: it is kept at WARNING.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import requests
from proxmoxer import ProxmoxAPI
from requests.adapters import HTTPAdapter

from restoredrill.lab.proxmox.double import ProxmoxDouble, TokenInfo

logging.getLogger("proxmoxer").setLevel(logging.WARNING)


class FingerprintAdapter(HTTPAdapter):
    """Certificate pinning by SHA-256 fingerprint (what PVE's PBS storage plugin does)."""

    def __init__(self, fingerprint: str, **kwargs: Any):
        self.fingerprint = fingerprint.replace(":", "").lower()
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self.fingerprint   # checked even with verify=False
        super().init_poolmanager(*args, **kwargs)


def connect(url: str, token: TokenInfo, *, service: str = "PVE", ca_file: Path | None = None,
            pin_fingerprint: str | None = None, timeout: float = 30) -> ProxmoxAPI:
    host_port = url.removeprefix("https://")
    host, port = host_port.rsplit(":", 1)
    api = ProxmoxAPI(host, port=int(port), service=service, user=token.user,
                     token_name=token.name, token_value=token.secret(), timeout=timeout,
                     verify_ssl=str(ca_file) if ca_file and not pin_fingerprint else False)
    if pin_fingerprint:
        session: requests.Session = api._store["session"]
        session.mount("https://", FingerprintAdapter(pin_fingerprint))
    return api


def pve_api(double: ProxmoxDouble, token: TokenInfo | None = None, **kwargs: Any) -> ProxmoxAPI:
    return connect(double.pve_url, token or double.drill_token, ca_file=double.pve_ca_file,
                   **kwargs)


def pbs_api(double: ProxmoxDouble, token: TokenInfo | None = None, **kwargs: Any) -> ProxmoxAPI:
    return connect(double.pbs_url, token or double.pbs_drill_token, service="PBS",
                   ca_file=double.pbs_ca_file, **kwargs)


def wait_task(api: ProxmoxAPI, node: str, upid: str, timeout: float = 60,
              interval: float = 0.05) -> dict[str, Any]:
    """Poll ``/nodes/{node}/tasks/{upid}/status`` until stopped; raise on timeout (unlike
    proxmoxer's ``Tasks.blocking_status``, which returns None)."""
    deadline = time.monotonic() + timeout
    while True:
        status = api.nodes(node).tasks(upid).status.get()
        if status["status"] == "stopped":
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {upid} still running after {timeout} s")
        time.sleep(interval)


def task_log(api: ProxmoxAPI, node: str, upid: str) -> list[str]:
    return [line["t"] for line in api.nodes(node).tasks(upid).log.get(limit=0)]


def restore_drill_inventory(double: ProxmoxDouble, folder: Path, site: str):
    """The lab's inventory for the double, cut to the PBS restore drills (guests with
    strategy pbs, no datasets, a daily RPO of 25 h), written to ``folder`` and loaded."""
    import yaml

    from restoredrill.inventory import load_inventory
    from restoredrill.lab.proxmox_inventory import proxmox_inventory
    data = {"version": 1, "site": {"name": site, "timezone": "UTC"}, **proxmox_inventory(double)}
    data.pop("datasets")
    data["policies"]["rpo"]["daily"] = {"max_age": "25h", "grace": "1h"}
    data["guests"] = [g for g in data["guests"] if g["strategy"] == "pbs"]
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_inventory(path).model
