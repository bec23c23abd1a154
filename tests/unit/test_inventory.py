"""Inventory: schema, every error with file:line and path at once, secret references."""
from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from restoredrill.inventory import InventoryError, load_inventory, parse_inventory
from restoredrill.inventory.model import Inventory

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example-homelab.yaml"


def parse(text: str):
    return parse_inventory(text, Path("inventory.yaml"))


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        parse(text)
    return info.value.problems


def test_example_homelab_is_valid_and_describes_the_homelab():
    inv = load_inventory(EXAMPLE, check_files=False).model
    names = {g.name: g for g in inv.guests}
    assert names["opnsense"].strategy == "config-export" and names["opnsense"].exception
    assert {d.role for d in inv.proxmox.pbs.datastores} == {"local", "offsite"}
    assert inv.policies.retention["pbs-local"].keep_last == 2
    offsite = inv.policies.retention["offsite"]
    assert (offsite.keep_daily, offsite.keep_weekly, offsite.keep_monthly, offsite.keep_yearly) == (7, 4, 12, 2)
    assert {r.name for r in inv.borg.repositories} == {"photos", "cloud"}
    assert inv.offsite.s3 and inv.offsite.storage_boxes and inv.offsite.config_exports
    assert inv.notifications.heartbeat_url is not None


def _field_names(model: type[BaseModel], seen=None) -> set[str]:
    seen = seen if seen is not None else set()
    names = set()
    if model in seen:
        return names
    seen.add(model)
    for name, field in model.model_fields.items():
        names.add(name)
        for arg in _models_in(field.annotation):
            names |= _field_names(arg, seen)
    return names


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def test_example_documents_every_key_of_the_schema():
    text = EXAMPLE.read_text()
    missing = sorted(name for name in _field_names(Inventory)
                     if not re.search(rf"^\s*(- )?{re.escape(name)}:", text, re.MULTILINE))
    assert missing == []


def test_every_problem_is_reported_at_once_with_line_and_path():
    text = """\
version: 1
site:
  name: lab
policies:
  retention:
    r: {keep_daily: 7}
borg:
  repositories:
    - name: a
      location: /tmp/a
      passphrase: file:/p
      retention: r
    - name: b
      location: /tmp/b
      passphrase: file:/p
      retention:
        keep_daily: -1
      lock_waitt: 5m
"""
    found = problems(text)
    assert any(p.startswith("inventory.yaml:16 borg.repositories[1].retention") for p in found), found
    assert any(p.startswith("inventory.yaml:18 borg.repositories[1].lock_waitt: unknown key") for p in found), found
    assert len(found) == 2


def test_negative_count_in_a_policy_names_line_and_bound():
    text = "site: {name: x}\npolicies:\n  retention:\n    r:\n      keep_daily: -1\n"
    assert problems(text) == ["inventory.yaml:5 policies.retention.r.keep_daily: must be >= 0"]


def test_inline_secret_is_refused():
    text = ("site: {name: x}\nborg:\n  repositories:\n    - name: a\n      location: /r\n"
            "      passphrase: hunter2\n")
    [problem] = problems(text)
    assert problem.startswith("inventory.yaml:6 borg.repositories[0].passphrase: must be a secret reference")
    assert "hunter2" not in problem


def test_references_to_undefined_policies_and_boxes():
    text = ("site: {name: x}\nborg:\n  repositories:\n    - name: a\n      location: ssh://u@h:22/./r\n"
            "      passphrase: env:P\n      retention: nope\n      rpo: never\n")
    found = problems(text)
    assert any("retention policy 'nope' is not defined" in p and p.startswith("inventory.yaml:7") for p in found)
    assert any("rpo policy 'never' is not defined" in p for p in found)
    assert any("needs storage_box" in p for p in found)


def test_duplicate_names_and_production_vmid_in_scratch_range():
    text = ("site: {name: x}\nscratch: {vmid_range: [100, 200]}\nguests:\n"
            "  - {name: a, vmid: 150, type: qemu, strategy: pbs}\n"
            "  - {name: a, vmid: 300, type: lxc, strategy: none, exception: config only}\n")
    found = problems(text)
    assert any("used 2 times" in p for p in found)
    assert any(p.startswith("inventory.yaml:4 guests[0].vmid") and "inside the scratch range" in p for p in found)
    bad = "site: {name: x}\nguests:\n  - {name: b, vmid: 300, type: lxc, strategy: none}\n"
    assert any("needs an exception" in p for p in problems(bad))


def test_bad_yaml_and_missing_file(tmp_path):
    assert problems("site: [unclosed\n")[0].startswith("inventory.yaml:")
    with pytest.raises(InventoryError, match="file not found"):
        load_inventory(tmp_path / "nope.yaml")
    assert "must be a mapping" in problems("- a\n- b\n")[0]


def test_unknown_time_zone_and_bad_duration():
    found = problems("site: {name: x, timezone: Mars/Olympus}\npolicies:\n  rpo:\n    d: {max_age: soon}\n")
    assert any("unknown time zone" in p for p in found)
    assert any("policies.rpo.d.max_age: must be a duration" in p for p in found)


def test_check_inventory_never_runs_command_references(tmp_path):
    marker = tmp_path / "ran"
    text = ("site: {name: x}\nborg:\n  repositories:\n    - name: a\n      location: /r\n"
            f"      passphrase: 'command:touch {marker}'\n")
    parse(text)
    assert not marker.exists()


def test_yaml_round_trip_of_example_keeps_its_values():
    data = yaml.safe_load(EXAMPLE.read_text())
    assert Inventory.model_validate(data) == load_inventory(EXAMPLE, check_files=False).model
