"""A throwaway PostgreSQL server that proves a dump restores.

Drills restore a PostgreSQL dump found in a backup into a private, short-lived
server and query it for a canary. Control flow: start (initdb, postgres on a
Unix socket only) -> restore_dump (new unprivileged role owning a new database,
load as that role) -> query (read-only, as that role) -> stop (``pg_ctl stop -m
immediate``, remove everything).

Privileges, in layers:

* ``initdb`` and ``postgres`` refuse to run as root, so when we are root every
  PostgreSQL program (server and clients) runs as the system user
  ``restoredrill``, created on first use with ``useradd --system
  --no-create-home --shell /usr/sbin/nologin restoredrill``. We switch with
  ``setpriv --reuid --regid --clear-groups``: subprocess's ``user=`` alone
  would keep root's group and supplementary groups.
* The server listens on no TCP address (``listen_addresses=''``), only on a
  socket in a 0700 directory owned by that user. Restore roles log in by
  ``trust`` (nobody else can reach the socket); the superuser ``postgres``
  needs a random password that only our own administrative psql calls get
  (``PGPASSWORD``), so a dump cannot reconnect as the superuser.
* Each dump is loaded as a role without SUPERUSER, CREATEROLE or CREATEDB that
  owns its database: the server refuses ``COPY ... FROM PROGRAM`` and other
  superuser-only statements from it.
* A plain (SQL) dump is read by psql, whose backslash meta-commands run on the
  client (``\\!``, ``\\o |cmd``, ``\\copy ... program``, ``\\w |cmd``...). Such a
  dump is scanned first and refused unless it only uses the meta-commands
  pg_dump itself writes (see :data:`ALLOWED_META_COMMANDS`).

Plain dumps carry ``ALTER ... OWNER TO`` and ``GRANT``/``REVOKE`` statements that an
unprivileged role cannot run: the private copy of a plain dump leaves out those
one-line statements outside COPY data, as ``pg_restore --no-owner --no-privileges``
does for the other formats (the count is part of the evidence).
"""
from __future__ import annotations

import atexit
import csv
import grp
import io
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from restoredrill.checks.postgres.errors import PostgresError
from restoredrill.checks.postgres.script import (DUMP_FORMATS, check_plain_dump_is_safe,
                                                 copy_without_owner_statements, detect_dump_format,
                                                 dump_failure_message, restore_role)
from restoredrill.execute import CommandError, run

log = logging.getLogger("restoredrill.checks.postgres")

SERVICE_USER = "restoredrill"
PORT = 5432  # only names the socket file; there is no TCP listener
STOP_GRACE_SECONDS = 5.0

_running_servers: "weakref.WeakSet[ThrowawayPostgres]" = weakref.WeakSet()


@dataclass(frozen=True)
class DumpRestore:
    """What :meth:`ThrowawayPostgres.restore_dump` did."""

    dump_path: Path
    database: str
    role: str
    dump_format: str
    seconds: float
    skipped_statements: int = 0     # OWNER TO / GRANT / REVOKE left out of a plain dump


