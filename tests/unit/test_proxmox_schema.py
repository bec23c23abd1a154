"""Schema file discovery and lookup, and route matching (synthetic schema files)."""
from __future__ import annotations

import json

from restoredrill.lab.proxmox import schema as schema_module
from restoredrill.lab.proxmox.routing import Router, declare
from restoredrill.lab.proxmox.schema import ENV_VAR, ApiSchemas, schema_dir

PVE = {"/nodes/{node}/qemu/{vmid}/status/current": {"GET": {"parameters": {}, "returns": {
    "type": "object"}}},
       "/nodes/{node}/qemu/{vmid}/status/{action}": {"GET": {}},
       "/nodes/{node}/qemu": {"GET": {"parameters": {"properties": {"full": {
           "type": "boolean", "optional": 1}}}}}}


def write_schemas(directory):
    (directory / "pve-api.json").write_text(json.dumps(PVE))
    (directory / "pbs-api.json").write_text(json.dumps({"/version": {"GET": {}}}))
    return directory


def test_directory_from_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(write_schemas(tmp_path)))
    assert schema_dir() == tmp_path
    loaded = ApiSchemas.load()
    assert loaded.available and loaded.source == tmp_path
    assert loaded.parameters("pve", "/nodes/{node}/qemu", "GET")["properties"]["full"]
    assert loaded.returns("pve", "/nodes/{node}/qemu/{vmid}/status/current", "GET") == {
        "type": "object"}
    assert loaded.method("pve", "/nodes/{node}/qemu", "POST") is None


def test_absent_files_mean_no_schema(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    assert schema_dir() is None
    assert not ApiSchemas.load().available


def test_default_location_is_beside_the_repository(monkeypatch, tmp_path):
    """Issue 20 §5: this test could not fail (``in (None, expected)``). Now the checkout is
    moved to a folder of the test's own: the files beside it are found, their absence is None."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(schema_module, "REPO_ROOT", tmp_path / "checkout")
    assert schema_dir() is None
    expected = tmp_path / "shared" / "api-schemas"
    expected.mkdir(parents=True)
    write_schemas(expected)
    assert schema_dir() == expected


def test_literal_segments_win_over_placeholders(tmp_path):
    loaded = ApiSchemas.load(write_schemas(tmp_path))
    assert loaded.match_path("pve", ["nodes", "pve1", "qemu", "100", "status", "current"]) == \
        "/nodes/{node}/qemu/{vmid}/status/current"
    assert loaded.match_path("pve", ["nodes", "pve1", "qemu", "100", "status", "stop"]) == \
        "/nodes/{node}/qemu/{vmid}/status/{action}"
    assert loaded.match_path("pve", ["nodes", "pve1", "lxc"]) is None


def test_router_binds_path_parameters_and_knows_other_methods():
    router = Router("pve")
    router.route("GET", "/nodes/{node}/qemu/{vmid}/config", declare())(lambda call: None)
    router.route("GET", "/nodes/{node}/qemu/{vmid}/{sub}", declare())(lambda call: None)
    route, values, _ = router.find("GET", ["nodes", "pve1", "qemu", "100", "config"])
    assert route.template == "/nodes/{node}/qemu/{vmid}/config"
    assert values == {"node": "pve1", "vmid": "100"}
    route, _values, known = router.find("PUT", ["nodes", "pve1", "qemu", "100", "config"])
    assert route is None and known
    assert router.find("GET", ["nodes", "pve1"])[0] is None
