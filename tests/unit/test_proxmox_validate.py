"""Parameter and response checks in the Proxmox schema dialect (pure)."""
from __future__ import annotations

import pytest

from restoredrill.lab.proxmox.validate import (MISSING_PARAM, UNKNOWN_PARAM, ParamErrors,
                                               check_params, check_value, compile_pattern,
                                               parse_property_string)

PARAMS = {"additionalProperties": 0, "properties": {
    "vmid": {"type": "integer", "format": "pve-vmid", "minimum": 100, "maximum": 999999999},
    "purge": {"type": "boolean", "optional": 1},
    "type": {"type": "string", "enum": ["vm", "storage"], "optional": 1},
    "net[n]": {"type": "string", "optional": 1},
    "unique": {"type": "boolean", "optional": 1, "requires": "archive"},
    "archive": {"type": "string", "optional": 1},
    "command": {"type": "array", "items": {"type": "string"}, "optional": 1},
}}
NET_FORMAT = {
    "model": {"type": "string", "default_key": 1, "enum": ["virtio", "e1000"]},
    "virtio": {"alias": "macaddr", "keyAlias": "model"},
    "e1000": {"alias": "macaddr", "keyAlias": "model"},
    "macaddr": {"type": "string", "format": "mac-addr", "optional": 1},
    "bridge": {"type": "string", "optional": 1},
    "link_down": {"type": "boolean", "optional": 1},
}


def errors_of(raw: dict) -> dict:
    with pytest.raises(ParamErrors) as caught:
        check_params(PARAMS, raw)
    return caught.value.errors


def test_values_are_typed_like_pve():
    typed = check_params(PARAMS, {"vmid": ["9901"], "purge": ["yes"], "net0": ["virtio"],
                                  "command": ["ls", "-l"]})
    assert typed == {"vmid": 9901, "purge": 1, "net0": "virtio", "command": ["ls", "-l"]}
    assert check_params(PARAMS, {"vmid": [9901], "purge": [False]})["purge"] == 0


def test_every_problem_is_reported_with_pve_wording():
    assert errors_of({"vmid": ["x9"], "purge": ["maybe"], "type": ["pool"], "foo": ["1"]}) == {
        "vmid": "type check ('integer') failed - got 'x9'",
        "purge": "type check ('boolean') failed - got 'maybe'",
        "type": "value 'pool' does not have a value in the enumeration 'vm, storage'",
        "foo": UNKNOWN_PARAM}
    assert errors_of({}) == {"vmid": MISSING_PARAM}
    assert errors_of({"vmid": ["99"]}) == {"vmid": "value must have a minimum value of 100"}
    assert errors_of({"vmid": ["100"], "unique": ["1"]}) == {
        "archive": "missing property - 'unique' requires this property"}


def test_absent_additional_properties_means_allowed():
    assert check_params({"properties": {}}, {"anything": ["1"]}) == {}


def test_property_strings_follow_aliases_and_default_keys():
    assert parse_property_string(NET_FORMAT, "virtio=BC:24:11:00:00:01,bridge=vmbr0") == {
        "model": "virtio", "macaddr": "BC:24:11:00:00:01", "bridge": "vmbr0"}
    assert parse_property_string(NET_FORMAT, "e1000,link_down=1") == {"model": "e1000",
                                                                     "link_down": 1}
    for bad, words in (("virtio,colour=red", "unknown key 'colour'"),
                       ("virtio=01:00:00:00:00:00", "unicast MAC"),
                       ("bridge=vmbr0", "property 'model' is missing")):
        with pytest.raises(ValueError, match=words):
            parse_property_string(NET_FORMAT, bad)


def test_pbs_patterns_with_delimiters_and_posix_classes():
    assert compile_pattern("/^(?:[A-Za-z0-9_][A-Za-z0-9._\\-]*)$/").fullmatch("vm_110")
    assert not compile_pattern("/^(?:[A-Za-z0-9_][A-Za-z0-9._\\-]*)$/").fullmatch("../110")
    printable = compile_pattern("/^[[:^cntrl:]]*$/")
    assert printable.fullmatch("a comment") and not printable.fullmatch("bad\nline")
    assert compile_pattern("(?^:\\d+(?:;\\d+)*)").fullmatch("1;2;3")


def test_responses_are_checked_against_returns():
    schema = {"type": "array", "items": {"type": "object", "properties": {
        "vmid": {"type": "integer"}, "protected": {"type": "boolean", "optional": 1},
        "name": {"type": "string", "optional": 1}}}}
    assert check_value(schema, [{"vmid": 100, "protected": 1}]) == []
    assert check_value(schema, [{"vmid": 100, "protected": 1}], booleans_as_ints=False) == [
        "<data>[0].protected: 1 is not of type boolean"]
    assert check_value(schema, [{"name": "x", "extra": 1}]) == [
        "<data>[0].vmid: missing, schema says it is not optional",
        "<data>[0].extra: not in schema"]
    assert check_value({"type": "null"}, [1]) == ["<data>: list value, schema says null"]
    assert check_value({"type": "integer"}, "101") == ["<data>: '101' is not of type integer"]
