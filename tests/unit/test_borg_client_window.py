"""The Borg client never bypasses a lock and never starts a lock-taking call into a backup window;
remote repositories get SSH keepalives."""
from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from restoredrill.fixtures.borg import backup_windows, build_target

from restoredrill.backup_window import Window
from restoredrill.clients.borg import FORBIDDEN_ARGS, BorgClient, BorgError, BorgTarget
from restoredrill.inventory.loader import parse_inventory


def target(tmp_path: Path, **changes) -> BorgTarget:
    return BorgTarget("r", str(tmp_path / "repo"), tmp_path / "base", binary="/bin/false", **changes)


@pytest.mark.parametrize("args", [["--bypass-lock"], ["--bypass-lock=1"], ["break-lock"], ["--repair"]])
def test_lock_bypassing_and_repairing_options_are_refused(args, tmp_path):
    assert "--bypass-lock" in FORBIDDEN_ARGS
    with pytest.raises(PermissionError, match="never bypasses or breaks"):
        BorgClient(target(tmp_path))._run("check", [*args, str(tmp_path)], timeout=5)


def test_no_borg_call_starts_inside_a_backup_window(tmp_path):
    now = datetime(2025, 6, 11, 0, 30, tzinfo=UTC)           # 02:30 in Berlin
    window = Window(time(2), timedelta(hours=2), "Europe/Berlin")
    client = BorgClient(target(tmp_path, windows=(window,), clock=lambda: now))
    with pytest.raises(BorgError) as refused:
        client.list_archives()
    assert "borg list would run into the backup window" in str(refused.value)
    assert "inside the backup window 02:00 Europe/Berlin for 2h" in str(refused.value)
    assert refused.value.repo == "r"


def test_a_far_window_lets_the_call_run(tmp_path):
    now = datetime(2025, 6, 11, 10, 0, tzinfo=UTC)
    window = Window(time(2), timedelta(hours=2), "Europe/Berlin")
    client = BorgClient(target(tmp_path, windows=(window,), clock=lambda: now))
    with pytest.raises(BorgError) as failed:                          # /bin/false ran: borg failed
        client.list_archives()
    assert "backup window" not in str(failed.value)


INVENTORY = """
version: 1
site: {name: t, timezone: Europe/Berlin}
offsite:
  storage_boxes:
    - {name: box, host: box.example.net, port: 23, user: u1, key_file: /k, known_hosts_file: /kh}
borg:
  repositories:
    - name: remote
      location: ssh://u1@box.example.net:23/./borg
      passphrase: env:NOT_RESOLVED_HERE
      storage_box: box
      prune_timezone: America/New_York
      backup_window: [{start: "02:00", duration: 2h}, {start: "14:00", duration: 30m, timezone: UTC}]
      window_margin: 20m
    - name: local
      location: /srv/borg
      encryption_required: false
"""


def test_remote_targets_get_keepalives_and_the_windows_in_the_backup_zone(tmp_path):
    loaded = parse_inventory(INVENTORY, tmp_path / "inventory.yaml")
    remote, local = loaded.model.borg.repositories
    built = build_target(loaded, remote, tmp_path)
    assert "-o ServerAliveInterval=15 -o ServerAliveCountMax=4" in built.rsh
    assert "-o StrictHostKeyChecking=yes" in built.rsh
    assert built.windows == (Window(time(2), timedelta(hours=2), "America/New_York"),
                             Window(time(14), timedelta(minutes=30), "UTC"))
    assert built.window_margin == timedelta(minutes=20)
    assert backup_windows(local, "Europe/Berlin") == ()
    assert build_target(loaded, local, tmp_path).rsh is None
