"""The README's first command and the served lab, through the real CLI."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import green, parse_junit

pytestmark = pytest.mark.e2e


def test_lab_serve_contract_then_run_then_clean_stop(tmp_path):
    directory = tmp_path / "served"
    proc = subprocess.Popen([sys.executable, "-m", "restoredrill.cli", "lab", "serve", "--dir", str(directory),
                             "--pve-version", "8.4.1", "--pbs-version", "3.2.4"],      # the version switch
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY "), line + proc.stderr.read()
        endpoints_path = Path(line.split(" ", 1)[1].strip())
        assert endpoints_path == directory.resolve() / "endpoints.json"
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        endpoints = json.loads(endpoints_path.read_text())
        box = endpoints["storage_box"]
        assert set(box) >= {"host", "port", "user", "key_file", "known_hosts_file"}
        assert box["host"] == "127.0.0.1" and all(Path(box[k]).is_absolute() for k in ("key_file", "known_hosts_file"))
        for repo in endpoints["borg_repositories"]:
            assert set(repo) == {"name", "location", "passphrase_file"}
            secret = Path(repo["passphrase_file"])
            assert secret.is_absolute() and stat.S_IMODE(secret.stat().st_mode) == 0o600
            assert secret.read_text().strip() not in (directory / "inventory.yaml").read_text()
        run = subprocess.run([sys.executable, "-m", "restoredrill.cli", "run", "--inventory",
                              str(directory / "inventory.yaml"), "--select", "borg", "--out", str(tmp_path / "out"),
                              "--state-dir", str(tmp_path / "state"), "-k", "reachable or fresh or retention"],
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        cases = parse_junit(tmp_path / "out" / "junit.xml")
        assert len(cases) == 6 and all(c["outcome"] == "passed" for c in cases.values())
        sshd_pid = int((directory / "box" / "sshd.pid").read_text())
        start_a_guest_and_a_restore(endpoints)      # SIGTERM comes while a restore runs
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
    assert code == 0, proc.stderr.read()
    with pytest.raises(ProcessLookupError):
        os.kill(sshd_pid, 0)
    assert not (directory / "endpoints.json").exists() and not (directory / "repos").exists()
    assert not (directory / "proxmox").exists()
    from restoredrill.lab.guests.netns import list_namespaces
    assert not [ns for ns in list_namespaces() if ns.startswith(f"rdl{proc.pid}-")]
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "restoredrill.lab.guests.boot" not in ps and str(directory) not in ps
    mounts = Path("/proc/mounts").read_text()
    assert str(directory) not in mounts


def start_a_guest_and_a_restore(endpoints: dict) -> None:
    """A running scratch guest, and a second restore still in flight."""
    from proxmoxer.tools import Tasks

    from restoredrill.lab.proxmox.double import TokenInfo
    from restoredrill.lab.proxmox.testing import connect
    pve = endpoints["pve"]
    api = connect(pve["url"], TokenInfo(pve["token_id"], Path(pve["token_secret_file"])),
                  pin_fingerprint=pve["fingerprint"])
    assert api.version.get()["version"] == "8.4.1"
    pbs = endpoints["pbs"]
    pbs_api = connect(pbs["url"], TokenInfo(pbs["token_id"], Path(pbs["token_secret_file"])), service="PBS",
                      pin_fingerprint=pbs["fingerprint"])
    assert (pbs_api.version.get()["version"], pbs_api.version.get()["release"]) == ("3.2", "4")
    node = api.nodes(pve["node"])
    finished = [i for i in node.storage("pbs").content.get(content="backup", vmid=120)
                if i.get("subtype") == "lxc" and i.get("size", 0) > 1]      # the newest is unfinished
    volid = max(finished, key=lambda i: i["ctime"])["volid"]
    args = dict(ostemplate=volid, restore=1, storage="local-zfs", pool="restoredrill", rootfs="local-zfs:1",
                onboot=0, tags="restoredrill", net0="name=eth0,bridge=vmbr-drill,ip=10.199.0.120/24")
    restored = Tasks.blocking_status(api, node.lxc.post(vmid=9960, **args), timeout=60, polling_interval=0.05)
    assert restored["exitstatus"] in ("OK", "WARNINGS: 1"), restored
    started = Tasks.blocking_status(api, node.lxc(9960).status.start.post(), timeout=60, polling_interval=0.05)
    assert started["exitstatus"] == "OK", started
    assert node.lxc(9960).status.current.get()["status"] == "running"
    node.lxc.post(vmid=9961, **args)


def test_lab_serve_refuses_a_folder_with_someone_elses_files(tmp_path):
    (tmp_path / "precious.txt").write_text("mine")
    proc = subprocess.run([sys.executable, "-m", "restoredrill.cli", "lab", "serve", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert (tmp_path / "precious.txt").read_text() == "mine"


def test_restoredrill_lab_runs_every_drill_and_tears_down(tmp_path):
    out = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "restoredrill.cli", "lab", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    cases = parse_junit(out / "junit.xml")
    assert len(cases) >= 2 * 12 and all(green(n, c) for n, c in cases.items())
    assert "PASS  borg:app-local" in proc.stdout
    built_in = proc.stdout.split("building the lab in ", 1)[1].split(" ", 1)[0]
    assert not Path(built_in).exists()


def test_a_plain_pip_install_finds_its_drills(lab, tmp_path):
    """Not only editable: a wheel carries drills/ and fixtures/ and runs from anywhere."""
    root = Path(__file__).resolve().parents[2]
    # The wheel is built by the project's venv (it has hatchling from the test extras), never by
    # whatever the machine's base Python happens to have; it goes into a clean venv that sees the
    # project venv's dependencies through a .pth line (a path line: the project's own editable
    # finder there is not loaded, so only the wheel's restoredrill can be imported).
    wheel_dir = tmp_path / "wheel"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(wheel_dir), str(root)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    project_site = next(p for p in map(Path, __import__("site").getsitepackages()) if p.is_dir())
    (site / "project-deps.pth").write_text(f"{project_site}\n")
    wheel = next(wheel_dir.glob("restoredrill-*.whl"))
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                          "-q", "--no-deps", str(wheel)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    installed = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import restoredrill; print(restoredrill.drills_dir())"],
                               capture_output=True, text=True, cwd=tmp_path, check=True).stdout.strip()
    assert installed.startswith(str(venv)) and Path(installed, "test_borg.py").is_file()
    run = subprocess.run([str(venv / "bin" / "restoredrill"), "run", "--inventory", str(lab.inventory_path),
                          "--out", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state"), "-k", "reachable"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         # the dependencies' programs (borg) are where pip put them: the project venv's bin
                         env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert str(venv) in run.stdout  # the drills ran from the installed wheel


@pytest.mark.parametrize("option,value", [("--pbs-version", "3.0.4"), ("--pve-version", "7.4.3"),
                                          ("--pbs-version", "latest"), ("--pve-version", "9.1")])
def test_lab_refuses_a_release_it_does_not_support(tmp_path, option, value):
    proc = subprocess.run([sys.executable, "-m", "restoredrill.cli", "lab", option, value, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and option in proc.stderr and "Supported versions" in proc.stderr
    assert not any(tmp_path.iterdir())
