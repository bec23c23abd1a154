"""The lab's servers as context managers: a start that fails half-way stops what it started."""
from __future__ import annotations


class StartStop:
    """``with X(...) as x``: ``start()``, and ``stop()`` on leaving or when the start fails
    (subclasses make ``stop()`` safe to call on a half-started server)."""

    def start(self):  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
