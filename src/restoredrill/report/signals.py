"""Deliveries, and the one run they speak for. The heartbeat ping, failure mail (and, in the
collector, ``reports.metrics_file``) carry the scheduled run's verdict: a manual or partial
run (``--select lint``, ``-k``, ``--lf``) would otherwise hide a stopped nightly run or clear
its alerts. So only the scheduled run (``restoredrill run --mode scheduled``, every kind: the
CLI passes ``--run-scope scheduled``) sends them, or a run given ``--notify``; ``--no-notify``
sends nothing. The heartbeat starts at the first case, so a selection that matched nothing
never pings. A delivery that fails is a notice, never a new verdict.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

# --- production signals ------------------------------------------------------------------

SCHEDULED = "scheduled"       # restoredrill.runner.SCHEDULED (not imported: the runner imports pytest first)


def production_signals(config) -> tuple[bool, str]:
    """(whether this run pushes the heartbeat, mails and writes reports.metrics_file; if not, why).
    Yes for ``--notify``, and for the scheduled run (``--run-scope scheduled``) unless pytest's own
    options narrowed it (-k, -m, --lf); never with ``--no-notify``."""
    if config.getoption("--no-notify"):
        return False, "--no-notify"
    if config.getoption("--notify"):
        return True, ""
    scope = config.getoption("--run-scope")
    narrowed = [flag for flag, on in (("-k", config.getoption("keyword", "")), ("-m", config.getoption("markexpr", "")),
                                      ("--lf", config.getoption("lf", False))) if on]
    if scope == SCHEDULED and not narrowed:
        return True, ""
    if scope == SCHEDULED or (scope is None and narrowed):
        return False, f"partial run ({', '.join(narrowed)})"
    return False, scope or "manual run (not restoredrill run --mode scheduled)"


class Deliveries:
    """Mixed into the report collector (restoredrill.report.collector): needs ``config``,
    ``loaded``, ``run``, ``store``, ``findings``, ``heartbeat``, ``signals``, ``not_signalling``."""

    def start_heartbeat(self) -> None:
        ref = self.loaded.model.notifications.heartbeat_url
        if ref is None:
            return
        if self.config.getoption("--no-notify"):
            self.run.deliveries["heartbeat"] = "not sent (--no-notify)"
            return
        if not self.signals:
            self.run.deliveries["heartbeat"] = f"not sent, {self.not_signalling}; --notify sends it"
            return
        # imported only to send: http.client and urllib.request cost a run without one 0.025 s (issue 26)
        from restoredrill.notify.heartbeat import Heartbeat, HeartbeatError
        from restoredrill.secrets import SecretError
        try:
            self.heartbeat = Heartbeat(ref.resolve(base_dir=self.loaded.base_dir))
            sent = self.heartbeat.start()
            self.run.deliveries["heartbeat"] = f"{self.heartbeat.style} {self.heartbeat.where}: " + (
                "start" if sent else "no start ping (not in this style)")
        except (HeartbeatError, SecretError) as exc:
            self.run.deliveries["heartbeat"] = "start ping failed"
            self.run.note("heartbeat", str(exc))

    def end_heartbeat(self) -> None:
        if self.heartbeat is None:
            return
        from restoredrill.notify.heartbeat import HeartbeatError
        from restoredrill.report.text import body, headline
        what = "success" if self.run.verdict == "pass" else "failure"
        sent_at, problem = datetime.now(timezone.utc), ""
        try:
            if what == "success":
                self.heartbeat.success(body(self.run, self.findings))
            else:
                self.heartbeat.failure(headline(self.run, self.findings) if self.heartbeat.style == "uptime-kuma"
                                       else body(self.run, self.findings))
            self.run.deliveries["heartbeat"] = self.run.deliveries.get("heartbeat", "") + f", {what}"
        except HeartbeatError as exc:
            problem = str(exc)
            self.run.deliveries["heartbeat"] = self.run.deliveries.get("heartbeat", "") + f", {what} ping failed"
            self.run.note("heartbeat", problem)
        self.record_heartbeat(sent_at, problem)

    def record_heartbeat(self, sent_at: datetime, problem: str) -> None:
        """Keep when this run pushed, and whether it was taken, for the next run's monitoring
        drill (test_harness_heartbeat). Keyed by a hash of the URL: its token is never stored."""
        from restoredrill.notify.heartbeat import HEARTBEAT_SCOPE, heartbeat_key
        if self.store is None:
            return
        try:
            self.store.put_json(HEARTBEAT_SCOPE, heartbeat_key(self.heartbeat.url), {
                "run_id": self.run.run_id, "sent_at": sent_at.isoformat(timespec="seconds"),
                "delivered": not problem, "problem": problem})
        except Exception as exc:  # noqa: BLE001 - the state database is a notice here, never a failure
            self.run.note("heartbeat", f"this run's push could not be recorded for the next run ({exc})")

    def send_mail(self, folder: Path) -> None:
        notifications = self.loaded.model.notifications
        if not notifications.smtp_host or not notifications.email_to:
            return      # mail not configured (settings_from_inventory): smtplib and email never imported
        from restoredrill.notify import email as mail
        from restoredrill.report.text import body, headline
        settings = mail.settings_from_inventory(self.loaded.model.notifications, self.loaded.base_dir)
        bad_history = any(not f.ok for f in self.findings)
        if settings is None or (self.run.verdict == "pass" and not bad_history):
            return
        if self.config.getoption("--no-notify"):
            self.run.deliveries["email"] = "not sent (--no-notify)"
            return
        if not self.signals:
            self.run.deliveries["email"] = f"not sent, {self.not_signalling}; --notify sends it"
            return
        message = mail.compose(settings, f"[restoredrill] {headline(self.run, self.findings)}",
                               body(self.run, self.findings), [folder / "report.html"])
        try:
            mail.send(settings, message)
            self.run.deliveries["email"] = f"sent to {len(settings.recipients)} recipient(s) via {settings.where}"
        except mail.MailError as exc:
            self.run.deliveries["email"] = "failed"
            self.run.note("email", str(exc))
