"""Did-you-mean for the inventory: the close names and keys a typo most likely meant.

Used for unknown keys (the schema's fields at that place) and for every name reference
(policies, storage boxes, guests, repositories, datastores, nodes, S3 targets).
"""
from __future__ import annotations

import difflib
import sys
import typing
from collections.abc import Iterable

from pydantic import BaseModel


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""`` when none is close."""
    names = sorted({str(c) for c in candidates})
    close = difflib.get_close_matches(str(word), names, n=2, cutoff=0.6)
    if not close:
        lowered = {name.lower(): name for name in names}
        close = [lowered[str(word).lower()]] if str(word).lower() in lowered else []
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def unknown_name(what: str, name: str, candidates: Iterable[str], where: str) -> str:
    """One message for a name that names nothing: what, where it should be, the known names."""
    names = sorted(set(candidates))
    known = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "") if names else "none"
    return f"{what} {name!r} is not defined under {where}{did_you_mean(name, names)}; defined: {known}"


def keys_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> set[str]:
    """The keys the schema allows at ``loc`` (the parent of an unknown key)."""
    types: list[object] = [model]
    for part in loc:
        types = [inner for t in types for inner in _step(t, part)]
    return {name for t in types for name in _fields(t)}


def _models(annotation) -> list[object]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, dict):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _step(current, part) -> list[object]:
    if isinstance(current, type) and issubclass(current, BaseModel):
        field = current.model_fields.get(part) if isinstance(part, str) else None
        return _models(_resolved(field.annotation, current)) if field else []
    origin, args = typing.get_origin(current), typing.get_args(current)
    if origin is list and args:
        return _models(args[0])
    if origin is dict and len(args) == 2:
        return _models(args[1])
    return []


def _resolved(annotation, owner: type[BaseModel]):
    """A forward reference (a quoted annotation) evaluated in the module of its model."""
    for _ in range(3):
        if isinstance(annotation, typing.ForwardRef):
            annotation = annotation.__forward_arg__
        if not isinstance(annotation, str):
            return annotation
        annotation = eval(annotation, vars(sys.modules[owner.__module__]))  # noqa: S307 - our own schema
    return annotation


def _fields(t) -> set[str]:
    return set(t.model_fields) if isinstance(t, type) and issubclass(t, BaseModel) else set()
