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

from restoredrill.inventory.host_files import host_file_errors
from restoredrill.inventory.model import Inventory
from restoredrill.inventory.references import find_reference_errors
from restoredrill.inventory.suggest import did_you_mean, keys_at

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


def load_inventory(path: str | Path, *, check_files: bool = True) -> LoadedInventory:
    """Load and validate ``path``. ``check_files``: also check that every ``file:`` secret
    exists with a tight mode (stat only, never read); off for an inventory meant for another host."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(path, [f"{path}: file not found; pass the path of an inventory "
                                    f"(`restoredrill example-inventory` prints one that documents every key)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(path, [f"{path}: cannot be read: {exc}"]) from None
    return parse_inventory(text, path, check_files=check_files)


# The checked inventories of this process by (text, resolved path): one `restoredrill run` loads
# its inventory in the command, the listing started ahead, the preflight and the drills'
# plugin, 13 ms each (two YAML parses and the schema; issue 26). A text whose schema fails is
# not kept; the file checks (secret files' existence and mode: they may change) run every load.
_CHECKED: dict[tuple[str, str], tuple[Inventory, dict, list[str]]] = {}


def parse_inventory(text: str, path: Path, *, check_files: bool = False) -> LoadedInventory:
    resolved = path.resolve()
    checked = _CHECKED.get((text, str(resolved)))
    if checked is None:
        checked = _check_text(text, path)
        if len(_CHECKED) >= 8:
            _CHECKED.clear()
        _CHECKED[text, str(resolved)] = checked
    model, lines, problems = checked
    if check_files:
        problems = problems + [format_problem(path.name, lines, loc, msg)
                               for loc, msg in host_file_errors(model, resolved.parent)]
    if problems:
        raise InventoryError(path, problems)
    return LoadedInventory(model, resolved)


def _check_text(text: str, path: Path) -> tuple[Inventory, dict, list[str]]:
    """The YAML, schema and cross-reference checks of one inventory text: its model, the line
    of each key and the problems found; an InventoryError when the text has no model."""
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
    duplicates = [f"{name}:{line} {dotted(loc) or '(top)'}: {msg}" for loc, line, msg in duplicate_keys(root)]
    try:
        model = Inventory.model_validate(data)
    except ValidationError as exc:
        errors = one_union_member(exc.errors(), lines)
        raise InventoryError(path, duplicates + [format_problem(name, lines, tuple(err["loc"]), _message(err, lines))
                                                 for err in errors]) from None
    return model, lines, duplicates + [format_problem(name, lines, loc, msg) for loc, msg in find_reference_errors(model)]


def duplicate_keys(node: yaml.Node | None, loc: Loc = ()) -> list[tuple[Loc, int, str]]:
    """Keys given twice in one mapping: PyYAML keeps the last one silently, so the first is lost."""
    found: list[tuple[Loc, int, str]] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first and key != "<<":
                found.append(((*loc, key), line, f"key {key!r} is given twice in this mapping (lines "
                              f"{first[key]} and {line}); YAML keeps only the last, so the first is silently "
                              f"lost: keep one"))
            first.setdefault(key, line)
            found += duplicate_keys(value_node, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += duplicate_keys(item, (*loc, index))
    return found


def one_union_member(errors: list[dict[str, Any]], lines: dict[Loc, int]) -> list[dict[str, Any]]:
    """Where a value may take several shapes (an endpoint or a node mapping, a path or a mapping),
    pydantic reports every shape's errors; keep those of the shapes the value did have."""
    members: dict[Loc, dict[str, list[dict[str, Any]]]] = {}
    for err in errors:
        loc = tuple(err["loc"])
        at = _union_tag_at(loc, lines)
        if at is not None:
            members.setdefault(loc[:at], {}).setdefault(str(loc[at]), []).append(err)
    dropped: set[int] = set()
    for shapes in members.values():
        wrong = {tag for tag, errs in shapes.items() if any(e["type"].endswith("_type") for e in errs)}
        if len(shapes) > 1 and wrong != set(shapes):
            dropped |= {id(e) for tag in wrong for e in shapes[tag]}
    return [err for err in errors if id(err) not in dropped]


def _union_tag_at(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for index, part in enumerate(loc):
        if _is_tag(loc[:index], part, lines):
            return index
    return None


def _is_tag(prefix: Loc, part: str | int, lines: dict[Loc, int]) -> bool:
    """A pydantic union-member or validator tag ('SshEndpoint', 'dict[str,SshEndpoint]', 'str',
    'function-after[...]'), not a key of the file."""
    if not isinstance(part, str) or (*prefix, part) in lines:
        return False
    return part.startswith("function-") or part[:1].isupper() or "[" in part or part in ("str", "int", "float",
                                                                                           "bool", "none")


def _message(err: dict[str, Any], lines: dict[Loc, int] | None = None) -> str:
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err["type"] == "extra_forbidden":
        loc = _plain(tuple(err["loc"]), lines or {})
        hint = did_you_mean(str(loc[-1]), keys_at(Inventory, loc[:-1])) if loc else ""
        msg = (f"unknown key{hint or ' (a typo?)'}; `restoredrill example-inventory` prints every key with "
               f"its meaning")
    elif err["type"] == "greater_than_equal":
        msg = f"must be >= {err['ctx']['ge']}"
    elif err["type"] == "less_than_equal":
        msg = f"must be <= {err['ctx']['le']}"
    return msg


def _plain(loc: Loc, lines: dict[Loc, int]) -> Loc:
    """The key path without pydantic's validator and union-member tags."""
    kept: Loc = ()
    for part in loc:
        if not _is_tag(kept, part, lines):
            kept = (*kept, part)
    return kept


def format_problem(name: str, lines: dict[Loc, int], loc: Loc, message: str) -> str:
    loc = _plain(loc, lines)
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
