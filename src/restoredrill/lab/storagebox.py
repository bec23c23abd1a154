"""A real SSH storage box on loopback: OpenSSH's sshd serving Borg and SFTP.

The lab and the integration tests use it as the offsite Borg/SFTP target. It is
the real thing, not a double: ``/usr/sbin/sshd`` with its own ed25519 host key,
its own ``authorized_keys`` and a per-run port on 127.0.0.1, and clients that pin
the host key (``StrictHostKeyChecking=yes``).

Login user: sshd needs a real account to run sessions as, so the box uses the
user running this process (root on the lab machine, hence
``PermitRootLogin prohibit-password``). What a key may do is decided entirely by
its ``authorized_keys`` options: one client key per role, each with a forced
command and ``restrict``:

* borg: ``command="borg serve --restrict-to-path DIR [--append-only]",restrict``
* sftp: ``command="internal-sftp -d DIR [-R]",restrict``. ``-d`` only sets the
  start directory; it is not a jail (a chroot needs a ``Match`` block and a
  root-owned path, and ``ChrootDirectory`` cannot be set per key). Use
  ``read_only=True`` for keys that must not write.

Manual equivalent::

    ssh-keygen -q -t ed25519 -N '' -f host_ed25519_key
    mkdir -p /run/sshd && /usr/sbin/sshd -D -e -f sshd_config
"""
from __future__ import annotations

import atexit
import logging
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from pathlib import Path

from restoredrill.execute import run

log = logging.getLogger("restoredrill.lab.storagebox")

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 5.0
# an internal-sftp session keeps sshd's SIGTERM handler (it does not exec) and ignores
# SIGTERM; borg serve honours it at once and releases its repository lock
SESSION_GRACE_SECONDS = 1.0
LOG_TAIL_LINES = 20

_running_boxes: "weakref.WeakSet[StorageBox]" = weakref.WeakSet()


class StorageBoxError(RuntimeError):
    """The storage box could not be set up, started or stopped."""


