"""SSH (storage boxes, nodes, ssh:// Borg repositories), local Borg repositories, S3, Uptime
Kuma and SMTP: one probe each, read-only, no drill state touched.

SSH: the host key is checked against the pinned known_hosts and the key is authenticated, but
no session is opened, so no command (not even a forced one) runs. Borg: a local repository is
checked without borg (its ``config`` names a Borg repository; a ``lock.exclusive`` is named,
never broken), so no lock is taken; an ssh:// repository gets the SSH probe with its own key,
since opening it remotely needs ``borg serve``, which takes the lock: the drill's first case
(``test_reachable``) opens it.
"""
from __future__ import annotations

import os
import re
import shutil
import smtplib
import ssl
from pathlib import Path

from restoredrill.clients.borg import resolve_binary
from restoredrill.preflight.model import Line, probe, reach_url
from restoredrill.preflight.net import TIMEOUT, Stop, tcp_reach
from restoredrill.secrets import SecretError, SecretRef

SSH_LOCATION = re.compile(r"ssh://(?:([^@/]+)@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?/")


def ssh_login(host: str, port: int, user: str, key_file: Path, known_hosts: Path) -> str:
    """Host key against known_hosts, then key authentication; no session, no command."""
    import paramiko     # here: a run without SSH endpoints (Borg drills on local repositories) never pays for it
    from restoredrill.clients.sftp import fingerprint
    tcp_reach(host, port)
    host_id = host if port == 22 else f"[{host}]:{port}"
    if not known_hosts.is_file():
        raise Stop(f"SSH {host_id}: known_hosts {known_hosts} does not exist; pin the host key first "
                   f"(ssh-keyscan -p {port} {host}, checked out of band)")
    pinned = paramiko.HostKeys(str(known_hosts)).lookup(host_id)
    if not pinned:
        raise Stop(f"SSH {host_id}: not in known_hosts {known_hosts}; pin its key (ssh-keyscan -p {port} {host}, "
                   f"checked out of band)")
    try:
        key = paramiko.PKey.from_path(str(key_file))
    except (OSError, paramiko.SSHException) as exc:
        raise Stop(f"SSH key {key_file} cannot be loaded ({type(exc).__name__}); a passphrase-less private key "
                   f"is needed") from None
    transport = paramiko.Transport((host, port))
    try:
        transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = TIMEOUT
        transport.get_security_options().key_types = [t for t in transport.get_security_options().key_types
                                                      if t in pinned] or list(pinned.keys())
        transport.start_client(timeout=TIMEOUT)
        presented = transport.get_remote_server_key()
        expected = pinned.get(presented.get_name())
        if expected is None or expected != presented:
            shown = fingerprint(expected) if expected is not None else "another key type"
            raise Stop(f"SSH {host_id}: the host key CHANGED: known_hosts pins {shown}, the server presents "
                       f"{fingerprint(presented)}; refusing (verify the new key out of band)")
        transport.auth_publickey(user, key)
    except paramiko.AuthenticationException:
        raise Stop(f"SSH {host_id}: key authentication as {user} refused (key {key_file})") from None
    except paramiko.SSHException as exc:
        raise Stop(f"SSH {host_id}: {exc}") from None
    finally:
        transport.close()
    return f"SSH host key {fingerprint(presented)} as pinned, key accepted for {user}"


def probe_ssh(key: str, what: str, endpoint, loaded) -> Line:
    line = Line(key, what, f"{endpoint.user}@{endpoint.host}:{endpoint.port}")
    return probe(line, lambda line: line.steps.append(ssh_login(
        endpoint.host, endpoint.port, endpoint.user, loaded.resolve_path(endpoint.key_file),
        loaded.resolve_path(endpoint.known_hosts_file))))


def probe_borg(loaded, repo) -> Line:
    line = Line(f"borg:{repo.name}", f"Borg repository {repo.name}", repo.location)

    def steps(line: Line) -> None:
        if not shutil.which(resolve_binary(repo.borg_binary)):
            raise Stop(f"{repo.borg_binary} is not installed on this runner (or not on PATH)")
        _secret_reachable(repo.passphrase, "passphrase")
        match = SSH_LOCATION.match(repo.location)
        if match:
            user, host, port = match.groups()
            box = loaded.model.storage_box(repo.storage_box)
            line.steps.append(ssh_login(host.strip("[]"), int(port or 22), user or box.user,
                                        loaded.resolve_path(repo.ssh_key_file or box.key_file),
                                        loaded.resolve_path(box.known_hosts_file)))
            return
        _local_repository(loaded.resolve_path(repo.location.removeprefix("file://")), line)

    return probe(line, steps)


def _local_repository(path: Path, line: Line) -> None:
    config = path / "config"
    try:
        head = config.open("rb").read(64)
    except FileNotFoundError:
        raise Stop(f"{path} is not a Borg repository (no config file there)") from None
    except OSError as exc:
        raise Stop(f"{config} cannot be read by this user ({exc.strerror})") from None
    if not head.startswith(b"[repository]"):
        raise Stop(f"{path} is not a Borg repository (its config is not a Borg repository's)")
    line.steps.append("a Borg repository, readable (checked without borg: no lock taken)")
    if (path / "lock.exclusive").exists():
        line.findings.append("locked right now (lock.exclusive: a running borg create, prune or check, or a stale "
                             "lock of a crashed one; restoredrill waits lock_wait and never breaks it)")


