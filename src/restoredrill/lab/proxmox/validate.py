"""Check request parameters and response data against a Proxmox JSON schema fragment.

The schema dialect is Proxmox's own (pve-common ``PVE::JSONSchema``, proxmox-schema for
PBS), not JSON Schema: ``optional: 1``, ``additionalProperties: 0``, ``format`` as a
named format or as a dict (a property string such as ``virtio=BC:24:..,bridge=vmbr0``),
parameter families written ``net[n]``, PBS patterns as ``/^...$/`` with POSIX classes.
``check_params`` turns the strings of a query or form body into typed values and
collects PVE-worded messages per parameter; ``check_value`` lists where a JSON value
(a response) departs from a ``returns`` schema. Named formats the double does not know
are not checked (listed in ``KNOWN_FORMATS``). Pure functions, no I/O.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
INTEGER_RE = re.compile(r"-?\d+")
NUMBER_RE = re.compile(r"-?(\d+|\d*\.\d+)([eE][+-]?\d+)?")
FAMILY_RE = re.compile(r"(.+)\[n\]")
UNKNOWN_PARAM = ("property is not defined in schema and the schema does not allow "
                 "additional properties")
MISSING_PARAM = "property is missing and it is not optional"


class ParamErrors(Exception):
    """Parameter verification failed; ``errors`` maps each parameter to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("Parameter verification failed.")
        self.errors = dict(errors)


@functools.lru_cache(maxsize=2048)
def compile_pattern(pattern: str) -> re.Pattern:
    """Perl/PBS regex text -> Python: ``/^..$/`` delimiters, ``(?^:``, POSIX cntrl class."""
    text = pattern[1:-1] if len(pattern) > 1 and pattern[0] == pattern[-1] == "/" else pattern
    text = (text.replace("[[:^cntrl:]]", r"[^\x00-\x1f\x7f]")
            .replace("[:cntrl:]", r"\x00-\x1f\x7f").replace("(?^:", "(?:"))
    return re.compile(text)


def _is_mac(value: str) -> bool:
    return re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", value) is not None and \
        not int(value[:2], 16) & 1


def _is_ip(value: str, version: int | None = None) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return version is None or address.version == version


def _is_cidr(value: str, version: int | None = None) -> bool:
    try:
        network = ipaddress.ip_interface(value)
    except ValueError:
        return False
    return "/" in value and (version is None or network.version == version)


_SIMPLE_FORMATS = {
    "pve-vmid": (lambda v: v.isdigit() and 100 <= int(v) <= 999999999,
                 "value does not look like a valid VM ID"),
    "pve-node": (lambda v: re.fullmatch(r"[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?", v),
                 "value does not look like a valid node name"),
    "pve-storage-id": (lambda v: re.fullmatch(r"[a-z][a-z0-9\-_.]*[a-z0-9]", v),
                       "storage ID contains illegal characters"),
    "pve-poolid": (lambda v: re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_\-]*", v),
                   "value does not look like a valid pool ID"),
    # pve-common: $CONFIGID_RE = qr/[a-z][a-z0-9_-]+/i (the built-in target is 'mail-to-root')
    "pve-configid": (lambda v: re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_-]+", v), "invalid configuration ID"),
    "pve-iface": (lambda v: re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_\-.]{1,20}", v),
                  "invalid network interface name"),
    "pve-bridge-id": (lambda v: re.fullmatch(r"[-_.\w\d]+", v), "invalid bridge name"),
    "dns-name": (lambda v: re.fullmatch(
        r"([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?", v),
        "value does not look like a valid DNS name"),
    "mac-addr": (_is_mac, "value does not look like a valid unicast MAC address"),
    "ipv4": (lambda v: _is_ip(v, 4), "value does not look like a valid IPv4 address"),
    "ipv6": (lambda v: _is_ip(v, 6), "value does not look like a valid IPv6 address"),
    "ip": (_is_ip, "value does not look like a valid IP address"),
    "CIDR": (_is_cidr, "value does not look like a valid CIDR network"),
    "CIDRv4": (lambda v: _is_cidr(v, 4), "value does not look like a valid IPv4 CIDR network"),
    "pve-ipv4-config": (lambda v: v in ("dhcp", "manual") or _is_cidr(v, 4),
                        "value does not look like a valid IPv4 network configuration"),
    "pve-ipv6-config": (lambda v: v in ("dhcp", "auto", "manual") or _is_cidr(v, 6),
                        "value does not look like a valid IPv6 network configuration"),
    "pve-tag-list": (lambda v: all(re.fullmatch(r"[a-z0-9_][a-z0-9_\-+.]*", t, re.I)
                                   for t in re.split(r"[;, ]+", v.strip()) if t),
                     "invalid tag list"),
    "pve-volume-id": (lambda v: re.fullmatch(r"[a-z][a-z0-9\-_.]*[a-z0-9]:.+", v),
                      "unable to parse volume ID"),
    "pve-storage-content": (lambda v: v in ("images", "rootdir", "vztmpl", "iso", "backup",
                                            "snippets", "import"), "invalid content type"),
    "disk-size": (lambda v: re.fullmatch(r"\d+(\.\d+)?[KMGT]?", v), "unable to parse size"),
}
_LIST_FORMATS = {"pve-configid-list": "pve-configid", "pve-vmid-list": "pve-vmid",
                 "pve-storage-content-list": "pve-storage-content",
                 "pve-storage-id-list": "pve-storage-id", "pve-node-list": "pve-node"}
