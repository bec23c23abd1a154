"""The SSH storage box against real sshd, real borg over ssh:// and real paramiko."""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import paramiko
import pytest

from restoredrill.execute import CommandError, run
from restoredrill.lab.storagebox import SSHD, StorageBox, StorageBoxError, descendants, find_borg

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple 42"


@pytest.fixture(scope="module", autouse=True)
def components_installed():
    """Fail (never skip) with a clear message when a component is missing."""
    missing = [name for name, ok in (
        (f"openssh-server ({SSHD})", Path(SSHD).exists()),
        ("openssh-client (ssh, ssh-keygen)", shutil.which("ssh") and shutil.which("ssh-keygen")),
    ) if not ok]
    try:
        find_borg()
    except StorageBoxError as exc:
        missing.append(str(exc))
    if missing:
        pytest.fail("missing components: " + "; ".join(missing), pytrace=False)


@pytest.fixture
def box(tmp_path):
    with StorageBox(tmp_path / "box") as running:
        yield running


@pytest.fixture
def repos(tmp_path):
    path = tmp_path / "repos"
    path.mkdir()
    return path


def borg(box: StorageBox, tmp_path: Path, *args, passphrase: str = PASSPHRASE):
    """Run the client borg with strict host key checking; passphrase through a pipe."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BORG_")}
    read_fd, write_fd = os.pipe()
    os.write(write_fd, passphrase.encode())
    os.close(write_fd)
    env.update(BORG_RSH=box.borg_rsh(box.borg_key_file), BORG_BASE_DIR=str(tmp_path / "borg-base"),
               BORG_PASSPHRASE_FD=str(read_fd), BORG_DISPLAY_PASSPHRASE="no")
    try:
        return run([box.borg_command, *map(str, args)], timeout=120, env=env, pass_fds=(read_fd,),
                   secrets=(passphrase,), label="borg client")
    finally:
        os.close(read_fd)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def paramiko_client(box: StorageBox) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(box.known_hosts_file))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(box.host, box.port, username=box.user, key_filename=str(box.sftp_key_file),
                   look_for_keys=False, allow_agent=False, timeout=10)
    return client


def test_box_starts_quickly_and_known_hosts_pins_its_key(box):
    assert box.ready_seconds < 5
    assert box.known_hosts_file.read_text().startswith(f"[127.0.0.1]:{box.port} ssh-ed25519 ")
    pinned = run(["ssh-keygen", "-lf", box.known_hosts_file], timeout=30).stdout.split()[1]
    assert pinned == box.host_key_fingerprint == box.pinned_host_key_fingerprint
    assert pinned.startswith("SHA256:")
    assert box.repo_url(Path("/srv/r")) == f"ssh://{box.user}@127.0.0.1:{box.port}/srv/r"


def test_borg_init_create_list_over_ssh_with_pinned_host_key(box, repos, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "canary.txt").write_text("canary-7f3a\n")
    box.authorize_borg(box.borg_key_file.with_suffix(".pub"), repos)
    url = box.repo_url(repos / "main")

    borg(box, tmp_path, "init", "--encryption=repokey-blake2", url)
    borg(box, tmp_path, "create", "--timestamp", "2024-01-01T00:00:00", f"{url}::first", source)
    listing = json.loads(borg(box, tmp_path, "list", "--json", url).stdout)
    info = json.loads(borg(box, tmp_path, "info", "--json", url).stdout)
    extracted = borg(box, tmp_path, "extract", "--stdout", f"{url}::first",
                     str(source / "canary.txt").lstrip("/")).stdout

    assert [a["name"] for a in listing["archives"]] == ["first"]
    assert listing["archives"][0]["start"].startswith("2024-01-01T00:00:00")
    assert info["encryption"]["mode"] == "repokey-blake2"
    assert extracted == "canary-7f3a\n"
    assert (repos / "main" / "config").is_file()  # the repository is where the box put it


def test_forced_command_restricts_borg_to_the_repo_dir(box, repos, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    box.authorize_borg(box.borg_key_file.with_suffix(".pub"), repos)

    with pytest.raises(CommandError) as refused:
        borg(box, tmp_path, "init", "--encryption=repokey-blake2", box.repo_url(elsewhere / "r"))

    assert "not allowed" in refused.value.tail or "restrict" in refused.value.tail.lower()
    assert not (elsewhere / "r").exists()
    assert PASSPHRASE not in str(refused.value)


def test_append_only_key_keeps_a_transaction_log(box, repos, tmp_path):
    box.authorize_borg(box.borg_key_file.with_suffix(".pub"), repos, append_only=True)
    url = box.repo_url(repos / "ao")

    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "file").write_text("data\n")

    borg(box, tmp_path, "init", "--encryption=repokey-blake2", url)
    borg(box, tmp_path, "create", f"{url}::a", tmp_path / "source")

    assert "--append-only" in box.authorized_keys_file.read_text()
    assert (repos / "ao" / "transactions").is_file()  # borg writes it in append-only mode only


def test_sftp_key_lists_and_reads_files_with_strict_paramiko(box, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    (files / "hello.txt").write_text("hello from the box\n")
    box.authorize_sftp(box.sftp_key_file.with_suffix(".pub"), files)

    client = paramiko_client(box)
    try:
        sftp = client.open_sftp()
        names = sftp.listdir(".")
        cwd = sftp.normalize(".")
        with sftp.open("hello.txt") as handle:
            content = handle.read().decode()
        sftp.put(str(files / "hello.txt"), "uploaded.txt")
        _, stdout, _ = client.exec_command("id")
        shell_output = stdout.read().decode()
    finally:
        client.close()

    assert names == ["hello.txt"]
    assert cwd == str(files)
    assert content == "hello from the box\n"
    assert (files / "uploaded.txt").is_file()
    assert "sftp connections only" in shell_output and "uid=" not in shell_output


def test_read_only_sftp_key_cannot_write(box, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    box.authorize_sftp(box.sftp_key_file.with_suffix(".pub"), files, read_only=True)

    client = paramiko_client(box)
    try:
        with pytest.raises(OSError):
            client.open_sftp().open("new.txt", "w").write("x")
    finally:
        client.close()

    assert not (files / "new.txt").exists()


def test_rotated_host_key_is_refused_by_ssh_and_paramiko(box, repos, tmp_path):
    box.authorize_borg(box.borg_key_file.with_suffix(".pub"), repos)
    box.authorize_sftp(box.sftp_key_file.with_suffix(".pub"), tmp_path)
    url = box.repo_url(repos / "main")
    borg(box, tmp_path, "init", "--encryption=repokey-blake2", url)
    port_before = box.port

    box.rotate_host_key()
    with pytest.raises(CommandError) as borg_refused:
        borg(box, tmp_path, "list", "--json", url)
    with pytest.raises(CommandError) as ssh_refused:
        run(["ssh", *box.ssh_options(box.borg_key_file), f"{box.user}@{box.host}", "true"], timeout=30)
    with pytest.raises(paramiko.BadHostKeyException):
        paramiko_client(box)

    assert box.port == port_before
    assert box.host_key_fingerprint != box.pinned_host_key_fingerprint
    # borg relays ssh's "Host key verification failed." only most of the time (a race in
    # its reader): judge borg by its exit code, and find the cause with plain ssh
    assert borg_refused.value.returncode == 2
    assert "Connection closed by remote host" in borg_refused.value.tail
    assert ssh_refused.value.returncode == 255
    assert "Host key verification failed." in ssh_refused.value.tail
    box.restore_host_key()
    assert json.loads(borg(box, tmp_path, "list", "--json", url).stdout)["archives"] == []


def test_stop_leaves_no_sshd_process_even_with_an_open_session(tmp_path):
    box = StorageBox(tmp_path / "box").start()
    box.authorize_sftp(box.sftp_key_file.with_suffix(".pub"), tmp_path)
    client = paramiko_client(box)
    client.open_sftp().listdir(".")
    listener = box.pid
    sessions = [pid for pid, _ in descendants(listener)]
    assert sessions, "an open SFTP session should have sshd children"

    box.stop()
    client.close()

    assert not alive(listener)
    assert [pid for pid in sessions if alive(pid)] == []
    with pytest.raises(OSError):
        socket.create_connection((box.host, box.port), timeout=1).close()


def test_start_failure_names_the_problem_and_shows_the_sshd_log(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        box = StorageBox(tmp_path / "box", ready_timeout=5)
        box.port = taken.getsockname()[1]
        with pytest.raises(StorageBoxError) as failed:
            box.start()

    assert "sshd exited" in str(failed.value)
    assert "Bind to port" in str(failed.value) or "Cannot bind" in str(failed.value)
    assert box.pid is None
