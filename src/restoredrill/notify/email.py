"""Failure mail over SMTP, always encrypted: STARTTLS on a submission port (587, 25), or
implicit TLS on 465. A server that offers no STARTTLS is refused (the report and the
password would travel in clear). The certificate is verified against the system CAs;
for a private CA point ``SSL_CERT_FILE`` at its certificate.

The password is a secret reference (``notifications.smtp_password``), resolved at
the moment of login and kept out of every message.
"""
from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Callable

from restoredrill.notify import scrub
from restoredrill.secrets import SecretError

TIMEOUT_SECONDS = 30
IMPLICIT_TLS_PORT = 465
MAX_ATTACHMENT = 5 * 1024 * 1024


class MailError(RuntimeError):
    """Mail could not be sent; the message never holds the password."""


@dataclass
class MailSettings:
    host: str
    port: int
    sender: str
    recipients: list[str]
    user: str | None = None
    password: Callable[[], str] | None = None     # resolves the secret reference when called
    timeout: float = TIMEOUT_SECONDS

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def settings_from_inventory(notifications, base_dir: Path) -> MailSettings | None:
    """The ``notifications.smtp_*`` keys, or None when mail is not configured."""
    if not notifications.smtp_host or not notifications.email_to:
        return None
    ref = notifications.smtp_password
    user = notifications.smtp_user
    sender = getattr(notifications, "email_from", None) or (
        user if user and "@" in user else f"restoredrill@{socket.getfqdn()}")
    return MailSettings(host=notifications.smtp_host, port=notifications.smtp_port, sender=sender,
                        recipients=list(notifications.email_to), user=user,
                        password=(lambda: ref.resolve(base_dir=base_dir)) if ref is not None else None)


def compose(settings: MailSettings, subject: str, body: str, attachments: list[Path] = ()) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message["Subject"] = " ".join(subject.split())[:200]
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2] or None)
    message.set_content(body)
    for path in attachments:
        if path.is_file() and path.stat().st_size <= MAX_ATTACHMENT:
            subtype = "html" if path.suffix == ".html" else "xml" if path.suffix == ".xml" else "plain"
            message.add_attachment(path.read_bytes(), maintype="text", subtype=subtype, filename=path.name)
    return message


def send(settings: MailSettings, message: EmailMessage) -> None:
    """Deliver ``message`` (``SMTP`` + ``STARTTLS`` + ``AUTH`` as ``swaks --tls`` would)."""
    password = None
    try:
        context = ssl.create_default_context()
        if settings.port == IMPLICIT_TLS_PORT:
            client = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout, context=context)
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        with client:
            client.ehlo()
            if settings.port != IMPLICIT_TLS_PORT:
                if not client.has_extn("starttls"):
                    raise MailError(f"SMTP server {settings.where} does not offer STARTTLS; refusing to send "
                                    f"the report and the password in clear")
                client.starttls(context=context)
                client.ehlo()
            if settings.user:
                password = settings.password() if settings.password else ""
                client.login(settings.user, password)
            refused = client.send_message(message)
        if refused:
            raise MailError(f"SMTP server {settings.where} refused {', '.join(sorted(refused))}")
    except MailError as exc:
        raise MailError(scrub(str(exc), password)) from None
    except SecretError as exc:        # its message never holds the value
        raise MailError(f"mail via {settings.where} not sent: the SMTP password: {exc}") from None
    except ssl.SSLCertVerificationError as exc:
        raise MailError(f"SMTP server {settings.where}: TLS certificate not trusted ({exc.verify_message}); "
                        f"for a private CA set SSL_CERT_FILE to its certificate") from None
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(scrub(f"SMTP server {settings.where} refused the login of {settings.user}: "
                              f"{exc.smtp_code} {decode(exc.smtp_error)}", password)) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(scrub(f"mail via {settings.where} not sent: {describe(exc)}", password)) from None


def decode(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) or isinstance(exc, socket.timeout):
        return "no answer in time"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {decode(exc.smtp_error)}"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
