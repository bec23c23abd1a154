"""Borg client: the only code that runs borg. Read-side subcommands only.

The passphrase reaches borg through a pipe (``BORG_PASSPHRASE_FD``), never argv or
an environment variable holding the value. Nothing here can prune, delete, compact,
break or bypass a lock, import a key or recreate an archive.

Locks (borg/locking.py): ``check`` holds the repository's exclusive lock, ``list``,
``info`` and ``extract`` a shared one; ``borg create`` waits only 1 s for it by default.
So every call here (1) starts only when it can end before the repository's next
backup window (:mod:`restoredrill.backup_window`) and gets at most the time that is
left, and (2) is stopped at its timeout with SIGTERM to the borg process, never
SIGKILL first: borg turns SIGTERM into ``SigTerm`` (borg/helpers/process.py
``raising_signal_handler``, installed in borg/archiver.py ``main``), which unwinds
through ``Repository.__exit__`` and releases the lock. SIGKILL leaves ``lock.exclusive``
and ``lock.roster`` behind, and borg removes a dead holder's lock itself only on the
host that holds it (``ExclusiveLock.kill_stale_lock``: ``platform.process_alive`` is
false only for the own host id). The first SIGINT would do nothing to ``check`` or
``extract``: ``SigIntManager`` only sets a flag that ``create`` reads.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from signal import SIGTERM

from restoredrill import backup_window
from restoredrill.execute import CommandError, Result, Stop, run

# borg 1.4.5 refuses archive members below a symlinked parent and hard-link sources that
# leave the extract (borg/archive.py Archive._check_safe_parent, BackupSymlinkParentError,
# BackupHardlinkSourceError); Debian 12's borg 1.2.4 writes through such a parent as root.
SAFE_EXTRACT_VERSION = (1, 4, 5)
READ_ONLY_SUBCOMMANDS = frozenset({"list", "info", "check", "extract"})
FORBIDDEN_SUBCOMMANDS = frozenset({"prune", "delete", "compact", "break-lock", "recreate", "key",
                                   "init", "create", "rename", "upgrade", "config", "mount", "with-lock"})
# never on a borg command line: they would take the lock away from a running backup (or write)
FORBIDDEN_ARGS = ("--bypass-lock", "break-lock", "--break-lock", "with-lock", "--repair")
SCRUBBED_ENV = ("BORG_PASSPHRASE", "BORG_PASSCOMMAND", "BORG_PASSPHRASE_FD", "BORG_REPO",
                "BORG_NEW_PASSPHRASE", "BORG_KEY_FILE")


class BorgError(RuntimeError):
    """borg failed; ``cause`` is a short human reason, the message says repo, cause and fix."""

    def __init__(self, repo: str, cause: str, detail: str = ""):
        self.repo = repo
        self.cause = cause
        self.detail = detail
        super().__init__(f"repository {repo}: {cause}" + (f"\n{detail}" if detail else ""))


@dataclass(frozen=True)
class Archive:
    name: str
    start: datetime        # tz-aware UTC
    id: str = ""


@dataclass(frozen=True)
class Listing:
    """One ``borg list --json REPO`` answer: the archives (oldest first) and what borg says of the
    repository beside them: ``repository`` (``id``, ``location``, ``last_modified``) and
    ``encryption`` (``mode``), the same keys ``borg info --json REPO`` gives
    (borg 1.4 src/borg/archiver.py ``_list_repository`` prints ``basic_json_data(manifest, ...)``,
    src/borg/helpers/parseformat.py), without ``borg info``'s cache sync."""
    archives: list[Archive]
    info: dict