def _secret_reachable(ref: SecretRef | None, what: str) -> None:
    """Whether a secret reference can be resolved, without resolving it (no value is read)."""
    if ref is None:
        return
    if ref.scheme == "env" and ref.target not in os.environ:
        raise Stop(f"{what}: environment variable {ref.target} is not set for this run")
    if ref.scheme == "command":
        program = ref.target.split()[0] if ref.target.split() else ""
        if not shutil.which(program):
            raise Stop(f"{what}: command {program!r} is not found on this runner")


def probe_s3(loaded, target) -> Line:
    line = Line(f"s3:{target.name}", f"S3 target {target.name}", f"{target.endpoint} s3://{target.bucket}/"
                f"{target.store_prefix}")

    def steps(line: Line) -> None:
        from restoredrill.clients.s3 import ReadOnlyBucket, S3Error, S3Settings
        ca_file = str(loaded.resolve_path(target.ca_file)) if target.ca_file else None
        reach_url(line, target.endpoint, ca_file=ca_file, key=f"offsite.s3[{target.name}].ca_file")
        _secret_reachable(target.access_key, "access_key")
        _secret_reachable(target.secret_key, "secret_key")
        base = loaded.base_dir
        bucket = ReadOnlyBucket(S3Settings(
            name=target.name, endpoint=target.endpoint, bucket=target.bucket, region=target.region,
            access_key=lambda: target.access_key.resolve(base_dir=base),
            secret_key=lambda: target.secret_key.resolve(base_dir=base), ca_file=ca_file, retries=0,
            connect_timeout=TIMEOUT, read_timeout=15))
        try:
            first = next(iter(bucket.list(target.store_prefix)), None)
        except (S3Error, SecretError) as exc:
            raise Stop(str(exc)[:400]) from None
        if first is None and not target.expect_empty:
            line.findings.append(f"nothing under s3://{target.bucket}/{target.store_prefix} (a wrong bucket or "
                                 f"store_prefix? set expect_empty: true if empty is right)")
        else:
            line.steps.append("bucket and prefix listable")

    return probe(line, steps)


def probe_kuma(loaded, kuma) -> Line:
    line = Line("kuma", "Uptime Kuma", kuma.url)

    def steps(line: Line) -> None:
        from restoredrill.clients.kuma import KumaClient, KumaError
        ca_file = str(loaded.resolve_path(kuma.ca_file)) if kuma.ca_file else None
        reach_url(line, kuma.url, verify=kuma.verify_tls, ca_file=ca_file, key="monitoring.uptime_kuma.ca_file")
        try:
            password = kuma.password.resolve(base_dir=loaded.base_dir)
            with KumaClient(kuma.url, kuma.username, password, verify_tls=kuma.verify_tls, ca_file=ca_file,
                            timeout=min(kuma.timeout.total_seconds(), 15)):
                pass
        except (KumaError, SecretError) as exc:
            raise Stop(str(exc)[:400]) from None
        line.steps.append(f"login as {kuma.username} ok")

    return probe(line, steps)


def probe_smtp(loaded, notes) -> Line:
    line = Line("smtp", "SMTP (failure mail)", f"{notes.smtp_host}:{notes.smtp_port}", blocks_drills=False)

    def steps(line: Line) -> None:
        tcp_reach(notes.smtp_host, notes.smtp_port)
        context = ssl.create_default_context()
        try:
            if notes.smtp_port == 465:
                server = smtplib.SMTP_SSL(notes.smtp_host, notes.smtp_port, timeout=TIMEOUT, context=context)
            else:
                server = smtplib.SMTP(notes.smtp_host, notes.smtp_port, timeout=TIMEOUT)
                server.starttls(context=context)
            with server:
                line.steps.append("TLS ok")
                if notes.smtp_user and notes.smtp_password:
                    server.login(notes.smtp_user, notes.smtp_password.resolve(base_dir=loaded.base_dir))
                    line.steps.append(f"login as {notes.smtp_user} ok")
        except (smtplib.SMTPException, ssl.SSLError, OSError, SecretError) as exc:
            raise Stop(f"SMTP: {type(exc).__name__}: {str(exc)[:200]}") from None

    return probe(line, steps)


# CAP_SYS_ADMIN and CAP_NET_ADMIN (setns into the namespace, `ip netns exec`), CAP_NET_RAW
# (the ARP probe's packet socket, clients/arp_probe.py): bits of /proc/self/status CapEff
NETNS_CAPS = {"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_SYS_ADMIN": 21}


def effective_capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def probe_runner_netns(netns: str) -> Line:
    line = Line(f"netns:{netns}", f"runner namespace {netns}", f"/run/netns/{netns}")

    def steps(line: Line) -> None:
        if not Path("/run/netns", netns).exists():
            raise Stop(f"network namespace {netns} does not exist (ip netns add {netns}; README: Checks by address)")
        line.steps.append("exists")
        caps = effective_capabilities()
        lacking = [name for name, bit in NETNS_CAPS.items() if not caps >> bit & 1]
        if lacking:
            raise Stop(f"this process lacks {', '.join(lacking)}: `ip netns exec` and the ARP probe fail "
                       f"unprivileged; run as root (contrib/systemd/restoredrill-drills.service.d/runner-netns.conf) "
                       f"or use access agent/pct and checks inside the guest")
        line.steps.append("ip netns exec allowed (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW)")

    return probe(line, steps)
