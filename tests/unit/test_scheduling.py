"""The scratch budgets as pure functions: who may run beside whom, and how many workers."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from restoredrill.scheduling import (MIB, Budget, Demand, admit, demand_of, first_free_vmid, guest_memory,
                                     human, never_fits, plan_waves, worker_count)

GIB = 1024 ** 3
BUDGET = Budget(max_parallel=2, max_memory=8 * GIB, max_disk=100 * GIB)


def demand(name: str, memory_gib: float = 1, disk_gib: float = 1) -> Demand:
    return Demand(name, int(memory_gib * GIB), int(disk_gib * GIB))


@pytest.mark.parametrize("config,expected", [
    ({"memory": "2048"}, 2048 * MIB), ({"memory": 4096}, 4096 * MIB), ({"memory": "current=1024"}, 1024 * MIB),
    ({}, 512 * MIB), ({"memory": ""}, 512 * MIB)])
def test_guest_memory_reads_the_backed_up_config(config, expected):
    assert guest_memory(config) == expected


def test_demand_of_takes_memory_from_the_config_and_disk_from_the_backup_size():
    assert demand_of("app-vm", {"memory": "1024", "cores": "2"}, 5 * GIB) == Demand("app-vm", GIB, 5 * GIB)


def test_budget_from_the_inventory_model():
    budgets = SimpleNamespace(max_parallel=3, max_memory=4 * GIB, max_disk=10 * GIB, max_run_time=None)
    assert Budget.from_inventory(budgets) == Budget(3, 4 * GIB, 10 * GIB)


def test_admit_within_every_limit():
    assert admit(BUDGET, [], demand("a", 4)) is None
    assert admit(BUDGET, [demand("a", 4)], demand("b", 4)) is None


def test_admit_refuses_over_max_parallel():
    reason = admit(BUDGET, [demand("a"), demand("b")], demand("c"))
    assert reason and "max_parallel is 2" in reason


def test_admit_refuses_over_memory_naming_the_key():
    reason = admit(BUDGET, [demand("a", 6)], demand("b", 3))
    assert reason and "max_memory" in reason and "9.0 GiB" in reason and "b" in reason


def test_admit_refuses_over_disk():
    reason = admit(BUDGET, [demand("a", 1, 60)], demand("b", 1, 50))
    assert reason and "max_disk" in reason


def test_limits_are_inclusive():
    assert admit(BUDGET, [demand("a", 4, 50)], demand("b", 4, 50)) is None


def test_never_fits_names_a_guest_too_big_for_the_whole_budget():
    assert never_fits(BUDGET, demand("big", 16)) == ("guest big needs 16.0 GiB of memory, more than "
                                                     "scratch.budgets.max_memory (8.0 GiB)")
    assert "max_disk" in never_fits(BUDGET, demand("huge", 1, 200))
    assert never_fits(BUDGET, demand("ok", 8, 100)) is None


def test_plan_waves_first_fit_in_order():
    guests = [demand("a", 6), demand("b", 3), demand("c", 2), demand("d", 1), demand("big", 9)]
    waves, refused = plan_waves(BUDGET, guests)
    assert [[d.guest for d in wave] for wave in waves] == [["a", "c"], ["b", "d"]]
    assert [(d.guest, "max_memory" in why) for d, why in refused] == [("big", True)]


def test_plan_waves_respects_max_parallel():
    waves, refused = plan_waves(Budget(1, 8 * GIB, 100 * GIB), [demand("a"), demand("b"), demand("c")])
    assert [len(wave) for wave in waves] == [1, 1, 1] and refused == []


def test_every_planned_wave_is_admissible():
    guests = [demand(f"g{i}", memory_gib=(i % 4) + 1, disk_gib=(i * 7) % 40) for i in range(20)]
    waves, _ = plan_waves(BUDGET, guests)
    for wave in waves:
        for position, member in enumerate(wave):
            assert admit(BUDGET, wave[:position], member) is None
    assert sorted(d.guest for wave in waves for d in wave) == sorted(d.guest for d in guests)


def test_first_free_vmid_skips_taken_and_reports_exhaustion():
    assert first_free_vmid(9900, 9999, []) == 9900
    assert first_free_vmid(9900, 9999, {9900, 9901, 9903}) == 9902
    assert first_free_vmid(9900, 9901, [9900, 9901]) is None


@pytest.mark.parametrize("requested,max_parallel,expected,noted", [
    (None, 2, 1, False), (0, 2, 1, False), (1, 2, 1, False), (2, 2, 2, False), (8, 2, 2, True), (4, 8, 4, False)])
def test_worker_count_is_capped_by_max_parallel(requested, max_parallel, expected, noted):
    workers, note = worker_count(requested, max_parallel)
    assert workers == expected and (note is not None) == noted
    if noted:
        assert "max_parallel" in note


def test_human_sizes():
    assert human(512) == "512 B" and human(3 * MIB // 2) == "1.5 MiB" and human(8 * GIB) == "8.0 GiB"
