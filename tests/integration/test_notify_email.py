"""Failure mail against a real local SMTP server (aiosmtpd) with STARTTLS and AUTH, using a
self-signed certificate made here and trusted through SSL_CERT_FILE."""
from __future__ import annotations

import datetime as dt
import email
import ipaddress
import ssl
from email import policy
from pathlib import Path

import pytest
import yaml

from restoredrill.notify.email import MailError, MailSettings, compose, send
from tests.integration.test_notify_heartbeat import free_port

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration
PASSWORD = "s3cret-Mail-Pa55"
USER = "drills@example.org"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "smtp.crt", folder / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class Inbox:
    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USER \
            and auth_data.password.decode() == PASSWORD
        self.logins.append((mechanism, "ok" if ok else "refused"))
        return AuthResult(success=ok, handled=False)   # handled=False: the server answers 535


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server(certificate, monkeypatch):
    """STARTTLS required, AUTH only after TLS; the client trusts the certificate via SSL_CERT_FILE."""
    from aiosmtpd.controller import Controller
    cert_file, key_file = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), tls_context=context,
                            require_starttls=True, auth_require_tls=True, authenticator=inbox.authenticate)
    controller.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    try:
        yield controller, inbox
    finally:
        controller.stop()


def settings(port: int, password: str = PASSWORD) -> MailSettings:
    return MailSettings("127.0.0.1", port, USER, ["ops@example.org", "owner@example.org"], USER,
                        lambda: password, timeout=10)


def test_mail_goes_over_starttls_with_auth(smtp_server, tmp_path):
    controller, inbox = smtp_server
    page = tmp_path / "report.html"
    page.write_text("<html>report</html>")
    message = compose(settings(controller.port), "[restoredrill] FAIL site: 1 of 3\nchecks failed",
                      "FAIL  borg:app  2/3 checks\n", [page])
    send(settings(controller.port), message)
    [received] = inbox.messages
    assert received["Subject"] == "[restoredrill] FAIL site: 1 of 3 checks failed"
    assert received["To"] == "ops@example.org, owner@example.org" and received["From"] == USER
    assert "FAIL  borg:app  2/3 checks" in received.get_body(("plain",)).get_content()
    [attachment] = list(received.iter_attachments())
    assert attachment.get_filename() == "report.html" and attachment.get_content() == "<html>report</html>"
    assert inbox.logins == [("PLAIN", "ok")]


def test_wrong_password_is_reported_without_the_password(smtp_server):
    controller, inbox = smtp_server
    wrong = "not-the-Password-42"
    with pytest.raises(MailError) as caught:
        send(settings(controller.port, wrong), compose(settings(controller.port), "s", "b"))
    assert "refused the login of drills@example.org: 535" in str(caught.value)
    assert wrong not in str(caught.value) and PASSWORD not in str(caught.value)
    assert inbox.messages == []


def test_untrusted_certificate_is_refused(smtp_server, monkeypatch, tmp_path):
    controller, _ = smtp_server
    other, _ = make_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    with pytest.raises(MailError, match="TLS certificate not trusted.*SSL_CERT_FILE"):
        send(settings(controller.port), compose(settings(controller.port), "s", "b"))


def test_a_server_without_starttls_is_refused():
    from aiosmtpd.controller import Controller
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        with pytest.raises(MailError, match="does not offer STARTTLS; refusing to send"):
            send(settings(controller.port), compose(settings(controller.port), "s", "b"))
    finally:
        controller.stop()
    assert inbox.messages == []


def test_unreachable_server():
    port = free_port()
    with pytest.raises(MailError, match=f"mail via 127.0.0.1:{port} not sent: .*refused"):
        send(settings(port), compose(settings(port), "s", "b"))


def test_a_failing_run_mails_its_failures(smtp_server, pytester, monkeypatch):
    controller, inbox = smtp_server
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    inventory = pytester.path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"version": 1, "site": {"name": "demo-site"}, "notifications": {
        "email_to": ["ops@example.org"], "smtp_host": "127.0.0.1", "smtp_port": controller.port,
        "smtp_user": USER, "smtp_password": "env:SMTP_PASSWORD"}}))
    pytester.makeini("[pytest]\njunit_family = xunit1\n")
    pytester.makepyfile(test_demo='''
import pytest
def test_ok(record_property):
    record_property("drill", "borg:demo"); record_property("check", "fresh")
def test_canary(record_property):
    record_property("drill", "borg:demo"); record_property("check", "canary")
    pytest.fail("repository demo: expected canary 'ok' in app/.canary; found 'gone'", pytrace=False)
''')
    result = pytester.runpytest("-p", "no:cacheprovider", f"--inventory={inventory}", "--notify",
                                f"--state-dir={pytester.path / 'state'}", f"--out-dir={pytester.path / 'out'}")
    assert result.ret == 1
    [received] = inbox.messages
    assert received["Subject"].startswith("[restoredrill] FAIL demo-site: 1 of 2 checks failed (borg:demo canary")
    text = received.get_body(("plain",)).get_content()
    assert "FAILED canary: repository demo: expected canary 'ok' in app/.canary; found 'gone'" in text
    assert [a.get_filename() for a in received.iter_attachments()] == ["report.html"]
    assert PASSWORD not in result.stdout.str() + result.stderr.str()
    report = (pytester.path / "out" / "drill-report.xml").read_text()
    assert 'name="delivery.email" value="sent to 1 recipient(s) via 127.0.0.1:' in report

    inbox.messages.clear()                         # a passing run sends no mail
    pytester.makepyfile(test_demo="def test_ok(record_property):\n    record_property('drill', 'borg:demo')\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--inventory={inventory}", "--notify",
                                f"--state-dir={pytester.path / 'state'}", f"--out-dir={pytester.path / 'out'}")
    assert result.ret == 0 and inbox.messages == []


def test_an_unreachable_smtp_server_is_a_notice_not_a_new_verdict(pytester, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    inventory = pytester.path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"version": 1, "site": {"name": "demo-site"}, "notifications": {
        "email_to": ["ops@example.org"], "smtp_host": "127.0.0.1", "smtp_port": free_port(),
        "smtp_user": USER, "smtp_password": "env:SMTP_PASSWORD"}}))
    pytester.makeini("[pytest]\njunit_family = xunit1\n")
    pytester.makepyfile(test_demo='''
import pytest
def test_canary(record_property):
    record_property("drill", "borg:demo"); record_property("check", "canary")
    pytest.fail("repository demo: expected canary 'ok'; found 'gone'", pytrace=False)
''')
    result = pytester.runpytest("-p", "no:cacheprovider", f"--inventory={inventory}", "--notify",
                                f"--state-dir={pytester.path / 'state'}", f"--out-dir={pytester.path / 'out'}")
    assert result.ret == 1                                  # the drill's verdict, nothing more
    assert any("NOTE email: mail via 127.0.0.1:" in line and "refused" in line for line in result.errlines)
    report = (pytester.path / "out" / "drill-report.xml").read_text()
    assert "notice-1:email" in report and 'name="delivery.email" value="failed"' in report
    assert PASSWORD not in result.stdout.str() + result.stderr.str() + report
