"""restoredrill: prove that backups restore.

Control flow in one sentence: the CLI (or pytest) loads and validates the
inventory, the plan picks the drills, the drills (pytest suites under drills/,
parametrized from the inventory) use the clients (one module per outside system)
through the fixtures, and the report turns the results into evidence.
"""
from pathlib import Path as _Path

__version__ = "0.1.0"

# In a source checkout (editable install) drills/ and fixtures/ sit at the top of the
# repository; in a wheel they are carried inside the package (hatch force-include).
_here = _Path(__file__).resolve().parent
if not (_here / "fixtures").is_dir() and (_here.parents[1] / "fixtures" / "__init__.py").is_file():
    __path__.append(str(_here.parents[1]))  # type: ignore[name-defined]  # noqa: F821


def _installed_or_checkout(name: str) -> _Path:
    packaged = _here / name
    return packaged if packaged.exists() else _here.parents[1] / name


def drills_dir() -> _Path:
    """Where the drill suites are, installed or in a checkout."""
    return _installed_or_checkout("drills")


def contrib_dir() -> _Path:
    """contrib/ (the pct forced-command guard, systemd units), installed or in a checkout."""
    return _installed_or_checkout("contrib")


def example_inventory() -> _Path:
    """inventory/example-homelab.yaml, which documents every key: in a wheel it is package data
    (restoredrill/inventory/example-homelab.yaml, hatch force-include), in a checkout at the top."""
    return _installed_or_checkout("inventory/example-homelab.yaml")