KNOWN_FORMATS = tuple(_SIMPLE_FORMATS) + tuple(_LIST_FORMATS)


def check_named_format(name: str, value: str) -> str | None:
    """An error message when ``value`` breaks the named format; None if fine or unknown."""
    if name in _LIST_FORMATS:
        for item in (p for p in re.split(r"[;,\s\0]+", value) if p):
            problem = check_named_format(_LIST_FORMATS[name], item)
            if problem:
                return problem
        return None
    known = _SIMPLE_FORMATS.get(name)
    if known and not known[0](value):
        return f"{known[1]} ('{value}')" if name != "pve-configid" else \
            f"invalid configuration ID '{value}'"
    return None


def schema_for(properties: dict, name: str) -> dict | None:
    """The property schema of ``name``, also through families (``net0`` -> ``net[n]``)."""
    if name in properties:
        return properties[name]
    match = re.fullmatch(r"([a-z_\-]+?)(\d{1,3})", name)
    if match:
        return properties.get(f"{match.group(1)}[n]")
    return None


def coerce_scalar(schema: dict, value: Any) -> Any:
    """One request value (string, or a JSON scalar) -> typed, or raise ValueError(msg)."""
    kind = schema.get("type", "string")
    text = _as_text(value)
    if kind == "integer":
        if not INTEGER_RE.fullmatch(text):
            raise ValueError(f"type check ('integer') failed - got '{text}'")
        return _check_range(schema, int(text))
    if kind == "number":
        if not NUMBER_RE.fullmatch(text):
            raise ValueError(f"type check ('number') failed - got '{text}'")
        return _check_range(schema, float(text))
    if kind == "boolean":
        if text.lower() in TRUE_WORDS:
            return 1
        if text.lower() in FALSE_WORDS:
            return 0
        raise ValueError(f"type check ('boolean') failed - got '{text}'")
    if kind == "null":
        return None
    return check_string(schema, text)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise ValueError(f"type check failed - got a {type(value).__name__}")


def _check_range(schema: dict, number: float) -> float:
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    if minimum is not None and number < float(minimum):
        raise ValueError(f"value must have a minimum value of {minimum}")
    if maximum is not None and number > float(maximum):
        raise ValueError(f"value must have a maximum value of {maximum}")
    return number


def check_string(schema: dict, text: str) -> str:
    if "enum" in schema and text not in schema["enum"]:
        raise ValueError(f"value '{text}' does not have a value in the enumeration "
                         f"'{', '.join(map(str, schema['enum']))}'")
    if "maxLength" in schema and len(text) > int(schema["maxLength"]):
        raise ValueError(f"value may only be {schema['maxLength']} characters long")
    if "minLength" in schema and len(text) < int(schema["minLength"]):
        raise ValueError(f"value must be at least {schema['minLength']} characters long")
    if "pattern" in schema and not compile_pattern(schema["pattern"]).fullmatch(text):
        raise ValueError("value does not match the regex pattern")
    fmt = schema.get("format")
    if isinstance(fmt, str):
        problem = check_named_format(fmt, text)
        if problem:
            raise ValueError(f"invalid format - {problem}")
    elif isinstance(fmt, dict):
        parse_property_string(fmt, text)
    return text


def parse_property_string(fmt: dict, text: str) -> dict[str, Any]:
    """``model=virtio,bridge=vmbr0`` (or ``virtio=MAC,...``) -> dict, checked per key."""
    result: dict[str, Any] = {}
    default_key = next((k for k, s in fmt.items() if s.get("default_key")), None)
    for part in (p for p in text.split(",") if p):
        key, has_value, value = part.partition("=")
        if not has_value:
            if default_key is None or default_key in result:
                raise ValueError(f"invalid format - value without key, but schema does not "
                                 f"define a default key ('{part}')")
            key, value = default_key, part
        sub = fmt.get(key)
        if sub is None:
            raise ValueError(f"invalid format - unknown key '{key}' in '{text}'")
        if "alias" in sub:
            if "keyAlias" in sub:
                result[sub["keyAlias"]] = key
            key, sub = sub["alias"], fmt[sub["alias"]]
        if key in result:
            raise ValueError(f"invalid format - duplicate key '{key}' in '{text}'")
        try:
            result[key] = coerce_scalar(sub, value)
        except ValueError as exc:
            raise ValueError(f"invalid format - {key}: {exc}") from None
    for key, sub in fmt.items():
        if not sub.get("optional") and "alias" not in sub and key not in result:
            raise ValueError(f"invalid format - property '{key}' is missing in '{text}'")
    return result


