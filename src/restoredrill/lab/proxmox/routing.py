"""Routes declared in code: method, path template (the schema's key), parameters.

Each handler is registered with the exact path template the official schema uses
(``/nodes/{node}/qemu/{vmid}/status/current``) and a declaration of its parameters in
the schema's own dialect, so the double validates requests the same way with or without
the schema files. A handler gets a ``Call`` and returns the ``data`` of the answer.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from restoredrill.lab.proxmox.permissions import ApiToken
from restoredrill.lab.proxmox.schema_permissions import AclContext


class ApiError(Exception):
    """An error answer: ``status``, upstream's message and optional per-parameter errors."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or {}


def param_error(param: str, message: str) -> ApiError:
    """``raise_param_exc``: 400 with the parameter named."""
    return ApiError(400, "Parameter verification failed.", {param: message})


@dataclass
class Call:
    """One authenticated, validated request as a handler sees it."""

    api: str
    method: str
    path: str
    template: str
    params: dict[str, Any]
    token: ApiToken
    attributes: dict[str, Any] = field(default_factory=dict)   # e.g. {"total": 12}

    @property
    def authid(self) -> str:
        return self.token.authid

    def get(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)


Handler = Callable[[Call], Any]


@dataclass(frozen=True)
class Route:
    api: str
    method: str
    template: str
    handler: Handler
    params: dict[str, Any]

    @property
    def parts(self) -> list[str]:
        return self.template.strip("/").split("/") if self.template != "/" else []


class Router:
    """Path templates -> handlers for one API (``pve`` or ``pbs``)."""

    def __init__(self, api: str):
        self.api = api
        self.routes: list[Route] = []
        self.acl = AclContext()    # guest pools and release for the central privilege check

    def route(self, method: str, template: str, params: dict[str, Any] | None = None):
        """Decorator: ``@router.route("GET", "/version", declare())``."""
        def register(handler: Handler) -> Handler:
            self.routes.append(Route(self.api, method, template, handler, params or declare()))
            return handler
        return register

    def find(self, method: str, segments: list[str]
             ) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path parameters, whether the path exists for some other method)."""
        best: tuple[int, Route, dict[str, str]] | None = None
        path_known = False
        for route in self.routes:
            bound = _bind(route.parts, segments)
            if bound is None:
                continue
            literal, values = bound
            if route.method != method:
                path_known = True
                continue
            if best is None or literal > best[0]:
                best = (literal, route, values)
        if best is None:
            return None, {}, path_known
        return best[1], best[2], True


def _bind(parts: list[str], segments: list[str]) -> tuple[int, dict[str, str]] | None:
    if len(parts) != len(segments):
        return None
    values, literal = {}, 0
    for part, segment in zip(parts, segments):
        if part.startswith("{") and part.endswith("}"):
            values[part[1:-1]] = segment
        elif part == segment:
            literal += 1
        else:
            return None
    return literal, values


# --- parameter declarations in the schema dialect --------------------------------------
def declare(properties: dict[str, dict] | None = None, **more: dict) -> dict[str, Any]:
    """A ``parameters`` object that allows no other parameters."""
    props = dict(properties or {})
    props.update({k.replace("_", "-"): v for k, v in more.items()})
    return {"additionalProperties": 0, "properties": props}


def optional(schema: dict, **extra: Any) -> dict:
    return {**schema, **extra, "optional": 1}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
NUMBER = {"type": "number"}
PVE_NODE = {"type": "string", "format": "pve-node"}
PVE_VMID = {"type": "integer", "format": "pve-vmid", "minimum": 100, "maximum": 999999999}
PVE_STORAGE = {"type": "string", "format": "pve-storage-id"}
PVE_POOL = {"type": "string", "format": "pve-poolid"}
PBS_NAME_PATTERN = r"/^(?:[A-Za-z0-9_][A-Za-z0-9._\-]*)$/"
PBS_NODE = {"type": "string",
            "pattern": r"/^(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?)$/"}
PBS_STORE = {"type": "string", "minLength": 3, "maxLength": 32, "pattern": PBS_NAME_PATTERN}
PBS_BACKUP_TYPE = {"type": "string", "enum": ["vm", "ct", "host"]}
PBS_BACKUP_ID = {"type": "string", "pattern": r"/^[A-Za-z0-9_][A-Za-z0-9._\-]*$/"}
PBS_NS = {"type": "string", "maxLength": 256, "pattern":
          r"/^(?:(?:(?:[A-Za-z0-9_][A-Za-z0-9._\-]*)/){0,7}(?:[A-Za-z0-9_][A-Za-z0-9._\-]*))?$/"}
PBS_UPID = {"type": "string", "minLength": 36, "pattern":
            r"/^UPID:(?P<node>[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):(?P<pid>[0-9A-Fa-f]{8}):"
            r"(?P<pstart>[0-9A-Fa-f]{8,9}):(?P<task_id>[0-9A-Fa-f]{8,16}):"
            r"(?P<starttime>[0-9A-Fa-f]{8}):(?P<wtype>[^:\s]+):(?P<wid>[^:\s]*):"
            r"(?P<authid>[^:\s]+):$/"}
