"""Loading dumps into a :class:`~restoredrill.checks.postgres.server.ThrowawayPostgres`
(its dump-loading half, split from server.py by role): a new unprivileged role owning a
new database, the private copy the sandbox reads, then pg_restore (custom, tar, directory)
or the plain-dump loader (:mod:`plainload`: no psql), each within the budgets.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from restoredrill import sandbox
from restoredrill.checks.postgres import plainload
from restoredrill.checks.postgres.dumpfiles import copy_dump_directory, open_regular_file, refuse_special
from restoredrill.checks.postgres.errors import PostgresError
from restoredrill.checks.postgres.script import (DUMP_FORMATS, detect_dump_format, dump_failure_message,
                                                 pg_restore_failure, restore_role)
from restoredrill.execute import CommandError

log = logging.getLogger("restoredrill.checks.postgres")
SOCKET_NAME = ".s.PGSQL.5432"     # PORT 5432 only names the socket file


@dataclass(frozen=True)
class DumpRestore:
    """What :meth:`ThrowawayPostgres.restore_dump` did."""

    dump_path: Path
    database: str
    role: str
    dump_format: str
    seconds: float
    skipped_statements: int = 0     # OWNER TO / GRANT / REVOKE left out of a plain dump



class DumpLoading:
    """Mixed into ThrowawayPostgres: needs its _run, _admin_sql, _client, _bin, _env, socket_dir,
    log_file, work_dir, budgets and disk_watch."""

    def restore_dump(self, dump_path: Path, database: str, *, fmt: str = "auto") -> DumpRestore:
        """Create ``database`` owned by a new unprivileged role and load dump_path as that role.

        A plain dump is checked and loaded by :mod:`plainload` (no psql);
        a custom, directory or tar dump by pg_restore, which sends each entry's SQL to the
        server itself (no client-side commands exist on that path).

        Errors never quote the server's message text (it quotes the dump): psql runs with
        ``VERBOSITY=sqlstate`` (file, line, SQLSTATE); for pg_restore the SQLSTATE comes
        from the server log (``log_line_prefix`` with ``%e``) and the failed TOC entry's
        number from pg_restore's output.

        Manual equivalent: ``psql -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -X -U ROLE -d DB
        -f DUMP`` for a plain dump, ``pg_restore --no-owner --no-privileges --exit-on-error
        -U ROLE -d DB DUMP`` for the other formats.
        """
        dump_path = Path(dump_path)
        if fmt not in DUMP_FORMATS:
            raise PostgresError(f"unknown dump format {fmt!r}: use one of {', '.join(DUMP_FORMATS)}")
        restore_role(database)  # refuses a bad name before any work
        refuse_special(dump_path)
        dump_format = detect_dump_format(dump_path) if fmt == "auto" else fmt
        holder = self._dump_holder()
        try:
            readable = self._readable_copy(dump_path, holder)
            role = self._create_database(database, dump_path)
            started = time.monotonic()
            log_offset = self._log_size()
            try:
                self._load(readable, dump_format, role, database, dump_path)
            except sandbox.BudgetExceeded as exc:
                raise plainload.budget_error(dump_path, self.budgets, exc.budget) from None
            except CommandError as exc:
                if exc.returncode is None:      # stopped at the wall-time budget
                    raise plainload.budget_error(dump_path, self.budgets, "check_timeout") from None
                tail, state = pg_restore_failure(exc.tail, self._log_since(log_offset))
                raise PostgresError(dump_failure_message(dump_path, dump_format, tail, state)) from None
        finally:
            shutil.rmtree(holder, ignore_errors=True)
        seconds = time.monotonic() - started
        log.info("restored %s (%s) into %s as %s in %.2f s", dump_path, dump_format, database,
                 role, seconds)
        return DumpRestore(dump_path, database, role, dump_format, seconds,
                           self.skipped_statements)

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def _log_since(self, offset: int) -> str:
        """The server log written since offset (read without following links)."""
        try:
            with open_regular_file(self.log_file) as handle:
                handle.seek(offset)
                return handle.read(1 << 20).decode(errors="replace")
        except (OSError, PostgresError):
            return ""

    def _dump_holder(self) -> Path:
        """A directory for one dump copy, outside the server's writable root: the
        server's sandbox cannot see it, let alone swap a link into it."""
        return sandbox.private_dir(self.work_dir, "throwaway-postgres-dump-")

    def _create_database(self, database: str, dump_path: Path) -> str:
        role = restore_role(database)
        try:
            self._admin_sql(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB '
                            f'NOREPLICATION NOBYPASSRLS')
            self._admin_sql(f'CREATE DATABASE "{database}" OWNER "{role}" TEMPLATE template0')
        except CommandError as exc:
            raise PostgresError(f"cannot create database {database} for dump {dump_path}; "
                                f"last output:\n{exc.tail}") from None
        return role

    def _load(self, dump: Path, dump_format: str, role: str, database: str, shown: Path) -> None:
        if dump_format == "plain":
            self.skipped_statements = self._load_plain(dump, role, database, shown)
            return
        argv = [self._bin("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--verbose",
                f"--format={dump_format}", *self._client(role, database), dump]
        self._run(argv, readable=(dump.parent,), timeout=self.budgets.check_seconds)

    def _load_plain(self, dump: Path, role: str, database: str, shown: Path) -> int:
        """The loader (plainload.py: no psql, so no meta-command can run) in the sandbox."""
        budgets = self.budgets
        python, python_dirs = sandbox.system_python()
        kit = plainload.write_kit(dump.parent)
        sandbox.give_to_sandbox(dump.parent)
        argv = plainload.loader_argv(kit, python, dump, self.socket_dir / SOCKET_NAME, role,
                                     database, budgets)
        limits = sandbox.Limits(cpu_seconds=int(budgets.check_seconds) + 1,
                                address_space_bytes=budgets.parse_memory_bytes,
                                file_size_bytes=0, processes=16, tmpfs_bytes=1 << 20)
        try:
            result = sandbox.run_sandboxed(
                argv, readable=[dump.parent, *python_dirs], writable=[self.socket_dir], limits=limits,
                env=self._env(), check=False, timeout=budgets.check_seconds, label="plain dump loader",
                stdout_limit=plainload.RESULT_LIMIT, watch=self.disk_watch)
        except sandbox.BudgetExceeded as exc:
            raise plainload.budget_error(shown, budgets, exc.budget) from None
        except CommandError:
            raise plainload.budget_error(shown, budgets, "check_timeout") from None
        except sandbox.SandboxError as exc:
            raise PostgresError(str(exc)) from None
        if result.returncode != 0 and not result.stdout.strip():
            # RLIMIT_AS makes Python raise MemoryError (reported); a kill by a limit lands here
            raise PostgresError(f"dump {shown} (plain format): the loader stopped with code "
                                f"{result.returncode}{sandbox.signal_note(result.returncode)} "
                                f"within the budgets {budgets.describe('parse_memory')} and "
                                f"{budgets.describe('check_timeout')}")
        return plainload.interpret(result.stdout, dump_path=shown, budgets=budgets)

    def _readable_copy(self, dump_path: Path, holder: Path) -> Path:
        """The private copy the sandbox reads (links never followed)."""
        target = holder / (dump_path.name or "dump")
        if dump_path.is_dir() and not dump_path.is_symlink():
            copy_dump_directory(dump_path, target)
        else:
            with open_regular_file(dump_path) as source, open(target, "xb") as out:
                shutil.copyfileobj(source, out, 1 << 20)    # a plain dump is checked by the loader
        sandbox.give_to_sandbox(holder)
        return target

