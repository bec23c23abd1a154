"""Which copy a restore drill restores from (restore_from), the rotation over state.db's
history, and the per-run egress ledger that caps offsite restores."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from restoredrill.checks.restore_copy import (BackupCopy, CopyError, choose_copy, copies_of, egress_refusal,
                                              last_tested_by_copy)
from restoredrill.fixtures.pbs_copy import EgressLedger, history_rows, pick_copy
from restoredrill.inventory.loader import InventoryError, parse_inventory
from restoredrill.state import StateStore

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc)
LOCAL = BackupCopy("local", "pbs", "local")
OFFSITE = BackupCopy("offsite", "pbs-offsite", "offsite", "homelab", "lab-s3", 100)
COPIES = {"local": LOCAL, "offsite": OFFSITE}


def guest(restore_from="rotate", name="app-vm"):
    return SimpleNamespace(name=name, restore_from=restore_from)


def row(copy, when, outcome="passed", check="restore", drill="guest:app-vm"):
    evidence = {"copy": copy} if copy else {}
    return {"drill": drill, "check": check, "outcome": outcome, "run_started": when, "evidence": evidence}


def test_rotate_takes_the_least_recently_tested_copy_and_ties_go_local():
    assert choose_copy(guest(), COPIES, {})[0] is LOCAL                          # both never: local first
    assert choose_copy(guest(), COPIES, {"local": T0})[0] is OFFSITE             # offsite never tested
    chosen, why = choose_copy(guest(), COPIES, {"local": T0, "offsite": T0 - timedelta(days=1)})
    assert chosen is OFFSITE and "offsite 2026-11-30T03:00:00+00:00" in why and why.startswith("rotate")
    assert choose_copy(guest(), COPIES, {"local": T0 - timedelta(days=2), "offsite": T0})[0] is LOCAL
    assert choose_copy(guest(), {"local": LOCAL}, {"local": T0})[0] is LOCAL    # one copy only


def test_explicit_copy_and_a_missing_one():
    assert choose_copy(guest("offsite"), COPIES, {"offsite": T0})[0] is OFFSITE
    assert choose_copy(guest("local"), COPIES, {"local": T0 - timedelta(days=9)})[0] is LOCAL
    with pytest.raises(CopyError, match="restore_from offsite needs .* role offsite and pve_storage"):
        choose_copy(guest("offsite"), {"local": LOCAL}, {})


def test_a_pinned_snapshot_decides_the_copy_by_its_storage():
    assert choose_copy(guest(), COPIES, {}, pinned_storage="pbs-offsite")[0] is OFFSITE
    with pytest.raises(CopyError, match="'elsewhere' is no declared copy"):
        choose_copy(guest(), COPIES, {}, pinned_storage="elsewhere")


def test_history_only_counts_passing_restores_of_the_guest_and_old_rows_are_local():
    rows = [row(None, T0 - timedelta(days=5)),                       # before copies existed: local
            row("offsite", T0 - timedelta(days=4)),
            row("offsite", T0, outcome="failed"),                   # a failed restore tests nothing
            row("offsite", T0, check="webapp-running"),             # a health case is not the restore
            row("local", T0, drill="guest:app-ct")]                 # another guest
    assert last_tested_by_copy(rows, "app-vm") == {"local": T0 - timedelta(days=5),
                                                    "offsite": T0 - timedelta(days=4)}


def test_egress_refusal_names_the_budget_the_target_and_the_fix():
    assert egress_refusal(OFFSITE, 60, 40) is None
    assert egress_refusal(LOCAL, 10 ** 9, 0) is None                   # local restores cost no egress
    text = egress_refusal(OFFSITE, 61, 40)
    assert "61 bytes would pass the egress budget of S3 target lab-s3 (100 bytes per run, 40 already" in text
    assert "raise offsite.s3[].egress_budget" in text and "restore_from: local" in text


def test_the_ledger_shares_one_budget_per_run_and_target(tmp_path):
    ledger = EgressLedger(tmp_path / "state.db")
    assert ledger.take("run1", OFFSITE, "app-vm", 70) == (0, None)
    assert ledger.take("run1", OFFSITE, "app-vm", 70) == (0, None)     # the same guest again: replaced
    used, refusal = ledger.take("run1", OFFSITE, "app-ct", 31)
    assert used == 70 and "31 bytes would pass" in refusal
    assert ledger.take("run1", OFFSITE, "app-ct", 30) == (70, None)
    assert ledger.take("run2", OFFSITE, "app-ct", 100) == (0, None)    # a new run, a new budget
    assert ledger.take("run1", LOCAL, "app-ct", 10 ** 12) == (0, None)


INVENTORY = """
site: {name: lab, timezone: UTC}
policies: {retention: {r: {keep_last: 2}}}
proxmox:
  pbs:
    url: https://pbs:8007
    token_id: a@pbs!t
    token_secret: env:X
    datastores:
      - {name: local, role: local, pve_storage: pbs, retention: r}
      - {name: offsite, role: offsite, pve_storage: pbs-offsite, namespace: homelab, retention: r,
         backend: s3, s3_target: s3a}
offsite:
  s3:
    - {name: s3a, endpoint: "https://s3", bucket: b, store_prefix: offsite, access_key: env:A, secret_key: env:B}
guests:
  - {name: app-vm, vmid: 110, type: qemu, strategy: pbs, restore_from: RESTORE_FROM}
"""


def test_inventory_copies_and_the_rotation_over_state_db(tmp_path):
    loaded = parse_inventory(INVENTORY.replace("RESTORE_FROM", "rotate"), tmp_path / "i.yaml")
    copies = copies_of(loaded.model, lambda target: 5 if target == "s3a" else None)
    assert copies["offsite"] == BackupCopy("offsite", "pbs-offsite", "offsite", "homelab", "s3a", 5)
    state = StateStore(tmp_path / "state")
    vm = loaded.model.guests[0]
    assert pick_copy(vm, loaded.model, state)[0].copy == "local"
    state.start_run("r1", "", "")
    state.record_result("r1", "guest:app-vm", "restore", "passed", 1.0, {"copy": "local"})
    copy, why, _ = pick_copy(vm, loaded.model, state)
    assert copy.copy == "offsite" and copy.egress_budget == 1 << 30 and "offsite never" in why   # default 1GiB
    state.record_result("r1", "guest:app-vm", "restore", "passed", 1.0, {"copy": "offsite"})
    assert pick_copy(vm, loaded.model, state)[0].copy == "local"
    assert len(history_rows(state, "app-vm")) == 2


def test_restore_from_offsite_without_an_offsite_storage_is_an_inventory_error(tmp_path):
    parse_inventory(INVENTORY.replace("RESTORE_FROM", "offsite"), tmp_path / "i.yaml")     # valid
    text = INVENTORY.replace("RESTORE_FROM", "offsite").replace("pve_storage: pbs-offsite, ", "")
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, tmp_path / "i.yaml")
    assert any("guests[0].restore_from: restore_from offsite needs" in p for p in caught.value.problems), \
        caught.value.problems
    with pytest.raises(InventoryError) as caught:
        parse_inventory(INVENTORY.replace("RESTORE_FROM", "everywhere"), tmp_path / "i.yaml")
    assert any("restore_from" in p for p in caught.value.problems)
