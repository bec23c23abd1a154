"""How much of the official API schemas the double serves (issue 25): printed per API
(``pytest -s`` shows it; README "Tests" quotes it), and the reads monitoring clients make
(prometheus-pve-exporter, pvecontrol, pbs-exporter; tests/integration/test_outside_clients.py
runs them) all served. The counts need the schema files (../shared/api-schemas or
RESTOREDRILL_API_SCHEMAS); without them only the served side is counted."""
from __future__ import annotations

from types import SimpleNamespace

from restoredrill.lab.proxmox.pbs_routes import build_pbs_router
from restoredrill.lab.proxmox.pve_routes import build_pve_router
from restoredrill.lab.proxmox.schema import ApiSchemas

MONITORING_READS = {
    ("pve", "/version"), ("pve", "/cluster/status"), ("pve", "/cluster/resources"),
    ("pve", "/cluster/tasks"), ("pve", "/cluster/backup"), ("pve", "/cluster/backup-info/not-backed-up"),
    ("pve", "/cluster/ha/resources"), ("pve", "/cluster/ha/groups"), ("pve", "/cluster/ha/rules"),
    ("pve", "/cluster/ha/status/manager_status"), ("pve", "/cluster/config/qdevice"), ("pve", "/nodes"),
    ("pve", "/nodes/{node}/status"), ("pve", "/nodes/{node}/version"), ("pve", "/nodes/{node}/tasks"),
    ("pve", "/nodes/{node}/tasks/{upid}/status"), ("pve", "/nodes/{node}/tasks/{upid}/log"),
    ("pve", "/nodes/{node}/subscription"), ("pve", "/nodes/{node}/replication"),
    ("pve", "/nodes/{node}/network"), ("pve", "/nodes/{node}/storage"),
    ("pve", "/nodes/{node}/storage/{storage}/content"), ("pve", "/nodes/{node}/qemu"),
    ("pve", "/nodes/{node}/lxc"), ("pve", "/nodes/{node}/qemu/{vmid}/config"),
    ("pve", "/nodes/{node}/lxc/{vmid}/config"), ("pve", "/storage"), ("pve", "/storage/{storage}"),
    ("pve", "/access/acl"), ("pve", "/access/users"), ("pve", "/access/groups"), ("pve", "/access/roles"),
    ("pve", "/access/permissions"), ("pve", "/pools"),
    ("pbs", "/version"), ("pbs", "/admin/datastore"), ("pbs", "/nodes/{node}/status"),
    ("pbs", "/nodes/{node}/tasks"), ("pbs", "/admin/datastore/{store}/status")}


def served() -> set[tuple[str, str, str]]:
    service = SimpleNamespace(state=SimpleNamespace(pools_of=lambda vmid: []), version={"version": "9.1.1"})
    return {(router.api, route.method, route.template)
            for router in (build_pve_router(service), build_pbs_router(None)) for route in router.routes}


def coverage(schemas: ApiSchemas) -> dict[str, tuple[int, int]]:
    """api -> (methods served that the schema has, methods in the schema)."""
    mine = served()
    result = {}
    for api in ("pve", "pbs"):
        methods = {(api, method, path) for path, described in schemas.documents.get(api, {}).items()
                   for method in described}
        result[api] = (len(mine & methods), len(methods))
    return result


def test_monitoring_reads_are_served_and_coverage_is_printed(capsys):
    mine = served()
    missing = {(api, path) for api, path in MONITORING_READS if (api, "GET", path) not in mine}
    assert not missing, f"monitoring reads the double does not serve: {sorted(missing)}"
    schemas = ApiSchemas.load()
    with capsys.disabled():
        if not schemas.available:
            counts = {api: sum(1 for r in mine if r[0] == api) for api in ("pve", "pbs")}
            print(f"\nschema route coverage: schema files absent; served pve {counts['pve']}, "
                  f"pbs {counts['pbs']} methods")
            return
        numbers = coverage(schemas)
        print("\nschema route coverage: " + ", ".join(
            f"{api} {served_n}/{total} methods ({100 * served_n / total:.1f}%)"
            for api, (served_n, total) in numbers.items()))
    assert all(served_n == sum(1 for r in mine if r[0] == api) for api, (served_n, _) in numbers.items()), \
        "every served route is a schema method (test_proxmox_double_schema holds them equal)"
