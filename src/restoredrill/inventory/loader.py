"""Load an inventory file: YAML -> schema -> cross references, every error at once.

Errors carry the file, the line and the dotted path of the key, e.g.
``inventory.yaml:14 borg.repositories[1].retention.keep_daily: must be >= 0``.
Loading never resolves a secret and never runs a ``command:`` reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from restoredrill.inventory.model import Inventory
from restoredrill.inventory.references import find_reference_errors

Loc = tuple[str | int, ...]


class InventoryError(ValueError):
    """The inventory cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        body = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"inventory {path} is not valid ({count}); fix these and run "
                         f"`restoredrill check-inventory {path}` again:\n{body}")


@dataclass(frozen=True)
class LoadedInventory:
    model: Inventory
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve_path(self, value: str | None) -> Path | None:
        """A path from the inventory, relative ones taken from the inventory's folder."""
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)


def load_inventory(path: str | Path) -> LoadedInventory:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(path, [f"{path}: file not found; pass the path of an inventory "
                                    f"(see inventory/example-homelab.yaml)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(path, [f"{path}: cannot be read: {exc}"]) from None
    return parse_inventory(text, path)


def parse_inventory(text: str, path: Path) -> LoadedInventory:
    name = path.name
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        raise InventoryError(path, [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(data, dict):
        raise InventoryError(path, [f"{name}:1: the inventory must be a mapping with site, borg, ... at the top"])
    lines = line_index(root)
    try:
        model = Inventory.model_validate(data)
    except ValidationError as exc:
        raise InventoryError(path, [format_problem(name, lines, tuple(err["loc"]), _message(err))
                                    for err in exc.errors()]) from None
    problems = [format_problem(name, lines, loc, msg) for loc, msg in find_reference_errors(model)]
    if problems:
        raise InventoryError(path, problems)
    return LoadedInventory(model, path.resolve())


def _message(err: dict[str, Any]) -> str:
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err["type"] == "extra_forbidden":
        msg = "unknown key (a typo? see inventory/example-homelab.yaml for the keys)"
    elif err["type"] == "greater_than_equal":
        msg = f"must be >= {err['ctx']['ge']}"
    elif err["type"] == "less_than_equal":
        msg = f"must be <= {err['ctx']['le']}"
    return msg


def format_problem(name: str, lines: dict[Loc, int], loc: Loc, message: str) -> str:
    loc = tuple(part for part in loc if not (isinstance(part, str) and part.startswith("function-")))
    line = _nearest_line(lines, loc)
    where = f"{name}:{line}" if line else name
    return f"{where} {dotted(loc) or '(top)'}: {message}"


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _nearest_line(lines: dict[Loc, int], loc: Loc) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def line_index(node: yaml.Node | None, loc: Loc = ()) -> dict[Loc, int]:
    """Map every key path of a composed YAML document to its 1-based line."""
    lines: dict[Loc, int] = {}
    if node is None:
        return lines
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*loc, str(key_node.value))
            lines.update(line_index(value_node, key))
            lines[key] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(line_index(item, (*loc, index)))
    return lines
