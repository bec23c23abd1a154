"""What the site's PVE and PBS say, read once with a read-only token (GET only).

Every call goes through the one choke point (``clients/proxmox_api.py``: the TLS pin is
checked before the token is sent, answers must be ``{"data": ...}``). The first call
(``GET /version``) failing ends ``init`` (a draft from an endpoint it could not read would
mislead); any later call failing (a privilege the token lacks, a route the release does not
have) becomes a note in the list of what ``init`` could not decide.

PVE: ``/cluster/resources?type=vm`` (pve-manager PVE/API2/Cluster.pm: vmid, name, node,
type, pool, tags, template), ``/cluster/backup`` (PVE/API2/Backup.pm: vmid list, ``all`` +
``exclude``, ``pool``, ``node``, ``storage``, ``enabled``), ``/storage`` (pve-storage
PVE/API2/Storage/Config.pm: storage.cfg entries; a ``pbs`` one has datastore, namespace,
fingerprint), ``/nodes`` and ``/nodes/{node}/network?type=any_bridge`` (PVE/API2/Network.pm),
``/cluster/notifications/targets``.
PBS: ``/admin/datastore``, ``/config/datastore`` (``backend`` on PBS 4: ``type=s3,...``),
``/admin/prune``, ``/admin/sync``, ``/admin/verify``, ``/admin/gc``, ``/config/remote``,
``/config/notifications/targets``, and ``/admin/datastore/{store}/snapshots`` per namespace
(pbs-api-types ``SnapshotListItem``: ``fingerprint`` is the key fingerprint of an encrypted
snapshot, absent for a plain one; PVE's storage.cfg never shows whether it holds a key).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint, clip
from restoredrill.waiting import RetryPolicy


NODE = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?")
STORE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._\-]{2,31}")


@dataclass
class Site:
    """The answers ``draft`` builds on; ``notes`` are the reads that failed."""

    pve_version: dict[str, Any] = field(default_factory=dict)
    guests: list[dict[str, Any]] = field(default_factory=list)
    backup_jobs: list[dict[str, Any]] = field(default_factory=list)
    storages: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    bridges: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)   # node -> name -> iface
    pve_targets: list[dict[str, Any]] = field(default_factory=list)
    pbs_version: dict[str, Any] = field(default_factory=dict)
    datastores: list[dict[str, Any]] = field(default_factory=list)
    datastore_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)          # prune/sync/verify/gc
    remotes: list[dict[str, Any]] = field(default_factory=list)
    pbs_targets: list[dict[str, Any]] = field(default_factory=list)
    snapshots: dict[tuple[str, str | None], list[dict[str, Any]]] = field(default_factory=dict)   # (store, ns)
    notes: list[str] = field(default_factory=list)


class Reader:
    def __init__(self, endpoint: Endpoint, site: Site):
        self.api = ApiChokePoint(endpoint, retry=RetryPolicy(attempts=2))
        self.site = site
        self.service = endpoint.service

    def first(self, path: str) -> Any:
        """The call that proves the endpoint answers; its failure ends init."""
        return self.api.call("get", path)

    def read(self, path: str, kind: type = list, **params) -> Any:
        """A later call: a failure becomes a note, the draft goes on without it."""
        try:
            answer = self.api.call("get", path, **params)
        except ApiError as exc:
            self.site.notes.append(f"{self.service} GET {path} could not be read ({clip(str(exc), 300)}): what "
                                   f"it would have told is left for you to fill in")
            return kind()
        if not isinstance(answer, kind):
            self.site.notes.append(f"{self.service} GET {path} answered {type(answer).__name__}, not "
                                   f"{kind.__name__}: left out")
            return kind()
        return answer


def _objects(items: list) -> list[dict[str, Any]]:
    return [item for item in items if isinstance(item, dict)]


def read_pve(endpoint: Endpoint, site: Site) -> None:
    reader = Reader(endpoint, site)
    version = reader.first("/version")
    site.pve_version = version if isinstance(version, dict) else {}
    site.guests = _objects(reader.read("/cluster/resources", type="vm"))
    site.backup_jobs = _objects(reader.read("/cluster/backup"))
    site.storages = _objects(reader.read("/storage"))
    site.nodes = sorted(n["node"] for n in _objects(reader.read("/nodes")) if isinstance(n.get("node"), str)
                        and NODE.fullmatch(n["node"]))       # pve-node: a name, never a path
    for node in site.nodes:
        found = _objects(reader.read(f"/nodes/{node}/network", type="any_bridge"))
        site.bridges[node] = {str(i["iface"]): i for i in found if isinstance(i.get("iface"), str)}
    site.pve_targets = _objects(reader.read("/cluster/notifications/targets"))


def read_pbs(endpoint: Endpoint, site: Site) -> None:
    reader = Reader(endpoint, site)
    version = reader.first("/version")
    site.pbs_version = version if isinstance(version, dict) else {}
    site.datastores = _objects(reader.read("/admin/datastore"))
    site.datastore_config = {str(d["name"]): d for d in _objects(reader.read("/config/datastore"))
                             if isinstance(d.get("name"), str)}
    for kind in ("prune", "sync", "verify", "gc"):
        site.jobs[kind] = _objects(reader.read(f"/admin/{kind}"))
    site.remotes = _objects(reader.read("/config/remote"))
    # where backups are: the namespaces PVE storages and sync jobs name, and the root namespace
    site.datastores = [d for d in site.datastores if isinstance(d.get("store"), str) and STORE.fullmatch(d["store"])]
    for store in (d["store"] for d in site.datastores):
        spaces = {s.get("namespace") for s in site.storages if s.get("type") == "pbs" and s.get("datastore") == store}
        spaces |= {j.get("ns") for j in site.jobs.get("sync", []) if j.get("store") == store}
        for ns in sorted({n or None for n in spaces} | {None}, key=lambda n: n or ""):
            params = {"ns": ns} if ns else {}
            site.snapshots[(store, ns)] = _objects(reader.read(f"/admin/datastore/{store}/snapshots", **params))
    site.pbs_targets = _objects(reader.read("/config/notifications/targets"))
