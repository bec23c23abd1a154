"""``ProxmoxDouble``: the PVE and PBS test double, started, seeded and stopped as one.

    with ProxmoxDouble(tmp_path / "double") as double:
        api = ProxmoxAPI("127.0.0.1", port=double.pve_port, user="restoredrill@pve",
                         token_name="drill", token_value=double.drill_token.secret_file
                         .read_text().strip(), verify_ssl=str(double.pve_ca_file))
        ...
        double.faults.damage_chunk("local", volid)

Start order: folders and secrets -> TLS identities -> datastores seeded in the real PBS
format -> the night's PBS jobs (prune, sync, prune, verify, gc) as real tasks -> PVE
node state -> both HTTPS servers. Stop: servers (no socket, no handler thread left),
task threads joined, then every file the double made under ``base_dir`` removed
(``keep_files=True`` keeps them for a person to look at).
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from restoredrill.lab.lifecycle import StartStop
from restoredrill.lab.proxmox import homelab, seed
from restoredrill.lab.proxmox.admin_routes import AccessAdmin, add_pbs_admin_routes, add_pve_admin_routes
from restoredrill.lab.proxmox.certs import make_identity
from restoredrill.lab.proxmox.cluster import PveState
from restoredrill.lab.proxmox.faults import Faults
from restoredrill.lab.proxmox.guests import StateOnlyRuntime
from restoredrill.lab.proxmox.http import ApiServer
from restoredrill.lab.proxmox.pbs_jobs import PbsJobs
from restoredrill.lab.proxmox.pbs_routes import PBS_VERSION, PbsService, build_pbs_router
from restoredrill.lab.proxmox.permissions import ApiToken, TokenRegistry
from restoredrill.lab.proxmox.pve_routes import build_pve_router
from restoredrill.lab.proxmox.pve_service import PVE_VERSION, PveService
from restoredrill.lab.proxmox.restore import Restorer
from restoredrill.lab.proxmox.schema import ApiSchemas
from restoredrill.lab.proxmox.store import PbsStore
from restoredrill.lab.proxmox.tasks import TaskRegistry
from restoredrill.pbsformat import CryptConfig, write_key_file

OWNED = ("secrets", "tls", "pve", "pbs", "seed-work", "guests", "node-ssh", "endpoints.json")


class DoubleError(RuntimeError):
    pass


def version_answer(version: str, template: dict[str, str]) -> dict[str, str]:
    """``GET /version`` for a release "MAJOR.MINOR.PATCH": PVE answers version "9.1.1" and
    release "9.1" (pve-manager PVE/API2/Version.pm); PBS version "4.0" and release "14"
    (proxmox-backup src/api2/version.rs: PROXMOX_PKG_VERSION / PROXMOX_PKG_RELEASE)."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise DoubleError(f"version {version!r}: expected MAJOR.MINOR.PATCH")
    answer = dict(template)
    if "console" in template:          # PVE
        answer.update(version=version, release=f"{parts[0]}.{parts[1]}")
    else:                              # PBS
        answer.update(version=f"{parts[0]}.{parts[1]}", release=parts[2])
    return answer


def version_tuple(answer: dict[str, str]) -> tuple[int, int]:
    """(major, minor) of a ``version_answer``."""
    major, minor = answer["version"].split(".")[:2]
    return int(major), int(minor)


@dataclass(frozen=True)
class TokenInfo:
    token_id: str           # user@realm!name
    secret_file: Path       # 0600, holds only the secret

    @property
    def user(self) -> str:
        return self.token_id.split("!", 1)[0]

    @property
    def name(self) -> str:
        return self.token_id.split("!", 1)[1]

    def secret(self) -> str:
        return self.secret_file.read_text(encoding="utf-8").strip()