def check_params(schema: dict, raw: dict[str, list[Any]]) -> dict[str, Any]:
    """Validate and type request parameters (each a list of received values).

    ``schema`` is a method's ``parameters`` object. Raises ParamErrors with every problem.
    """
    properties = schema.get("properties", {})
    allow_extra = schema.get("additionalProperties", 1) not in (0, False)
    errors: dict[str, str] = {}
    typed: dict[str, Any] = {}
    for name, values in raw.items():
        prop = schema_for(properties, name)
        if prop is None:
            if not allow_extra:
                errors[name] = UNKNOWN_PARAM
            continue
        try:
            typed[name] = _coerce_param(prop, values)
        except ValueError as exc:
            errors[name] = str(exc)
    for name, prop in properties.items():
        if "[n]" not in name and not prop.get("optional") and name not in raw \
                and "default" not in prop:
            errors.setdefault(name, MISSING_PARAM)
        requires = prop.get("requires")
        if isinstance(requires, str) and name in raw and requires not in raw:
            errors.setdefault(requires, f"missing property - '{name}' requires this property")
    if errors:
        raise ParamErrors(errors)
    return typed


def _coerce_param(prop: dict, values: list[Any]) -> Any:
    if prop.get("type") == "array":
        items = prop.get("items", {"type": "string"})
        flat = [v for value in values for v in (value if isinstance(value, list) else [value])]
        return [coerce_scalar(items, v) for v in flat]
    if len(values) != 1 or isinstance(values[0], (list, dict)):
        raise ValueError("type check failed - expected a single value")
    return coerce_scalar(prop, values[0])


def check_value(schema: dict | None, value: Any, where: str = "", *,
                booleans_as_ints: bool = True) -> list[str]:
    """Where a response value departs from a ``returns`` schema (empty list: it fits).

    PVE writes booleans as 0/1 (Perl); PBS as true/false (``booleans_as_ints=False``).
    """
    if not schema:
        return []
    kind = schema.get("type")
    label = where or "<data>"
    if value is None:
        return [] if kind in (None, "null", "any") else [f"{label}: null, schema says {kind}"]
    if kind == "null":
        return [f"{label}: {type(value).__name__} value, schema says null"]
    checker = _TYPE_CHECKS.get(kind)
    if checker is None:
        return []
    return checker(schema, value, label, booleans_as_ints)


def _check_object(schema, value, where, ints) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: {type(value).__name__}, schema says object"]
    problems, properties = [], schema.get("properties", {})
    for name, prop in properties.items():
        if name not in value and not prop.get("optional") and "[n]" not in name:
            problems.append(f"{where}.{name}: missing, schema says it is not optional")
    extra = schema.get("additionalProperties")
    for name, item in value.items():
        prop = schema_for(properties, name)
        if prop is not None:
            problems += check_value(prop, item, f"{where}.{name}", booleans_as_ints=ints)
        elif isinstance(extra, dict):
            problems += check_value(extra, item, f"{where}.{name}", booleans_as_ints=ints)
        elif extra not in (1, True) and properties:
            problems.append(f"{where}.{name}: not in schema")
    return problems


def _check_array(schema, value, where, ints) -> list[str]:
    if not isinstance(value, list):
        return [f"{where}: {type(value).__name__}, schema says array"]
    problems = []
    for position, item in enumerate(value):
        problems += check_value(schema.get("items"), item, f"{where}[{position}]",
                                booleans_as_ints=ints)
    return problems


def _check_scalar(schema, value, where, ints) -> list[str]:
    kind = schema.get("type")
    fits = {"integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "boolean": isinstance(value, bool) or (ints and value in (0, 1) and
                                                   not isinstance(value, float)),
            "string": isinstance(value, str)}[kind]
    if not fits:
        return [f"{where}: {value!r} is not of type {kind}"]
    try:
        if kind == "string":
            check_string(schema, value)
        elif kind in ("integer", "number"):
            _check_range(schema, value)
    except ValueError as exc:
        return [f"{where}: {exc}"]
    return []


_TYPE_CHECKS = {"object": _check_object, "array": _check_array, "integer": _check_scalar,
                "number": _check_scalar, "boolean": _check_scalar, "string": _check_scalar}
