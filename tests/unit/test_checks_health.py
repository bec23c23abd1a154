"""Each health-check kind of ``checks/health.py`` passes on a healthy target and fails, naming
guest, check and target, on a broken one.

testinfra's local backend stands in for the scratch guest (real files, processes, sockets,
commands, a real SQLite database, real HTTP servers on loopback). Only the passing service
check uses a stand-in host: this machine runs no init system, so no unit is ever running.
What the guest holds is never in a message (the hostile cases are in test_health_checks.py).
"""
from __future__ import annotations

import http.server
import secrets
import shutil
import socket
import sqlite3
import subprocess
import threading

import pytest
import testinfra

from restoredrill.checks.errors import CheckFailed
from restoredrill.checks.health import run_check
from restoredrill.inventory.model import HealthCheck

WHERE = "guest app (scratch 9901, snapshot pbs:backup/vm/110/2026-12-05T01:00:00Z)"


@pytest.fixture(scope="module")
def host():
    return testinfra.get_host("local://")


def check(kind: str, target: str, **extra) -> HealthCheck:
    return HealthCheck(name="probe", kind=kind, target=target, **extra)


def fails(host, health: HealthCheck, **kwargs) -> CheckFailed:
    with pytest.raises(CheckFailed) as info:
        run_check(host, health, where=WHERE, **kwargs)
    failure = info.value
    assert failure.where == f"{WHERE}, check probe ({health.kind} {health.target})"
    return failure


# --- service --------------------------------------------------------------------------------

class _Unit:
    def __init__(self, running: bool):
        self.is_running = running


class _Init:
    """A host whose init runs exactly the named units (testinfra's ``host.service`` API)."""

    def __init__(self, *running: str):
        self.running = set(running)

    def service(self, name: str) -> _Unit:
        return _Unit(name in self.running)


def test_service_running_passes_and_stopped_fails():
    assert run_check(_Init("webapp"), check("service", "webapp"), where=WHERE) == {"service_running": True}
    failure = fails(_Init("sshd"), check("service", "webapp"))
    assert failure.found == "not running" and "does not start" in failure.hint


def test_service_not_running_on_a_real_host_fails(host):
    failure = fails(host, check("service", f"restoredrill-none-{secrets.token_hex(3)}"))
    assert failure.expected == "the service running" and failure.found == "not running"


# --- process --------------------------------------------------------------------------------

@pytest.fixture
def named_process(tmp_path):
    """A real process with a unique command name (a copy of sleep)."""
    name = f"rdp{secrets.token_hex(4)}"
    binary = tmp_path / name
    shutil.copy(shutil.which("sleep"), binary)
    proc = subprocess.Popen([str(binary), "300"])
    yield name
    proc.kill()
    proc.wait()


def test_process_found_passes_and_absent_fails(host, named_process):
    assert run_check(host, check("process", named_process), where=WHERE) == {"processes": 1}
    failure = fails(host, check("process", named_process[:-1] + "z"))
    assert failure.expected == f"a process named {named_process[:-1]}z" and failure.found == "none"


# --- port -----------------------------------------------------------------------------------

@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_port_by_number_by_url_and_by_address(host, listener):
    for target in (str(listener), f"tcp://{listener}", f"tcp://127.0.0.1:{listener}"):
        assert run_check(host, check("port", target), where=WHERE)["listening_port"] == str(listener)
    failure = fails(host, check("port", f"tcp://10.9.9.9:{listener}"))      # that port, another address
    assert failure.expected == f"something listening on tcp port {listener} at 10.9.9.9"
    assert failure.found.startswith("listening: ")


def test_port_nothing_listening_or_other_protocol_fails(host, listener):
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    unused = free.getsockname()[1]
    free.close()
    failure = fails(host, check("port", str(unused)))
    assert failure.expected == f"something listening on tcp port {unused}" and failure.found.startswith("listening: ")
    failure = fails(host, check("port", f"udp://{listener}"))
    assert failure.expected == f"something listening on udp port {listener}"


# --- file -----------------------------------------------------------------------------------

def test_file_exists_passes_and_missing_fails(host, tmp_path):
    path = tmp_path / "etc/app.conf"
    path.parent.mkdir()
    path.write_text("listen = 8080\n")
    assert run_check(host, check("file", str(path)), where=WHERE) == {"file": str(path)}
    facts = run_check(host, check("file", str(path), expect=r"^listen = \d+$"), where=WHERE)
    assert facts["file"] == str(path) and facts["content_matched"] is True and facts["content_bytes"] == 14
    for health in (check("file", str(tmp_path / "gone")), check("file", str(tmp_path / "gone"), expect=".")):
        failure = fails(host, health)
        assert failure.found == "missing" and str(tmp_path / "gone") in failure.expected


def test_file_with_expect_that_cannot_be_read_fails_by_exit_code(host, tmp_path):
    failure = fails(host, check("file", str(tmp_path), expect="."))        # a directory: cat exits 1
    assert failure.expected == f"file {tmp_path} readable" and failure.found == "cat exited 1"


def test_file_name_is_passed_to_cat_as_one_argument(host, tmp_path):
    path = tmp_path / "-n; touch pwned"
    path.write_text("ok\n")
    assert run_check(host, check("file", str(path), expect="^ok$"), where=WHERE)["content_matched"] is True
    assert not (tmp_path / "pwned").exists()


# --- command --------------------------------------------------------------------------------

