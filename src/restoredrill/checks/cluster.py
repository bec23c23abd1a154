"""Can the cluster take a restore, and on which node? Pure logic over what PVE answers.

Inputs: ``GET /cluster/status`` (pve-manager PVE/API2/Cluster.pm ``get_status``: one
``cluster`` item with ``quorate`` and one ``node`` item per member with ``online``; a node
that is in no cluster answers only its own ``node`` item, and is always quorate) and
``GET /cluster/ha/resources`` (pve-ha-manager src/PVE/API2/HA/Resources.pm ``index``:
``sid`` ``vm:N`` / ``ct:N``).

Without quorum /etc/pve is read-only and PVE refuses to create a guest (pve-cluster
src/PVE/Cluster.pm ``check_cfs_quorum``: "cluster not ready - no quorum?"), so a restore
cannot run anywhere: the preflight fails and names the members that are offline. A member
that is offline cannot take the restore (pveproxy cannot reach it: 595); the restore moves
to another node the inventory allows. An HA resource whose VMID lies in the scratch range
(left over from an old guest) would make the HA manager take over the scratch copy as soon
as it exists (start it, move it, restart it): such a VMID is never used for a scratch guest.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

HA_SID = re.compile(r"(?:vm|ct):(\d+)")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,62}")     # pve-node / cluster names; others shown as "?"


def _name(value: object) -> str:
    """A server-given name fit for a message (a hostile answer cannot inject text)."""
    text = str(value)
    return text if NAME.fullmatch(text) else "?"


def offline_nodes(status: Iterable[dict]) -> list[str]:
    """Members whose ``online`` is false, sorted."""
    return sorted(_name(item.get("name")) for item in status
                  if isinstance(item, dict) and item.get("type") == "node" and
                  not _true(item.get("online", 1)))


def quorum_refusal(status: list[dict]) -> str | None:
    """Why no restore can run (no quorum), or None."""
    cluster = next((item for item in status if isinstance(item, dict) and
                    item.get("type") == "cluster"), None)
    if cluster is None or _true(cluster.get("quorate", 0)):
        return None
    offline = offline_nodes(status)
    where = f"; offline: {', '.join(offline)}" if offline else ""
    return (f"cluster {_name(cluster.get('name', '?'))} has no quorum (/cluster/status quorate 0{where}): "
            "PVE refuses to create guests until quorum is back ('cluster not ready - no quorum?'). "
            "Bring the offline node(s) back or restore quorum (pvecm expected) and run the drill again")


def node_refusal(status: list[dict], node: str) -> str | None:
    """Why ``node`` cannot take a restore (not online, or not a member), or None."""
    members = {str(item.get("name")): item for item in status
               if isinstance(item, dict) and item.get("type") == "node"}
    if not members:
        return None
    if node not in members:
        return f"{node}: not a member of the cluster (/cluster/status)"
    if not _true(members[node].get("online", 1)):
        return f"{node}: offline (/cluster/status online 0)"
    return None


def ha_vmids(resources: Iterable[dict]) -> set[int]:
    """VMIDs of the guests HA manages (``sid`` ``vm:N`` / ``ct:N``)."""
    found = set()
    for item in resources:
        match = HA_SID.fullmatch(str(item.get("sid", ""))) if isinstance(item, dict) else None
        if match:
            found.add(int(match.group(1)))
    return found


def _true(value: object) -> bool:
    return value not in (0, "0", False, None, "")
