"""The sandbox in which programs touch untrusted restored data.

A dump or a database file restored from a backup is hostile input. Programs
that parse it (psql, pg_restore, the throwaway PostgreSQL, SQLite) run here:

* bubblewrap (``bwrap``) gives each run new user, pid, network, IPC, UTS and
  cgroup namespaces. The mount view is a fresh tmpfs holding only ``/usr``
  (read-only), a synthesized ``/etc`` (passwd, group, nsswitch), a new
  ``/proc`` and ``/dev``, empty ``/tmp`` and ``/dev/shm``, and the paths the
  caller names: the inventory, ``/etc/restoredrill``, ``/root``, ``/home``,
  ``/run`` and ``/var`` do not exist inside. The network namespace has only a
  down ``lo``: no route anywhere. Inside, the process is uid/gid
  :data:`INSIDE_ID`, with no way to create further user namespaces.
* When the harness runs as root (tests, the lab), ``setpriv`` first drops to
  the system user :data:`SANDBOX_USER` (no groups, no-new-privs), so even the
  kernel uid differs from the harness's. Unprivileged (the shipped systemd
  unit: ``NoNewPrivileges=yes`` forbids switching uid), bwrap builds the
  sandbox from an unprivileged user namespace: the kernel uid is the
  harness's, but the secrets are not in the mount view, other processes are
  not in the pid namespace, and the user namespace owns no capability outside.
* ``prlimit`` (util-linux) is the first program inside: CPU seconds, address
  space, file size (above PostgreSQL's 1 GiB segment files), processes, no core
  dumps. The caller's wall-clock timeout stops bwrap (SIGTERM, grace, SIGKILL);
  ``--die-with-parent`` then kills the namespace's init and with it every
  process inside.

A check that cannot run in the sandbox fails (:class:`SandboxError`); it is
never run without it. The environment is passed to bwrap as its own
environment (never ``--setenv``), so a password is never on a command line.
``--die-with-parent`` ties the sandbox to the *thread* that started it
(``PR_SET_PDEATHSIG``): start long-running servers from the thread that stops them.
"""
from __future__ import annotations

import atexit
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from restoredrill import sandbox_output
from restoredrill.execute import CommandError, Result, output_tail, printable_argv, run

log = logging.getLogger("restoredrill.sandbox")

SANDBOX_USER = "restoredrill-sandbox"
INSIDE_ID = 61000            # uid and gid inside the sandbox
INSIDE_NAME = "sandbox"
INSIDE_HOME = "/tmp"
GiB = 1 << 30
STOP_GRACE_SECONDS = 5.0
DEFAULT_STDOUT_LIMIT = 16 << 20       # what a sandboxed program's stdout may hold (scratch.budgets.output)
SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
INSTALL_HINT = ("install bubblewrap (apt-get install bubblewrap; scripts/install-deps.sh does it) and "
                "allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0, "
                "kernel.unprivileged_userns_clone=1 where it exists, and no AppArmor userns "
                "restriction for /usr/bin/bwrap); in a systemd unit do not set RestrictNamespaces=, "
                "PrivateUsers=, ProtectKernelTunables= or ProtectProc=")


class SandboxError(RuntimeError):
    """The sandbox cannot be built here, so the check that needed it cannot run."""


class BudgetExceeded(CommandError):
    """A sandboxed program went past a budget (``budget`` names it); it was stopped."""

    def __init__(self, budget: str, message: str, **kwargs):
        super().__init__(message, **kwargs)
        self.budget = budget


@dataclass(frozen=True)
class Limits:
    """Resource limits applied inside the sandbox (``prlimit``, per process)."""

    cpu_seconds: int = 3600
    address_space_bytes: int = 4 * GiB
    file_size_bytes: int = 4 * GiB    # PostgreSQL writes 1 GiB segment files
    processes: int = 256
    open_files: int = 1024
    tmpfs_bytes: int = 64 << 20       # each of the RAM-backed /tmp and /dev/shm inside

    def prlimit_argv(self) -> list[str]:
        return ["prlimit", f"--cpu={self.cpu_seconds}", f"--as={self.address_space_bytes}",
                f"--fsize={self.file_size_bytes}", f"--nproc={self.processes}",
                f"--nofile={self.open_files}", "--core=0", "--"]