def test_command_exit_code_and_expected_output(host):
    assert run_check(host, check("command", "true"), where=WHERE) == {
        "exit_code": 0, "output_sha256": "sha256:e3b0c44298fc", "output_bytes": 0}
    facts = run_check(host, check("command", "echo debian", expect="^debian$"), where=WHERE)
    assert facts["output_matched"] is True
    failure = fails(host, check("command", "exit 4"))
    assert failure.expected == "exit 0" and failure.found.startswith("exit 4, output sha256:")
    failure = fails(host, check("command", "echo ubuntu", expect="^debian$"))
    assert failure.expected == "exit 0 and output matching /^debian$/"
    assert failure.found.startswith("exit 0, output sha256:") and "did not match" in failure.found
    assert "ubuntu" not in failure.found
    failure = fails(host, check("command", "echo debian; exit 2", expect="^debian$"))     # matched, but failed
    assert failure.found.startswith("exit 2, ") and ", matched" in failure.found


# --- http -----------------------------------------------------------------------------------

class _Answers(http.server.BaseHTTPRequestHandler):
    routes = {"/health": (200, b'{"status": "healthy"}'), "/sick": (200, b'{"status": "degraded"}')}

    def do_GET(self):                       # http.server's name
        status, body = self.routes.get(self.path, (404, b"no such page"))
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_2xx_with_matching_body_passes(host, web):
    facts = run_check(host, check("http", f"{web}/health", expect='"healthy"'), where=WHERE)
    assert facts["http_status"] == 200 and facts["from"] == "inside the guest" and facts["body_matched"] is True
    assert "body_shown" not in facts
    assert run_check(host, check("http", f"{web}/sick"), where=WHERE)["http_status"] == 200      # no expect


def test_http_body_mismatch_or_error_status_fails(host, web):
    failure = fails(host, check("http", f"{web}/sick", expect='"healthy"'))
    assert failure.expected == "HTTP 2xx with a body matching /\"healthy\"/ (from inside the guest)"
    assert failure.found.startswith("HTTP 200, body sha256:") and "degraded" not in str(failure)
    failure = fails(host, check("http", f"{web}/missing"))
    assert failure.found.startswith("HTTP 404, body sha256:") and "no such page" not in str(failure)


def test_http_nobody_listening_is_no_answer(host):
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    failure = fails(host, check("http", f"http://127.0.0.1:{port}/health"))
    assert failure.found == "no answer (ConnectionRefusedError)"


def test_http_probe_that_prints_no_answer_line_fails(host, web, monkeypatch):
    """No python3 in the guest: the probe cannot run, so there is no answer to judge."""
    monkeypatch.setenv("PATH", "/nonexistent")
    failure = fails(host, check("http", f"{web}/health"))
    assert failure.found.startswith("no answer: the probe exited 127, output sha256:")


# --- sql ------------------------------------------------------------------------------------

@pytest.fixture
def database(tmp_path):
    path = tmp_path / "app.sqlite"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE canary(value TEXT)")
        conn.execute("INSERT INTO canary VALUES ('lab-canary-v1')")
    conn.close()
    return path


def test_sql_sqlite_answer_passes_and_mismatch_fails(host, database):
    facts = run_check(host, check("sql", "SELECT value FROM canary", expect="^lab-canary-v1$",
                                  database=f"sqlite:{database}"), where=WHERE)
    assert facts["rows_matched"] is True and facts["rows_bytes"] == len("lab-canary-v1\n")
    failure = fails(host, check("sql", "SELECT value FROM canary", expect="^other$", database=f"sqlite:{database}"))
    assert failure.expected == "the query to succeed and answer /^other$/"
    assert failure.found.startswith("exit 0, rows sha256:") and "lab-canary-v1" not in failure.found


def test_sql_query_error_fails_by_exit_code_without_quoting_stderr(host, database):
    failure = fails(host, check("sql", "SELECT nope FROM canary", database=f"sqlite:{database}"))
    assert failure.found.startswith("exit 1, rows ") and "; stderr sha256:" in failure.found
    assert "nope" not in failure.found
    assert failure.expected == "the query to succeed"          # no expect declared: never "/None/"
    failure = fails(host, check("sql", "SELECT nope FROM canary", expect="^1$", database=f"sqlite:{database}"))
    assert failure.expected == "the query to succeed and answer /^1$/"


def test_sql_database_is_not_modified(host, database):
    before = database.read_bytes()
    failure = fails(host, check("sql", "DELETE FROM canary", database=f"sqlite:{database}"))
    assert failure.found.startswith("exit 1")            # opened read-only: the write is refused
    assert database.read_bytes() == before


def test_sql_postgres_without_a_server_fails(host):
    failure = fails(host, check("sql", "SELECT 1", expect="^1$", database="postgres:restoredrill_absent"))
    assert failure.found.startswith("exit 2, rows sha256:")


def test_sql_without_a_database_fails(host):
    failure = fails(host, check("sql", "SELECT 1"))
    assert failure.expected == "a database (sqlite:/path or postgres:NAME)" and failure.found == "none declared"


# --- canary ---------------------------------------------------------------------------------

def test_canary_present_passes_and_empty_or_missing_fails(host, tmp_path):
    path = tmp_path / "canary.txt"
    path.write_text("  lab-canary-v1 \n")
    facts = run_check(host, check("canary", str(path)), where=WHERE)
    assert facts["canary_matched"] is True and facts["canary_bytes"] == len("lab-canary-v1")
    path.write_text(" \n")
    failure = fails(host, check("canary", str(path)))
    assert failure.expected == "the canary value" and "did not match" in failure.found
    failure = fails(host, check("canary", str(tmp_path / "gone"), expect="^x$"))
    assert failure.found == "missing" and failure.expected == f"the canary {tmp_path / 'gone'}"
