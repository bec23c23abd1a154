"""Backup windows: how long a drill may hold a repository lock before the nightly backup.

A Borg repository has one lock (``borg/locking.py``: ``lock.exclusive`` plus
``lock.roster``). ``borg check`` holds it exclusively for its whole run, ``list``,
``info`` and ``extract`` hold it shared, and ``borg create`` waits only
``--lock-wait`` seconds for it (default 1 s, ``borg/archiver.py`` common options)
before it gives up: a drill that still holds the lock when the backup starts makes
that night's backup fail. So every lock-taking drill step must end before
``deadline = next window start - margin``.

Window starts are wall-clock times in the zone of the machine that runs
``borg create``. A start that a DST change skips (02:30 on the spring-forward day)
or repeats (02:30 on the fall-back day) is widened to every instant it could mean,
so the backup is protected whichever way its scheduler reads it (cron runs a
skipped job right after the change, systemd timers at the next valid time).

Pure functions: plain values in, plain values out; no clock, no I/O.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# Least time a lock-taking borg call must have before the deadline to be started at all.
MIN_START = timedelta(seconds=60)
# ``borg check --max-duration`` tests its budget only after each segment file
# (borg/repository.py ``Repository.check``): a segment (up to 500 MiB) may still be read
# after the budget is spent; keep this much of the remaining time for it.
MAX_DURATION_SLACK = timedelta(seconds=60)


@dataclass(frozen=True)
class Window:
    """A daily backup window: local wall-clock ``start`` for ``duration`` in ``zone``."""
    start: time
    duration: timedelta
    zone: str

    @property
    def label(self) -> str:
        return f"{self.start:%H:%M} {self.zone} for {_short(self.duration)}"


@dataclass(frozen=True)
class Budget:
    """Time left for lock-taking work before the next backup window (``None``: no window)."""
    now: datetime
    deadline: datetime | None = None      # window start - margin (UTC)
    window: Window | None = None          # the window that sets the deadline
    window_start: datetime | None = None  # its next (or current) start, UTC
    inside: bool = False                  # now is inside [start - margin, end)

    @property
    def remaining(self) -> float | None:
        """Seconds until the deadline (<= 0 when inside), ``None`` without a window."""
        if self.deadline is None:
            return None
        return 0.0 if self.inside else (self.deadline - self.now).total_seconds()

    def bound(self, seconds: float) -> float:
        """``seconds`` capped by the time left."""
        left = self.remaining
        return seconds if left is None else max(0.0, min(seconds, left))


def parse_start(text: str) -> time:
    """``"02:00"`` -> 02:00; refuses anything that is not HH:MM on a 24-hour clock."""
    try:
        hours, minutes = str(text).split(":")
        if len(minutes) != 2:
            raise ValueError
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"window start {text!r} must be HH:MM (24-hour clock), e.g. 02:00") from None


def occurrences(window: Window, day: date) -> tuple[datetime, datetime]:
    """The window that starts on local ``day`` as (start, end) in UTC.

    A local start that does not exist (DST gap) or exists twice (DST fold) becomes the
    earliest and the latest instant it can mean: fold=0 and fold=1 of the same wall time.
    """
    zone = ZoneInfo(window.zone)
    instants = [datetime.combine(day, window.start, tzinfo=zone).replace(fold=fold).astimezone(UTC)
                for fold in (0, 1)]
    return min(instants), max(instants) + window.duration


def budget(windows: Sequence[Window], now: datetime, margin: timedelta) -> Budget:
    """Time left before the next window (minus ``margin``) at ``now`` (tz-aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    best: Budget | None = None
    for window in windows:
        local_today = now.astimezone(ZoneInfo(window.zone)).date()
        for offset in range(-2, 3):   # a long window from the day before may still be open
            start, end = occurrences(window, local_today + timedelta(days=offset))
            if start - margin <= now < end:
                return Budget(now, start - margin, window, start, inside=True)
            if start - margin > now and (best is None or start - margin < best.deadline):
                best = Budget(now, start - margin, window, start)
    return best or Budget(now)


def refusal(action: str, left: Budget, needed: timedelta = MIN_START) -> str | None:
    """Why ``action`` must not start now (one paragraph, for an error that names the
    repository), or ``None`` when it may."""
    if left.deadline is None or (not left.inside and left.remaining >= needed.total_seconds()):
        return None
    where = (f"the backup window {left.window.label} (start {left.window_start:%Y-%m-%d %H:%M} UTC, "
             f"deadline {left.deadline:%H:%M} UTC with the margin)")
    if left.inside:
        situation = f"it is inside {where} now"
    else:
        situation = (f"only {left.remaining:.0f} s are left before {where}, less than the "
                     f"{needed.total_seconds():.0f} s a lock-taking step needs")
    return (f"{action} would run into the backup window: {situation}. The drill "
            f"takes the repository lock and borg create waits only 1 s for it, so the backup would fail. "
            f"Schedule the drill earlier, or shorten borg.repositories[].backup_window / window_margin.")


def _short(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --- which borg check calls fit before the deadline -----------------------------------

@dataclass(frozen=True)
class CheckCall:
    """One ``borg check`` invocation (the BorgClient.check keywords)."""
    verify_data: bool = False
    repository_only: bool = False
    archives_only: bool = False
    last: int | None = None
    max_duration: int | None = None


@dataclass(frozen=True)
class CheckSteps:
    calls: tuple[CheckCall, ...]
    full: bool        # counts as the full read of the rotation
    mode: str         # evidence: what was checked
    note: str = ""    # why it differs from the plan


def check_steps(full_due: bool, *, remote: bool, max_duration: float | None, remaining: float | None,
                full_estimate: float | None, repository_estimate: float | None) -> CheckSteps:
    """The ``borg check`` calls for this run.

    Without a window: a full run is one ``check --verify-data``; other runs check the
    repository (``--repository-only``, within ``verify_data.max_duration``) and the newest
    archive. With a window the repository part is bounded by ``--max-duration`` so it ends
    before the deadline. Over ``ssh://`` that is the only bound that holds: ``borg serve``
    runs ``Repository.check`` as one RPC (borg/remote.py ``RepositoryServer.serve``) and
    notices neither a stopped client nor a closed connection until it returns, still
    holding the exclusive lock. So a full run over ssh is split into the repository check
    (unbounded, only when the last one fitted: ``repository_estimate``) and the archives
    check with ``--verify-data`` (driven by the client, stopped cleanly by SIGTERM). A
    full run that cannot be shown to fit is deferred: this run is partial, never counted
    as full, and the rotation keeps it due for the next run.
    """
    budget = int(max_duration) if max_duration else None
    if remaining is not None:
        bounded = max(1, int(remaining - MAX_DURATION_SLACK.total_seconds()))
        budget = min(budget, bounded) if budget else bounded
    partial = (CheckCall(repository_only=True, max_duration=budget), CheckCall(archives_only=True, last=1))
    partial_mode = f"partial: {budget} s" if budget else "repository+last-archive"
    if not full_due:
        return CheckSteps(partial, False, partial_mode)
    if remaining is None:
        return CheckSteps((CheckCall(verify_data=True),), True, "verify-data")
    room = remaining - MAX_DURATION_SLACK.total_seconds()
    if not remote:
        if full_estimate is None or full_estimate * 1.25 <= room:
            return CheckSteps((CheckCall(verify_data=True),), True, "verify-data")
        return CheckSteps(partial, False, partial_mode,
                          f"full check deferred: the last one took {full_estimate:.0f} s, only "
                          f"{room:.0f} s are left before the backup window")
    if repository_estimate is not None and repository_estimate * 1.5 <= room:
        return CheckSteps((CheckCall(repository_only=True), CheckCall(archives_only=True, verify_data=True)),
                          True, "verify-data (repository, then archives)")
    why = ("no repository check of this size is on record yet (the bounded partial checks measure it)"
           if repository_estimate is None else
           f"the last repository check took {repository_estimate:.0f} s, only {room:.0f} s are left")
    return CheckSteps(partial, False, partial_mode,
                      f"full check deferred: over ssh:// borg serve cannot be stopped inside its "
                      f"repository check, and {why} before the backup window")


def segment_pass(log: str, seconds: float, carried: float | None) -> tuple[float | None, float | None]:
    """Account a ``borg check --repository-only --info`` run towards one whole pass over the
    segment files: returns (seconds carried into the next run, seconds of a completed pass).

    borg/repository.py ``Repository.check`` logs ``skipping to segments >= N`` when it
    resumes a partial check (N = 0: from the start), ``finished partial segment check,
    last segment checked is N`` when ``--max-duration`` ran out (it saved N in the
    repository's ``config`` as ``last_segment_checked``) and ``finished segment check at
    segment N`` when it reached the last segment.
    """
    if "skipping to segments >= 0" in log or "skipping to segments" not in log:
        carried = 0.0
    total = (carried or 0.0) + seconds if carried is not None else None
    if "finished segment check at segment" in log:
        return None, total
    if "finished partial segment check" in log:
        return total, None
    return None, None