class StorageBox:
    """An sshd on 127.0.0.1 serving Borg and SFTP to pinned client keys.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Files
    (keys, config, ``sshd.log``) live in ``base_dir``; repositories and SFTP
    roots can be anywhere the login user may write.
    """

    def __init__(self, base_dir: Path, *, borg_command: str | None = None,
                 ready_timeout: float = 10.0):
        self.base_dir = Path(base_dir).resolve()
        self.ready_timeout = ready_timeout
        self._borg_command = borg_command
        self.host = HOST
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.port: int | None = None
        self.ready_seconds: float | None = None
        self._process: subprocess.Popen | None = None
        self._log_handle = None
        self._authorized: dict[str, str] = {}
        self._rotated = False

    # -- files -------------------------------------------------------------
    @property
    def host_key_file(self) -> Path:
        return self.base_dir / "host_ed25519_key"

    @property
    def rotated_host_key_file(self) -> Path:
        return self.base_dir / "host_ed25519_key_rotated"

    @property
    def borg_key_file(self) -> Path:
        """Client private key for Borg (authorize it with :meth:`authorize_borg`)."""
        return self.base_dir / "client_borg_ed25519"

    @property
    def sftp_key_file(self) -> Path:
        """Client private key for SFTP (authorize it with :meth:`authorize_sftp`)."""
        return self.base_dir / "client_sftp_ed25519"

    @property
    def key_files(self) -> dict[str, Path]:
        return {"borg": self.borg_key_file, "sftp": self.sftp_key_file}

    @property
    def known_hosts_file(self) -> Path:
        """known_hosts pinning the genuine host key for ``[127.0.0.1]:PORT``."""
        return self.base_dir / "known_hosts"

    @property
    def authorized_keys_file(self) -> Path:
        return self.base_dir / "authorized_keys"

    @property
    def config_file(self) -> Path:
        return self.base_dir / "sshd_config"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "sshd.log"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "sshd.pid"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def host_key_fingerprint(self) -> str:
        """``SHA256:...`` of the host key sshd presents now (as ``ssh-keygen -lf`` prints)."""
        key = self.rotated_host_key_file if self._rotated else self.host_key_file
        return key_fingerprint(key.with_suffix(".pub"))

    @property
    def pinned_host_key_fingerprint(self) -> str:
        """``SHA256:...`` of the host key the clients' known_hosts pins."""
        return key_fingerprint(self.host_key_file.with_suffix(".pub"))

    @property
    def borg_command(self) -> str:
        """Absolute path of the borg that the forced command runs on the box side."""
        if self._borg_command is None:
            self._borg_command = find_borg()
        return self._borg_command

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> "StorageBox":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> "StorageBox":
        """Create keys and config, start sshd and wait until it greets clients."""
        if self._process is not None:
            return self
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for key in (self.host_key_file, self.borg_key_file, self.sftp_key_file):
            generate_key(key)
        self.authorized_keys_file.touch(mode=0o600)
        self.port = self.port or free_port()
        self._write_known_hosts()
        self._launch()
        _running_boxes.add(self)
        return self

    def stop(self) -> None:
        """SIGTERM every session (SIGKILL after 1 s), then sshd (SIGKILL after 5 s)."""
        _running_boxes.discard(self)
        self._stop_server()

    def _stop_server(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            # sessions first, children before parents, so that each parent reaps its
            # children instead of leaving them to pid 1
            terminate_pids(reversed(descendants(process.pid)), SESSION_GRACE_SECONDS)
            terminate(process, STOP_GRACE_SECONDS)
            log.debug("storage box on port %s stopped", self.port)
        if self._log_handle:
            self._log_handle.close()
            self._log_handle = None

    def _launch(self) -> None:
        self._write_config()
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        run([SSHD, "-t", "-f", self.config_file], timeout=30, label="storage box")
        self._log_handle = open(self.log_file, "ab")
        started = time.monotonic()
        self._process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config_file)], stdin=subprocess.DEVNULL,
            stdout=self._log_handle, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_until_ready(started)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - started
        log.info("storage box sshd pid %d ready on %s:%d after %.2f s",
                 self._process.pid, self.host, self.port, self.ready_seconds)

    def _wait_until_ready(self, started: float) -> None:
        deadline = started + self.ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise StorageBoxError(
                    f"sshd exited with code {self._process.returncode} before accepting "
                    f"connections on {self.host}:{self.port}; sshd log {self.log_file}:\n"
                    f"{self.log_tail()}")
            if ssh_banner_received(self.host, self.port):
                return
            time.sleep(0.02)
        raise StorageBoxError(
            f"sshd did not accept connections on {self.host}:{self.port} within "
            f"{self.ready_timeout:g} s; sshd log {self.log_file}:\n{self.log_tail()}")

    def _restart(self) -> None:
        self._stop_server()
        self._launch()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    # -- configuration -----------------------------------------------------
    def _write_config(self) -> None:
        host_key = self.rotated_host_key_file if self._rotated else self.host_key_file
        settings = [
            ("ListenAddress", self.host), ("Port", str(self.port)),
            ("HostKey", str(host_key)), ("PidFile", str(self.pid_file)),
            ("AuthorizedKeysFile", str(self.authorized_keys_file)),
            ("AllowUsers", self.user),
            ("AuthenticationMethods", "publickey"), ("PubkeyAuthentication", "yes"),
            ("PasswordAuthentication", "no"), ("KbdInteractiveAuthentication", "no"),
            ("PermitRootLogin", "prohibit-password"), ("UsePAM", "no"),
            ("StrictModes", "no"),  # keys and config live in temporary directories
            ("PermitUserEnvironment", "no"), ("AllowTcpForwarding", "no"),
            ("AllowAgentForwarding", "no"), ("X11Forwarding", "no"), ("PermitTunnel", "no"),
            ("PrintMotd", "no"), ("UseDNS", "no"), ("MaxStartups", "50:30:100"),
            ("Subsystem", "sftp internal-sftp"), ("LogLevel", "VERBOSE"),
        ]
        self.config_file.write_text("".join(f"{k} {v}\n" for k, v in settings))

    def _write_known_hosts(self) -> None:
        key_type, key_blob = self.host_key_file.with_suffix(".pub").read_text().split()[:2]
        self.known_hosts_file.write_text(f"[{self.host}]:{self.port} {key_type} {key_blob}\n")

    def _authorize(self, pubkey_path: Path, options: str) -> None:
        key_type, key_blob = Path(pubkey_path).read_text().split()[:2]
        self._authorized[key_blob] = f"{options} {key_type} {key_blob}"
        self.authorized_keys_file.write_text("".join(f"{line}\n" for line in self._authorized.values()))
        self.authorized_keys_file.chmod(0o600)

    def authorize_borg(self, pubkey_path: Path, repo_dir: Path, append_only: bool = False) -> None:
        """Let the key run ``borg serve`` restricted to repo_dir (and only that).

        Re-authorizing the same key replaces its previous entry; sshd reads the
        file on every login, so no restart is needed.
        """
        argv = ["env", f"BORG_BASE_DIR={self.base_dir / 'borg-serve-home'}", self.borg_command,
                "serve", "--restrict-to-path", str(Path(repo_dir).resolve())]
        if append_only:
            argv.append("--append-only")
        self._authorize(pubkey_path, f'command="{forced_command(argv)}",restrict')

    def authorize_sftp(self, pubkey_path: Path, root_dir: Path, read_only: bool = False) -> None:
        """Let the key use SFTP only, starting in root_dir (not a jail, see the module doc)."""
        argv = ["internal-sftp", "-d", str(Path(root_dir).resolve())]
        if read_only:
            argv.append("-R")
        self._authorize(pubkey_path, f'command="{forced_command(argv)}",restrict')

    def authorize_command(self, pubkey_path: Path, argv: list[str]) -> None:
        """Let the key run only argv (its own command arrives in SSH_ORIGINAL_COMMAND)."""
        self._authorize(pubkey_path, f'command="{forced_command(argv)}",restrict')

    # -- client side -------------------------------------------------------
    def ssh_options(self, key_file: Path) -> list[str]:
        """ssh arguments for a strict, non-interactive login with key_file only."""
        return ["-F", "none", "-i", str(key_file),
                "-o", f"UserKnownHostsFile={self.known_hosts_file}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
                "-o", "UpdateHostKeys=no", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-p", str(self.port)]

    def borg_rsh(self, key_file: Path | None = None) -> str:
        """Value for ``BORG_RSH``. With ``ssh://`` URLs borg adds ``-p PORT`` itself;
        ssh keeps the first ``-p``, which is the same port."""
        return shlex.join(["ssh", *self.ssh_options(key_file or self.borg_key_file)])

    def repo_url(self, path: Path) -> str:
        """``ssh://USER@127.0.0.1:PORT/abs/path`` for borg."""
        return f"ssh://{self.user}@{self.host}:{self.port}{Path(path).resolve()}"

    # -- faults ------------------------------------------------------------
    def rotate_host_key(self) -> None:
        """Restart sshd with a different host key; pinned clients must refuse it."""
        generate_key(self.rotated_host_key_file)
        self._rotated = True
        self._restart()

    def restore_host_key(self) -> None:
        """Restart sshd with the genuine (pinned) host key again."""
        self._rotated = False
        self._restart()


# -- helpers -----------------------------------------------------------------
def find_borg() -> str:
    """The borg next to this Python, else on PATH (resolving pyenv shims)."""
    beside_python = Path(sys.executable).parent / "borg"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("borg")
    if found is None:
        raise StorageBoxError("borg is not installed: pip install borgbackup (or apt-get install borgbackup)")
    return found


def forced_command(argv: list[str]) -> str:
    """A shell command line for an authorized_keys ``command="..."`` option."""
    for arg in argv:
        if "\n" in arg or '"' in arg or "\\" in arg:
            raise StorageBoxError(f"cannot put {arg!r} in an authorized_keys forced command")
    return shlex.join(argv)


def generate_key(path: Path) -> None:
    """``ssh-keygen -q -t ed25519 -N '' -f PATH`` unless the key exists."""
    if path.exists():
        return
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"restoredrill-{path.name}",
         "-f", path], timeout=30, label="storage box")


def key_fingerprint(pubkey_path: Path) -> str:
    """``ssh-keygen -lf KEY.pub`` -> ``SHA256:...``."""
    return run(["ssh-keygen", "-lf", pubkey_path], timeout=30).stdout.split()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def ssh_banner_received(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat, to tell a process from a later one with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every live descendant of pid, parents before their children."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        started = _start_time(child)
        if started is not None:
            found.append((child, started))
        todo.extend(children.get(child, []))
    return found


def terminate(process: subprocess.Popen, grace: float) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


def terminate_pids(pids, grace: float) -> None:
    """Stop each (pid, start time) in turn: SIGTERM, SIGKILL after grace, then give its
    parent a moment to reap it."""
    for pid, started in pids:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if _start_time(pid) != started:
                break
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            if _wait_until(lambda: _start_time(pid) != started, grace):
                break
        _wait_until(lambda: not Path(f"/proc/{pid}").exists(), 0.5)


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@atexit.register
def _stop_running_boxes() -> None:
    for box in list(_running_boxes):
        box.stop()