# -- the command line (pure) ---------------------------------------------------
def bwrap_argv(argv: Sequence[str], *, etc_dir: Path, readable: Sequence[Path] = (),
               writable: Sequence[Path] = (), limits: Limits = Limits(), cwd: Path | None = None,
               drop_to_uid: int | None = None, root_links: Mapping[str, str | None] = {}) -> list[str]:
    """The full command line: [setpriv ...] bwrap ... -- prlimit ... -- argv.

    ``root_links`` maps each of /bin, /lib... to its symlink target, or None
    for a real directory (bind read-only), as the host has them.
    """
    command: list[str] = []
    if drop_to_uid is not None:
        command += ["setpriv", f"--reuid={drop_to_uid}", f"--regid={drop_to_uid}", "--clear-groups",
                    "--no-new-privs", "--"]
    command += ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                "--new-session", "--uid", str(INSIDE_ID), "--gid", str(INSIDE_ID),
                "--hostname", INSIDE_NAME, "--ro-bind", "/usr", "/usr"]
    for name, target in root_links.items():
        command += ["--symlink", target, f"/{name}"] if target else ["--ro-bind", f"/{name}", f"/{name}"]
    for name in ("passwd", "group", "nsswitch.conf", "hosts"):
        command += ["--ro-bind", str(etc_dir / name), f"/etc/{name}"]
    command += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
                "--proc", "/proc", "--dev", "/dev", "--size", str(limits.tmpfs_bytes), "--tmpfs", "/dev/shm",
                "--size", str(limits.tmpfs_bytes), "--tmpfs", "/tmp"]
    for path in readable:
        command += ["--ro-bind", str(path), str(path)]
    for path in writable:
        command += ["--bind", str(path), str(path)]
    command += ["--chdir", str(cwd or INSIDE_HOME), "--", *limits.prlimit_argv()]
    return command + [str(a) for a in argv]


def etc_files() -> dict[str, str]:
    """The whole /etc of the sandbox: who we are, and nothing of the host."""
    nologin = "/usr/sbin/nologin"
    return {
        "passwd": (f"{INSIDE_NAME}:x:{INSIDE_ID}:{INSIDE_ID}:restoredrill sandbox:{INSIDE_HOME}:{nologin}\n"
                   f"nobody:x:65534:65534:nobody:/nonexistent:{nologin}\n"),
        "group": f"{INSIDE_NAME}:x:{INSIDE_ID}:\nnogroup:x:65534:\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
        "hosts": "127.0.0.1 localhost\n::1 localhost\n",
    }


def host_root_links() -> dict[str, str | None]:
    """/bin, /lib... as the host has them: symlink target or None (a directory)."""
    links: dict[str, str | None] = {}
    for name in SYSTEM_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            links[name] = os.readlink(path)
        elif path.is_dir():
            links[name] = None
    return links


# -- host state: the sandbox user, /etc, the probe -----------------------------
_etc_dir: Path | None = None
_checked = False


def ensure_sandbox_user() -> int:
    """Create the system user :data:`SANDBOX_USER` if missing (we are root); its uid."""
    try:
        return pwd.getpwnam(SANDBOX_USER).pw_uid
    except KeyError:
        # exit code 9: another process created it meanwhile
        run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", "--user-group", SANDBOX_USER],
            timeout=60, ok_codes=(0, 9), label="sandbox")
        return pwd.getpwnam(SANDBOX_USER).pw_uid


