"""Borg before PBS: the guest's pre-backup Borg job ENDS before its PBS snapshot starts.

The homelab's photo/media container runs a pre-backup hook: the Borg job finishes
first, then PBS snapshots the container, so the two layers hold the same state. The
proof, for the guest's newest PBS snapshot: the newest Borg archive (of the named
repository) that STARTED before the snapshot ENDED before it started, and no longer
ago than the sequencing window. Pure: times in, a verdict out.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from restoredrill.checks.errors import Verdict


@dataclass(frozen=True)
class BorgRun:
    name: str
    start: datetime
    end: datetime | None = None     # from ``borg info``; None until fetched


Sequencing = Verdict     # problems and facts of one guest's Borg-then-PBS order


def archive_before(archives: Iterable[BorgRun], snapshot_start: datetime) -> BorgRun | None:
    """The newest archive whose start lies before the snapshot's start (None if none does)."""
    earlier = [a for a in archives if a.start < snapshot_start]
    return max(earlier, key=lambda a: a.start, default=None)


def _utc(when: datetime) -> str:
    return f"{when.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def _span(span: timedelta) -> str:
    minutes = abs(span.total_seconds()) / 60
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min"


def check_sequencing(archive: BorgRun | None, *, snapshot: str, snapshot_start: datetime, window: timedelta,
                     where: str, repository: str) -> Sequencing:
    """``archive`` (from :func:`archive_before`, with its end) ends at or before the snapshot
    starts, and at most ``window`` before it."""
    result = Sequencing(facts={"snapshot": snapshot, "snapshot_time": snapshot_start.isoformat(),
                               "repository": repository, "window_hours": round(window.total_seconds() / 3600, 2)})
    if archive is None:
        result.problems.append(f"{where}: expected a Borg archive in {repository} that ended before snapshot "
                               f"{snapshot} started ({_utc(snapshot_start)}); found no archive that started "
                               f"before it: the pre-backup hook did not run")
        return result
    if archive.end is None:
        raise ValueError(f"archive {archive.name}: its end time is needed (borg info)")
    gap = snapshot_start - archive.end
    result.facts.update(archive=archive.name, archive_start=archive.start.isoformat(),
                        archive_end=archive.end.isoformat(), gap_minutes=round(gap.total_seconds() / 60, 1))
    if gap < timedelta(0):
        result.problems.append(f"{where}: expected Borg archive {archive.name} to end before snapshot {snapshot} "
                               f"started ({_utc(snapshot_start)}); found it ended {_utc(archive.end)}, "
                               f"{_span(gap)} later: the two layers overlap, the hook did not wait for Borg")
    elif gap > window:
        result.problems.append(f"{where}: expected a Borg archive ending at most {_span(window)} before snapshot "
                               f"{snapshot} ({_utc(snapshot_start)}); found {archive.name} ending "
                               f"{_utc(archive.end)}, {_span(gap)} before: no Borg run preceded this backup")
    return result
