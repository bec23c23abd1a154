"""Service health checks inside a restored scratch guest, through a testinfra host.

Each check returns evidence or raises :class:`CheckFailed` saying what was expected,
what was found and where (guest, check, target). What the guest holds or prints (a
file, a command's output, an HTTP body, query rows) is restored data: it never
appears in a message or in evidence; only its fingerprint, its length and whether
it matched (:mod:`restoredrill.checks.redact`), unless the check sets
``show_found: true``. Exit codes, HTTP status codes and listening ports are
metadata and are shown.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

from restoredrill.checks import redact
from restoredrill.checks.errors import CheckFailed

HTTP_TIMEOUT = 60
# The probe names a failure by its exception class only: an exception's text can quote
# what the server sent (http.client.BadStatusLine carries the status line).
# No proxy (http_proxy from the environment would send the request elsewhere) and no
# redirect (a 3xx is the answer: following it could reach an address whose MAC the runner
# path never checked); a 3xx comes back as HTTPError with its status.
HTTP_PROBE = ("import json,sys,urllib.request,urllib.error\n"
              "class NoRedirect(urllib.request.HTTPRedirectHandler):\n"
              " def redirect_request(self,*a,**k): return None\n"
              "o=urllib.request.build_opener(urllib.request.ProxyHandler({}),NoRedirect())\n"
              "err=''\n"
              "try:\n r=o.open(sys.argv[1],timeout=10); code,body=r.status,r.read(1<<20)\n"
              "except urllib.error.HTTPError as e:\n code,body=e.code,e.read(1<<20)\n"
              "except Exception as e:\n"
              " why=getattr(e,'reason',None); code,body=0,b''\n"
              " err=type(why if isinstance(why,BaseException) else e).__name__\n"
              "print(json.dumps({'status':code,'body':body.decode('utf-8','replace'),'error':err}))")
SQLITE_PROBE = ("import sqlite3,sys\nc=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro',uri=True)\n"
                "print('\\n'.join('\\t'.join(str(v) for v in row) for row in c.execute(sys.argv[2])))")
ERROR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,60}")
LISTENING = re.compile(r"^(tcp|udp)://.*:(\d{1,5})$")
PORTS_SHOWN = 20


def run_check(host, check, *, where: str, runner_netns: str | None = None) -> dict:
    handler = {"service": _service, "process": _process, "port": _port, "file": _file, "command": _command,
               "http": _http, "sql": _sql, "canary": _canary}[check.kind]
    return handler(host, check, f"{where}, check {check.name} ({check.kind} {check.target})", runner_netns)


def _matches(pattern: str | None, text: str) -> bool:
    return pattern is None or re.search(pattern, text, re.MULTILINE) is not None


def _show(check) -> bool:
    return bool(getattr(check, "show_found", False))


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


def listening_summary(listening: list[str]) -> str:
    """Protocols and port numbers only (at most 20): a port is metadata; an address string or a
    Unix socket path as the guest's tools print it is not, so those are only counted."""
    parsed = [(m[1], int(m[2])) for s in listening if (m := LISTENING.match(s)) and int(m[2]) < 65536]
    ports, other = sorted(set(parsed)), len(listening) - len(parsed)
    shown = ", ".join(f"{proto} {port}" for proto, port in ports[:PORTS_SHOWN])
    more = [f"{len(ports) - PORTS_SHOWN} more ports"] if len(ports) > PORTS_SHOWN else []
    rest = [f"{other} other sockets (Unix or unparsed)"] if other else []
    return "; ".join(filter(None, [shown, *more, *rest])) or "nothing"


def _port(host, check, where, _netns) -> dict:
    """Listening on the port at any address (``ss``/``netstat`` in the guest)."""
    spec = check.target if "://" in check.target else f"tcp://{check.target}"
    protocol, _, rest = spec.partition("://")
    address, _, port = rest.rpartition(":") if ":" in rest else ("", "", rest)
    listening = host.socket.get_listening_sockets()
    found = [s for s in listening if s.startswith(f"{protocol}://") and s.rsplit(":", 1)[-1] == port
             and (not address or s == spec)]
    if not found:
        raise CheckFailed(where, f"something listening on {protocol} port {port}"
                          f"{f' at {address}' if address else ''}", f"listening: {listening_summary(listening)}")
    return {"listening_port": port, "listening_sockets": len(found)}


def _read_guest_file(host, check, where, what: str) -> str:
    """The file's content through ``cat`` (never testinfra's content_string, whose error
    text would carry the command's output)."""
    if not host.file(check.target).exists:
        raise CheckFailed(where, f"{what} {check.target}", "missing")
    result = host.run("cat -- %s", check.target)
    if result.rc != 0:
        raise CheckFailed(where, f"{what} {check.target} readable", f"cat exited {result.rc}")
    return result.stdout


