"""The untrusted-data sandbox (bubblewrap) against the real kernel: identity, view, network, limits."""
from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from restoredrill import sandbox
from restoredrill.checks.sqlite_probe import SqliteProbeError, sqlite_integrity
from restoredrill.execute import CommandError

pytestmark = pytest.mark.integration
SRC = Path(__file__).resolve().parents[2] / "src"
PY = "/usr/bin/python3"   # the system python: under /usr, so visible in the sandbox


@pytest.fixture(scope="module", autouse=True)
def sandbox_available():
    """Fail (never skip) with the fix when bwrap cannot build a sandbox here."""
    try:
        sandbox.ensure_sandbox()
    except sandbox.SandboxError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def secret() -> Path:
    """A secret the harness can read, world-readable even: only the mount view may hide it."""
    handle, name = tempfile.mkstemp(prefix="restoredrill-secret-")
    os.write(handle, b"pbs-token-value\n")
    os.close(handle)
    os.chmod(name, 0o644)
    yield Path(name)
    os.unlink(name)


@pytest.fixture
def work(tmp_path) -> Path:
    path = sandbox.private_dir(tmp_path, "work-")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def inside(code: str, **kwargs) -> dict:
    """Run python code in the sandbox; it prints one JSON object."""
    result = sandbox.run_sandboxed([PY, "-I", "-S", "-c", code], timeout=60, **kwargs)
    return json.loads(result.stdout)


