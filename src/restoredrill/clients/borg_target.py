"""The :class:`BorgTarget` of an inventory's repository: location, BORG_BASE_DIR in the state
folder, passphrase reference, ssh command, backup windows. Apart from the fixtures, so that
``restoredrill run`` can list a repository ahead (clients/borg_ahead.py) without importing
them before pytest (which rewrites their assertions on import)."""
from __future__ import annotations

from pathlib import Path

from restoredrill.backup_window import Window, parse_start
from restoredrill.clients.borg import BorgTarget
from restoredrill.inventory.model import BorgRepository

SSH_ALIVE_INTERVAL = 15     # seconds between ssh keepalives to a remote repository's server
SSH_ALIVE_COUNT = 4         # unanswered keepalives before ssh gives up


def build_target(loaded, repo: BorgRepository, state_dir: Path) -> BorgTarget:
    inv = loaded.model
    rsh = None
    if repo.location.startswith("ssh://"):
        box = inv.storage_box(repo.storage_box)
        # absolute: borg extract runs ssh from inside the extract folder
        key = loaded.resolve_path(repo.ssh_key_file or box.key_file).absolute()
        known = loaded.resolve_path(box.known_hosts_file).absolute()
        # keepalives: a dead connection ends borg within about a minute instead of hanging
        # on a half-open TCP socket (the server side then sees EOF and releases the lock)
        rsh = (f"ssh -F none -i {key} -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes "
               f"-o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=20 "
               f"-o ServerAliveInterval={SSH_ALIVE_INTERVAL} -o ServerAliveCountMax={SSH_ALIVE_COUNT}")
    location = repo.location if "://" in repo.location else str(loaded.resolve_path(repo.location))
    passphrase = None
    if repo.passphrase is not None:
        ref = repo.passphrase
        passphrase = lambda: ref.resolve(base_dir=loaded.base_dir)  # noqa: E731
    return BorgTarget(name=repo.name, location=location, base_dir=state_dir / "borg" / repo.name,
                      passphrase=passphrase, rsh=rsh, lock_wait_seconds=int(repo.lock_wait.total_seconds()),
                      binary=repo.borg_binary, remote_path=repo.remote_path,
                      windows=backup_windows(repo, inv.site.timezone), window_margin=repo.window_margin)


def backup_windows(repo: BorgRepository, site_zone: str) -> tuple[Window, ...]:
    """The repository's backup windows in the zone of the machine that runs borg create
    (the window's own zone, else the prune zone, else the site's)."""
    return tuple(Window(parse_start(w.start), w.duration, w.timezone or repo.prune_timezone or site_zone)
                 for w in repo.backup_window)