def outer_uid() -> int | None:
    """The uid the sandbox runs as on the host when we must drop root, else None."""
    return ensure_sandbox_user() if os.geteuid() == 0 else None


def _etc() -> Path:
    global _etc_dir
    if _etc_dir is None or not _etc_dir.is_dir():
        directory = Path(tempfile.mkdtemp(prefix="restoredrill-sandbox-etc-"))
        for name, text in etc_files().items():
            (directory / name).write_text(text)
            (directory / name).chmod(0o644)
        directory.chmod(0o755)  # the dropped sandbox user must reach it
        _etc_dir = directory
        atexit.register(shutil.rmtree, directory, True)
    return _etc_dir


def ensure_sandbox() -> None:
    """Raise :class:`SandboxError` (with the fix) unless bwrap can build a sandbox here."""
    global _checked
    if _checked:
        return
    if shutil.which("bwrap") is None:
        raise SandboxError(f"cannot run untrusted data in a sandbox: bwrap is not installed. "
                           f"Restored data is never opened outside the sandbox, so this check fails: "
                           f"{INSTALL_HINT}")
    probe = _popen(["true"], readable=(), writable=(), limits=Limits(cpu_seconds=10), cwd=None,
                   env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = probe.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        stop(probe)
        output = b"(no answer within 30 s)"
    if probe.returncode != 0:
        raise SandboxError(f"cannot run untrusted data in a sandbox: bwrap failed to build one "
                           f"({output.decode(errors='replace').strip()[-300:]}). Restored data is never "
                           f"opened outside the sandbox, so this check fails: {INSTALL_HINT}")
    _checked = True


# -- running --------------------------------------------------------------------
def _popen(argv: Sequence[str], *, readable, writable, limits: Limits, cwd, env, **popen) -> subprocess.Popen:
    drop = outer_uid()
    command = bwrap_argv(argv, etc_dir=_etc(), readable=[Path(p) for p in readable],
                         writable=[Path(p) for p in writable], limits=limits,
                         cwd=Path(cwd) if cwd else None, drop_to_uid=drop, root_links=host_root_links())
    return subprocess.Popen(command, env=dict(env if env is not None else {"PATH": "/usr/bin:/bin"}),
                            start_new_session=True, **popen)


def start_sandboxed(argv: Sequence[str], *, readable: Sequence[Path] = (), writable: Sequence[Path] = (),
                    limits: Limits = Limits(), env: Mapping[str, str] | None = None,
                    cwd: Path | None = None, stdout=None, stderr=None, label: str = "") -> subprocess.Popen:
    """Start argv in the sandbox and return at once (for servers); stop it with :func:`stop`."""
    ensure_sandbox()
    log.debug("%s: starting in the sandbox: %s", label or "sandbox", printable_argv(argv))
    try:
        return _popen(argv, readable=readable, writable=writable, limits=limits, cwd=cwd, env=env,
                      stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
    except OSError as exc:
        raise SandboxError(f"{label or 'sandbox'}: cannot start bwrap: {exc}; {INSTALL_HINT}") from None


def stop(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM bwrap, then SIGKILL after ``grace``; --die-with-parent kills everything inside."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait(grace)


def run_sandboxed(argv: Sequence[str], *, readable: Sequence[Path] = (), writable: Sequence[Path] = (),
                  limits: Limits = Limits(), env: Mapping[str, str] | None = None,
                  cwd: Path | None = None, input: str | bytes | None = None, label: str = "",
                  check: bool = True, timeout: float = 3600.0, secrets: Sequence[str] = (),
                  binary: bool = False, stdout_limit: int = DEFAULT_STDOUT_LIMIT,
                  watch: Callable[[], tuple[str, str] | None] | None = None) -> Result:
    """Run argv in the sandbox like :func:`restoredrill.execute.run`.

    Errors name argv (not the bwrap wrapping), secrets masked. Past ``timeout``
    the sandbox is stopped (:func:`stop`) and :class:`CommandError` raised. Output is
    read within budgets (:mod:`sandbox_output`): stdout up to ``stdout_limit`` bytes,
    stderr as a bounded tail; ``watch`` may name another budget that was exceeded.
    A budget exceeded stops the sandbox and raises :class:`BudgetExceeded`.
    """
    ensure_sandbox()
    prefix = f"{label}: " if label else ""
    shown = printable_argv(argv, secrets)
    data = input.encode() if isinstance(input, str) else input
    started = time.monotonic()
    try:
        process = _popen(argv, readable=readable, writable=writable, limits=limits, cwd=cwd, env=env,
                         stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise SandboxError(f"{prefix}cannot start bwrap for {shown}: {exc}; {INSTALL_HINT}") from None
    try:
        out, err = sandbox_output.collect(process, data, timeout=timeout, stdout_limit=stdout_limit,
                                          watch=watch)
    except sandbox_output.TimedOut:
        stop(process)
        raise CommandError(f"{prefix}{shown} (in the sandbox) did not finish within {timeout:g} s and "
                           f"was stopped", argv=list(argv)) from None
    except sandbox_output.OverBudget as over:
        stop(process)
        raise BudgetExceeded(over.budget, f"{prefix}{shown} (in the sandbox) {over} and was stopped",
                             argv=list(argv)) from None
    finally:
        for pipe in (process.stdout, process.stderr, process.stdin):
            if pipe is not None:
                pipe.close()
    seconds = time.monotonic() - started
    stdout = out if binary else _text(out)
    result = Result([str(a) for a in argv], process.returncode, stdout, _text(err), seconds, tuple(secrets))
    log.debug("%s%s exited %d after %.2f s (sandboxed)", prefix, shown, process.returncode, seconds)
    if check and process.returncode != 0:
        tail = output_tail(_text(out), result.stderr, secrets)
        raise CommandError(f"{prefix}{shown} (in the sandbox) exited with code {process.returncode}"
                           f"{signal_note(process.returncode)}; last output:\n{tail}",
                           argv=list(argv), returncode=process.returncode, tail=tail)
    return result


def signal_note(returncode: int) -> str:
    """bwrap reports a child killed by signal N as exit code 128+N."""
    if returncode > 128 and returncode - 128 in (signal.SIGKILL, signal.SIGXCPU, signal.SIGXFSZ):
        return f" (killed by {signal.Signals(returncode - 128).name}: a sandbox limit was reached)"
    return ""


def system_python() -> tuple[str, list[Path]]:
    """A python3 visible in the sandbox (under /usr), else ours with its prefix made readable."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate, [] if candidate.startswith("/usr/bin") else [Path("/usr/local")]
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    return str(base), [Path(sys.base_prefix).resolve()]


def private_dir(parent: Path, prefix: str) -> Path:
    """A new directory for one sandboxed job, owned by the uid the sandbox runs as.

    Under ``parent`` when the dropped sandbox user can traverse to it, else in
    the system temporary directory.
    """
    uid = outer_uid()
    parent = Path(parent)
    if uid is not None and not world_traversable(parent):
        parent = Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    give_to_sandbox(directory)
    return directory


def give_to_sandbox(path: Path) -> None:
    """chown path (not following links) to the sandbox user when we are root."""
    uid = outer_uid()
    if uid is None:
        return
    gid = pwd.getpwuid(uid).pw_gid
    for item in [path, *(Path(path).rglob("*") if Path(path).is_dir() else [])]:
        os.chown(item, uid, gid, follow_symlinks=False)


def world_traversable(path: Path) -> bool:
    """Every directory up to path can be passed by anyone (the dropped sandbox user)."""
    path = path.resolve()
    for directory in [*reversed(path.parents), path]:
        if not directory.exists():
            return True  # we create the rest (0755 under the usual umask)
        if not os.stat(directory).st_mode & 0o001:
            return False
    return True


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data
