"""No object that holds a secret shows it: not in ``repr()``/``str()`` (what a traceback, a
log line, pytest's assertion rewriting or an f-string prints) and not in the exception of
a failing call.

Every dataclass of restoredrill with a field that sounds like a secret (token, password,
passphrase, url, key, ...) must be listed here: either built with a known secret and
checked, or named as holding none (with the reason). A new class fails
``test_every_secret_looking_dataclass_is_checked`` until it is added.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
import socket
import traceback
from pathlib import Path

import pytest

import restoredrill
from restoredrill.checks.monitoring import Monitor
from restoredrill.clients.kuma import KumaClient, KumaView
from restoredrill.clients.borg import BorgTarget
from restoredrill.clients.pbs import PbsClient
from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint, connect
from restoredrill.clients.s3 import ReadOnlyBucket, S3Settings
from restoredrill.execute import Result
from restoredrill.lab.proxmox.permissions import ApiToken
from restoredrill.notify.email import MailSettings
from restoredrill.notify.heartbeat import Heartbeat, HeartbeatError

SECRET = "s3cr3t-0f-the-drill-7c1e9a"
SECRETISH = re.compile(r"secret|token|passw|passphrase|url|credential|cookie|auth|(^|_)key$", re.IGNORECASE)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def endpoint(url: str = "https://pve.example:8006") -> Endpoint:
    return Endpoint(url, "drill@pve!restoredrill", SECRET, None)


def s3_settings() -> S3Settings:
    return S3Settings("lab-s3", f"http://127.0.0.1:{closed_port()}", "bucket", access_key=lambda: SECRET,
                      secret_key=lambda: SECRET)


# Objects built with SECRET inside; none may show it.
HOLDERS = {
    "Endpoint": lambda: endpoint(),
    "ApiChokePoint": lambda: ApiChokePoint(endpoint(), api=object()),
    "PbsClient": lambda: PbsClient(ApiChokePoint(endpoint(), api=object())),
    "Heartbeat (healthchecks)": lambda: Heartbeat(f"https://hc.example/ping/{SECRET}"),
    "Heartbeat (uptime kuma)": lambda: Heartbeat(f"https://kuma.example:3001/api/push/{SECRET}?status=up"),
    "S3Settings": s3_settings,
    "ReadOnlyBucket": lambda: ReadOnlyBucket(s3_settings()),
    "MailSettings": lambda: MailSettings("smtp.example", 587, "drill@example", ["ops@example"], "drill",
                                         password=lambda: SECRET),
    "BorgTarget": lambda: BorgTarget("app", "/srv/borg", Path("/tmp/borg-base"), passphrase=lambda: SECRET),
    "Result": lambda: Result(["borg", "list"], 2, f"out {SECRET}", "", 0.1, secrets=(SECRET,)),
    "ApiToken (lab)": lambda: ApiToken("drill@pve!t", SECRET, Path("/tmp/secret"), []),
    "Monitor (kuma push)": lambda: Monitor(7, "heartbeat", "push", push_token=SECRET),
    "KumaView": lambda: KumaView("http://127.0.0.1:3001", "2.0.0-dev.0",
                                 [Monitor(7, "heartbeat", "push", push_token=SECRET)], {1: "mail"}),
    "KumaClient": lambda: KumaClient("https://kuma.example:3001", "drill", SECRET),
}

# Dataclasses whose secret-sounding field holds no secret.
NO_SECRET = {
    "restoredrill.lab.proxmox.pve_service.PveService": "tokens is the TokenRegistry (its tokens' secrets are repr=False)",
    "restoredrill.checks.pbs_offsite.ChunkUse": "index_key is an S3 object key (a path)",
    "restoredrill.checks.postgres.psqllex.Statement": "tokens are the SQL lexer's (restored content, never printed)",
    "restoredrill.checks.pbs_offsite.LocalObject": "key is an S3 object key (a path)",
    "restoredrill.clients.s3.ObjectInfo": "key is an S3 object key (a path)",
    "restoredrill.lab.borg_history.LabRepo": "passphrase_file is a path",
    "restoredrill.lab.guests.image.GuestSpec": "a public key and a host key path",
    "restoredrill.lab.proxmox.double.TokenInfo": "token_id and the path of the secret file",
    "restoredrill.lab.proxmox.restore.RestoreRequest": "holds an ApiToken (checked above)",
    "restoredrill.lab.proxmox.routing.Call": "holds an ApiToken (checked above)",
    "restoredrill.lab.proxmox.tasks.Upid": "authid is a user and token name",
    "restoredrill.retention.model.Policy": "keep_* are counts",
}
CHECKED = {"restoredrill.clients.proxmox_api.Endpoint", "restoredrill.notify.heartbeat.Heartbeat",
           "restoredrill.clients.s3.S3Settings", "restoredrill.notify.email.MailSettings",
           "restoredrill.clients.borg.BorgTarget", "restoredrill.execute.Result",
           "restoredrill.lab.proxmox.permissions.ApiToken", "restoredrill.checks.monitoring.Monitor",
           "restoredrill.clients.kuma.KumaView"}


def shown(obj) -> list[str]:
    """Every way the object commonly gets printed."""
    return [repr(obj), str(obj), f"{obj}", f"{obj!r}", repr([obj]), str({"x": obj}), repr((obj,))]


def printed(exc: BaseException) -> str:
    """An exception as a log or a traceback shows it, with its chained causes."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