def _file(host, check, where, _netns) -> dict:
    if not check.expect:
        if not host.file(check.target).exists:
            raise CheckFailed(where, f"file {check.target}", "missing")
        return {"file": check.target}
    content = _read_guest_file(host, check, where, "file")
    if not _matches(check.expect, content):
        raise CheckFailed(where, f"content matching /{check.expect}/",
                          "content " + redact.describe(content, matched=False, show=_show(check)))
    return {"file": check.target, **redact.evidence("content", content, matched=True, show=_show(check))}


def _command(host, check, where, _netns) -> dict:
    result = host.run(check.target)
    matched = _matches(check.expect, result.stdout)
    if result.rc != 0 or not matched:
        show_out = _show(check) and bool(result.stdout.strip())     # opt-in: one tail of 80 at most
        raise CheckFailed(where, f"exit 0{f' and output matching /{check.expect}/' if check.expect else ''}",
                          f"exit {result.rc}, output " + redact.describe(
                              result.stdout, matched=matched if check.expect else None, show=show_out, tail=True)
                          + "; stderr " + redact.describe(result.stderr, show=_show(check) and not show_out,
                                                          tail=True))
    return {"exit_code": 0, **redact.evidence("output", result.stdout, matched=True if check.expect else None,
                                              show=_show(check))}


def _probe_answer(raw: str) -> dict | None:
    """The probe's JSON line, if it is one with an integer status and a text body."""
    try:
        answer = json.loads(raw.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    if not isinstance(answer, dict) or type(answer.get("status")) is not int \
            or not isinstance(answer.get("body"), str):
        return None
    return answer


def _run_probe(host, check, where, runner_netns) -> tuple[int, str, str]:
    """(exit code, stdout, origin) of the HTTP probe, from the runner or inside the guest."""
    if not check.from_runner:
        result = host.run(f"python3 -c {shlex.quote(HTTP_PROBE)} {shlex.quote(check.target)}")
        return result.rc, result.stdout, "inside the guest"
    if not runner_netns:
        raise CheckFailed(where, "the runner's verified path onto the drill bridge (scratch.runner_netns)",
                          "none configured",
                          "a from_runner check must reach the guest through the runner's network namespace "
                          "on the drill bridge: set scratch.runner_netns")
    argv = ["ip", "netns", "exec", runner_netns, sys.executable, "-c", HTTP_PROBE, check.target]
    try:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=HTTP_TIMEOUT,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"})
    except subprocess.TimeoutExpired:
        raise CheckFailed(where, "an HTTP answer (from the runner)", f"none within {HTTP_TIMEOUT} s") from None
    return proc.returncode, proc.stdout, "the runner"


def _http(host, check, where, runner_netns) -> dict:
    rc, raw, origin = _run_probe(host, check, where, runner_netns)
    answer = _probe_answer(raw)
    if answer is None:
        raise CheckFailed(where, f"an HTTP answer (from {origin})",
                          f"no answer: the probe exited {rc}, output {redact.fingerprint(redact.as_bytes(raw))}")
    if answer["status"] == 0:
        error = str(answer.get("error", ""))
        name = error if ERROR_NAME.fullmatch(error) else "an unnamed error"
        raise CheckFailed(where, f"an HTTP answer (from {origin})", f"no answer ({name})")
    matched = _matches(check.expect, answer["body"])
    if not 200 <= answer["status"] < 300 or not matched:
        raise CheckFailed(where, f"HTTP 2xx{f' with a body matching /{check.expect}/' if check.expect else ''} "
                          f"(from {origin})", f"HTTP {answer['status']}, body " + redact.describe(
                              answer["body"], matched=matched if check.expect else None, show=_show(check)))
    return {"http_status": answer["status"], "from": origin,
            **redact.evidence("body", answer["body"], matched=True if check.expect else None, show=_show(check))}


def _sql(host, check, where, _netns) -> dict:
    engine, _, target = (check.database or "").partition(":")
    if engine == "sqlite":
        result = host.run(f"python3 -c {shlex.quote(SQLITE_PROBE)} {shlex.quote(target)} {shlex.quote(check.target)}")
    elif engine == "postgres":
        result = host.run(f"psql -XAt -d {shlex.quote(target)} -c {shlex.quote(check.target)}")
    else:
        raise CheckFailed(where, "a database (sqlite:/path or postgres:NAME)", "none declared")
    matched = _matches(check.expect, result.stdout)
    if result.rc != 0 or not matched:
        answer = f" and answer /{check.expect}/" if check.expect else ""
        raise CheckFailed(where, f"the query to succeed{answer}", f"exit {result.rc}, rows "
                          + redact.describe(result.stdout, matched=matched, show=_show(check))
                          + f"; stderr {redact.fingerprint(redact.as_bytes(result.stderr))}")
    return redact.evidence("rows", result.stdout, matched=True, show=_show(check))


def _canary(host, check, where, _netns) -> dict:
    content = _read_guest_file(host, check, where, "the canary").strip()
    matched = bool(content) and _matches(check.expect, content)
    if not matched:
        raise CheckFailed(where, f"the canary value{f' matching /{check.expect}/' if check.expect else ''}",
                          "canary " + redact.describe(content, matched=False, show=_show(check)))
    return redact.evidence("canary", content, matched=True, show=_show(check))
