"""The SFTP client and the config-export drills against a real sshd storage box (one per
module). Each faulty export lives in its own folder with its own inventory entry, so one
drill run shows every fault failing its own case and naming its file."""
from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from restoredrill.checks.opnsense import encrypt_export
from restoredrill.clients.sftp import HostKeyMismatch, SftpError, SftpReader, SftpTarget
from restoredrill.lab.offsite import export_name, render_opnsense_config, write_exports
from restoredrill.lab.storagebox import SSHD, StorageBox, generate_key
from restoredrill.runner import RunRequest, run_drills
from tests.conftest import parse_junit

pytestmark = pytest.mark.integration

PASSPHRASE = "export passphrase 7"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def put(path: Path, data: bytes, when: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (when.timestamp(), when.timestamp()))


def good(when: datetime) -> bytes:
    return render_opnsense_config(when)


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    if not Path(SSHD).exists():
        pytest.fail(f"openssh-server ({SSHD}) is not installed", pytrace=False)
    root = tmp_path_factory.mktemp("sftp")
    exports = root / "exports"
    write_exports(exports, NOW - timedelta(hours=1), PASSPHRASE)
    older, newest = NOW - timedelta(days=1), NOW - timedelta(minutes=30)
    faults = exports / "faults"
    put(faults / "stale" / export_name(NOW - timedelta(days=5)), good(NOW - timedelta(days=5)), NOW - timedelta(days=5))
    for name, broken in (("truncated", good(newest)[:700]), ("nonxml", b"rsync: connection unexpectedly closed\n"),
                         ("html", b"<!DOCTYPE html><html><body>Session expired</body></html>"),
                         ("pfsense", b'<?xml version="1.0"?><pfsense><version>22</version></pfsense>')):
        put(faults / name / export_name(older), good(older), older)
        put(faults / name / export_name(newest), broken, newest)
    put(faults / "wrongpass" / export_name(newest), encrypt_export(good(newest), "another passphrase",
                                                                    iterations=1000), newest)
    put(faults / "touched" / export_name(older), good(older), NOW)          # old revision, fresh mtime
    put(faults / "touched" / export_name(newest), good(newest), newest)
    with StorageBox(root / "box") as running:
        running.authorize_sftp(running.sftp_key_file.with_suffix(".pub"), exports, read_only=True)
        yield running, root, exports


def target(box_, **changes) -> SftpTarget:
    values = dict(name="lab-box-exports", host=box_.host, port=box_.port, user=box_.user,
                  key_file=box_.sftp_key_file, known_hosts_file=box_.known_hosts_file)
    values.update(changes)
    return SftpTarget(**values)


def test_glob_and_read_relative_to_the_login_folder(box):
    running, _root, exports = box
    with SftpReader(target(running)) as reader:
        plain = reader.glob("opnsense/plain/config-*.xml")
        assert len(plain) == 5 and all(f.path.startswith("opnsense/plain/config-fw1") for f in plain)
        assert reader.glob("opnsense/*/config-*.xml")[0].path.startswith("opnsense/encrypted/")
        assert reader.glob("nowhere/*.xml") == []
        assert reader.read(plain[-1].path) == (exports / plain[-1].path).read_bytes()
        with pytest.raises(SftpError, match="cap"):
            reader.read(plain[-1].path, max_bytes=100)
        with pytest.raises(SftpError, match="path_glob"):
            reader.glob("../etc/*")


def test_the_export_key_is_read_only_on_the_box(box):
    running, _root, exports = box
    with SftpReader(target(running)) as reader:
        with pytest.raises(OSError):
            with reader.sftp.open("opnsense/plain/new.xml", "wb") as handle:
                handle.write(b"x")
        with pytest.raises(OSError):
            reader.sftp.remove(reader.glob("opnsense/plain/*.xml")[0].path)
    assert not (exports / "opnsense" / "plain" / "new.xml").exists()
    assert not any(name for name in dir(SftpReader) if name.startswith(("write", "put", "remove", "rename")))


