"""SFTP client for storage boxes: the only code that talks SFTP. Read-only by construction.

paramiko with strict host key checking: the host key must be in the inventory's
``known_hosts`` (``load_host_keys`` + ``RejectPolicy``); an unknown or changed key
refuses the connection and the error names the host and both fingerprints. Key
authentication only (no agent, no key search, no password). The client lists
(``listdir_attr``) and reads (``open(..., "rb")``); there is no method that writes,
renames or removes, and reads are capped in size.

Manual equivalent: ``sftp -i KEY -P PORT -o UserKnownHostsFile=KNOWN_HOSTS
-o StrictHostKeyChecking=yes USER@HOST`` then ``ls -l`` / ``get``.
"""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import logging
import posixpath
import socket
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import paramiko

log = logging.getLogger("restoredrill.clients.sftp")
logging.getLogger("paramiko").setLevel(logging.WARNING)

MAX_READ_BYTES = 64 * 1024 * 1024
MAX_LISTED_FILES = 100_000
MAX_GLOB_DEPTH = 8


class SftpError(RuntimeError):
    """Connecting or reading failed; the message names the box, the path and the cause."""

    def __init__(self, box: str, cause: str, path: str | None = None):
        self.box = box
        self.cause = cause
        self.path = path
        where = f" {path}" if path else ""
        super().__init__(f"storage box {box}{where}: {cause}")


class HostKeyMismatch(SftpError):
    pass


@dataclass(frozen=True)
class RemoteFile:
    path: str            # as matched, relative to the login directory unless the glob is absolute
    size: int
    mtime: datetime


@dataclass
class SftpTarget:
    name: str
    host: str
    port: int
    user: str
    key_file: Path
    known_hosts_file: Path
    timeout: float = 20.0

    @property
    def host_id(self) -> str:
        """How known_hosts names the host: ``host`` on port 22, ``[host]:port`` otherwise."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class SftpReader:
    """One SFTP session to a storage box; use as a context manager."""

    def __init__(self, target: SftpTarget):
        self.target = target
        self._ssh: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self.bytes_read = 0

    def __enter__(self) -> "SftpReader":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        """Open the session, pinning the host key from known_hosts."""
        t = self.target
        if not Path(t.known_hosts_file).is_file():
            raise SftpError(t.name, f"known_hosts file {t.known_hosts_file} does not exist; the host key "
                                    "must be pinned before the first connection")
        ssh = paramiko.SSHClient()
        ssh.load_host_keys(str(t.known_hosts_file))
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            ssh.connect(t.host, port=t.port, username=t.user, key_filename=str(t.key_file),
                        look_for_keys=False, allow_agent=False, timeout=t.timeout,
                        banner_timeout=t.timeout, auth_timeout=t.timeout)
            self._sftp = ssh.open_sftp()
        except paramiko.BadHostKeyException as exc:
            ssh.close()
            raise HostKeyMismatch(t.name, f"the host key of {t.host_id} has CHANGED: known_hosts pins "
                                          f"{fingerprint(exc.expected_key)}, the server presented "
                                          f"{fingerprint(exc.key)}; refusing to connect (verify the new "
                                          "key out of band, then update known_hosts)") from None
        except paramiko.AuthenticationException:
            ssh.close()
            raise SftpError(t.name, f"key authentication as {t.user} was refused (key {t.key_file})") from None
        except paramiko.SSHException as exc:
            ssh.close()
            if "not found in known_hosts" in str(exc):
                raise HostKeyMismatch(t.name, f"{t.host_id} is not in known_hosts {t.known_hosts_file}; "
                                              "refusing an unknown host key") from None
            raise SftpError(t.name, f"SSH failed: {exc}") from None
        except (OSError, socket.timeout) as exc:
            ssh.close()
            raise SftpError(t.name, f"{t.host_id} is unreachable: {exc}") from None
        self._ssh = ssh
        log.debug("storage box %s: SFTP session open", t.name)

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self.connect()
        return self._sftp

    def glob(self, pattern: str) -> list[RemoteFile]:
        """Regular files matching ``pattern`` (``*``/``?``/``[]`` per path component).

        ``sftp> ls -l DIR`` for each directory the pattern walks through.
        """
        parts = [p for p in pattern.split("/") if p not in ("", ".")]
        if not parts or ".." in parts or len(parts) > MAX_GLOB_DEPTH:
            raise SftpError(self.target.name, f"unusable path_glob {pattern!r} (no '..', at most "
                                              f"{MAX_GLOB_DEPTH} components)")
        start = "/" if pattern.startswith("/") else "."
        found: list[RemoteFile] = []
        self._walk(start, parts, found)
        return sorted(found, key=lambda f: f.path)

    def _walk(self, directory: str, parts: list[str], found: list[RemoteFile]) -> None:
        head, rest = parts[0], parts[1:]
        if not any(c in head for c in "*?["):
            entries = [self._stat_entry(directory, head)]
        else:
            entries = self._listdir(directory)
        for entry in entries:
            if entry is None or not fnmatch.fnmatchcase(entry.filename, head):
                continue
            path = entry.filename if directory == "." else posixpath.join(directory, entry.filename)
            if rest:
                if stat.S_ISDIR(entry.st_mode or 0):
                    self._walk(path, rest, found)
            elif stat.S_ISREG(entry.st_mode or 0):
                found.append(RemoteFile(path, entry.st_size or 0,
                                        datetime.fromtimestamp(entry.st_mtime or 0, timezone.utc)))
                if len(found) > MAX_LISTED_FILES:
                    raise SftpError(self.target.name, f"more than {MAX_LISTED_FILES} files match; "
                                                      "narrow path_glob")

    def _listdir(self, directory: str) -> list[paramiko.SFTPAttributes]:
        try:
            return self.sftp.listdir_attr(directory)
        except FileNotFoundError:
            return []
        except (OSError, paramiko.SSHException) as exc:
            raise SftpError(self.target.name, f"cannot list the folder: {exc}", directory) from None

    def _stat_entry(self, directory: str, name: str) -> paramiko.SFTPAttributes | None:
        path = name if directory == "." else posixpath.join(directory, name)
        try:
            attrs = self.sftp.stat(path)
        except FileNotFoundError:
            return None
        except (OSError, paramiko.SSHException) as exc:
            raise SftpError(self.target.name, f"cannot stat: {exc}", path) from None
        attrs.filename = name
        return attrs

    def read(self, path: str, max_bytes: int = MAX_READ_BYTES) -> bytes:
        """The whole file (at most ``max_bytes``). ``sftp> get PATH``"""
        try:
            with self.sftp.open(path, "rb") as handle:
                size = handle.stat().st_size or 0
                if size > max_bytes:
                    raise SftpError(self.target.name, f"file is {size:,} bytes, more than the "
                                                      f"{max_bytes:,}-byte cap", path)
                handle.prefetch(size)
                data = handle.read(max_bytes + 1)
        except FileNotFoundError:
            raise SftpError(self.target.name, "file vanished before it could be read", path) from None
        except (OSError, paramiko.SSHException) as exc:
            raise SftpError(self.target.name, f"cannot read: {exc}", path) from None
        if len(data) > max_bytes:
            raise SftpError(self.target.name, f"file grew past the {max_bytes:,}-byte cap", path)
        self.bytes_read += len(data)
        return data