def processes_with(token: str, program: str) -> list[int]:
    """Processes whose argv[0] is *program* and whose last argument is *token*.

    Matching the token anywhere would also find the short-lived ``setpriv`` (still root,
    before it drops and execs bwrap) and bwrap itself, whose command lines carry it too.
    """
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and argv[-1] == b"":
                argv.pop()
            if argv and argv[0] == program.encode() and argv[-1] == token.encode():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def processes_mentioning(token: str) -> list[int]:
    """Every process with *token* anywhere in its command line (sh, sleep, bwrap...)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and token.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def status_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def test_inside_uid_and_kernel_uid_differ_from_the_harness(work):
    token = f"sleep-{uuid.uuid4().hex}"
    process = sandbox.start_sandboxed([PY, "-S", "-c", "import time; time.sleep(30)", token],
                                      writable=[work])
    try:
        deadline = time.monotonic() + 10
        while not (pids := processes_with(token, PY)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pids) == 1, f"expected one sandboxed python, found {pids}"
        kernel_uid = status_uid(pids[0])
    finally:
        sandbox.stop(process)

    identity = inside("import os, json; print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), "
                      "'groups': os.getgroups()}))")
    assert identity == {"uid": sandbox.INSIDE_ID, "gid": sandbox.INSIDE_ID, "groups": []}
    assert identity["uid"] != os.getuid()
    if os.geteuid() == 0:
        assert kernel_uid == sandbox.ensure_sandbox_user() != 0


def test_secrets_outside_do_not_exist_inside(secret, work):
    sibling = work.parent / f"secret-{uuid.uuid4().hex}"
    sibling.write_text("sibling secret\n")
    try:
        seen = inside(
            "import json, os\n"
            "def probe(p):\n"
            "    try:\n        open(p).read(); return 'read'\n"
            "    except OSError as e:\n        return e.strerror\n"
            f"print(json.dumps({{p: probe(p) for p in {[str(secret), str(sibling), '/etc/shadow', '/root']!r}}}"
            " | {'etc': sorted(os.listdir('/etc')), 'root': sorted(os.listdir('/'))}))",
            writable=[work])
    finally:
        sibling.unlink()

    assert secret.read_text() and os.access(secret, os.R_OK)
    assert seen[str(secret)] == "No such file or directory"
    assert seen[str(sibling)] == "No such file or directory"
    assert seen["/etc/shadow"] == "No such file or directory"
    assert seen["/root"] == "No such file or directory"
    assert seen["etc"] == ["group", "hosts", "ld.so.cache", "nsswitch.conf", "passwd"]
    assert not {"home", "root", "run", "var", "srv", "mnt"} & set(seen["root"])


def test_no_route_to_the_hosts_loopback_service():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        seen = inside(
            "import json, socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=5); r = 'connected'\n"
            "except OSError as e:\n    r = e.strerror\n"
            "links = [l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]]\n"
            "routes = open('/proc/net/route').readlines()[1:]\n"
            "print(json.dumps({'connect': r, 'links': links, 'routes': routes}))")
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()

    assert seen["connect"] != "connected"
    assert seen["links"] == ["lo"]
    assert seen["routes"] == []


def test_file_size_limit_is_above_postgres_segments_and_enforced(work):
    code = ("import json, os\n"
            "def write_at(offset):\n"
            "    try:\n"
            "        with open('big', 'wb') as f:\n            f.seek(offset); f.write(b'x')\n"
            "        return 'ok'\n"
            "    except OSError as e:\n        return os.strerror(e.errno)\n"
            "print(json.dumps({'past_segment': write_at((1 << 30) + 4096), "
            "'past_limit': write_at(5 << 30)}))")

    seen = inside(code, writable=[work], cwd=work)

    assert seen == {"past_segment": "ok", "past_limit": os.strerror(27)}  # EFBIG


def test_cpu_limit_stops_a_spin():
    started = time.monotonic()

    with pytest.raises(CommandError) as stopped:
        sandbox.run_sandboxed([PY, "-S", "-c", "while True: pass"], timeout=60,
                              limits=sandbox.Limits(cpu_seconds=1))

    assert "a sandbox limit was reached" in str(stopped.value)
    assert time.monotonic() - started < 20


def test_memory_limit_refuses_a_large_allocation():
    result = sandbox.run_sandboxed([PY, "-S", "-c", "bytearray(3 << 30)"], check=False, timeout=60,
                                   limits=sandbox.Limits(address_space_bytes=1 << 30))

    assert result.returncode == 1 and "MemoryError" in result.stderr


def test_wall_clock_timeout_stops_everything_inside():
    token = f"{uuid.uuid4().int % 10**6 + 1000}.5"  # a unique sleep duration
    started = time.monotonic()

    with pytest.raises(CommandError) as stopped:
        sandbox.run_sandboxed(["sh", "-c", f"sleep {token} & sleep {token}"], timeout=1)

    assert "did not finish within 1 s" in str(stopped.value)
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while processes_mentioning(token) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_mentioning(token) == []


@pytest.fixture
def readable_package_copy():
    """A copy of the package that uid 65534 can read wherever this clone lives.

    The checkout may sit under a folder only root may enter (a `mktemp -d` folder, `/root`):
    the unprivileged process imports this copy, as the shipped unit's user imports an install
    it can read (README, "Install on your runner host")."""
    base = Path(tempfile.mkdtemp(prefix="restoredrill-unpriv-", dir="/tmp"))
    shutil.copytree(SRC / "restoredrill", base / "restoredrill",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for folder in [base, *[p for p in base.rglob("*") if p.is_dir()]]:
        folder.chmod(0o755)
    for path in base.rglob("*"):
        if path.is_file():
            path.chmod(0o644)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_works_unprivileged_with_no_new_privs_like_the_systemd_unit(secret, readable_package_copy):
    """The shipped unit runs the harness as a plain user with NoNewPrivileges=yes."""
    probe = f"import os; print(os.getuid(), os.path.exists({str(secret)!r}))"
    program = (
        "import json, os\n"
        "from restoredrill import sandbox\n"
        f"r = sandbox.run_sandboxed([{PY!r}, '-S', '-c', {probe!r}], timeout=60)\n"
        "print(json.dumps({'outside': os.getuid(), 'nnp': open('/proc/self/status').read()"
        ".split('NoNewPrivs:')[1].split()[0], 'inside': r.stdout.split()}))\n")

    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "--no-new-privs", "--", PY, "-c", program],
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(readable_package_copy)}, cwd="/",
                          capture_output=True, text=True, timeout=120, check=False)

    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert os.access(secret, os.R_OK) and oct(secret.stat().st_mode)[-3:] == "644"
    assert seen == {"outside": 65534, "nnp": "1", "inside": [str(sandbox.INSIDE_ID), "False"]}


def test_sqlite_integrity_in_the_sandbox(tmp_path):
    database = tmp_path / "app.sqlite"
    with sqlite3.connect(database) as conn:
        conn.executescript("CREATE TABLE a (x); CREATE TABLE b (y); INSERT INTO a VALUES ('secret row');")
    conn.close()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database " * 100)

    with open(database, "rb") as handle:
        report = sqlite_integrity(handle.fileno(), name="db/app.sqlite", work_dir=tmp_path / "w")
    with open(garbage, "rb") as handle:
        broken = sqlite_integrity(handle.fileno(), name="db/garbage.sqlite", work_dir=tmp_path / "w")

    assert report.ok and report.tables == 2 and report.integrity == ("ok",)
    assert not broken.ok and "not a database" in broken.error
    assert not [p for p in Path(tempfile.gettempdir()).glob("sqlite-*") if p.owner() == "root"
                and p.stat().st_mtime > time.time() - 60]  # the private copies are removed


def test_sqlite_probe_refuses_a_fifo(tmp_path):
    fifo = tmp_path / "db.sqlite"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(SqliteProbeError) as refused:
            sqlite_integrity(fd, name="db.sqlite", work_dir=tmp_path)
    finally:
        os.close(fd)

    assert "not a regular file" in str(refused.value)


def test_missing_bwrap_fails_with_the_fix(monkeypatch):
    monkeypatch.setattr(sandbox, "_checked", False)
    monkeypatch.setenv("PATH", "/nonexistent")

    with pytest.raises(sandbox.SandboxError) as failed:
        sandbox.ensure_sandbox()

    assert "install bubblewrap" in str(failed.value)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
