"""`restoredrill lint` and the lint drills through the CLI, against real Borg repositories
(repokey and keyfile) and a PBS key file made with restoredrill.pbsformat."""
from __future__ import annotations

import hashlib
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from restoredrill.cli import main
from restoredrill.execute import run
from restoredrill.pbsformat import CryptConfig, write_key_file

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple 42"


def borg(tmp: Path, *args) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BORG_")}
    env.update(BORG_BASE_DIR=str(tmp / "maker-base"), BORG_PASSPHRASE=PASSPHRASE, BORG_DISPLAY_PASSPHRASE="no")
    return run([shutil.which("borg") or "borg", *map(str, args)], timeout=120, env=env, secrets=(PASSPHRASE,),
               label="test borg").stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("lint-site")
    (tmp / "data").mkdir()
    (tmp / "data" / "photo.jpg").write_bytes(b"jpeg" * 100)
    (tmp / "escrow").mkdir()
    for name, mode in (("photos", "repokey-blake2"), ("cloud", "keyfile-blake2"), ("other", "repokey-blake2")):
        borg(tmp, "init", f"--encryption={mode}", tmp / name)
        borg(tmp, "create", f"{tmp / name}::first", tmp / "data")
        borg(tmp, "key", "export", tmp / name, tmp / "escrow" / f"{name}.key")
    crypt = CryptConfig.generate()
    write_key_file(tmp / "escrow" / "pbs.key", crypt)
    (tmp / "pass").write_text(PASSPHRASE)
    (tmp / "pass").chmod(0o600)      # check-inventory refuses a secret others can read
    (tmp / "fingerprint").write_text(crypt.fingerprint())
    return tmp


def inventory_text(site: Path, *, photos_key="photos.key", cloud_outside="true", copies=3) -> str:
    fingerprint = (site / "fingerprint").read_text()
    copies_yaml = "\n".join(f"      - {c}" for c in [
        "{where: production, media: zfs}", "{where: 'borg:photos', media: storage-box, offsite: true}",
        "{where: 'pbs:local', media: zfs}"][:copies])
    return f"""\
site: {{name: lint-lab}}
policies:
  retention:
    r: {{keep_daily: 7}}
proxmox:
  pbs:
    url: https://127.0.0.1:9
    token_id: drill@pbs!t
    token_secret: env:RESTOREDRILL_TEST_UNUSED
    datastores:
      - name: local
        role: local
        retention: r
        key_fingerprint: "{fingerprint}"
        key_escrow: {{location: owner's safe, outside_site: true, key_file: escrow/pbs.key}}
guests:
  - {{name: fw, vmid: 100, type: qemu, strategy: config-export, exception: freezes the network,
     config_export: fw-config}}
  - {{name: photos, vmid: 110, type: lxc, strategy: pbs, access: none, depends_on: [fw]}}
borg:
  repositories:
    - name: photos
      location: photos
      passphrase: file:pass
      key_escrow: {{location: owner's password manager, outside_site: true, key_file: escrow/{photos_key}}}
    - name: cloud
      location: cloud
      passphrase: file:pass
      key_escrow: {{location: the PBS VM, outside_site: {cloud_outside}, key_file: escrow/cloud.key}}
offsite:
  storage_boxes:
    - {{name: box, host: 127.0.0.1, user: u, key_file: /k, known_hosts_file: /kh, requires: []}}
  config_exports:
    - {{name: fw-config, storage_box: box, path_glob: "*.xml"}}
datasets:
  - name: photos
    copies:
{copies_yaml}
"""


def write(site: Path, name: str, text: str) -> Path:
    path = site / name
    path.write_text(text)
    return path


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_lint_drills(site: Path, inventory: Path, out: str) -> tuple[int, dict[str, str]]:
    code = main(["run", "--inventory", str(inventory), "--select", "lint", "--out", str(site / out),
                 "--state-dir", str(site / "state"), "-k", "not snapshots"])
    results = {}
    for case in ET.parse(site / out / "junit.xml").getroot().iter("testcase"):
        failure = case.find("failure")
        results[case.get("name")] = failure.get("message") if failure is not None else "passed"
    return code, results


def test_sound_inventory_lints_clean_and_every_escrowed_key_proves(site, capsys):
    inventory = write(site, "sound.yaml", inventory_text(site))
    assert main(["lint", "--inventory", str(inventory)]) == 0
    assert "no lint findings" in capsys.readouterr().out
    before = {name: tree_digest(site / name) for name in ("photos", "cloud")}
    code, results = run_lint_drills(site, inventory, "sound")
    assert results == {name: "passed" for name in (
        "test_strategies", "test_key_escrow", "test_circular_dependency", "test_three_two_one", "test_monitoring_restorable",
        "test_escrowed_key[borg:photos]", "test_escrowed_key[borg:cloud]", "test_escrowed_key[pbs:local]")}
    assert code == 0
    assert {name: tree_digest(site / name) for name in ("photos", "cloud")} == before   # nothing written


def test_flawed_inventory_is_named_by_the_cli_and_the_drills(site, capsys):
    text = inventory_text(site, photos_key="other.key", cloud_outside="false", copies=2)
    text = text.replace("requires: []", "requires: [fw]")
    inventory = write(site, "flawed.yaml", text)
    assert main(["lint", "--inventory", str(inventory)]) == 1
    out = capsys.readouterr().out
    assert "[key-escrow] Borg repository cloud: expected its key held outside the site; found it only at " \
           "'the PBS VM'" in out
    assert "[circular-dependency] fw is needed to reach box but can only be recovered from box" in out
    assert "[3-2-1] dataset photos falls short of 3-2-1: 2 copies (production, borg:photos) where three " \
           "are needed" in out
    code, results = run_lint_drills(site, inventory, "flawed")
    assert code == 1
    assert results["test_strategies"] == "passed"
    assert "the PBS VM" in results["test_key_escrow"]
    assert "fw is needed to reach box" in results["test_circular_dependency"]
    assert "dataset photos falls short" in results["test_three_two_one"]
    assert "the escrowed key belongs to repository" in results["test_escrowed_key[borg:photos]"]
    assert results["test_escrowed_key[borg:cloud]"] == "passed"


def test_inventory_error_exits_2(site):
    assert main(["lint", "--inventory", str(write(site, "broken.yaml", "site: [unclosed\n"))]) == 2