class ProxmoxDouble(StartStop):
    """Both servers and their datastores; a context manager (``start``/``stop`` too)."""

    def __init__(self, base_dir: Path, *, strict_schema: bool | None = None,
                 zone: str = "Europe/Berlin", auth_failure_delay: float = 0.0,
                 keep_files: bool = False, real_guests: bool = False,
                 pve_version: str = "9.1.1", pbs_version: str = "4.0.14", drill_tokens: bool = True):
        """``strict_schema``: None validates requests against the schema files when they
        exist (else against the routes' declarations in code); True also checks every
        response and records departures in ``violations`` (the files must exist).
        ``real_guests``: guests run as processes in network namespaces (needs root),
        reachable by agent, by SSH on the drill bridge and by ``pct exec`` over the
        node's SSH; otherwise the state-only runtime runs nothing.
        ``pve_version`` / ``pbs_version``: what ``GET /version`` answers ("9.1.1", "3.1.2"...);
        routes and privilege rules that changed between releases follow it.
        ``drill_tokens=False``: only the admin tokens exist (no restoredrill user), as on a
        site before ``restoredrill setup --apply`` (``lab/proxmox/admin_routes.py``)."""
        self.base_dir = Path(base_dir).resolve()
        self.strict = bool(strict_schema)
        self.zone = zone
        self.auth_failure_delay = auth_failure_delay
        self.keep_files = keep_files
        self.real_guests = real_guests
        self.drill_tokens = drill_tokens
        self.pve_version = version_answer(pve_version, PVE_VERSION)
        self.pbs_version = version_answer(pbs_version, PBS_VERSION)
        self.network = None
        self.node_sshd: dict[str, Any] = {}      # node -> its sshd (pct guard), real guests only
        self.node, self.pbs_node = homelab.PVE_NODE, homelab.PBS_NODE
        self.nodes = homelab.PVE_NODES
        self.isolated_bridge = homelab.ISOLATED_BRIDGE
        self.timings: dict[str, float] = {}
        self.servers: dict[str, ApiServer] = {}
        self.stores: dict[str, PbsStore] = {}
        self._task_registries: list[TaskRegistry] = []
        self.schemas = ApiSchemas.load()
        if self.strict and not self.schemas.available:
            raise DoubleError("strict_schema=True needs the API schema files (set "
                              "RESTOREDRILL_API_SCHEMAS or provide ../shared/api-schemas)")

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> ProxmoxDouble:
        started = time.monotonic()
        self._prepare_dirs()
        self.crypt = CryptConfig.generate()
        self.key_file = self.base_dir / "secrets" / "pbs-encryption.key"
        write_key_file(self.key_file, self.crypt)
        self.guest_access = seed.GuestAccess.create(self.base_dir / "secrets")
        self.pve_identity = make_identity(self.base_dir / "tls", "pve", self.node)
        self.pbs_identity = make_identity(self.base_dir / "tls", "pbs", self.pbs_node)
        self._seed_datastores()
        self.timings["seed"] = time.monotonic() - started
        self.faults = Faults(self.stores)
        self._start_pbs()
        self.timings["pbs_jobs"] = time.monotonic() - started - self.timings["seed"]
        self._start_pve()
        self._write_endpoints()
        self.timings["startup"] = time.monotonic() - started
        return self

    def _prepare_dirs(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for name in OWNED:
            target = self.base_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        for name in ("secrets", "tls", "pve", "pbs"):
            (self.base_dir / name).mkdir(mode=0o700)

    def _seed_datastores(self) -> None:
        root = self.base_dir / "pbs" / "datastores"
        self.stores = {
            "local": PbsStore.create("local", root / "local", "local ZFS datastore"),
            "offsite": PbsStore.create("offsite", root / "offsite",
                                       "offsite copy (S3 in production)")}
        self.seed_facts = seed.seed_history(self.stores["local"], self.stores["offsite"],
                                            self.base_dir / "seed-work", seed.newest_backup_day(),
                                            self.zone, self.crypt, self.guest_access,
                                            offsite_ns=homelab.OFFSITE_NAMESPACE)

    def _start_pbs(self) -> None:
        tasks = TaskRegistry("pbs", self.pbs_node, delay=self.faults.task_delay)
        self._task_registries.append(tasks)
        self.pbs_jobs = PbsJobs(self.stores, tasks, self.zone)
        homelab.configure_pbs_jobs(self.pbs_jobs)
        homelab.run_seed_jobs(self.pbs_jobs)
        seed.check_history(self.stores["offsite"], self.seed_facts["kept_days"], homelab.OFFSITE_NAMESPACE)
        self.pbs_tokens = TokenRegistry("pbs")
        secrets = self.base_dir / "secrets"
        self.pbs_admin = self.pbs_tokens.create(homelab.ADMIN_TOKEN, homelab.admin_acl(), secrets)
        if self.drill_tokens:
            self.pbs_drill = self.pbs_tokens.create(homelab.PBS_DRILL_TOKEN, homelab.pbs_drill_acl(),
                                                    secrets)
            self.pbs_audit = self.pbs_tokens.create(homelab.PBS_AUDIT_TOKEN, homelab.pbs_audit_acl(), secrets)
        service = PbsService(self.pbs_node, self.stores, tasks, self.pbs_jobs, self.zone,
                             version=self.pbs_version, fingerprint=self.pbs_fingerprint)
        router = build_pbs_router(service)
        self.pbs_access = AccessAdmin("pbs", self.pbs_tokens, secrets)
        add_pbs_admin_routes(router, service, self.pbs_access)
        self.servers["pbs"] = ApiServer(
            "pbs", router, self.pbs_tokens, self.pbs_identity, self.schemas,
            strict=self.strict, faults=self.faults,
            auth_failure_delay=self.auth_failure_delay).start()

    def _start_pve(self) -> None:
        self.pve_state = PveState(self.base_dir / "pve", self.node, None, zone=self.zone,
                                  nodes=self.nodes)
        self.pve_state.runtime = self.runtime = self._runtime()
        self.pve_state.ssl_fingerprint = self.fingerprint
        homelab.configure_pve(self.pve_state, self.crypt, self.pbs_fingerprint)
        registries = {node: TaskRegistry("pve", node, delay=self.faults.task_delay)
                      for node in self.nodes}
        self._task_registries.extend(registries.values())
        self.restorer = Restorer(self.pve_state, self.stores, self.faults)
        self.pve_tokens = TokenRegistry("pve")
        secrets = self.base_dir / "secrets"
        self.pve_admin = self.pve_tokens.create(homelab.ADMIN_TOKEN, homelab.admin_acl(), secrets)
        if self.drill_tokens:
            self.pve_drill = self.pve_tokens.create(
                homelab.PVE_DRILL_TOKEN, homelab.pve_drill_acl(version_tuple(self.pve_version)), secrets)
        service = PveService(self.pve_state, registries, self.stores, self.restorer, self.faults,
                             version=self.pve_version, tokens=self.pve_tokens)
        homelab.record_nightly_backups(self.pve_state, registries)
        self.faults.pve_state = self.pve_state
        router = build_pve_router(service)
        self.pve_access = AccessAdmin("pve", self.pve_tokens, secrets)
        add_pve_admin_routes(router, service, self.pve_access)
        self.servers["pve"] = ApiServer(
            "pve", router, self.pve_tokens, self.pve_identity, self.schemas,
            strict=self.strict, faults=self.faults,
            auth_failure_delay=self.auth_failure_delay).start()

    def _runtime(self):
        if not self.real_guests:
            return StateOnlyRuntime(start_failure=self.faults.start_failure)
        from restoredrill.lab.guests.netns import LabNetwork
        from restoredrill.lab.guests.node import NodeSsh
        from restoredrill.lab.guests.runtime import NamespaceRuntime
        self.network = LabNetwork(bridge=self.isolated_bridge).create()
        work = self.base_dir / "guests"
        work.mkdir(mode=0o700, exist_ok=True)
        for node in self.nodes:     # one sshd per node; its guard reads that node's /etc/pve
            self.node_sshd[node] = NodeSsh(self.base_dir / "node-ssh" / node, work,
                                           self.pve_state.node_view(node)).start()
        return NamespaceRuntime(self.network, work, start_failure=self.faults.start_failure,
                                agent_silent=self.faults.agent_silent,
                                broken_services=self.faults.broken_services)

    def stop(self) -> None:
        """Servers, then task threads, guests and their network; then the double's files
        (unless ``keep_files``)."""
        for server in self.servers.values():
            server.stop()
        self.servers = {}
        for registry in self._task_registries:
            registry.stop()
        self._task_registries = []
        runtime = getattr(self, "runtime", None)
        if hasattr(runtime, "stop_all"):
            runtime.stop_all()
        for sshd in self.node_sshd.values():
            sshd.stop()
        self.node_sshd = {}
        if self.network is not None:
            self.network.destroy()
            self.network = None
        if not self.keep_files and self.base_dir.exists():
            for name in OWNED:
                target = self.base_dir / name
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                elif target.exists():
                    target.unlink()

    # --- what a client needs -----------------------------------------------------------
    @property
    def pve_url(self) -> str:
        return self.servers["pve"].url

    @property
    def pbs_url(self) -> str:
        return self.servers["pbs"].url

    @property
    def pve_port(self) -> int:
        return self.servers["pve"].port

    @property
    def pbs_port(self) -> int:
        return self.servers["pbs"].port

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the PVE certificate, upper-case hex pairs (as ``pvenode cert info``)."""
        return self.pve_identity.fingerprint(upper=True)

    @property
    def pbs_fingerprint(self) -> str:
        """SHA-256 of the PBS certificate, lower-case hex pairs (as PBS shows it)."""
        return self.pbs_identity.fingerprint(upper=False)

    @property
    def pve_ca_file(self) -> Path:
        return self.pve_identity.cert_file

    @property
    def pbs_ca_file(self) -> Path:
        return self.pbs_identity.cert_file

    @property
    def admin_token(self) -> TokenInfo:
        return _info(self.pve_admin)

    @property
    def drill_token(self) -> TokenInfo:
        return _info(self.pve_drill)

    @property
    def pbs_admin_token(self) -> TokenInfo:
        return _info(self.pbs_admin)

    @property
    def pbs_drill_token(self) -> TokenInfo:
        return _info(self.pbs_drill)

    @property
    def pbs_audit_token(self) -> TokenInfo:
        return _info(self.pbs_audit)

    @property
    def key_fingerprint(self) -> str:
        return self.crypt.fingerprint()

    @property
    def datastores(self) -> dict[str, Path]:
        return {name: store.root for name, store in self.stores.items()}

    @property
    def violations(self) -> list:
        """Schema departures seen in strict mode (requests, responses, unserved routes)."""
        return [v for server in self.servers.values() for v in server.violations]

    @property
    def served(self) -> dict[tuple[str, str, str], int]:
        return {(api, method, template): count for api, server in self.servers.items()
                for (method, template), count in server.served.items()}

    def endpoints(self) -> dict[str, Any]:
        """The served-lab contract (absolute paths)."""
        if not self.drill_tokens:
            return {"pve": {"url": self.pve_url, "node": self.node, "nodes": list(self.nodes),
                            "fingerprint": self.fingerprint},
                    "pbs": {"url": self.pbs_url, "fingerprint": self.pbs_fingerprint}}
        return {
            "pve": {"url": self.pve_url, "node": self.node, "nodes": list(self.nodes),
                    "token_id": self.pve_drill.authid,
                    "token_secret_file": str(self.pve_drill.secret_file),
                    "fingerprint": self.fingerprint, "isolated_bridge": self.isolated_bridge,
                    **self._guest_endpoints()},
            "pbs": {"url": self.pbs_url, "token_id": self.pbs_drill.authid,
                    "token_secret_file": str(self.pbs_drill.secret_file),
                    "fingerprint": self.pbs_fingerprint, "datastores": sorted(self.stores)},
        }

    def _guest_endpoints(self) -> dict[str, Any]:
        """Issue 5's additions: the nodes' SSH (pct exec; ``node_ssh`` is the first node's,
        ``node_ssh_by_node`` every node's), the runner namespace, guest SSH."""
        out: dict[str, Any] = {"guest_ssh": {"key_file": str(self.guest_access.key_file),
                                             "known_hosts_file": str(self.guest_access.known_hosts_file),
                                             "user": "root"}}
        if self.node_sshd:
            out["node_ssh"] = self.node_sshd[self.node].endpoint()
            out["node_ssh_by_node"] = {node: sshd.endpoint() for node, sshd in self.node_sshd.items()}
        if self.network is not None:
            out["drill_runner_netns"] = self.network.runner_ns
        return out

    def _write_endpoints(self) -> None:
        path = self.base_dir / "endpoints.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.endpoints(), handle, indent=2)

    def restore_stats(self) -> list:
        return list(self.restorer.stats)

    def threads(self) -> list[threading.Thread]:
        """Threads of this process that belong to a double (for leak checks)."""
        return [t for t in threading.enumerate()
                if t.name.startswith(("pve-api", "pbs-api", "task-"))]


def _info(token: ApiToken) -> TokenInfo:
    return TokenInfo(token.authid, token.secret_file)
