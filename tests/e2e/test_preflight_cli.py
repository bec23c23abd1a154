"""``restoredrill preflight`` and the preflight at the start of ``restoredrill run`` (issue 22,
section 3), on an inventory whose every endpoint is a closed port: one line per endpoint, one
failing case per endpoint naming it, every other case skipped as blocked (none passed), no
traceback. Before, such an inventory gave 89 failures and 635 lines of repeated messages."""
from __future__ import annotations

import socket
import subprocess

import pytest
import yaml

from tests.conftest import parse_junit, run_cli

pytestmark = pytest.mark.e2e
ENDPOINTS = {"pve", "pbs", "node:*", "borg:offsite", "s3:wasabi", "box:hetzner", "kuma", "smtp"}


@pytest.fixture
def closed_inventory(tmp_path):
    """Every endpoint on a port this test holds bound but not listening (refused, and no other
    process can take it meanwhile); secrets and keys exist with mode 0600 (check-inventory)."""
    held = [socket.socket() for _ in range(7)]
    for sock in held:
        sock.bind(("127.0.0.1", 0))
    pve, pbs, ssh, s3, kuma, smtp, _ = (sock.getsockname()[1] for sock in held)
    for name in ("pve", "pbs", "borg", "s3-access", "s3-secret", "kuma", "smtp"):
        (tmp_path / f"{name}.secret").write_text("not-a-real-secret\n")
        (tmp_path / f"{name}.secret").chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "drill.key")], check=True)
    host_key = (tmp_path / "drill.key.pub").read_text().split()[:2]
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{ssh} {' '.join(host_key)}\n")
    ssh_endpoint = {"host": "127.0.0.1", "port": ssh, "user": "drill", "key_file": "drill.key",
                    "known_hosts_file": "known_hosts"}
    data = {
        "site": {"name": "closed"},
        "policies": {"retention": {"daily": {"keep_daily": 7}}, "rpo": {"daily": {"max_age": "25h"}}},
        "proxmox": {
            "pve": {"url": f"https://127.0.0.1:{pve}", "token_id": "drill@pve!t", "token_secret": "file:pve.secret",
                    "node_ssh": ssh_endpoint},
            "pbs": {"url": f"https://127.0.0.1:{pbs}", "token_id": "drill@pbs!t", "token_secret": "file:pbs.secret",
                    "datastores": [{"name": "local", "role": "local", "retention": "daily", "pve_storage": "pbs",
                                    "encryption_required": False}]}},
        "guests": [{"name": "app", "vmid": 110, "type": "qemu", "strategy": "pbs", "rpo": "daily"},
                   {"name": "ct", "vmid": 120, "type": "lxc", "strategy": "pbs", "access": "pct"}],
        "borg": {"repositories": [{"name": "offsite", "location": f"ssh://drill@127.0.0.1:{ssh}/./repo",
                                   "storage_box": "hetzner", "passphrase": "file:borg.secret",
                                   "retention": "daily", "rpo": "daily"}]},
        "offsite": {"s3": [{"name": "wasabi", "endpoint": f"https://127.0.0.1:{s3}", "bucket": "b",
                            "store_prefix": "pbs", "access_key": "file:s3-access.secret",
                            "secret_key": "file:s3-secret.secret", "retention": "daily", "rpo": "daily"}],
                    "storage_boxes": [{"name": "hetzner", **ssh_endpoint}],
                    "config_exports": [{"name": "fw", "storage_box": "hetzner",
                                        "path_glob": "opnsense/config-*.xml", "rpo": "daily"}]},
        "monitoring": {"uptime_kuma": {"url": f"http://127.0.0.1:{kuma}", "username": "drill",
                                       "password": "file:kuma.secret"}},
        "notifications": {"email_to": ["admin@example.org"], "smtp_host": "127.0.0.1", "smtp_port": smtp,
                          "smtp_user": "drill", "smtp_password": "file:smtp.secret"},
    }
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    yield path
    for sock in held:
        sock.close()


def test_preflight_prints_one_line_per_endpoint_and_exits_1(closed_inventory):
    proc = run_cli("preflight", "--inventory", str(closed_inventory), timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(ENDPOINTS) + 1 and proc.stderr == "", proc.stdout + proc.stderr
    keys = {line.split()[1] for line in lines[:-1]}
    assert keys == ENDPOINTS
    assert all(line.startswith("FAIL") and "connection refused (nothing listens on that port" in line
               for line in lines[:-1]), proc.stdout
    assert lines[-1].endswith(f"{len(ENDPOINTS)} endpoint(s), {len(ENDPOINTS)} with a finding")
    assert "not-a-real-secret" not in proc.stdout


@pytest.mark.parametrize("workers", ["1", "2"])
def test_run_reports_one_root_cause_per_endpoint_and_blocks_the_rest(closed_inventory, tmp_path, workers):
    out = tmp_path / "out"
    proc = run_cli("run", "--inventory", str(closed_inventory), "--out", str(out), "--state-dir",
                   str(tmp_path / "state"), "--select", "borg", "--select", "pbs", "--select", "offsite",
                   "--select", "monitoring", "--workers", workers, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    cases = parse_junit(out / "junit.xml")
    failed = {name for name, case in cases.items() if case["outcome"] == "failure"}
    # SMTP is no drill's endpoint (failure mail goes out after the run): a line, no case
    assert failed == {f"preflight[{key}]" for key in ENDPOINTS - {"smtp"}}, failed
    others = {name: case for name, case in cases.items() if name not in failed}
    assert others and all(case["outcome"] == "skipped" and "blocked by preflight" in case["message"]
                          for case in others.values()), {n: c["outcome"] for n, c in others.items()}
    for key in ENDPOINTS - {"smtp"}:
        assert "connection refused" in cases[f"preflight[{key}]"]["message"]
    assert "Traceback" not in proc.stdout + proc.stderr and "During handling" not in proc.stdout + proc.stderr
    assert sum(line.startswith("preflight: FAIL") for line in proc.stdout.splitlines()) == len(ENDPOINTS)
    assert "not-a-real-secret" not in proc.stdout + proc.stderr + (out / "junit.xml").read_text()
    assert "PASS " not in proc.stdout.split("restoredrill summary", 1)[1]     # nothing blocked reads as a pass


def test_the_served_labs_every_endpoint_is_ok(lab):
    """The lab's inventory: PVE and PBS (pinned TLS, tokens, every privilege of the table), the
    nodes' SSH, both Borg repositories (one local, read without a lock; one over SSH), S3, the
    storage box and Kuma: all OK, exit 0."""
    proc = run_cli("preflight", "--inventory", str(lab.inventory_path), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()[:-1]
    assert lines and all(line.startswith("OK  ") for line in lines), proc.stdout
    keys = {line.split()[1] for line in lines}
    assert {"pve", "pbs", "borg:app-local", "borg:app-offsite", "kuma"} <= keys, keys
    assert any(key.startswith("s3:") for key in keys) and any(key.startswith("node:") for key in keys), keys
    assert "privileges: all" in proc.stdout and "no lock taken" in proc.stdout
