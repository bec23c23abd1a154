"""``restoredrill setup``: the drill users, tokens, roles, pool and ACLs of an inventory.

Without ``--apply`` it prints the ``pveum`` and ``proxmox-backup-manager`` commands; with
``--apply`` it sends the same steps as the equivalent API calls (pve-access-control
src/PVE/API2/User.pm, Role.pm, ACL.pm, pve-manager PVE/API2/Pool.pm; proxmox-backup
src/api2/access/user.rs, acl.rs) with an admin token read once from its file and never
stored. A new token's secret is written only to the 0600 file the inventory's
``token_secret: file:PATH`` names (never printed). A user, role or pool that exists is
reused (a role's privileges are set to exactly the table's); a token that exists stops the
run (its secret cannot be read back).

Exit codes: 0 printed or applied; 1 an API call failed (what was applied is listed);
2 usage (options, a secret reference that is not file:, a secret file that exists).
"""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint
from restoredrill.inventory import LoadedInventory
from restoredrill.onboard import privileges as privs
from restoredrill.waiting import RetryPolicy

COMMENT = "restoredrill restore drills (API token only; no password)"


class SetupUsage(ValueError):
    pass


@dataclass
class Step:
    api: str
    method: str
    path: str
    params: dict[str, Any]
    command: str
    exists: Step | None = None          # what to send instead when the object exists (None: reuse it)
    secret_to: Path | None = None       # a token: where its secret goes
    fatal_exists: bool = False          # a token that exists cannot be reused


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def q(*words: str) -> str:
    return " ".join(shlex.quote(str(w)) for w in words)


def _secret_path(loaded: LoadedInventory, ref) -> Path | None:
    if ref is None or ref.scheme != "file":
        return None
    return loaded.resolve_path(ref.target)


def pve_steps(loaded: LoadedInventory, major: int, mappings: tuple[str, ...], plan: Plan) -> None:
    pve = loaded.model.proxmox.pve
    user, _, name = pve.token_id.partition("!")
    pool = loaded.model.scratch.pool
    plan.steps.append(Step("pve", "post", "/access/users", {"userid": user, "comment": COMMENT},
                           q("pveum", "user", "add", user, "--comment", COMMENT)))
    plan.steps.append(Step("pve", "post", f"/access/users/{user}/token/{name}", {"privsep": 1, "comment": COMMENT},
                           q("pveum", "user", "token", "add", user, name, "--privsep", "1", "--comment", COMMENT),
                           secret_to=_secret_path(loaded, pve.token_secret), fatal_exists=True))
    plan.steps.append(Step("pve", "post", "/pools", {"poolid": pool, "comment": "restoredrill scratch guests only"},
                           q("pveum", "pool", "add", pool, "--comment", "restoredrill scratch guests only")))
    for role in privs.pve_roles(loaded.model, major, mappings):
        text = ",".join(role.privs)
        update = Step("pve", "put", f"/access/roles/{role.name}", {"privs": text},
                      q("pveum", "role", "modify", role.name, "--privs", text))
        plan.steps.append(Step("pve", "post", "/access/roles", {"roleid": role.name, "privs": text},
                               q("pveum", "role", "add", role.name, "--privs", text), exists=update))
        for path in role.paths:
            plan.steps.append(Step("pve", "put", "/access/acl", {
                "path": path, "roles": role.name, "users": user, "tokens": pve.token_id, "propagate": 1},
                q("pveum", "acl", "modify", path, "--roles", role.name, "--users", user, "--tokens",
                  pve.token_id, "--propagate", "1")))