@dataclass
class BorgTarget:
    """Everything needed to reach one repository; secrets only as a resolver."""
    name: str
    location: str
    base_dir: Path                        # persistent BORG_BASE_DIR for this repository
    passphrase: Callable[[], str] | None = None
    rsh: str | None = None                # BORG_RSH, strict host key checking
    lock_wait_seconds: int = 600
    binary: str = "borg"
    remote_path: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    windows: tuple[backup_window.Window, ...] = ()   # when borg create runs (none: no deadline)
    window_margin: timedelta = timedelta(minutes=15)
    stop_grace_seconds: float = 30.0      # after SIGTERM at a timeout, SIGKILL only this much later
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc), repr=False)

    def __post_init__(self) -> None:
        # borg extract runs inside the extract folder (cwd): a relative BORG_BASE_DIR or local
        # repository path would be read against it, and borg would write its cache and security
        # record into the restored data (issue 26). Fixed against the current folder, once.
        self.base_dir = Path(self.base_dir).absolute()
        if "://" not in self.location and not os.path.isabs(self.location):
            self.location = os.path.abspath(self.location)

    @property
    def remote(self) -> bool:
        return self.location.startswith("ssh://")

    def budget(self) -> backup_window.Budget:
        return backup_window.budget(self.windows, self.clock(), self.window_margin)


# (pattern in borg's output, cause, fix): first match wins
_CAUSES: Sequence[tuple[str, str]] = (
    # borg 1.4 src/borg/crypto/key.py KeyfileMismatchError: "Mismatch between repository {} and key file {}."
    (r"Mismatch between repository .* and key file",
     "the key file belongs to another repository: escrow this repository's key (`borg key export`)"),
    (r"passphrase supplied .* is incorrect|passphrase .*incorrect",
     "wrong passphrase: the repository key did not open; check the passphrase reference"),
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed|No \S+ host key is known",
     "the SSH host key is unknown or has changed: refusing to connect; verify the server's "
     "fingerprint out of band and update known_hosts"),
    (r"Repository .* does not exist|No such file or directory.*repository|Repository path .* not found",
     "the repository does not exist at this location; check borg.repositories[].location"),
    (r"is not a valid repository|Not a valid .*repository",
     "the path is not a Borg repository; check the location"),
    (r"Failed to create/acquire the lock|lock.*timeout|LockTimeout",
     "the repository is locked (a backup or check is running?); the drill waited lock_wait and gave up "
     "without breaking the lock"),
    (r"Connection refused|Could not resolve hostname|No route to host|Connection timed out|"
     r"Connection closed by remote host|Connection closed|Broken pipe",
     "the repository's server is unreachable over SSH"),
    (r"Permission denied \(publickey|Permission denied",
     "SSH login or file access was refused; check the key and the forced command"),
    (r"Remote: Borg .*: Got unexpected RPC data format|is not permitted by the restrictions|"
     r"--restrict-to-path",
     "the server's borg serve refused the path (restrict-to-path)"),
    (r"Cache, or information obtained from the security directory is newer than repository|"
     r"Attack on repository|Manifest.*newer",
     "the repository looks older than last seen (rollback or replay?): borg refused it"),
    (r"malicious or corrupted archive|a parent directory is a symlink|hardlink source path is unsafe|"
     r"path traversal",
     "the archive holds members borg refused to extract (below a symbolic-link directory, or an unsafe "
     "hard-link source): a crafted or damaged archive; nothing was written outside the extract folder"),
    (r"Data integrity error|Segment entry checksum mismatch|Index object count mismatch|"
     r"Archive metadata damage|error found|errors found|integrity",
     "the repository is damaged (borg check found errors)"),
)


UNREACHABLE = "the repository's server is unreachable over SSH"
UNEXPLAINED = "borg failed"


def explain_failure(tail: str) -> str:
    for pattern, cause in _CAUSES:
        if re.search(pattern, tail, re.IGNORECASE):
            return cause
    return UNEXPLAINED


def resolve_binary(binary: str) -> str:
    """``borg`` means the borg installed beside this Python (the venv's), else the one on PATH."""
    if binary != "borg":
        return binary
    beside = Path(sys.executable).parent / "borg"
    if beside.is_file():
        return str(beside)
    return shutil.which("borg") or binary


