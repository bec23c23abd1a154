"""Request values that could reach the disk: refused unless plainly safe (pure)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from restoredrill.lab.proxmox.names import (UnsafeValue, backup_volume, check_backup_id,
                                            check_config_key, check_datastore, check_node,
                                            check_pool_id, check_storage_id, check_vmid,
                                            parse_backup_volid)


def test_backup_volids_round_trip():
    volume = parse_backup_volid("pbs:backup/vm/110/2024-05-01T02:00:03Z")
    assert (volume.storage, volume.backup_type, volume.backup_id) == ("pbs", "vm", "110")
    assert volume.backup_time == datetime(2024, 5, 1, 2, 0, 3, tzinfo=timezone.utc)
    assert backup_volume("pbs", "ct", "120", volume.epoch).volid == \
        "pbs:backup/ct/120/2024-05-01T02:00:03Z"


@pytest.mark.parametrize("volid", [
    "pbs:backup/vm/../../../etc/passwd", "pbs:backup/vm/110/../2024-05-01T02:00:03Z",
    "../pbs:backup/vm/110/2024-05-01T02:00:03Z", "pbs:backup/vm/.110/2024-05-01T02:00:03Z",
    "pbs:backup/vm/110/2024-05-01T02:00:03Z/../x", "pbs:/etc/passwd", "pbs", "",
    "pbs:backup/vm/110/2024-13-01T02:00:03Z", "PBS:backup/vm/110/2024-05-01T02:00:03Z",
    "pbs:backup/vm/110/2024-05-01T02:00:03Z\x00",
])
def test_unsafe_volids_are_refused_with_the_parameter_named(volid):
    with pytest.raises(UnsafeValue) as refused:
        parse_backup_volid(volid, "archive")
    assert refused.value.param == "archive"


@pytest.mark.parametrize("check, value", [
    (check_node, ".."), (check_node, "pve1/.."), (check_node, "-pve"), (check_node, ""),
    (check_vmid, "../100"), (check_vmid, "99"), (check_vmid, "1e3"), (check_vmid, -100),
    (check_storage_id, ".."), (check_storage_id, "pbs/../x"), (check_storage_id, "Local"),
    (check_pool_id, "../pool"), (check_datastore, ".."), (check_datastore, "a/b"),
    (check_datastore, "ab"), (check_backup_id, ".hidden"), (check_backup_id, "../110"),
    (check_config_key, "../net0"), (check_config_key, "net0;rm"),
])
def test_names_with_traversal_or_junk_are_refused(check, value):
    with pytest.raises(UnsafeValue):
        check(value)


def test_plain_names_pass():
    assert check_node("pve1") == "pve1" and check_vmid("9901") == 9901
    assert check_storage_id("local-zfs") == "local-zfs" and check_datastore("offsite")
    assert check_backup_id("110") == "110" and check_config_key("hostpci0") == "hostpci0"
