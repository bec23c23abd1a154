"""PVE and PBS: TCP, TLS (presented fingerprint against the pin), token, privileges per path.

Manual equivalents: ``pvesh get /version``, ``pveum user token permissions USER TOKEN --path P``
(PVE ``GET /access/permissions``, pve-access-control API2/AccessControl.pm) and
``proxmox-backup-manager user permissions AUTHID --path P`` (PBS ``GET /access/permissions``).
"""
from __future__ import annotations

import re

from restoredrill.clients.pbs import PbsClient
from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint, answer_object
from restoredrill.preflight import privileges
from restoredrill.preflight.model import Line, probe, reach_url
from restoredrill.preflight.net import Stop
from restoredrill.secrets import SecretError
from restoredrill.waiting import RetryPolicy


def probe_proxmox(loaded, service: str) -> Line:
    inv = loaded.model
    config = inv.proxmox.pve if service == "PVE" else inv.proxmox.pbs
    line = Line(service.lower(), f"{service} API", config.url)

    def steps(line: Line) -> None:
        if not config.url.startswith("https://"):
            raise Stop(f"url {config.url!r} must be https://HOST[:PORT]")
        reach_url(line, config.url, default_port=8006 if service == "PVE" else 8007, pin=config.fingerprint,
                  verify=config.verify_tls, key=f"proxmox.{service.lower()}.fingerprint")
        api = ApiChokePoint(Endpoint(url=config.url, token_id=config.token_id, token_secret=_secret(config, loaded),
                                     fingerprint=config.fingerprint, verify_tls=config.verify_tls,
                                     service=service, timeout=10), retry=RetryPolicy(attempts=1))
        version = _token(api, config.token_id)
        line.steps.append(f"token {config.token_id} valid ({service} {version})")
        needed = (privileges.pve_privileges(inv, _release(version)) if service == "PVE"
                  else privileges.pbs_privileges(inv))
        granted = _granted(api, service, sorted({row.path for row in needed}))
        lacking = privileges.missing(needed, granted)
        if lacking:
            line.findings.append(f"privileges: {len(needed) - len(lacking)} of {len(needed)}; missing " + ", ".join(
                f"{row.privilege} on {row.path} ({row.why})" for row in lacking) + " (README: Token privileges)")
        else:
            line.steps.append(f"privileges: all {len(needed)} of the README's table")

    return probe(line, steps)


def _secret(config, loaded) -> str:
    try:
        return config.token_secret.resolve(base_dir=loaded.base_dir)
    except SecretError as exc:
        raise Stop(f"token secret: {exc}") from None


def _token(api: ApiChokePoint, token_id: str) -> str:
    try:
        answer = answer_object(api.call("get", "/version"), f"{api.endpoint.service} GET /version")
    except ApiError as exc:
        if exc.status == 401:
            raise Stop(f"token {token_id} rejected (HTTP 401): wrong token id or secret, or the token was "
                       f"removed or expired") from None
        raise Stop(str(exc)) from None
    return str(answer.get("version") or "unknown version")[:40]


def _release(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else (9, 0)


def _granted(api: ApiChokePoint, service: str, paths: list[str]) -> dict[str, dict[str, object]]:
    granted: dict[str, dict[str, object]] = {}
    for path in paths:
        try:
            if service == "PBS":
                answer = PbsClient(api).permissions(path)
            else:
                answer = answer_object(api.call("get", "/access/permissions", path=path),
                                       "PVE GET /access/permissions")
        except ApiError as exc:
            raise Stop(f"privileges could not be read: {exc}") from None
        privs = answer.get(path)
        granted[path] = privs if isinstance(privs, dict) else {}
    return granted
