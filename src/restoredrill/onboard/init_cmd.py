"""``restoredrill init``: read the site, write the draft, print what it could not decide.

Exit codes: 0 the draft was written; 1 an endpoint could not be read (nothing written);
2 usage (an option missing, the output file exists, a borgmatic file unreadable).
"""
from __future__ import annotations

import sys
from pathlib import Path

from restoredrill.clients.proxmox_api import ApiError, Endpoint
from restoredrill.inventory import InventoryError
from restoredrill.inventory.loader import parse_inventory
from restoredrill.onboard import borgmatic, discover
from restoredrill.onboard.draft import ApiSource, build, write_new


class InitUsage(ValueError):
    pass


def _source(args, api: str) -> ApiSource | None:
    url = getattr(args, f"{api}_url")
    token_id, secret_file = getattr(args, f"{api}_token_id"), getattr(args, f"{api}_token_secret_file")
    if url is None:
        if token_id or secret_file:
            raise InitUsage(f"--{api}-token-id/--{api}-token-secret-file need --{api}-url")
        return None
    if not token_id or not secret_file:
        raise InitUsage(f"--{api}-url needs --{api}-token-id USER@REALM!NAME and --{api}-token-secret-file FILE "
                        f"(a 0600 file holding only the token's secret; a read-only token is enough)")
    path = Path(secret_file).expanduser().resolve()
    if not path.is_file():
        raise InitUsage(f"--{api}-token-secret-file {secret_file}: no such file; write the token's secret into "
                        f"a 0600 file and pass its path")
    return ApiSource(url, token_id, path, getattr(args, f"{api}_fingerprint"))


def _endpoint(source: ApiSource, service: str) -> Endpoint:
    from restoredrill.secrets import SecretError, SecretRef
    try:
        secret = SecretRef.parse(f"file:{source.secret_file}").resolve()
    except SecretError as exc:
        raise InitUsage(str(exc)) from None
    return Endpoint(source.url, source.token_id, secret, source.fingerprint, service=service)


def run_init(args) -> int:
    out: Path = args.out
    if out.exists() or out.is_symlink():
        raise InitUsage(f"--out {out}: the file exists; init never writes over a file: pass a new path")
    if not out.parent.is_dir():
        raise InitUsage(f"--out {out}: folder {out.parent} does not exist")
    pve, pbs = _source(args, "pve"), _source(args, "pbs")
    repos = []
    try:
        for path in borgmatic.config_paths(args.borgmatic):
            repos += borgmatic.repository_drafts(path)
    except borgmatic.BorgmaticError as exc:
        raise InitUsage(str(exc)) from None
    site = discover.Site()
    try:
        if pve:
            discover.read_pve(_endpoint(pve, "PVE"), site)
        if pbs:
            discover.read_pbs(_endpoint(pbs, "PBS"), site)
    except ApiError as exc:
        print(f"restoredrill init: {exc}; nothing was written", file=sys.stderr)
        return 1
    draft = build(site, pve, pbs, repos)
    text = draft.text()
    try:
        parse_inventory(text, out)
    except InventoryError as exc:     # a defect of init: say so, write nothing
        print(f"restoredrill init: the draft does not validate (a defect of init; nothing was written):\n{exc}",
              file=sys.stderr)
        return 1
    try:
        write_new(out, text)
    except FileExistsError:
        raise InitUsage(f"--out {out}: the file appeared meanwhile; init never writes over a file") from None
    undecided = draft.undecided()
    print(f"{out}: draft inventory written ({len(draft.data['guests'])} guests, "
          f"{len(draft.data['borg']['repositories'])} Borg repositories); check-inventory accepts it.")
    print(f"What init could not decide ({len(undecided)}; marked TODO(init) in the file):")
    for line in undecided:
        print(f"  - {line}")
    return 0
