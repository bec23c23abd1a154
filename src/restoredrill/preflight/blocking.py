"""pytest plugin: the cases of an endpoint that failed preflight are blocked, not run.

``restoredrill run`` probes every endpoint first (``restoredrill.preflight``) and hands the
failed ones over as a JSON file (``-p restoredrill.preflight.blocking --preflight-blocked
FILE``; a file, so that pytest-xdist workers read it too). Each failed endpoint becomes ONE
failing case, ``preflight[KEY]``, whose message is the cause; every case that needs that
endpoint is skipped with "blocked by preflight: ..." (never run, never counted as passed). So
an inventory whose endpoints are all down reads as one failure per endpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from restoredrill.inventory.model import Guest
from restoredrill.preflight.run import by_address


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("restoredrill").addoption(
        "--preflight-blocked", metavar="FILE", help="JSON list of endpoints that failed preflight (restoredrill run)")


def needs(item: pytest.Item) -> list[str]:
    """The preflight keys (see preflight/run.py) of the endpoints a drill case uses."""
    marker = item.get_closest_marker("drill_kind")
    kind = marker.args[0] if marker else None
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec else {}
    keys: list[str] = []
    if kind == "borg" and params.get("borg_repo") is not None:
        keys.append(f"borg:{params['borg_repo'].name}")
    elif kind == "pbs":
        keys += ["pve", "pbs"]
        guests = [value for value in params.values() if isinstance(value, Guest)]
        if any(guest.access == "pct" for guest in guests):
            keys.append("node:")
        if any(by_address(guest) for guest in guests):
            keys.append("netns:")
    elif kind == "offsite":
        if params.get("s3_target") is not None:
            keys.append(f"s3:{params['s3_target'].name}")
            if getattr(item, "originalname", "") == "test_cross_copy":
                keys.append("pbs")
        if params.get("site_loss_guest") is not None:      # the site-loss drill: the bucket alone
            keys.append(f"s3:{params['site_loss_guest'].target.name}")
        if params.get("config_export") is not None:
            keys.append(f"box:{params['config_export'].storage_box}")
    elif kind == "monitoring":
        keys.append("kuma")
    elif kind == "lint":          # the key proofs: a Borg key against its repository, PBS snapshots' keys
        copy = params.get("escrowed_copy")
        if copy is not None and copy.label.startswith("borg:"):
            keys.append(copy.label)
        if params.get("escrowed_pbs_copy") is not None:
            keys.append("pbs")
    return keys


def blocked_by(item: pytest.Item, failed: list[dict]) -> list[dict]:
    """The failed endpoints the case needs, in the order it needs them."""
    return [endpoint for key in needs(item) for endpoint in failed
            if endpoint["key"] == key or (key.endswith(":") and endpoint["key"].startswith(key))]


class PreflightCase(pytest.Item):
    """The one failing case of an endpoint that failed preflight."""

    def __init__(self, *, endpoint: dict, **kwargs):
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.user_properties += [("drill", f"preflight:{endpoint['key']}"), ("check", "preflight"),
                                 ("endpoint", endpoint["where"])]

    def runtest(self) -> None:
        e = self.endpoint
        pytest.fail(f"{e['what']} ({e['where']}) cannot be used: {e['cause']}. The cases that need "
                    f"it were not run (skipped, blocked by this); fix this, then `restoredrill preflight` shows "
                    f"the endpoint OK", pytrace=False)

    def reportinfo(self):
        return self.path, None, self.name


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    path = config.getoption("preflight_blocked", None)
    if not path:
        return
    failed = json.loads(Path(path).read_text(encoding="utf-8"))
    if not failed:
        return
    blocking: list[dict] = []
    for item in items:
        endpoints = blocked_by(item, failed)
        if endpoints:
            first = endpoints[0]
            more = f" (and {len(endpoints) - 1} more endpoint(s))" if len(endpoints) > 1 else ""
            item.add_marker(pytest.mark.skip(reason=f"blocked by preflight: {first['what']} "
                                                    f"({first['where']}): {first['cause']}{more}"))
            blocking += [endpoint for endpoint in endpoints if endpoint not in blocking]
    # one failing case per failed endpoint that a selected case needs (-k may have left none)
    items[:0] = [PreflightCase.from_parent(session, name=f"preflight[{endpoint['key']}]", endpoint=endpoint)
                 for endpoint in failed if endpoint in blocking]
