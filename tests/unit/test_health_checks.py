"""Guest health checks never repeat what the guest holds or prints (pass or fail), unless the
check opts in, and then at most 80 printable characters.

A real testinfra host (the local backend) stands in for the scratch guest: real files in tmp
dirs, real commands, a real SQLite database and real HTTP servers on loopback.
"""
from __future__ import annotations

import ast
import http.server
import secrets
import shutil
import socket
import sqlite3
import tempfile
import threading
from pathlib import Path

import pytest
import testinfra

from restoredrill.checks.errors import CheckFailed
from restoredrill.checks.health import listening_summary, run_check
from restoredrill.inventory.model import HealthCheck

WHERE = "guest app (scratch 9901)"


@pytest.fixture(scope="module")
def host():
    return testinfra.get_host("local://")


@pytest.fixture
def secret() -> str:
    return f"tok-{secrets.token_hex(16)}"


@pytest.fixture
def secret_file(tmp_path, secret) -> Path:
    path = tmp_path / "srv" / "app" / "canary.txt"
    path.parent.mkdir(parents=True)
    path.write_text(f"{secret}\n")
    return path


def check(kind: str, target: str, **extra) -> HealthCheck:
    return HealthCheck(name="probe", kind=kind, target=target, **extra)


def fails(host, health: HealthCheck, **kwargs) -> str:
    with pytest.raises(CheckFailed) as info:
        run_check(host, health, where=WHERE, **kwargs)
    return str(info.value)


def clean(secret: str, *texts) -> bool:
    return not any(secret in str(text) or secret[4:16] in str(text) for text in texts)


def test_file_content_is_fingerprinted_never_quoted(host, secret_file, secret):
    message = fails(host, check("file", str(secret_file), expect="^lab-canary-v1$"))
    assert "content sha256:" in message and f"{len(secret) + 1} bytes, did not match" in message
    assert clean(secret, message)
    facts = run_check(host, check("file", str(secret_file), expect="^tok-"), where=WHERE)
    assert facts["content_matched"] is True and clean(secret, *facts.values())


def test_canary_pass_keeps_no_value_and_mismatch_quotes_none(host, secret_file, secret):
    facts = run_check(host, check("canary", str(secret_file), expect="^tok-[0-9a-f]{32}$"), where=WHERE)
    assert facts == {"canary_sha256": facts["canary_sha256"], "canary_bytes": len(secret), "canary_matched": True}
    assert clean(secret, *facts.values())
    message = fails(host, check("canary", str(secret_file), expect="^lab-canary-v1$"))
    assert "canary sha256:" in message and "did not match" in message and clean(secret, message)


def test_canary_opt_in_shows_at_most_80_printable_characters(host, tmp_path):
    path = tmp_path / "canary.txt"
    path.write_text("lost \x07bell\u202e" + "y" * 300 + "\n")
    message = fails(host, check("canary", str(path), expect="^lab-canary-v1$", show_found=True))
    shown = ast.literal_eval(message.split("content ", 1)[1])
    assert len(shown) == 80 and shown.isprintable() and shown.startswith("lost ?bell?yyy")


def test_command_output_is_fingerprinted_and_opt_in_shows_its_tail(host, secret_file, secret):
    command = f"cat {secret_file}; printf 'oo%s' ps >&2; exit 3"
    message = fails(host, check("command", command, expect="debian"))
    assert message.count("sha256:") == 2 and "exit 3" in message and clean(secret, message)
    assert "oops" not in message
    shown = fails(host, check("command", f"printf 'line\\n%.0s' $(seq 100); cat {secret_file}; exit 3",
                              show_found=True))
    tail = ast.literal_eval(shown.split("content ", 1)[1].split("; stderr")[0])
    assert len(tail) == 80 and tail.endswith(f"line?{secret}")
    facts = run_check(host, check("command", f"cat {secret_file}", expect="^tok-"), where=WHERE)
    assert facts["exit_code"] == 0 and facts["output_matched"] is True and clean(secret, *facts.values())


