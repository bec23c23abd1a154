"""The reference files beside the checkout (``../shared``: the JUnit XSD, the PVE/PBS API
schemas). CI links them there (.ci/run). A test that compares against them fails loudly,
naming the path, when they are missing: a comparison that did not happen is never a pass.
``RESTOREDRILL_WITHOUT_SHARED=1`` turns the failure into a skip that says what was not compared
(a clone without the reference files, on purpose)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

OPT_OUT = "RESTOREDRILL_WITHOUT_SHARED"
SHARED = Path(__file__).resolve().parents[2] / "shared"


def missing_shared(where: str, what: str) -> None:
    """Fail (or, with the opt-out, skip) because ``where`` is not there, so ``what`` was not done."""
    message = (f"{where} is missing, so {what}. Put the reference files beside the checkout (../shared, as "
               f".ci/run links them), or set {OPT_OUT}=1 to skip this comparison on purpose")
    if os.environ.get(OPT_OUT) == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def require_shared_file(path: Path, what: str) -> Path:
    if not path.is_file():
        missing_shared(str(path), what)
    return path
