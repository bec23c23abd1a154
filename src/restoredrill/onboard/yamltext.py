"""YAML text with comments: a draft inventory a person reads and edits.

``emit(data, comments)`` writes mappings and lists in block style, two spaces per level,
scalars quoted by PyYAML (so the text loads back to ``data``), and puts each comment on
its own lines right above the key it belongs to. A comment is keyed by the key's path,
e.g. ``("guests", 2, "health")``.
"""
from __future__ import annotations

from typing import Any

import yaml

Path = tuple[str | int, ...]


def scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
    return text.removesuffix("\n...\n").rstrip("\n")


def _comment(lines: list[str], indent: str, text: str | None) -> None:
    if text:
        for line in text.splitlines():
            lines.append(f"{indent}# {line}".rstrip())


def _flat(value: Any) -> bool:
    return not isinstance(value, (dict, list)) or not value


def _emit(value: Any, path: Path, depth: int, comments: dict[Path, str], lines: list[str]) -> None:
    indent = "  " * depth
    if isinstance(value, dict):
        for key, item in value.items():
            _comment(lines, indent, comments.get((*path, key)))
            if _flat(item):
                lines.append(f"{indent}{scalar(key)}: {scalar(item)}")
            else:
                lines.append(f"{indent}{scalar(key)}:")
                _emit(item, (*path, key), depth + 1, comments, lines)
        return
    for number, item in enumerate(value):
        _comment(lines, indent, comments.get((*path, number)))
        if _flat(item):
            lines.append(f"{indent}- {scalar(item)}")
            continue
        inner: list[str] = []
        _emit(item, (*path, number), depth + 1, comments, inner)
        first = next(i for i, line in enumerate(inner) if not line.lstrip().startswith("#"))
        inner[first] = f"{indent}- {inner[first][len(indent) + 2:]}"
        lines.extend(inner)


def emit(data: dict[str, Any], comments: dict[Path, str] | None = None, header: str = "") -> str:
    lines: list[str] = []
    _comment(lines, "", header)
    _emit(data, (), 0, comments or {}, lines)
    return "\n".join(lines) + "\n"
