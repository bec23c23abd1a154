"""Waiting and retrying, in one place, with tenacity.

Two shapes, both pure control flow (the caller's ``attempt`` does the I/O):

* :func:`retry_transient`: run a call again after a *transient* error (the caller says
  which errors are transient), at most ``RetryPolicy.attempts`` times with a growing pause;
  used for reads only (API GETs). When every try failed, :class:`RetriesExhausted` carries
  the last error, the number of tries and the seconds spent, so the caller's message can
  name them.
* :func:`wait_until`: call ``attempt`` until it returns (it raises while the thing waited
  for is not there yet), with a pause growing from ``first`` to ``longest`` seconds,
  until ``seconds`` have passed; then :class:`DeadlineExceeded` carries the deadline and
  the last error. Used for task polling and guest boot waits.

An error the caller does not want retried ends the wait at once, unchanged.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (RetryError, Retrying, retry_if_exception, stop_after_attempt,
                      stop_after_delay, wait_exponential)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure of a read is retried: ``attempts``
    tries in all (1 = never retried), pauses of ``first_delay`` doubling up to ``max_delay``."""

    attempts: int = 4
    first_delay: float = 0.5
    max_delay: float = 4.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.first_delay < 0 or self.max_delay < self.first_delay:
            raise ValueError(f"a retry policy needs attempts >= 1 and 0 <= first_delay <= max_delay, not {self}")


class RetriesExhausted(Exception):
    """Every try of a retried call failed transiently; ``last`` is the last error."""

    def __init__(self, last: BaseException, attempts: int, seconds: float):
        super().__init__(f"gave up after {attempts} tries in {seconds:.1f} s: {last}")
        self.last = last
        self.attempts = attempts
        self.seconds = seconds


class DeadlineExceeded(TimeoutError):
    """A wait passed its deadline; ``last`` is the last error (or 'not ready' reason) seen."""

    def __init__(self, seconds: float, attempts: int, last: BaseException | None):
        self.seconds = seconds
        self.attempts = attempts
        self.last = last
        super().__init__(f"not done within {seconds:g} s ({attempts} tries); last error: {self.last_error}")

    @property
    def last_error(self) -> str:
        return str(self.last) if self.last is not None else "none"


def retry_transient(attempt: Callable[[], T], *, policy: RetryPolicy,
                    transient: Callable[[BaseException], bool],
                    sleep: Callable[[float], None] = time.sleep) -> T:
    """``attempt()``, tried again after an error ``transient`` accepts (``policy``); any other
    error is raised at once; :class:`RetriesExhausted` when the last try failed transiently."""
    retrying = Retrying(stop=stop_after_attempt(policy.attempts),
                        wait=wait_exponential(multiplier=policy.first_delay, min=policy.first_delay,
                                              max=policy.max_delay),
                        retry=retry_if_exception(transient), sleep=sleep, reraise=False)
    started = time.monotonic()
    try:
        return retrying(attempt)
    except RetryError as exc:
        raise RetriesExhausted(exc.last_attempt.exception(), exc.last_attempt.attempt_number,
                               time.monotonic() - started) from None


def wait_until(attempt: Callable[[], T], *, seconds: float, first: float = 0.1, longest: float = 1.0,
               retry_on: Callable[[BaseException], bool] = lambda _exc: True,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """``attempt()`` until it returns, pausing ``first`` seconds, 1.5 times longer each time up
    to ``longest``; :class:`DeadlineExceeded` once ``seconds`` have passed. An error
    ``retry_on`` refuses is raised at once."""
    retrying = Retrying(stop=stop_after_delay(seconds),
                        wait=wait_exponential(multiplier=first, exp_base=1.5, min=first, max=longest),
                        retry=retry_if_exception(retry_on), sleep=sleep, reraise=False)
    try:
        return retrying(attempt)
    except RetryError as exc:
        raise DeadlineExceeded(seconds, exc.last_attempt.attempt_number, exc.last_attempt.exception()) from None
