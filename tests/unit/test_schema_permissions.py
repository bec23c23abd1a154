"""The schema ``permissions`` interpreter (pure) and the in-code rules that stand in for the
schema when ../shared is absent (the coverage part always runs; the comparison with the
schema fails naming the missing folder, or skips with RESTOREDRILL_WITHOUT_SHARED=1)."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from restoredrill.lab.proxmox import homelab
from restoredrill.lab.proxmox.pbs_routes import build_pbs_router
from restoredrill.lab.proxmox.permissions import PermissionDenied, TokenRegistry, acl
from restoredrill.lab.proxmox.pve_routes import build_pve_router
from restoredrill.lab.proxmox.schema import ENV_VAR, REPO_ROOT, ApiSchemas
from restoredrill.lab.proxmox.schema_permissions import (IN_CODE, UNDECLARED, AclContext,
                                                         check_permissions, permissions_for)
from tests.shared_files import missing_shared

POOLS = AclContext(pools_of=lambda vmid: ["restoredrill"] if vmid >= 9900 else ["prod"])


@pytest.fixture
def token(tmp_path):
    return TokenRegistry("pve").create("u@pve!t", [acl("/", "Sys.Audit"),
                                                   acl("/pool/restoredrill", "VM.Audit")], tmp_path)


def denied(check, token, params=None, api="pve", path_params=None) -> str:
    with pytest.raises(PermissionDenied) as failed:
        check_permissions(api, check, token, params or {}, path_params or {}, POOLS)
    assert failed.value.status == 403
    return str(failed.value)


def test_pve_perm_names_path_and_first_missing_privilege(token):
    rule = {"check": ["perm", "/vms/{vmid}", ["VM.Audit", "VM.Console"]]}
    check_permissions("pve", {"check": ["perm", "/vms/{vmid}", ["VM.Audit"]]}, token, {},
                      {"vmid": "9901"}, POOLS)                      # via the pool
    assert denied(rule, token, path_params={"vmid": "9901"}) == \
        "Permission check failed (/vms/9901, VM.Console)"
    assert denied({"check": ["perm", "/storage/{storage}", ["A.B", "C.D"], "any", 1]}, token,
                  path_params={"storage": "pbs"}) == "Permission check failed (/storage/pbs, A.B|C.D)"
    assert denied({"check": ["perm", "/nodes/{node}", ["Sys.Modify"]]}, token) == \
        "Permission check failed (/nodes/-, Sys.Modify)"            # template_replace: '-'


def test_pve_and_or_user_and_root_only(token):
    assert denied({"check": ["or", ["perm", "/", ["Sys.Modify"]], ["perm", "/x", ["A.B"]]]},
                  token) == "Permission check failed"
    check_permissions("pve", {"check": ["or", ["perm", "/", ["Sys.Modify"]],
                                        ["perm", "/", ["Sys.Audit"]]]}, token, {}, {}, POOLS)
    assert denied({"check": ["and", ["perm", "/", ["Sys.Audit"]], ["perm", "/", ["X.Y"]]]},
                  token) == "Permission check failed (/, X.Y)"
    check_permissions("pve", {"user": "all", "description": "handler filters"}, token, {}, {},
                      POOLS)
    assert denied(None, token) == "Permission check failed (user != root@pam)"
    assert denied({"description": "only words"}, token) == "Permission check failed"
    assert denied({"check": ["perm", "/pool/{pool}", ["Sys.Audit"], "require_param", "pool"]},
                  token) == "Permission check failed"
    check_permissions("pve", {"check": ["userid-param", "self"]}, token, {"userid": "u@pve!t"},
                      {}, POOLS)


def test_pbs_privilege_partial_and_path_parameters(tmp_path):
    pbs = TokenRegistry("pbs").create("u@pbs!t", [acl("/datastore/local", "Datastore.Audit")],
                                      tmp_path)
    rule = {"check": {"path": ["datastore", "{store}"], "privs": ["Datastore.Audit",
                                                                   "Datastore.Backup"],
                      "partial": True}}
    check_permissions("pbs", rule, pbs, {}, {"store": "local"}, POOLS)
    assert denied(rule, pbs, api="pbs", path_params={"store": "offsite"}) == "permission check failed"
    assert denied(rule, pbs, api="pbs", params={"store": "local"}) == "permission check failed"
    assert denied({**rule, "check": {**rule["check"], "partial": False}}, pbs, api="pbs",
                  path_params={"store": "local"}) == "permission check failed"
    assert denied(None, pbs, api="pbs") == "permission check failed"        # Superuser
    check_permissions("pbs", {"or": [{"user": "root@pam"}, {"user": "all"}]}, pbs, {}, {}, POOLS)


def test_agent_rules_follow_the_release():
    schemas = ApiSchemas()
    path = "/nodes/{node}/qemu/{vmid}/agent/exec"
    assert permissions_for(schemas, "pve", "POST", path, (8, 4))["check"][2] == ["VM.Monitor"]
    assert permissions_for(schemas, "pve", "POST", path, (9, 1))["check"][2] == \
        ["VM.GuestAgent.Unrestricted"]


def served_routes():
    service = SimpleNamespace(state=SimpleNamespace(pools_of=lambda vmid: []),
                              version={"version": "9.1.1"})
    return [(router.api, route.method, route.template)
            for router in (build_pve_router(service), build_pbs_router(None))
            for route in router.routes]


def test_every_served_route_has_a_rule_without_the_schema_files():
    missing = [r for r in served_routes()
               if permissions_for(ApiSchemas(), *r) is UNDECLARED]
    assert not missing, f"add these routes' permissions to schema_permissions.IN_CODE: {missing}"


def schema_dir_text() -> str:
    configured = os.environ.get(ENV_VAR)
    return f"${ENV_VAR}={configured}" if configured else str(REPO_ROOT.parent / "shared" / "api-schemas")


def test_in_code_rules_equal_the_schema_where_it_is_present():
    schemas = ApiSchemas.load()
    if not schemas.available:          # a clone without ../shared: fail naming the place, never pass silently
        missing_shared(f"the API schema files ({schema_dir_text()})", "the in-code rules were not compared "
                       "with the schema")
    differ = []
    for key, rule in IN_CODE.items():
        described = schemas.method(key[0], key[2], key[1])
        if described is None:
            continue                   # reported: routes the schema lacks
        official = {k: v for k, v in (described.get("permissions") or {}).items()
                    if k != "description"}
        if official != rule:
            differ.append((key, official, rule))
    assert not differ, differ


def test_drill_token_holds_no_privilege_on_production_guests(tmp_path):
    drill = TokenRegistry("pve").create(homelab.PVE_DRILL_TOKEN, homelab.pve_drill_acl(), tmp_path)
    rule = {"check": ["perm", "/vms/{vmid}", ["VM.PowerMgmt"]]}
    assert denied(rule, drill, path_params={"vmid": "110"}) == \
        "Permission check failed (/vms/110, VM.PowerMgmt)"
    check_permissions("pve", rule, drill, {}, {"vmid": "9901"}, POOLS)