class ThrowawayPostgres:
    """A private PostgreSQL server in a temporary directory, for restore checks.

    ``work_dir`` receives the temporary directory (it must let the service
    user through: when it does not, the system temporary directory is used).
    """

    def __init__(self, work_dir: Path, *, bin_dir: Path | None = None, timeout: float = 3600.0,
                 ready_timeout: float = 60.0):
        self.work_dir = Path(work_dir)
        self.bin_dir = Path(bin_dir) if bin_dir else None
        self.timeout = timeout
        self.ready_timeout = ready_timeout
        self.os_user: str | None = None
        self.root_dir: Path | None = None
        self.startup_seconds: float | None = None
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
        self.os_user = ensure_service_user() if os.geteuid() == 0 else None
        self.root_dir = self._make_private_dir()
        _running_servers.add(self)
        try:
            self._initdb()
            self._start_server()
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info("throwaway PostgreSQL pid %d ready in %.2f s (socket %s)",
                 self._process.pid, self.startup_seconds, self.socket_dir)
        return self

    def stop(self) -> None:
        """``pg_ctl stop -m immediate``, SIGKILL if needed, remove the temporary directory."""
        process, self._process = self._process, None
        _running_servers.discard(self)
        if process is not None and process.poll() is None:
            try:
                self._run([self._bin("pg_ctl"), "stop", "-D", self.data_dir, "-m", "immediate",
                           "-w", "-t", str(int(STOP_GRACE_SECONDS))], timeout=STOP_GRACE_SECONDS + 5)
            except CommandError as exc:
                log.warning("pg_ctl stop failed, killing postgres: %s", exc)
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_GRACE_SECONDS)
        if self._log_handle:
            self._log_handle.close()
            self._log_handle = None
        if self.root_dir is not None:
            shutil.rmtree(self.root_dir, ignore_errors=True)
            self.root_dir = None

    def _make_private_dir(self) -> Path:
        parent = self.work_dir if self._user_can_enter(self.work_dir) else Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="throwaway-postgres-", dir=parent))
        (root / "socket").mkdir(mode=0o700)
        self._give_to_service_user(root)
        (root / "socket").chmod(0o700)
        return root

    def _user_can_enter(self, path: Path) -> bool:
        """Whether the service user can traverse every directory down to path."""
        if self.os_user is None:
            return True
        path = path.resolve()
        for directory in [*reversed(path.parents), path]:
            if not directory.exists():
                return True  # we create the rest (0755 under the umask)
            if not os.stat(directory).st_mode & 0o001:
                return False
        return True

    def _give_to_service_user(self, path: Path) -> None:
        if self.os_user is None:
            return
        entry = pwd.getpwnam(self.os_user)
        for item in [path, *path.rglob("*")]:
            os.chown(item, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        password_file = self._root() / "superuser-password"
        password_file.write_text(self._superuser_password + "\n")
        password_file.chmod(0o600)
        self._give_to_service_user(password_file)
        try:
            self._run([self._bin("initdb"), "-D", self.data_dir, "--username=postgres",
                       f"--pwfile={password_file}", "--auth-local=scram-sha-256",
                       "--auth-host=reject", "--encoding=UTF8", "--locale=C", "--no-sync",
                       "--no-instructions"], timeout=120)
        finally:
            password_file.unlink()
        (self.data_dir / "pg_hba.conf").write_text(
            "# restoredrill throwaway server: Unix socket only (in a 0700 directory).\n"
            "# The superuser needs its password; restore roles are trusted.\n"
            "local all postgres scram-sha-256\n"
            "local all all trust\n")
        self._give_to_service_user(self.data_dir / "pg_hba.conf")

    def _start_server(self) -> None:
        argv = [*self._as_service_user(), self._bin("postgres"), "-D", str(self.data_dir),
                "-c", "listen_addresses=", "-c", f"unix_socket_directories={self.socket_dir}",
                "-c", f"port={PORT}", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=20",
                "-c", "shared_buffers=32MB", "-c", "logging_collector=off"]
        self._log_handle = open(self.log_file, "ab")
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log_handle,
                                         stderr=subprocess.STDOUT, cwd=self.root_dir,
                                         env=self._env(), start_new_session=True)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PostgresError(f"postgres exited with code {self._process.returncode} while "
                                    f"starting; server log:\n{self.log_tail()}")
            probe = self._run([self._bin("pg_isready"), "-q", "-h", self.socket_dir, "-p", PORT,
                               "-U", "postgres", "-d", "postgres"], timeout=10, check=False)
            if probe.returncode == 0:
                return
            time.sleep(0.05)
        raise PostgresError(f"postgres was not ready within {self.ready_timeout:g} s; "
                            f"server log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, PostgresError):
            return "(no server log)"

    # -- running PostgreSQL programs ----------------------------------------
    def _as_service_user(self) -> list[str]:
        if self.os_user is None:
            return []
        return ["setpriv", f"--reuid={self.os_user}", f"--regid={self.os_user}", "--clear-groups", "--"]

    def _env(self, **extra: str) -> dict[str, str]:
        """A clean environment: no PG* variable from outside may redirect a client."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
               "HOME": str(self._root()), "PGTZ": "UTC"}
        env.update(extra)
        return env

    def _run(self, argv: list, *, timeout: float, check: bool = True, pgoptions: str | None = None,
             as_superuser: bool = False):
        extra = {"PGOPTIONS": pgoptions} if pgoptions else {}
        if as_superuser:
            extra["PGPASSWORD"] = self._superuser_password
        return run([*self._as_service_user(), *argv], timeout=timeout, env=self._env(**extra),
                   cwd=self._root(), check=check, secrets=(self._superuser_password,),
                   label="throwaway postgres")

    def _client(self, role: str, database: str) -> list[str]:
        return ["-h", str(self.socket_dir), "-p", str(PORT), "-U", role, "-d", database]

    def _admin_sql(self, sql: str) -> None:
        """``psql -U postgres -d postgres -c SQL`` (superuser, our own statements only)."""
        self._run([self._bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                   *self._client("postgres", "postgres"), "-c", sql], timeout=60, as_superuser=True)

    # -- the checks --------------------------------------------------------
    def restore_dump(self, dump_path: Path, database: str, *, fmt: str = "auto") -> DumpRestore:
        """Create ``database`` owned by a new unprivileged role and load dump_path as that role.

        Manual equivalent: ``psql -v ON_ERROR_STOP=1 -X -U ROLE -d DB -f DUMP`` for a
        plain dump, ``pg_restore --no-owner --no-privileges --exit-on-error -U ROLE -d DB
        DUMP`` for the custom, directory and tar formats.
        """
        dump_path = Path(dump_path)
        if fmt not in DUMP_FORMATS:
            raise PostgresError(f"unknown dump format {fmt!r}: use one of {', '.join(DUMP_FORMATS)}")
        dump_format = detect_dump_format(dump_path) if fmt == "auto" else fmt
        if dump_format == "plain":
            check_plain_dump_is_safe(dump_path)
        role = restore_role(database)
        try:
            self._admin_sql(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB '
                            f'NOREPLICATION NOBYPASSRLS')
            self._admin_sql(f'CREATE DATABASE "{database}" OWNER "{role}" TEMPLATE template0')
        except CommandError as exc:
            raise PostgresError(f"cannot create database {database} for dump {dump_path}; "
                                f"last output:\n{exc.tail}") from None
        started = time.monotonic()
        self.skipped_statements = 0
        readable = self._readable_copy(dump_path, strip=dump_format == "plain")
        try:
            self._load(readable, dump_format, role, database)
        except CommandError as exc:
            tail = exc.tail.replace(str(readable), str(dump_path))  # psql names the file it read
            raise PostgresError(dump_failure_message(dump_path, dump_format, tail)) from None
        finally:
            if readable != dump_path:
                shutil.rmtree(readable.parent, ignore_errors=True)
        seconds = time.monotonic() - started
        log.info("restored %s (%s) into %s as %s in %.2f s", dump_path, dump_format, database,
                 role, seconds)
        return DumpRestore(dump_path, database, role, dump_format, seconds,
                           self.skipped_statements)

    def _load(self, dump: Path, dump_format: str, role: str, database: str) -> None:
        if dump_format == "plain":
            argv = [self._bin("psql"), "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-X", "-q",
                    *self._client(role, database), "-f", dump]
        else:
            argv = [self._bin("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
                    f"--format={dump_format}", *self._client(role, database), dump]
        self._run(argv, timeout=self.timeout)

    def _readable_copy(self, dump_path: Path, *, strip: bool = False) -> Path:
        """The service user may not read the dump where it lies: hand it a private copy
        (for plain dumps without owner and privilege statements)."""
        if self.os_user is None and not strip:
            return dump_path
        holder = Path(tempfile.mkdtemp(prefix="dump-", dir=self._root()))
        target = holder / dump_path.name
        if strip:
            with open(dump_path, encoding="utf-8", errors="surrogateescape") as source, \
                    open(target, "w", encoding="utf-8", errors="surrogateescape") as out:
                self.skipped_statements = copy_without_owner_statements(source, out)
        elif dump_path.is_dir():
            shutil.copytree(dump_path, target)
        else:
            shutil.copyfile(dump_path, target)
        self._give_to_service_user(holder)
        return target

    def query(self, database: str, sql: str) -> list[tuple[str, ...]]:
        """Rows of sql, run read-only as the database's restore role (NULL is '').

        Manual equivalent: ``PGOPTIONS='-c default_transaction_read_only=on'
        psql -X --csv -t -U ROLE -d DB -c SQL``.
        """
        try:
            result = self._run([self._bin("psql"), "-X", "--csv", "-t", "-v", "ON_ERROR_STOP=1",
                                *self._client(restore_role(database), database), "-c", sql],
                               timeout=300, pgoptions="-c default_transaction_read_only=on")
        except CommandError as exc:
            raise PostgresError(f"query on database {database} failed: {sql!r}; "
                                f"last output:\n{exc.tail}") from None
        return [tuple(row) for row in csv.reader(io.StringIO(result.stdout))]

    def dump_database(self, database: str, target: Path, *, fmt: str = "custom") -> Path:
        """Dump a database of this server as its restore role, without owners or privileges.

        Manual equivalent: ``pg_dump --no-owner --no-privileges -Fc -U ROLE -d DB -f TARGET``.
        """
        formats = {"plain": "p", "custom": "c", "tar": "t"}
        if fmt not in formats:
            raise PostgresError(f"cannot dump in format {fmt!r}: use one of {', '.join(formats)}")
        holder = Path(tempfile.mkdtemp(prefix="dump-", dir=self._root()))
        self._give_to_service_user(holder)
        try:
            self._run([self._bin("pg_dump"), "--no-owner", "--no-privileges", f"-F{formats[fmt]}",
                       *self._client(restore_role(database), database), "-f", holder / "dump"],
                      timeout=self.timeout)
            shutil.copyfile(holder / "dump", target)
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
    """Create the system user ``restoredrill`` if missing (we are root) and return its name."""
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        # exit code 9: another process created it meanwhile
        run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SERVICE_USER], timeout=60, ok_codes=(0, 9), label="throwaway postgres")
        pwd.getpwnam(SERVICE_USER)
        grp.getgrnam(SERVICE_USER)
    return SERVICE_USER



@atexit.register
def _stop_running_servers() -> None:
    for server in list(_running_servers):
        server.stop()
