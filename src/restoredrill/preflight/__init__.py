"""``restoredrill preflight``: one line per endpoint, before any drill (issue 22).

TCP reach, TLS (the fingerprint the server presents next to the pinned one), token valid,
privileges per path against the README's table, SSH host keys, Borg repositories readable
without a lock, S3 bucket and prefix listable, Kuma login, SMTP. It also runs at the start of
every ``restoredrill run``: the cases of a target whose endpoint fails are skipped as
"blocked by preflight" and the endpoint gets one failing case of its own (``blocking``).
"""
from restoredrill.preflight.model import Line
from restoredrill.preflight.run import endpoints_for, run_preflight

__all__ = ["Line", "endpoints_for", "run_preflight"]