@pytest.mark.parametrize("name", sorted(HOLDERS))
def test_no_repr_or_str_shows_the_secret(name):
    obj = HOLDERS[name]()
    for text in shown(obj):
        assert SECRET not in text, f"{name} shows its secret: {text}"


def test_a_heartbeat_repr_still_says_where_it_pings():
    assert repr(Heartbeat(f"https://hc.example:8443/ping/{SECRET}")) == \
        "Heartbeat(url='https://hc.example:8443/***', timeout=10, attempts=2)"
    assert "token_id='drill@pve!restoredrill'" in repr(endpoint())


@pytest.mark.parametrize("url", [f"http://127.0.0.1:{{port}}/ping/{SECRET}",
                                 f"http://127.0.0.1:{{port}}/api/push/{SECRET}?status=up&msg=OK&ping="])
def test_a_failing_heartbeat_never_shows_its_token(url):
    beat = Heartbeat(url.format(port=closed_port()), timeout=2, attempts=1)
    for ping in (beat.start, lambda: beat.success("PASS"), lambda: beat.failure("FAIL")):
        try:
            ping()
        except HeartbeatError as exc:
            assert SECRET not in printed(exc)
            assert "127.0.0.1" in str(exc)
    assert all(SECRET not in text for text in shown(beat))


def test_a_failing_api_call_never_shows_the_token():
    api = ApiChokePoint(endpoint(f"https://127.0.0.1:{closed_port()}"))
    with pytest.raises(ApiError) as caught:
        api.call("get", "/version")
    assert "unreachable" in str(caught.value) and SECRET not in printed(caught.value)
    assert SECRET not in repr(api) and SECRET not in repr(api.endpoint)


@pytest.mark.parametrize("url", [f"https://root:{SECRET}@pve.example:8006", f"http://root:{SECRET}@pve.example"])
def test_credentials_in_an_api_url_are_refused_without_showing_them(url):
    with pytest.raises(ApiError, match="must not hold credentials") as caught:
        connect(endpoint(url))
    assert SECRET not in printed(caught.value)


def secret_looking_dataclasses() -> set[str]:
    found = set()
    for info in pkgutil.walk_packages(restoredrill.__path__, "restoredrill."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and obj.__module__ == module.__name__ and dataclasses.is_dataclass(obj) \
                    and any(SECRETISH.search(f.name) for f in dataclasses.fields(obj)):
                found.add(f"{obj.__module__}.{obj.__qualname__}")
    return found


def test_every_secret_looking_dataclass_is_checked():
    unlisted = secret_looking_dataclasses() - CHECKED - set(NO_SECRET)
    assert not unlisted, f"add these to HOLDERS (built with a secret) or NO_SECRET (with why): {sorted(unlisted)}"
