"""checks/cluster.py: quorum, offline members and HA-named VMIDs from /cluster/status and
/cluster/ha/resources answers (shapes as pve-manager PVE/API2/Cluster.pm ``get_status`` and
pve-ha-manager src/PVE/API2/HA/Resources.pm ``index`` give them)."""
from __future__ import annotations

from restoredrill.checks.cluster import ha_vmids, node_refusal, offline_nodes, quorum_refusal

CLUSTER = [{"type": "cluster", "id": "cluster", "name": "homelab", "nodes": 3, "quorate": 1, "version": 6},
           {"type": "node", "id": "node/pve1", "name": "pve1", "nodeid": 1, "online": 1, "local": 1},
           {"type": "node", "id": "node/pve2", "name": "pve2", "nodeid": 2, "online": 0, "local": 0},
           {"type": "node", "id": "node/pve3", "name": "pve3", "nodeid": 3, "online": 1, "local": 0}]


def test_a_quorate_cluster_takes_restores_on_online_members_only():
    assert quorum_refusal(CLUSTER) is None
    assert offline_nodes(CLUSTER) == ["pve2"]
    assert node_refusal(CLUSTER, "pve1") is None
    assert node_refusal(CLUSTER, "pve2") == "pve2: offline (/cluster/status online 0)"
    assert node_refusal(CLUSTER, "pve9") == "pve9: not a member of the cluster (/cluster/status)"


def test_no_quorum_refuses_and_names_the_offline_members():
    lost = [dict(CLUSTER[0], quorate=0), *CLUSTER[1:]]
    refusal = quorum_refusal(lost)
    assert refusal is not None and "homelab has no quorum" in refusal and "offline: pve2" in refusal
    assert "pvecm expected" in refusal


def test_a_standalone_node_is_always_quorate():
    alone = [{"type": "node", "id": "node/pve1", "name": "pve1", "nodeid": 0, "online": 1, "local": 1}]
    assert quorum_refusal(alone) is None and node_refusal(alone, "pve1") is None


def test_ha_resources_name_vmids_of_both_kinds_and_nothing_else():
    answer = [{"sid": "vm:9901", "type": "vm"}, {"sid": "ct:120", "type": "ct"}, {"sid": "vm:x"},
              {"sid": "vm:1 "}, "junk", {"type": "vm"}]
    assert ha_vmids(answer) == {9901, 120}


def test_hostile_names_never_reach_the_message():
    hostile = [{"type": "cluster", "name": "x\n\x1b[2Jrm -rf /", "quorate": 0},
               {"type": "node", "name": "pve2\nTASK OK", "online": 0},
               {"type": "node", "name": "a" * 500, "online": "0"}]
    refusal = quorum_refusal(hostile)
    assert refusal is not None and "\n" not in refusal and "\x1b" not in refusal
    assert "cluster ? has no quorum" in refusal and "offline: ?, ?" in refusal
