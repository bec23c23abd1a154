"""The official API schemas (reference data read in place, never copied) and their lookup.

``/work/shared/api-schemas/{pve,pbs}-api.json`` are one object keyed by path template,
then by HTTP method. Their directory comes from ``RESTOREDRILL_API_SCHEMAS`` or
``<repo root>/../shared/api-schemas``; a fresh clone has neither, and then
``ApiSchemas.available`` is False and the double validates parameters from the
declarations its routes carry in code (same dialect, see ``validate``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_VAR = "RESTOREDRILL_API_SCHEMAS"
FILES = {"pve": "pve-api.json", "pbs": "pbs-api.json"}
REPO_ROOT = Path(__file__).resolve().parents[4]


def schema_dir() -> Path | None:
    """Where the schema files are, or None when this checkout has no ../shared."""
    configured = os.environ.get(ENV_VAR)
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "api-schemas"
    if all((candidate / name).is_file() for name in FILES.values()):
        return candidate
    return None


@dataclass
class ApiSchemas:
    """Both schema documents, or none; ``source`` says which directory they came from."""

    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: Path | None = None

    @classmethod
    def load(cls, directory: Path | None = None) -> ApiSchemas:
        directory = directory or schema_dir()
        if directory is None:
            return cls()
        documents = {api: json.loads((directory / name).read_text(encoding="utf-8"))
                     for api, name in FILES.items()}
        return cls(documents, directory)

    @property
    def available(self) -> bool:
        return bool(self.documents)

    def has_path(self, api: str, template: str) -> bool:
        return template in self.documents.get(api, {})

    def method(self, api: str, template: str, method: str) -> dict[str, Any] | None:
        """The method description (parameters, returns, permissions) or None."""
        return self.documents.get(api, {}).get(template, {}).get(method)

    def parameters(self, api: str, template: str, method: str) -> dict[str, Any] | None:
        described = self.method(api, template, method)
        return None if described is None else described.get("parameters", {})

    def returns(self, api: str, template: str, method: str) -> dict[str, Any] | None:
        described = self.method(api, template, method)
        return None if described is None else described.get("returns")

    def match_path(self, api: str, segments: list[str]) -> str | None:
        """The schema template a concrete path falls under (literal segments first)."""
        best: tuple[int, str] | None = None
        for template in self.documents.get(api, {}):
            parts = template.strip("/").split("/") if template != "/" else []
            if len(parts) != len(segments):
                continue
            literal = 0
            for part, segment in zip(parts, segments):
                if part.startswith("{"):
                    continue
                if part != segment:
                    break
                literal += 1
            else:
                if best is None or literal > best[0]:
                    best = (literal, template)
        return best[1] if best else None
