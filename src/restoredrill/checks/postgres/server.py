"""A throwaway PostgreSQL server that proves a dump restores.

Drills restore a PostgreSQL dump found in a backup into a private, short-lived
server and query it for a canary. Control flow: start (initdb, postgres on a
Unix socket only) -> restore_dump (new unprivileged role owning a new database,
load as that role) -> query (read-only, as that role) -> stop (the sandbox of
the server is killed, everything removed).

Privileges, in layers:

* Every PostgreSQL program (initdb, postgres, pg_isready, psql, pg_restore,
  pg_dump) runs in :mod:`restoredrill.sandbox`: another uid, no network, a
  mount view without the harness's secrets, resource limits. The server sees
  only its root directory (data, socket, log), writable; a client sees the
  socket directory and, read-only, the private copy of the dump it loads.
* The server listens on no TCP address (``listen_addresses=''``), only on a
  socket in a 0700 directory. Restore roles log in by ``trust`` (nobody else can
  reach the socket); the superuser ``postgres`` needs a random password that
  only our own administrative psql calls get (``PGPASSWORD`` in the
  environment, never on a command line), so a dump cannot reconnect as the
  superuser.
* Each dump is loaded as a role without SUPERUSER, CREATEROLE or CREATEDB that
  owns its database: the server refuses ``COPY ... FROM PROGRAM`` and other
  superuser-only statements from it.
* A plain (SQL) dump is never read by psql, whose backslash meta-commands run on
  the client (``\\!``, ``\\o |cmd``, ``\\copy ... program``...) wherever psql's
  lexer, which follows the client encoding, sees a backslash. It is checked and
  sent statement by statement by :mod:`plainload` (a protocol client without
  meta-commands, in the sandbox, the client encoding fixed for the load).
* The dump is copied without following symbolic links (``O_NOFOLLOW``); a
  directory-format dump may hold only regular files.

Plain dumps carry ``ALTER ... OWNER TO`` and ``GRANT``/``REVOKE`` statements that an
unprivileged role cannot run: the private copy of a plain dump leaves them out,
as ``pg_restore --no-owner --no-privileges`` does for the other formats (the
count is part of the evidence).
"""
from __future__ import annotations

import atexit
import csv
import io
import logging
import os
import secrets
import shutil
import subprocess
import time
import weakref
from pathlib import Path

from restoredrill import sandbox
from restoredrill.checks.budgets import InterpretBudgets
from restoredrill.checks.postgres.dumpfiles import copy_dump_directory, open_regular_file
from restoredrill.checks.postgres.errors import PostgresError
from restoredrill.checks.postgres.loading import DumpLoading, DumpRestore  # noqa: F401 (re-exported)
from restoredrill.checks.postgres.script import restore_role
from restoredrill.checks.redact import printable
from restoredrill.execute import CommandError, run

log = logging.getLogger("restoredrill.checks.postgres")

SERVICE_USER = sandbox.SANDBOX_USER
PORT = 5432  # only names the socket file; there is no TCP listener
STOP_GRACE_SECONDS = 5.0
# PostgreSQL writes 1 GiB segment files (RELSEG_SIZE, src/include/pg_config_manual.h)
SERVER_FILE_SIZE = 4 * sandbox.GiB
# the 8th line of postmaster.pid once the server accepts connections
# (LOCK_FILE_LINE_PM_STATUS and PM_STATUS_READY, src/include/utils/pidfile.h; pg_ctl waits on it)
PM_STATUS_LINE = 8
PM_STATUS_READY = "ready"

_running_servers: "weakref.WeakSet[ThrowawayPostgres]" = weakref.WeakSet()


