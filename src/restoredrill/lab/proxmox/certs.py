"""A self-signed TLS identity per server and run, and its SHA-256 fingerprint.

PVE shows a certificate fingerprint as upper-case hex pairs joined by ':'
(``pvenode cert info``); PBS as lower-case (``proxmox-backup-manager cert info``).
The certificate names 127.0.0.1, ::1, localhost and the node, so a client that uses
it as its CA bundle also passes hostname checks.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from restoredrill.secrets import write_private


@dataclass(frozen=True)
class TlsIdentity:
    cert_file: Path        # PEM certificate: also the CA bundle a client can pin to
    key_file: Path         # PEM private key, mode 0600
    sha256: bytes

    def fingerprint(self, upper: bool = True) -> str:
        text = ":".join(f"{b:02x}" for b in self.sha256)
        return text.upper() if upper else text


def make_identity(directory: Path, name: str, hostname: str) -> TlsIdentity:
    """Write ``<name>.pem`` and ``<name>.key`` (EC P-256, valid one day back to a year on)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "restoredrill test double")])
    now = dt.datetime.now(dt.timezone.utc)
    alt_names = [x509.DNSName("localhost"), x509.DNSName(hostname),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                 x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    write_private(key_file, key_pem.rstrip("\n"))
    der = cert.public_bytes(serialization.Encoding.DER)
    return TlsIdentity(cert_file, key_file, hashlib.sha256(der).digest())
