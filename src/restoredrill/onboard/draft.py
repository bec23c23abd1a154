"""The draft inventory: what the site says, and a ``TODO(init)`` comment on every decision
only a person can make. The draft is validated like ``check-inventory`` does before it is
written; it never writes over an existing file."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from restoredrill.clients.proxmox_api import clip
from restoredrill.onboard.borgmatic import RepoDraft
from restoredrill.onboard.discover import Site
from restoredrill.onboard.yamltext import emit

TODO = "TODO(init)"
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
KEEP_OPTIONS = ("keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly")
HEADER = f"""restoredrill inventory drafted by `restoredrill init`. Every line marked {TODO} is a
decision only a person can make; `restoredrill check-inventory` accepts this file as it
stands. Keys are documented in inventory/example-homelab.yaml (`restoredrill example-inventory`)."""


@dataclass
class ApiSource:
    url: str
    token_id: str
    secret_file: Path
    fingerprint: str | None


@dataclass
class Draft:
    data: dict[str, Any] = field(default_factory=dict)
    comments: dict[tuple, str] = field(default_factory=dict)
    facts: list[str] = field(default_factory=list)        # notes that are not at one key

    def todo(self, path: tuple, text: str) -> None:
        """A comment above ``path``; server text in it is bounded and shown escaped (clip), so
        an answer can neither add YAML lines nor repaint a terminal."""
        self.comments[path] = f"{TODO}: {clip(text, 600)}"

    def undecided(self) -> list[str]:
        """One line per decision left to a person, and per fact init could not settle."""
        lines = [f"{_dotted(path)}: {text.split(': ', 1)[1]}" for path, text in self.comments.items()
                 if text.startswith(TODO)]
        return lines + [clip(fact, 600) for fact in self.facts]

    def text(self) -> str:
        return emit(self.data, self.comments, HEADER)


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _name(text: object, taken: set[str], fallback: str) -> str:
    base = re.sub(r"[^a-z0-9_.-]+", "-", str(text or "").lower()).strip("-._")
    base = base[:63] if base and NAME.match(base) else fallback
    name, number = base, 2
    while name in taken:
        name, number = f"{base[:58]}-{number}", number + 1
    taken.add(name)
    return name


def build(site: Site, pve: ApiSource | None, pbs: ApiSource | None, repos: list[RepoDraft]) -> Draft:
    draft = Draft()
    host = urlsplit(pve.url).hostname if pve else (urlsplit(pbs.url).hostname if pbs else None)
    draft.data["version"] = 1
    named = host and not re.fullmatch(r"[\d.]+|\[?[0-9a-fA-F:]+\]?", host)
    draft.data["site"] = {"name": host.split(".")[0] if named else "my-site", "timezone": "UTC"}
    draft.todo(("site", "name"), "the site's name in reports")
    draft.todo(("site", "timezone"), "the site's IANA zone (PBS prunes in the server's zone, Borg in the "
                                     "client's), e.g. Europe/Berlin")
    draft.data["policies"] = {"retention": {}, "rpo": {"daily": {"max_age": "25h", "grace": "1h"}}}
    draft.todo(("policies", "rpo"), "how old may the newest backup be? daily = a nightly job plus grace")
    _scratch(draft, site)
    proxmox: dict[str, Any] = {}
    if pve:
        proxmox["pve"] = _endpoint(pve) | {"nodes": site.nodes}
    if pbs:
        proxmox["pbs"] = _endpoint(pbs) | {"datastores": _datastores(draft, site)}
    draft.data["proxmox"] = proxmox
    if not pve:
        draft.todo(("proxmox",), "no PVE was read (init --pve-url ...): the pbs drills need proxmox.pve")
    _guests(draft, site)
    _borg(draft, repos)
    draft.data["notifications"] = {"pve_targets": []}
    targets = sorted({str(t.get("name")) for t in site.pve_targets + site.pbs_targets if t.get("name")})
    if targets:
        draft.todo(("notifications", "pve_targets"), f"notification targets that must exist (found: "
                                                     f"{', '.join(targets)})")
    draft.facts += site.notes
    return draft


def _endpoint(source: ApiSource) -> dict[str, Any]:
    entry: dict[str, Any] = {"url": source.url, "token_id": source.token_id,
                             "token_secret": f"file:{source.secret_file}"}
    if source.fingerprint:
        entry["fingerprint"] = source.fingerprint
    return entry


def _free_range(used: set[int]) -> tuple[int, int]:
    first = 9900
    while any(first <= vmid <= first + 99 for vmid in used):
        first += 1000
    return first, first + 99


def _isolated(iface: dict[str, Any]) -> bool:
    return not any(iface.get(key) for key in ("bridge_ports", "ovs_ports", "address", "address6", "cidr",
                                              "cidr6", "gateway", "gateway6"))


def _scratch(draft: Draft, site: Site) -> None:
    used = {int(g["vmid"]) for g in site.guests if isinstance(g.get("vmid"), int)}
    low, high = _free_range(used)
    common = set.intersection(*(set(b) for b in site.bridges.values())) if site.bridges else set()
    isolated = sorted(b for b in common if all(_isolated(site.bridges[n][b]) for n in site.bridges))
    disks = [s for s in site.storages if s.get("type") != "pbs" and
             {"images", "rootdir"} & set(str(s.get("content", "")).split(","))]
    storage = str(disks[0]["storage"]) if disks else "local-zfs"
    draft.data["scratch"] = {"vmid_range": [low, high], "pool": "restoredrill", "tag": "restoredrill",
                             "bridge": isolated[0] if isolated else "vmbr-drill", "storage": storage}
    draft.todo(("scratch", "vmid_range"), f"VMIDs only the drills may use (no guest of the {len(used)} found "
                                          f"is in {low}-{high}); `restoredrill setup` creates the pool")
    draft.todo(("scratch", "bridge"), (f"bridge without uplink or address on every node: {isolated[0]}" if isolated
                                       else "no bridge without uplink and address is on every node: create "
                                            "vmbr-drill (no ports, no address) on each node"))
    names = ", ".join(str(s["storage"]) for s in disks) or "none found"
    draft.todo(("scratch", "storage"), f"storage scratch guests are restored onto (candidates: {names})")


def _pve_storage_for(site: Site, store: str) -> dict[str, Any] | None:
    return next((s for s in site.storages if s.get("type") == "pbs" and s.get("datastore") == store), None)


def _policy(job: dict[str, Any] | None, config: dict[str, Any]) -> dict[str, int]:
    source = job if job and any(k in job for k in KEEP_OPTIONS) else config
    return {k.replace("-", "_"): int(source[k]) for k in KEEP_OPTIONS if isinstance(source.get(k), int)}


def _datastores(draft: Draft, site: Site) -> list[dict[str, Any]]:
    out = []
    for number, store in enumerate(sorted(str(d.get("store")) for d in site.datastores if d.get("store"))):
        loc = ("proxmox", "pbs", "datastores", number)
        sync = next((j for j in site.jobs.get("sync", []) if j.get("store") == store), None)
        config = site.datastore_config.get(store, {})
        s3 = "type=s3" in str(config.get("backend", ""))
        pve_storage = _pve_storage_for(site, store)
        entry: dict[str, Any] = {"name": store, "role": "offsite" if sync or s3 else "local"}
        draft.todo((*loc, "role"), "local (fast rollback) or offsite: guessed from "
                                   + ("its sync job" if sync else "its S3 backend" if s3 else "no sync job feeding it"))
        if pve_storage:
            entry["pve_storage"] = pve_storage["storage"]
        namespace = (pve_storage or {}).get("namespace") or (sync or {}).get("ns")
        if namespace:
            entry["namespace"] = namespace
        prune = next((j for j in site.jobs.get("prune", []) if j.get("store") == store
                      and (j.get("ns") or None) == (namespace or None)), None)
        policy = _policy(prune, config)
        draft.data["policies"]["retention"][f"pbs-{store}"] = policy
        entry["retention"] = f"pbs-{store}"
        if not policy:
            draft.todo(("policies", "retention", f"pbs-{store}"), f"no prune job or keep-* on datastore {store}: "
                                                                 f"write the retention you intend")
        entry["rpo"] = "daily"
        if sync:
            entry["sync_job"] = sync.get("id")
        snapshots = site.snapshots.get((store, namespace or None), [])
        keys = {str(s.get("fingerprint")) for s in snapshots if s.get("fingerprint")}
        encrypted = bool(snapshots) and all(s.get("fingerprint") for s in snapshots)
        entry["encryption_required"] = encrypted
        if len(keys) == 1:
            entry["key_fingerprint"] = keys.pop()
        draft.todo((*loc, "encryption_required"), (
            f"every one of its {len(snapshots)} snapshots is encrypted: add key_escrow (where the key is kept "
            f"outside the site)" if encrypted else f"{sum(1 for s in snapshots if not s.get('fingerprint'))} of "
            f"its {len(snapshots)} snapshots are not client-side encrypted: true once every backup is"))
        if s3:
            draft.facts.append(f"datastore {store}: S3 backend ({config.get('backend')}); to read it without PBS "
                               f"declare it under offsite.s3 (read-only keys) and set backend: s3, s3_target")
        out.append(entry)
    if not out:
        draft.todo(("proxmox", "pbs", "datastores"), "the token saw no datastore (Datastore.Audit on /datastore)")
    return out


def _covered(site: Site) -> dict[int, str]:
    """vmid -> the PBS storage a vzdump job sends it to (pve-manager PVE/VZDump.pm get_included_guests)."""
    pbs = {s.get("storage") for s in site.storages if s.get("type") == "pbs"}
    found: dict[int, str] = {}
    for job in site.backup_jobs:
        if str(job.get("enabled", 1)) == "0" or job.get("storage") not in pbs:
            continue
        on_node = [g for g in site.guests if not job.get("node") or g.get("node") == job.get("node")]
        if job.get("all"):
            excluded = {int(v) for v in re.findall(r"\d+", str(job.get("exclude", "")))}
            members = [int(g["vmid"]) for g in on_node if int(g["vmid"]) not in excluded]
        elif job.get("pool"):
            members = [int(g["vmid"]) for g in on_node if g.get("pool") == job["pool"]]
        else:
            members = [int(v) for v in re.findall(r"\d+", str(job.get("vmid", "")))]
        for vmid in members:
            found.setdefault(vmid, str(job["storage"]))
    return found


def _guests(draft: Draft, site: Site) -> None:
    covered, taken, guests = _covered(site), set(), []
    for guest in sorted((g for g in site.guests if isinstance(g.get("vmid"), int)), key=lambda g: g["vmid"]):
        vmid, kind = guest["vmid"], guest.get("type")
        if kind not in ("qemu", "lxc"):
            continue
        loc = ("guests", len(guests))
        entry: dict[str, Any] = {"name": _name(guest.get("name"), taken, f"guest-{vmid}"), "vmid": vmid,
                                 "type": kind}
        if guest.get("node"):
            entry["node"] = guest["node"]
        facts = ", ".join(f"{k} {guest[k]}" for k in ("pool", "tags") if guest.get(k))
        if vmid in covered and not guest.get("template"):
            entry["strategy"] = "pbs"
            draft.todo((*loc, "health"), f"checks that prove {entry['name']} works after a restore (service, "
                                         f"port, http, sql, canary){'; ' + facts if facts else ''}")
            if kind == "lxc":       # no guest agent in a container: checks inside need pct (or ssh)
                entry["access"] = "none"
                draft.todo((*loc, "access"), f"{entry['name']} is a container: none proves only the restore "
                                             f"and the boot; for checks inside set pct and add "
                                             f"proxmox.pve.node_ssh (or ssh with scratch.guest_ssh)")
            entry["health"] = []
        else:
            entry["strategy"] = "none"
            why = "a template" if guest.get("template") else "in no enabled vzdump job to a PBS storage"
            entry["exception"] = f"{TODO}: {why}; say why it needs no backup, or back it up"
            draft.todo((*loc, "strategy"), f"{entry['name']} is {why}{'; ' + facts if facts else ''}: "
                                           f"pbs, config-export (a firewall) or none with a reason")
        guests.append(entry)
    draft.data["guests"] = guests


def _borg(draft: Draft, repos: list[RepoDraft]) -> None:
    taken: set[str] = set()
    boxes: dict[tuple, dict[str, Any]] = {}
    entries = []
    for repo in repos:
        entry = dict(repo.entry)
        old = entry["name"]
        entry["name"] = _name(old, taken, "repository")
        loc = ("borg", "repositories", len(entries))
        if repo.retention:
            policy = f"borgmatic-{entry['name']}"
            draft.data["policies"]["retention"][policy] = repo.retention
            entry["retention"] = policy
        if repo.ssh:
            key = (repo.ssh["host"], repo.ssh["port"], repo.ssh["user"])
            if key not in boxes:
                boxes[key] = _box(draft, repo.ssh, len(boxes), {b["name"] for b in boxes.values()})
            entry["storage_box"] = boxes[key]["name"]
        for key, text in repo.comments.items():
            draft.comments[(*loc, key)] = text
        if old != entry["name"] and str(entry.get("passphrase", "")).startswith("env:RESTOREDRILL_BORG_"):
            old_var, new_var = (f"RESTOREDRILL_BORG_PASSPHRASE_{re.sub(r'[^A-Z0-9]', '_', n.upper())}"
                                for n in (old, entry["name"]))       # the placeholder follows the unique name
            entry["passphrase"] = entry["passphrase"].replace(old_var, new_var)
            if (*loc, "passphrase") in draft.comments:
                draft.comments[(*loc, "passphrase")] = draft.comments[(*loc, "passphrase")].replace(old_var, new_var)
        draft.facts += [note for note in repo.notes if note not in draft.facts]
        entries.append(entry)
    draft.data["borg"] = {"repositories": entries}
    draft.data["offsite"] = {"s3": [], "storage_boxes": list(boxes.values())}
    draft.todo(("offsite", "s3"), "offsite copies in S3 (a PBS 4 datastore in a bucket): name, endpoint, bucket, "
                                  "store_prefix, read-only access_key/secret_key, rpo; on the datastore it holds "
                                  "set backend: s3 and s3_target: NAME")
    if not repos:
        draft.todo(("borg",), "no borgmatic configuration was read (--borgmatic FILE)")


def _box(draft: Draft, ssh: dict[str, Any], number: int, taken: set[str]) -> dict[str, Any]:
    loc = ("offsite", "storage_boxes", number)
    box = {"name": _name(ssh["name"], set(taken), "storage-box"), "host": ssh["host"], "port": ssh["port"],
           "user": ssh["user"], "key_file": ssh.get("key_file") or "/root/.ssh/id_ed25519",
           "known_hosts_file": ssh.get("known_hosts_file") or "/root/.ssh/known_hosts"}
    if not ssh.get("key_file"):
        draft.todo((*loc, "key_file"), "borgmatic's ssh_command names no key (-i): the key borg uses")
    if not ssh.get("known_hosts_file"):
        draft.todo((*loc, "known_hosts_file"), f"a known_hosts file pinning {ssh['host']}'s host key "
                                               f"(`ssh-keyscan -p {ssh['port']} {ssh['host']}`, checked by hand)")
    return box


def write_new(path: Path, text: str) -> None:
    """Create ``path`` (0600); an existing file is never written over (FileExistsError)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