# borg 1.x ``--show-version`` (src/borg/archiver.py ``run``: logger ``borg.output.show-version``,
# turned on by ``_setup_topic_logging``) logs this line on stderr at the start of every call
SHOWN_VERSION = re.compile(r"^borgbackup version (\d+)\.(\d+)\.(\d+)", re.MULTILINE)


class BorgClient:
    def __init__(self, target: BorgTarget):
        self.target = target
        self.target.binary = resolve_binary(target.binary)
        self.seen_version: tuple[int, ...] | None = None   # what the last borg call said it was

    # --- the choke point ------------------------------------------------------------
    def _run(self, subcommand: str, args: Sequence[str], *, timeout: float, cwd: Path | None = None,
             ok_codes: Sequence[int] = (0,), check: bool = True,
             watch: Callable[[], str | None] | None = None) -> Result:
        """Run one read-side borg subcommand against the repository."""
        if subcommand not in READ_ONLY_SUBCOMMANDS:
            raise PermissionError(f"borg {subcommand} is not allowed: restoredrill only reads repositories")
        refused = [a for a in args if str(a).split("=")[0] in FORBIDDEN_ARGS]
        if refused:
            raise PermissionError(f"borg {subcommand} {' '.join(refused)} is not allowed: restoredrill never "
                                  f"bypasses or breaks a repository lock and never repairs")
        left = self.target.budget()
        why_not = backup_window.refusal(f"borg {subcommand}", left)
        if why_not:
            raise BorgError(self.target.name, why_not)
        lock_wait = int(left.bound(self.target.lock_wait_seconds))
        limit = left.bound(timeout + lock_wait)
        argv = [self.target.binary, subcommand, "--show-version", f"--lock-wait={lock_wait}"]
        if self.target.remote_path:
            argv.append(f"--remote-path={self.target.remote_path}")
        argv.extend(args)
        secret = self.target.passphrase() if self.target.passphrase else None
        read_fd = None
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        env.update(self._environment())
        if secret is not None:
            read_fd = _passphrase_pipe(secret)
            env["BORG_PASSPHRASE_FD"] = str(read_fd)
        try:
            result = run(argv, timeout=limit, env=env, cwd=cwd,
                         pass_fds=(read_fd,) if read_fd is not None else (),
                         secrets=(secret,) if secret else (), ok_codes=ok_codes, check=check,
                         label=f"borg {subcommand} [{self.target.name}]",
                         stop=Stop(SIGTERM, self.target.stop_grace_seconds), watch=watch)
            shown = SHOWN_VERSION.search(result.stderr or "")
            if shown:
                self.seen_version = tuple(int(x) for x in shown.groups())
            return result
        except CommandError as exc:
            tail = exc.tail or str(exc)
            if exc.watched:
                raise BorgError(self.target.name, f"borg {subcommand} was stopped: {exc.watched}",
                                f"command: {' '.join(exc.argv[:2])} ...\nlast output:\n{tail}") from None
            if exc.timed_out:
                raise BorgError(self.target.name, self._stopped_cause(subcommand, limit, left, exc),
                                f"command: {' '.join(exc.argv[:2])} ...\nlast output:\n{tail}") from None
            cause = explain_failure(tail)
            if cause in (UNREACHABLE, UNEXPLAINED) and self.target.rsh:
                probe = self._probe_ssh()   # borg may drop ssh's own words when the connection dies
                if probe:
                    tail = f"{tail}\nssh probe: {probe}"
                    cause = explain_failure(probe) if explain_failure(probe) != UNEXPLAINED else cause
            raise BorgError(self.target.name, cause,
                            f"command: {' '.join(exc.argv[:2])} ...\nlast output:\n{tail}") from None
        finally:
            if read_fd is not None:
                os.close(read_fd)

    def _stopped_cause(self, subcommand: str, limit: float, left: backup_window.Budget,
                       exc: CommandError) -> str:
        """One paragraph: what stopped borg, how, and what that means for the lock."""
        if left.deadline is not None and left.bound(10 ** 9) <= limit + 1:
            why = (f"it reached the deadline {left.deadline:%Y-%m-%d %H:%M} UTC, {_minutes(self.target.window_margin)} "
                   f"before the backup window {left.window.label}")
            fix = "schedule the drill earlier or give it a longer gap before the window"
        else:
            why = f"it ran past its timeout ({limit:.0f} s including lock_wait)"
            fix = "look for a slow or hung repository, or raise the budget"
        text = f"borg {subcommand} was stopped: {why} ({exc.stopped})"
        if self.target.remote and subcommand == "check":
            text += ("; over ssh:// borg serve keeps the exclusive lock until its repository check returns "
                     "(a bounded --max-duration check ends it)")
        elif "SIGKILL" not in exc.stopped:
            text += "; borg released its lock on SIGTERM"
        return f"{text}. Fix: {fix}."

    def _probe_ssh(self) -> str:
        """``ssh -p PORT USER@HOST true`` with the same options: what does ssh itself say?"""
        match = re.match(r"ssh://(?:([^@/]+)@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?/", self.target.location)
        if not match:
            return ""
        user, host, port = match.groups()
        argv = [*shlex.split(self.target.rsh), "-p", port or "22", f"{user}@{host}" if user else host, "true"]
        try:
            result = run(argv, timeout=30, check=False, input="", label="ssh probe")
        except CommandError as exc:
            return str(exc)
        return " ".join(result.stderr.split())[-500:]

    def _environment(self) -> dict[str, str]:
        base = self.target.base_dir
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = {
            "BORG_BASE_DIR": str(base),
            "TZ": "UTC",                       # list --json then gives naive UTC times
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",   # to report mode none, not to hang
            "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "NO",
            "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING": "NO",
            "BORG_DISPLAY_PASSPHRASE": "no",
            "BORG_EXIT_CODES": "legacy",
        }
        if self.target.rsh:
            env["BORG_RSH"] = self.target.rsh
        env.update(self.target.extra_env)
        return env

    # --- commands -------------------------------------------------------------------
    def version(self) -> tuple[int, ...]:
        """The version the last borg call of this client logged (``--show-version``: no extra
        borg start), else ``borg --version``."""
        if self.seen_version is not None:
            return self.seen_version
        try:
            out = run([self.target.binary, "--version"], timeout=60, label="borg --version").stdout
        except CommandError as exc:
            raise BorgError(self.target.name, f"borg cannot be run on this machine: {exc}; install "
                            f"borgbackup (pip or apt) or set borg_binary") from None
        match = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
        return tuple(int(x) for x in match.groups()) if match else (0,)

    def require_safe_extract(self) -> None:
        """Refuse to extract with a borg older than :data:`SAFE_EXTRACT_VERSION`."""
        found = self.version()
        if found < SAFE_EXTRACT_VERSION:
            shown = ".".join(map(str, found)) if found != (0,) else "of unknown version"
            raise BorgError(self.target.name, f"borg {shown} cannot extract an untrusted archive safely",
                            f"borg before {'.'.join(map(str, SAFE_EXTRACT_VERSION))} follows a symbolic-link "
                            f"directory stored in an archive and writes the members below it outside the "
                            f"extract folder (and links unsafe hard-link sources); install borgbackup "
                            f">= {'.'.join(map(str, SAFE_EXTRACT_VERSION))} (pip install 'borgbackup>=1.4.5') "
                            f"or point borg_binary at one; the other drills (list, check) still run")

    def repository_info(self, timeout: float = 600) -> dict:
        """``borg info --json REPO``: repository id, location, encryption mode, cache stats."""
        return json.loads(self._run("info", ["--json", self.target.location], timeout=timeout).stdout)

    def list_archives(self, timeout: float = 600) -> list[Archive]:
        """``borg list --json REPO``, newest last, times as UTC."""
        return self.list_repository(timeout).archives

    def list_repository(self, timeout: float = 600) -> Listing:
        """``borg list --json REPO``: the archives (newest last, times as UTC), the repository id
        and the encryption mode, in one borg start."""
        data = json.loads(self._run("list", ["--json", self.target.location], timeout=timeout).stdout)
        archives = [Archive(a["name"], parse_borg_time(a.get("start") or a["time"]), a.get("id", ""))
                    for a in data.get("archives", [])]
        info = {"repository": data.get("repository") or {}, "encryption": data.get("encryption") or {}}
        if "id" not in info["repository"] or "mode" not in info["encryption"]:
            raise BorgError(self.target.name, "borg list --json named no repository id or encryption mode; "
                            "install borgbackup >= 1.4.5 or point borg_binary at one")
        return Listing(sorted(archives, key=lambda a: a.start), info)

    def archive_info(self, archive: str, timeout: float = 1800) -> dict:
        """``borg info --json REPO::ARCHIVE``: the archive's stats (original size, files)."""
        data = json.loads(self._run("info", ["--json", f"{self.target.location}::{archive}"],
                                    timeout=timeout).stdout)
        return data["archives"][0]

    def check(self, *, verify_data: bool = False, repository_only: bool = False,
              archives_only: bool = False, last: int | None = None, max_duration: int | None = None,
              timeout: float = 6 * 3600) -> Result:
        """``borg check --info [--verify-data | --repository-only [--max-duration S] | --archives-only]``

        ``--info`` makes borg log how far a repository check got (see
        :func:`restoredrill.backup_window.segment_pass`). ``--max-duration`` needs
        ``--repository-only`` and excludes ``--verify-data`` and ``--last``
        (borg/archiver.py ``do_check``).
        """
        args = ["--info"]
        if verify_data:
            args.append("--verify-data")
        if repository_only:
            args.append("--repository-only")
            if max_duration:
                args.append(f"--max-duration={max_duration}")
        if archives_only:
            args.append("--archives-only")
        if last:
            args.append(f"--last={last}")
        return self._run("check", [*args, self.target.location], timeout=timeout)

    def extract(self, archive: str, destination: Path, paths: Sequence[str] = (), *,
                dry_run: bool = False, timeout: float = 6 * 3600,
                watch: Callable[[], str | None] | None = None) -> Result:
        """``cd DEST && borg extract REPO::ARCHIVE [PATH ...]`` (or ``--dry-run``); ``watch``
        (e.g. the scratch file system's free space) stops borg when it returns a reason.

        Only with a borg that refuses members below a symlinked parent and unsafe hard-link
        sources (:data:`SAFE_EXTRACT_VERSION`): an archive is hostile input, and an older
        borg, run as root, writes through a symlinked directory member out of DEST."""
        self.require_safe_extract()
        # no flags (immutable/append-only would pin the extract: borg/archive.py restore_attrs sets
        # bsdflags last), no ACLs, no xattrs (security.capability...): scratch must stay removable
        args = ["--dry-run"] if dry_run else ["--noflags", "--noacls", "--noxattrs"]
        return self._run("extract", [*args, f"{self.target.location}::{archive}", *paths],
                         timeout=timeout, cwd=destination, watch=watch)


def _minutes(value: timedelta) -> str:
    return f"{value.total_seconds() / 60:g} min"


def _passphrase_pipe(secret: str) -> int:
    """A pipe holding the passphrase; returns the read end (inheritable, for pass_fds)."""
    data = secret.encode("utf-8") + b"\n"
    if len(data) > 60000:
        raise ValueError("passphrase too long for a pipe")
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, data)
    finally:
        os.close(write_fd)
    return read_fd


def parse_borg_time(text: str) -> datetime:
    """Borg prints naive times in the TZ it ran with; we always run it with TZ=UTC."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