def test_sql_rows_are_fingerprinted(host, tmp_path, secret):
    db = tmp_path / "app.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE canary(value TEXT)")
        conn.execute("INSERT INTO canary VALUES (?)", (secret,))
    conn.close()
    query = {"database": f"sqlite:{db}"}
    message = fails(host, check("sql", "SELECT value FROM canary", expect="^lab-canary-v1$", **query))
    assert "exit 0, rows sha256:" in message and "did not match" in message and clean(secret, message)
    facts = run_check(host, check("sql", "SELECT count(*) FROM canary", expect="^1$", show_found=True, **query),
                      where=WHERE)
    assert facts["rows_shown"] == "1" and facts["rows_matched"] is True


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):                       # http.server's name
        self.send_response(500)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def web(secret):
    """An HTTP server on loopback answering 500 with the secret in its body."""
    handler = type("Handler", (_Handler,), {"body": f'{{"status": "damaged", "token": "{secret}"}}'.encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()
    server.server_close()


def test_http_body_is_hidden_and_the_status_shown(host, web, secret):
    message = fails(host, check("http", web, expect='"healthy"'))
    assert "HTTP 500, body sha256:" in message and "inside the guest" in message and clean(secret, message)
    shown = fails(host, check("http", web, expect='"healthy"', show_found=True))
    assert 'content \'{"status": "damaged", "token": "tok-' in shown


@pytest.fixture
def garbage_server(secret):
    """A server whose status line is the secret: http.client's exception text would quote it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(f"{secret} {secret}\r\n\r\n".encode())
    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    listener.close()


def test_http_failure_is_named_by_its_exception_class_only(host, garbage_server, secret):
    message = fails(host, check("http", garbage_server))
    assert "no answer (BadStatusLine)" in message and clean(secret, message)


def test_http_from_runner_without_the_runner_namespace_fails(host, web):
    message = fails(host, check("http", web, from_runner=True), runner_netns=None)
    assert "scratch.runner_netns" in message and "none configured" in message


def test_listening_summary_shows_ports_only():
    hostile = ["tcp://0.0.0.0:22", "tcp://tok-abcdef:80", "udp://:::53", "unix:///run/tok-secret/s",
               "tcp://x:99999", "garbage"]
    summary = listening_summary(hostile)
    assert summary == "tcp 22, tcp 80, udp 53; 3 other sockets (Unix or unparsed)"
    assert listening_summary([f"tcp://0.0.0.0:{p}" for p in range(1000, 1030)]).endswith("tcp 1019; 10 more ports")


def test_port_check_reports_ports_not_socket_paths(host, secret):
    folder = Path(tempfile.mkdtemp(prefix="rd-"))   # short: tmp_path under xdist can pass AF_UNIX's 108 bytes
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(folder / f"{secret}.sock"))
    unix.listen()
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    port = tcp.getsockname()[1]
    try:
        facts = run_check(host, check("port", str(port)), where=WHERE)
        assert facts == {"listening_port": str(port), "listening_sockets": 1}
        message = fails(host, check("port", "udp://1"))
        # the port is shown among the 20 lowest; a busy machine has more (then they are counted)
        assert (f"tcp {port}" in message or "more ports" in message) and "other sockets" in message
        assert clean(secret, message)
    finally:
        unix.close()
        tcp.close()
        shutil.rmtree(folder, ignore_errors=True)


class _RedirectHandler(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self):                       # http.server's name
        if self.path == "/health":
            self.send_response(302)
            self.send_header("Location", self.target)
            self.end_headers()
            return
        self.send_response(200)             # the redirect's target: reaching it would pass
        self.end_headers()
        self.wfile.write(b'{"status": "healthy"}')

    def log_message(self, *args):
        pass


def test_http_probe_follows_no_redirect_and_no_proxy(host, monkeypatch):
    """A 302 to another address is the answer, never followed (that address's MAC was never
    checked), and an http_proxy in the environment is not used."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RedirectHandler)
    port = server.server_address[1]
    _RedirectHandler.target = f"http://127.0.0.1:{port}/elsewhere"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9/")       # nothing listens there
    try:
        message = fails(host, check("http", f"http://127.0.0.1:{port}/health", expect='"healthy"'))
    finally:
        server.shutdown()
        server.server_close()
    assert "HTTP 302" in message
