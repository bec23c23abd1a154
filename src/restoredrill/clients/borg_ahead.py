"""``borg list --json`` started ahead, while pytest starts (issue 26).

A Borg drill's first borg call is the listing (the archive to restore, the repository id and
encryption mode), and it waited for Python, the inventory and pytest to start: about 0.3 s of
every run. ``restoredrill run`` (one process, no workers) starts the listing of each local
repository once the inventory is loaded, in a thread; the drill takes it (:func:`listing`)
when it was made for the same target and is at most ``MAX_AGE`` old, else lists again. It is
the same read-only call the drill makes, moments earlier, except that it never waits for a
lock (``--lock-wait=0``): a listing ahead that failed for any reason is dropped and the drill
lists itself, waiting and failing as it always did. ssh:// repositories are left out (the
network dominates there, and a dead host would hold a connection for nothing); so are runs
with workers (each worker is its own process).
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from restoredrill.clients.borg import BorgClient, BorgTarget, Listing, resolve_binary

MAX_AGE = 60.0      # seconds from the listing's start to its use


@dataclass(frozen=True)
class _Ahead:
    started: float
    future: Future      # -> (Listing, the borg version the call logged)


_AHEAD: dict[tuple, _Ahead] = {}


def _key(target: BorgTarget) -> tuple:
    # the binary as BorgClient resolves it (it rewrites target.binary)
    return (target.name, target.location, str(target.base_dir), resolve_binary(target.binary), target.remote_path,
            target.rsh)


def _list(target: BorgTarget) -> tuple[Listing, tuple[int, ...] | None]:
    client = BorgClient(target)
    return client.list_repository(), client.seen_version


def start(targets: list[BorgTarget]):
    """List every local target in a thread; returns the function that waits for them all
    (call it before the run ends: no borg outlives it) and forgets what was not taken."""
    local = [t for t in targets if "://" not in t.location]
    if not local:
        return lambda: None
    pool = ThreadPoolExecutor(max_workers=min(4, len(local)), thread_name_prefix="borg-list-ahead")
    for target in local:
        _AHEAD[_key(target)] = _Ahead(time.monotonic(), pool.submit(_list, replace(target, lock_wait_seconds=0)))

    def finish() -> None:
        pool.shutdown(wait=True)
        for target in local:
            _AHEAD.pop(_key(target), None)
    return finish


def listing(client: BorgClient) -> Listing:
    """The listing started ahead for this client's target, else ``client.list_repository()``
    (also when the one ahead failed: a lock it did not wait for, a dead repository)."""
    ahead = _AHEAD.pop(_key(client.target), None)
    if ahead is None or time.monotonic() - ahead.started > MAX_AGE:
        return client.list_repository()
    try:
        found, version = ahead.future.result()
    except Exception:  # noqa: BLE001 - the drill's own call fails (or waits) as it would have
        return client.list_repository()
    if version is not None:
        client.seen_version = version       # what --show-version logged: no `borg --version` later
    return found