def pbs_steps(loaded: LoadedInventory, plan: Plan) -> None:
    pbs = loaded.model.proxmox.pbs
    user, _, name = pbs.token_id.partition("!")
    plan.steps.append(Step("pbs", "post", "/access/users", {"userid": user, "comment": COMMENT},
                           q("proxmox-backup-manager", "user", "create", user, "--comment", COMMENT)))
    plan.steps.append(Step("pbs", "post", f"/access/users/{user}/token/{name}", {"comment": COMMENT},
                           q("proxmox-backup-manager", "user", "generate-token", user, name),
                           secret_to=_secret_path(loaded, pbs.token_secret), fatal_exists=True))
    for role in privs.pbs_roles(loaded.model):
        for path in role.paths:
            for auth_id in (user, pbs.token_id):      # a token holds what both it and its user hold
                plan.steps.append(Step("pbs", "put", "/access/acl", {
                    "path": path, "role": role.name, "auth-id": auth_id, "propagate": 1},
                    q("proxmox-backup-manager", "acl", "update", path, role.name, "--auth-id", auth_id)))
        extra = privs.PBS_EXTRA.get(role.name)
        if extra:
            plan.notes.append(f"PBS has no custom roles: {role.name} on {', '.join(role.paths)} also gives "
                              f"{', '.join(extra)} beyond the table (pbs-api-types src/acl.rs)")


def admin_endpoint(args, loaded: LoadedInventory, api: str) -> Endpoint | None:
    token_id = getattr(args, f"{api}_admin_token_id")
    secret_file = getattr(args, f"{api}_admin_token_secret_file")
    target = getattr(loaded.model.proxmox, api)
    if not token_id and not secret_file:
        return None
    if not token_id or not secret_file:
        raise SetupUsage(f"--{api}-admin-token-id and --{api}-admin-token-secret-file go together")
    if target is None:
        raise SetupUsage(f"--{api}-admin-token-id given but the inventory has no proxmox.{api}")
    from restoredrill.secrets import SecretError, SecretRef
    try:
        secret = SecretRef.parse(f"file:{Path(secret_file).expanduser().resolve()}").resolve()
    except SecretError as exc:
        raise SetupUsage(str(exc)) from None
    return Endpoint(target.url, token_id, secret, target.fingerprint, target.verify_tls,
                    service=api.upper())


def read_pve(endpoint: Endpoint, loaded: LoadedInventory) -> tuple[int, tuple[str, ...]]:
    """The PVE major release and the mappings the inventory's PBS guests use (their configs)."""
    api = ApiChokePoint(endpoint, retry=RetryPolicy(attempts=2))
    version = api.call("get", "/version")
    major = int(str(version.get("version", "9")).split(".")[0]) if isinstance(version, dict) else 9
    nodes = {r.get("vmid"): r.get("node") for r in api.call("get", "/cluster/resources", type="vm") or []
             if isinstance(r, dict)}
    found: list[str] = []
    for guest in loaded.model.guests:
        node = nodes.get(guest.vmid) or guest.node
        if guest.strategy != "pbs" or not node:
            continue
        config = api.call("get", f"/nodes/{node}/{guest.type}/{guest.vmid}/config")
        found += privs.mapping_paths(config if isinstance(config, dict) else {})
    return major, tuple(sorted(set(found)))


def build_plan(loaded: LoadedInventory, pve_admin: Endpoint | None) -> Plan:
    plan = Plan()
    inv = loaded.model
    if inv.proxmox.pve:
        if pve_admin:
            major, mappings = read_pve(pve_admin, loaded)
        else:
            major, mappings = 9, ()
            plan.notes.append("PVE 8: VM.Monitor instead of VM.GuestAgent.Unrestricted in RestoreDrill.Scratch; "
                              "a backed-up VM with mapped devices (hostpciN/usbN mapping=NAME, virtiofsN) needs "
                              "Mapping.Use on /mapping/pci|usb|dir/NAME (role RestoreDrill.Mapping): pass "
                              "--pve-admin-token-id/--pve-admin-token-secret-file and setup reads both itself")
        pve_steps(loaded, major, mappings, plan)
    if inv.proxmox.pbs:
        pbs_steps(loaded, plan)
    if not plan.steps:
        raise SetupUsage(f"{loaded.path}: no proxmox.pve or proxmox.pbs: setup has nothing to create")
    return plan


