"""The zero rule: a case that inspects a collection proves something only if it inspected
at least one item.

Every such case records how many items it checked (``checked_<what>`` in its evidence)
and fails when that number is 0, unless the inventory declares ``expect_empty: true`` on
the target (then the evidence shows ``expect_empty``). A drill raises with
:func:`require_some`, or adds the problem to a :class:`Verdict` with :func:`note_coverage`;
both give the same one-paragraph message. Pure: no I/O.
"""
from __future__ import annotations

import re

from restoredrill.checks.errors import CheckFailed, Verdict

DEFAULT_CAUSE = ("an unmounted source, a wrong path or prefix, or a token that sees nothing "
                 "looks exactly like this")


def evidence_key(what: str) -> str:
    """``checked_<what>`` with every run of non-word characters as one underscore."""
    return "checked_" + re.sub(r"\W+", "_", what.strip().lower()).strip("_")


def coverage_facts(count: int, what: str, *, empty_ok: bool = False) -> dict:
    """The evidence of a count: ``{"checked_files_sampled": 3}``, plus ``expect_empty`` when
    the inventory declared it (so a pass on nothing shows why)."""
    facts: dict[str, object] = {evidence_key(what): count}
    if empty_ok:
        facts["expect_empty"] = True
    return facts


class NothingChecked(CheckFailed):
    """A case inspected 0 items; ``facts`` is the evidence to record before failing."""

    def __init__(self, what: str, where: str, cause: str = DEFAULT_CAUSE):
        self.facts = coverage_facts(0, what)
        super().__init__(where, "something to check", f"0 {what}",
                         f"Nothing was checked, so this case proves nothing: {cause}. Fix that, or, "
                         f"if this target is empty by design, set expect_empty: true on it in the inventory")


def nothing_checked(count: int, what: str, where: str, *, empty_ok: bool = False,
                    cause: str = DEFAULT_CAUSE) -> NothingChecked | None:
    """The failure when ``count`` is 0 and empty is not declared expected, else None."""
    if count < 0:
        raise ValueError(f"a count of checked items cannot be negative ({count} {what})")
    if count == 0 and not empty_ok:
        return NothingChecked(what, where, cause)
    return None


def require_some(count: int, what: str, where: str, *, empty_ok: bool = False,
                 cause: str = DEFAULT_CAUSE) -> dict:
    """The evidence of ``count`` (see :func:`coverage_facts`); raises :class:`NothingChecked`
    when it is 0 and the inventory does not say empty is expected."""
    failure = nothing_checked(count, what, where, empty_ok=empty_ok, cause=cause)
    if failure is not None:
        raise failure
    return coverage_facts(count, what, empty_ok=empty_ok)


def note_coverage(verdict: Verdict, count: int, what: str, where: str, *, empty_ok: bool = False,
                  cause: str = DEFAULT_CAUSE) -> Verdict:
    """The same rule for a :class:`Verdict`: the count joins its facts, a 0 its problems."""
    verdict.facts.update(coverage_facts(count, what, empty_ok=empty_ok))
    failure = nothing_checked(count, what, where, empty_ok=empty_ok, cause=cause)
    if failure is not None:
        verdict.problems.append(str(failure))
    return verdict


def rotation_coverage(in_slice: int, total: int, *, slice_name: str, what: str, where: str,
                      empty_ok: bool = False, cause: str = DEFAULT_CAUSE) -> tuple[str, str] | None:
    """The zero rule for a rotation that reads one slice of ``total`` items per run: None when
    the slice holds something; ``("skip", reason)`` when this run's slice is empty but other
    slices are not (the rotation has nothing to do this run: skipped, never passed);
    ``("fail", message)`` when there is nothing at all, or ``("pass", why)`` if empty is
    declared expected."""
    if in_slice:
        return None
    if total:
        return "skip", (f"{where}: {slice_name} holds none of the {total} {what}: nothing to read this run "
                        "(the rotation reads every one within its runs)")
    failure = nothing_checked(0, what, where, empty_ok=empty_ok, cause=cause)
    if failure is None:
        return "pass", "expect_empty: true on the target: nothing to read is expected"
    return "fail", str(failure)
