"""Service health checks inside a restored scratch guest, through a testinfra host.

Each check returns evidence or raises :class:`CheckFailed` saying what was expected,
what was found and where (guest, check, target).
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

from restoredrill.checks.errors import CheckFailed

HTTP_PROBE = ("import json,sys,urllib.request,urllib.error\n"
              "try:\n r=urllib.request.urlopen(sys.argv[1],timeout=10); code,body=r.status,r.read()\n"
              "except urllib.error.HTTPError as e:\n code,body=e.code,e.read()\n"
              "except Exception as e:\n code,body=0,str(e).encode()\n"
              "print(json.dumps({'status':code,'body':body.decode('utf-8','replace')[:4000]}))")
SQLITE_PROBE = ("import sqlite3,sys\nc=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro',uri=True)\n"
                "print('\\n'.join('\\t'.join(str(v) for v in row) for row in c.execute(sys.argv[2])))")


def run_check(host, check, *, where: str, runner_netns: str | None = None) -> dict:
    handler = {"service": _service, "process": _process, "port": _port, "file": _file, "command": _command,
               "http": _http, "sql": _sql, "canary": _canary}[check.kind]
    return handler(host, check, f"{where}, check {check.name} ({check.kind} {check.target})", runner_netns)


def _matches(pattern: str | None, text: str) -> bool:
    return pattern is None or re.search(pattern, text, re.MULTILINE) is not None


def _service(host, check, where, _netns) -> dict:
    service = host.service(check.target)
    if not service.is_running:
        raise CheckFailed(where, "the service running", "not running",
                          "the restored guest boots but the service does not start")
    return {"service_running": True}


def _process(host, check, where, _netns) -> dict:
    found = host.process.filter(comm=check.target)
    if not found:
        raise CheckFailed(where, f"a process named {check.target}", "none")
    return {"processes": len(found)}


def _port(host, check, where, _netns) -> dict:
    """Listening on the port at any address (``ss``/``netstat`` in the guest)."""
    spec = check.target if "://" in check.target else f"tcp://{check.target}"
    protocol, _, rest = spec.partition("://")
    address, _, port = rest.rpartition(":") if ":" in rest else ("", "", rest)
    listening = host.socket.get_listening_sockets()
    found = [s for s in listening if s.startswith(f"{protocol}://") and s.rsplit(":", 1)[-1] == port
             and (not address or s == spec)]
    if not found:
        raise CheckFailed(where, f"something listening on {protocol} port {port}",
                          f"listening: {', '.join(sorted(listening))[:300] or 'nothing'}")
    return {"listening": ", ".join(found)}


def _file(host, check, where, _netns) -> dict:
    handle = host.file(check.target)
    if not handle.exists:
        raise CheckFailed(where, f"file {check.target}", "missing")
    content = handle.content_string if check.expect else ""
    if not _matches(check.expect, content):
        raise CheckFailed(where, f"content matching /{check.expect}/", repr(content[:200]))
    return {"file": check.target}


def _command(host, check, where, _netns) -> dict:
    result = host.run(check.target)
    if result.rc != 0 or not _matches(check.expect, result.stdout):
        raise CheckFailed(where, f"exit 0{f' and output matching /{check.expect}/' if check.expect else ''}",
                          f"exit {result.rc}, output {result.stdout.strip()[-200:]!r} {result.stderr.strip()[-200:]!r}")
    return {"exit_code": 0}


def _http(host, check, where, runner_netns) -> dict:
    if check.from_runner:
        argv = [sys.executable, "-c", HTTP_PROBE, check.target]
        if runner_netns:
            argv = ["ip", "netns", "exec", runner_netns, *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        raw, origin = proc.stdout, "the runner"
    else:
        result = host.run(f"python3 -c {shlex.quote(HTTP_PROBE)} {shlex.quote(check.target)}")
        raw, origin = result.stdout, "inside the guest"
    try:
        answer = json.loads(raw.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise CheckFailed(where, f"an HTTP answer (from {origin})", f"no answer: {raw[-200:]!r}") from None
    if not 200 <= answer["status"] < 300 or not _matches(check.expect, answer["body"]):
        raise CheckFailed(where, f"HTTP 2xx{f' with a body matching /{check.expect}/' if check.expect else ''} "
                          f"(from {origin})", f"HTTP {answer['status']}: {answer['body'][:200]!r}")
    return {"http_status": answer["status"], "from": origin}


def _sql(host, check, where, _netns) -> dict:
    engine, _, target = (check.database or "").partition(":")
    if engine == "sqlite":
        result = host.run(f"python3 -c {shlex.quote(SQLITE_PROBE)} {shlex.quote(target)} {shlex.quote(check.target)}")
    elif engine == "postgres":
        result = host.run(f"psql -XAt -d {shlex.quote(target)} -c {shlex.quote(check.target)}")
    else:
        raise CheckFailed(where, "a database (sqlite:/path or postgres:NAME)", "none declared")
    if result.rc != 0 or not _matches(check.expect, result.stdout):
        raise CheckFailed(where, f"the query to answer /{check.expect}/", f"exit {result.rc}: "
                          f"{(result.stdout or result.stderr).strip()[-200:]!r}")
    return {"rows": result.stdout.strip()[:200]}


def _canary(host, check, where, _netns) -> dict:
    handle = host.file(check.target)
    if not handle.exists:
        raise CheckFailed(where, f"the canary {check.target}", "missing")
    content = handle.content_string.strip()
    if not content or not _matches(check.expect, content):
        raise CheckFailed(where, f"the canary value{f' matching /{check.expect}/' if check.expect else ''}",
                          repr(content[:200]))
    return {"canary": content[:200]}