def print_plan(plan: Plan, out=None) -> None:
    out = out or sys.stdout
    for api, where in (("pve", "on a PVE node, as root"), ("pbs", "on the PBS, as root")):
        steps = [s for s in plan.steps if s.api == api]
        if not steps:
            continue
        print(f"# {api.upper()}: run {where}", file=out)
        for step in steps:
            print(step.command, file=out)
            if step.secret_to is not None:
                print(f"#   ^ prints the token's secret once: store it in {step.secret_to} (chmod 600)", file=out)
            elif step.secret_to is None and step.fatal_exists:
                print("#   ^ prints the token's secret once: store it where the inventory's token_secret points",
                      file=out)
            if step.exists is not None:
                print(f"#   (if the role exists: {step.exists.command})", file=out)
    for note in plan.notes:
        print(f"# note: {note}", file=out)


def _exists(exc: ApiError) -> bool:
    return "already exists" in str(exc)


def apply_plan(plan: Plan, admins: dict[str, Endpoint]) -> int:
    missing = [api for api in ("pve", "pbs") if api not in admins and any(s.api == api for s in plan.steps)]
    if missing:
        raise SetupUsage(f"--apply needs --{missing[0]}-admin-token-id and --{missing[0]}-admin-token-secret-file "
                         f"(a token that may create users, roles and ACLs; it is read once and never stored)")
    for step in plan.steps:
        if step.fatal_exists and step.secret_to is None:
            raise SetupUsage(f"--apply writes the new {step.api.upper()} token's secret to the file the inventory's "
                             f"proxmox.{step.api}.token_secret names: make it file:PATH (a file that does not exist yet)")
        if step.secret_to is not None and (step.secret_to.exists() or not step.secret_to.parent.is_dir()):
            raise SetupUsage(f"{step.secret_to}: the token secret file exists already or its folder is missing; "
                             f"--apply never writes over a secret: remove it (and the old token) or name a new file")
    apis = {api: ApiChokePoint(endpoint, retry=RetryPolicy(attempts=1)) for api, endpoint in admins.items()}
    done: list[str] = []
    for step in plan.steps:
        try:
            answer = apis[step.api].call(step.method, step.path, **step.params)
        except ApiError as exc:
            if _exists(exc) and not step.fatal_exists:
                if step.exists is None:
                    done.append(f"{step.command}  (exists: reused)")
                    continue
                try:
                    apis[step.api].call(step.exists.method, step.exists.path, **step.exists.params)
                except ApiError as again:
                    return _failed(done, step.exists, again)
                done.append(f"{step.exists.command}  (it existed)")
                continue
            return _failed(done, step, exc)
        if step.secret_to is not None:
            value = answer.get("value") if isinstance(answer, dict) else None
            if not isinstance(value, str) or not value:
                return _failed(done, step, ApiError("the answer holds no token secret ('value')"))
            _write_secret(step.secret_to, value)
        done.append(step.command)
    print(f"applied {len(done)} step(s):")
    for line in done:
        print(f"  {line}")
    for note in plan.notes:
        print(f"note: {note}")
    return 0


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")


def _failed(done: list[str], step: Step, exc: ApiError) -> int:
    print(f"restoredrill setup: {step.command} failed: {exc}", file=sys.stderr)
    print(f"applied before it ({len(done)}): " + ("; ".join(done) or "nothing"), file=sys.stderr)
    print("fix the cause and run setup --apply again (users, roles and the pool are reused; a token that "
          "exists must be removed first: pveum user token remove / proxmox-backup-manager user delete-token)",
          file=sys.stderr)
    return 1


def run_setup(args, loaded: LoadedInventory) -> int:
    admins = {api: e for api in ("pve", "pbs") if (e := admin_endpoint(args, loaded, api)) is not None}
    try:
        plan = build_plan(loaded, admins.get("pve"))
        if not args.apply:
            print_plan(plan)
            return 0
        return apply_plan(plan, admins)
    except ApiError as exc:
        print(f"restoredrill setup: {exc}", file=sys.stderr)
        return 1