def test_a_changed_host_key_is_refused_naming_the_host(box):
    running, _root, _exports = box
    running.rotate_host_key()
    try:
        with pytest.raises(HostKeyMismatch, match=r"host key of \[127.0.0.1\]:\d+ has CHANGED") as caught:
            SftpReader(target(running)).connect()
        assert running.pinned_host_key_fingerprint in str(caught.value)
        assert running.host_key_fingerprint in str(caught.value)
    finally:
        running.restore_host_key()
    with SftpReader(target(running)) as reader:
        assert reader.glob("opnsense/plain/*.xml")


def test_an_unknown_host_and_a_wrong_key_are_refused(box, tmp_path):
    running, _root, _exports = box
    (tmp_path / "empty_known_hosts").write_text("")
    with pytest.raises(HostKeyMismatch, match="not in known_hosts"):
        SftpReader(target(running, known_hosts_file=tmp_path / "empty_known_hosts")).connect()
    with pytest.raises(SftpError, match="known_hosts file .* does not exist"):
        SftpReader(target(running, known_hosts_file=tmp_path / "missing")).connect()
    stranger = tmp_path / "stranger"
    generate_key(stranger)
    with pytest.raises(SftpError, match="key authentication .* refused"):
        SftpReader(target(running, key_file=stranger)).connect()


FAULTS = {  # export name -> {failing case: words in its message}; the other case passes
    "fw-plain": {}, "fw-touched": {},
    "fw-stale": {"test_export_fresh": "h old"},
    "fw-truncated": {"test_export_parses": "truncated"},
    "fw-nonxml": {"test_export_parses": "not well-formed XML"},
    "fw-html": {"test_export_parses": "HTML page"},
    "fw-pfsense": {"test_export_parses": "pfSense"},
    # nothing readable at all: freshness cannot be shown either
    "fw-wrongpass": {"test_export_parses": "wrong passphrase", "test_export_fresh": "wrong passphrase"},
    "fw-nopass": {"test_export_parses": "no passphrase reference", "test_export_fresh": "no passphrase"},
}


def test_each_faulty_export_fails_its_own_case_naming_the_file(box, tmp_path):
    running, root, exports = box
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE + "\n")
    pass_file.chmod(0o600)      # check-inventory refuses a secret others can read
    folders = {"fw-plain": "opnsense/plain", "fw-touched": "faults/touched", "fw-stale": "faults/stale",
               "fw-truncated": "faults/truncated", "fw-nonxml": "faults/nonxml", "fw-html": "faults/html",
               "fw-pfsense": "faults/pfsense", "fw-wrongpass": "faults/wrongpass",
               "fw-nopass": "opnsense/encrypted"}
    exports_cfg = [{"name": name, "storage_box": "box", "path_glob": f"{folder}/config-*.xml", "rpo": "export",
                    **({"passphrase": f"file:{pass_file}"} if name != "fw-nopass" else {})}
                   for name, folder in folders.items()]
    inventory = {"version": 1, "site": {"name": "t", "timezone": "UTC"},
                 "policies": {"rpo": {"export": {"max_age": "25h", "grace": "2h"}}},
                 "offsite": {"storage_boxes": [{"name": "box", "host": running.host, "port": running.port,
                                                "user": running.user, "key_file": str(running.sftp_key_file),
                                                "known_hosts_file": str(running.known_hosts_file)}],
                             "config_exports": exports_cfg}}
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    started = time.monotonic()
    code = run_drills(RunRequest(inventory=tmp_path / "inventory.yaml", kinds=["offsite"],
                                 junit=tmp_path / "junit.xml", state_dir=tmp_path / "state"))
    cases = parse_junit(tmp_path / "junit.xml")
    assert code == 1 and time.monotonic() - started < 60
    assert len(cases) == 2 * len(FAULTS)
    for name, expected in FAULTS.items():
        for case in ("test_export_fresh", "test_export_parses"):
            result = cases[f"{case}[{name}]"]
            if case in expected:
                assert result["outcome"] == "failure", (name, case)
                assert expected[case] in result["message"], (name, result["message"])
                assert f"{folders[name]}/config-fw1" in result["message"], result["message"]
            else:
                assert result["outcome"] == "passed", (name, case, result["message"])
    touched = cases["test_export_fresh[fw-touched]"]["properties"]
    assert touched["newest"] != touched["newest_by_mtime"]
    assert cases["test_export_parses[fw-plain]"]["properties"]["hostname"] == "fw1.lab.internal"