class ThrowawayPostgres(DumpLoading):
    """A private PostgreSQL server in a temporary directory, in the sandbox.

    ``work_dir`` receives the temporary directory (it must let the sandbox
    user through: when it does not, the system temporary directory is used).
    """

    def __init__(self, work_dir: Path, *, bin_dir: Path | None = None, timeout: float = 3600.0,
                 ready_timeout: float = 60.0, budgets: InterpretBudgets | None = None):
        self.work_dir = Path(work_dir)
        self.bin_dir = Path(bin_dir) if bin_dir else None
        self.timeout = timeout
        self.budgets = budgets or InterpretBudgets(check_seconds=timeout)
        self.ready_timeout = ready_timeout
        self.root_dir: Path | None = None
        self.startup_seconds: float | None = None
        self.skipped_statements = 0
        self._process: subprocess.Popen | None = None
        self._log_handle = None
        self._superuser_password = secrets.token_urlsafe(32)

    # -- paths -------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self._root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._root() / "socket"

    @property
    def log_file(self) -> Path:
        return self._root() / "postgres.log"

    @property
    def pid(self) -> int | None:
        """The host pid of the sandbox (bwrap) holding the server."""
        return self._process.pid if self._process else None

    def _root(self) -> Path:
        if self.root_dir is None:
            raise PostgresError("the throwaway PostgreSQL server is not started")
        return self.root_dir

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> "ThrowawayPostgres":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> "ThrowawayPostgres":
        """initdb, start postgres on a private socket and wait until ``pg_isready``."""
        if self._process is not None:
            return self
        started = time.monotonic()
        self.bin_dir = self.bin_dir or find_bin_dir()
        try:
            sandbox.ensure_sandbox()
        except sandbox.SandboxError as exc:
            raise PostgresError(f"cannot start a throwaway PostgreSQL server: {exc}") from None
        self.root_dir = sandbox.private_dir(self.work_dir, "throwaway-postgres-")
        (self.root_dir / "socket").mkdir(mode=0o700)
        sandbox.give_to_sandbox(self.root_dir / "socket")
        _running_servers.add(self)
        try:
            self._initdb()
            self._start_server()
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info("throwaway PostgreSQL (sandbox pid %d) ready in %.2f s (socket %s)",
                 self._process.pid, self.startup_seconds, self.socket_dir)
        return self

    def stop(self) -> None:
        """Kill the server's sandbox (nothing in it needs a clean shutdown), remove its files."""
        process, self._process = self._process, None
        _running_servers.discard(self)
        if process is not None:
            sandbox.stop(process, STOP_GRACE_SECONDS)
        if self._log_handle:
            self._log_handle.close()
            self._log_handle = None
        if self.root_dir is not None:
            shutil.rmtree(self.root_dir, ignore_errors=True)
            self.root_dir = None

    def _initdb(self) -> None:
        password_file = self._root() / "superuser-password"
        password_file.write_text(self._superuser_password + "\n")
        password_file.chmod(0o600)
        sandbox.give_to_sandbox(password_file)
        try:
            self._run([self._bin("initdb"), "-D", self.data_dir, "--username=postgres",
                       f"--pwfile={password_file}", "--auth-local=scram-sha-256",
                       "--auth-host=reject", "--encoding=UTF8", "--locale=C", "--no-sync",
                       "--no-instructions"], writable=[self._root()], timeout=120)
        finally:
            password_file.unlink()
        (self.data_dir / "pg_hba.conf").write_text(
            "# restoredrill throwaway server: Unix socket only (in a 0700 directory).\n"
            "# The superuser needs its password; restore roles are trusted.\n"
            "local all postgres scram-sha-256\n"
            "local all all trust\n")
        sandbox.give_to_sandbox(self.data_dir / "pg_hba.conf")

    def _start_server(self) -> None:
        argv = [self._bin("postgres"), "-D", str(self.data_dir),
                "-c", "listen_addresses=", "-c", f"unix_socket_directories={self.socket_dir}",
                "-c", f"port={PORT}", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=20",
                "-c", "shared_buffers=32MB", "-c", "logging_collector=off",
                # the log names each error's SQLSTATE and never the statement (the dump's text)
                "-c", "log_line_prefix=sqlstate=%e ", "-c", "log_min_error_statement=panic",
                "-c", "log_error_verbosity=terse"]
        self._log_handle = open(self.log_file, "ab")
        try:
            self._process = sandbox.start_sandboxed(
                argv, readable=self._bin_readable(), writable=[self._root()],
                limits=self._limits(), env=self._env(), cwd=self._root(), stdout=self._log_handle,
                stderr=subprocess.STDOUT, label="throwaway postgres")
        except sandbox.SandboxError as exc:
            raise PostgresError(str(exc)) from None

    def _wait_until_ready(self) -> None:
        """Wait for postmaster.pid to say ``ready`` (as pg_ctl -w does), then pg_isready once."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PostgresError(f"postgres exited with code {self._process.returncode} while "
                                    f"starting; server log:\n{self.log_tail()}")
            if self._postmaster_status() == PM_STATUS_READY:
                probe = self._run([self._bin("pg_isready"), "-q", "-h", self.socket_dir, "-p", PORT,
                                   "-U", "postgres", "-d", "postgres"], timeout=10, check=False)
                if probe.returncode == 0:
                    return
            time.sleep(0.02)
        raise PostgresError(f"postgres was not ready within {self.ready_timeout:g} s; "
                            f"server log:\n{self.log_tail()}")

    def _postmaster_status(self) -> str:
        try:
            with open_regular_file(self.data_dir / "postmaster.pid") as handle:
                lines = handle.read(4096).decode(errors="replace").splitlines()
        except (OSError, PostgresError):
            return ""
        return lines[PM_STATUS_LINE - 1].strip() if len(lines) >= PM_STATUS_LINE else ""

    def log_tail(self, lines: int = 20) -> str:
        try:  # the server's sandbox can write there: never follow a link it made
            with open_regular_file(self.log_file) as handle:
                text = handle.read().decode(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        except (OSError, PostgresError):
            return "(no server log)"

    # -- running PostgreSQL programs ----------------------------------------
    def _env(self, **extra: str) -> dict[str, str]:
        """A clean environment: no PG* variable from outside may redirect a client."""
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": sandbox.INSIDE_HOME, "PGTZ": "UTC"}
        env.update(extra)
        return env

    def _limits(self, timeout: float | None = None) -> sandbox.Limits:
        """Per process: CPU up to the wall-clock budget, files above the 1 GiB segments,
        the sandbox's RAM-backed /tmp and /dev/shm sized (scratch.budgets.sandbox_tmpfs)."""
        return sandbox.Limits(cpu_seconds=int(timeout or self.timeout) + 1,
                              file_size_bytes=SERVER_FILE_SIZE, tmpfs_bytes=self.budgets.tmpfs_bytes)

    def disk_watch(self) -> tuple[str, str] | None:
        """The server's data counts against scratch.min_free: ("min_free", why) once the
        filesystem holding it has less free (asked about once a second during a load)."""
        try:
            info = os.statvfs(self._root())
        except OSError:
            return None
        free = info.f_bavail * info.f_frsize
        if free < self.budgets.min_free_bytes:
            return "min_free", f"left {free} bytes free where the throwaway server writes"
        return None

    def _bin_readable(self) -> list[Path]:
        """The binaries' directory when it is not under /usr (always in the sandbox)."""
        return [] if Path("/usr") in self.bin_dir.resolve().parents else [self.bin_dir.resolve()]

    def _run(self, argv: list, *, timeout: float, check: bool = True, pgoptions: str | None = None,
             as_superuser: bool = False, readable: tuple = (), writable: list | None = None):
        """Run a PostgreSQL program in the sandbox; clients see the socket directory only."""
        extra = {"PGOPTIONS": pgoptions} if pgoptions else {}
        if as_superuser:
            extra["PGPASSWORD"] = self._superuser_password
        try:
            return sandbox.run_sandboxed(
                argv, readable=[*self._bin_readable(), *readable],
                writable=[self.socket_dir] if writable is None else writable,
                limits=self._limits(timeout), env=self._env(**extra),
                cwd=None, check=check, timeout=timeout, secrets=(self._superuser_password,),
                label="throwaway postgres", stdout_limit=self.budgets.output_bytes, watch=self.disk_watch)
        except sandbox.SandboxError as exc:
            raise PostgresError(str(exc)) from None

    def _client(self, role: str, database: str) -> list[str]:
        return ["-h", str(self.socket_dir), "-p", str(PORT), "-U", role, "-d", database]

    def _admin_sql(self, sql: str) -> None:
        """``psql -U postgres -d postgres -c SQL`` (superuser, our own statements only)."""
        self._run([self._bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                   *self._client("postgres", "postgres"), "-c", sql], timeout=60, as_superuser=True)

    # -- the checks --------------------------------------------------------
    def query(self, database: str, sql: str) -> list[tuple[str, ...]]:
        """Rows of sql, run read-only as the database's restore role (NULL is '').

        Manual equivalent: ``PGOPTIONS='-c default_transaction_read_only=on'
        psql -X --csv -t -U ROLE -d DB -c SQL``.
        """
        try:
            result = self._run([self._bin("psql"), "-X", "--csv", "-t", "-v", "ON_ERROR_STOP=1",
                                "-v", "VERBOSITY=sqlstate",
                                *self._client(restore_role(database), database), "-c", sql],
                               timeout=min(300.0, self.budgets.check_seconds), check=False,
                               pgoptions="-c default_transaction_read_only=on")
        except sandbox.BudgetExceeded as exc:
            raise PostgresError(f"query on database {database} exceeded the budget "
                                f"{self.budgets.describe(exc.budget)}: {sql!r}") from None
        except CommandError:
            raise PostgresError(f"query on database {database} did not finish within "
                                f"{min(300.0, self.budgets.check_seconds):g} s: {sql!r}") from None
        if result.returncode != 0:
            # stderr only (VERBOSITY=sqlstate: severity and SQLSTATE): stdout holds restored rows
            shown = "\n".join(printable(line, 120) for line in result.stderr.strip().splitlines()[-3:])
            raise PostgresError(f"query on database {database} failed: {sql!r}; psql said (restored "
                                f"rows are not shown):\n{shown}")
        return [tuple(row) for row in csv.reader(io.StringIO(result.stdout))]

    def dump_database(self, database: str, target: Path, *, fmt: str = "custom") -> Path:
        """Dump a database of this server as its restore role, without owners or privileges.

        Manual equivalent: ``pg_dump --no-owner --no-privileges -Fc -U ROLE -d DB -f TARGET``.
        """
        formats = {"plain": "p", "custom": "c", "tar": "t", "directory": "d"}
        if fmt not in formats:
            raise PostgresError(f"cannot dump in format {fmt!r}: use one of {', '.join(formats)}")
        holder = self._dump_holder()
        try:
            self._run([self._bin("pg_dump"), "--no-owner", "--no-privileges", f"-F{formats[fmt]}",
                       *self._client(restore_role(database), database), "-f", holder / "dump"],
                      writable=[self.socket_dir, holder], timeout=self.timeout)
            if fmt == "directory":
                copy_dump_directory(holder / "dump", Path(target))
            else:
                with open_regular_file(holder / "dump") as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
        finally:
            shutil.rmtree(holder, ignore_errors=True)
        return Path(target)


def find_bin_dir() -> Path:
    """``pg_config --bindir``, else the newest ``/usr/lib/postgresql/*/bin``."""
    candidates = []
    if shutil.which("pg_config"):
        try:
            candidates.append(Path(run(["pg_config", "--bindir"], timeout=30).stdout.strip()))
        except CommandError as exc:
            log.debug("pg_config failed: %s", exc)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
                      reverse=True)
    candidates.extend(versions)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "postgres").is_file():
            return candidate
    raise PostgresError("no PostgreSQL server binaries (initdb, postgres) found via pg_config or "
                        "in /usr/lib/postgresql/*/bin: install the postgresql package")


def ensure_service_user() -> str:
    """Create the sandbox's system user if missing (we are root) and return its name."""
    sandbox.ensure_sandbox_user()
    return SERVICE_USER


@atexit.register
def _stop_running_servers() -> None:
    for server in list(_running_servers):
        server.stop()
