"""The lint's key proofs fail, naming the copy and the key file, when the escrowed key is not
the copy's key: a PBS key file with another fingerprint, and a keyfile-mode Borg repository
whose escrowed keyfile is another repository's key or predates a passphrase change.

Real Borg repositories (made with borg itself) and PBS key files made with
restoredrill.pbsformat, run through the CLI as in test_lint_drills.py.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from restoredrill.cli import main
from restoredrill.execute import run
from restoredrill.pbsformat import CryptConfig, write_key_file
from tests.integration.test_lint_drills import PASSPHRASE, borg, inventory_text, run_lint_drills, write

pytestmark = pytest.mark.integration

NEW_PASSPHRASE = "a new passphrase after the export 7"
ALL_CASES = ("test_strategies", "test_key_escrow", "test_circular_dependency", "test_three_two_one", "test_monitoring_restorable",
             "test_escrowed_key[borg:photos]", "test_escrowed_key[borg:cloud]", "test_escrowed_key[pbs:local]")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """test_lint_drills' site (photos: repokey, cloud: keyfile, one PBS key), plus a second
    keyfile repository and a second PBS key: keys that belong to something else."""
    tmp = tmp_path_factory.mktemp("lint-keys")
    (tmp / "data").mkdir()
    (tmp / "data" / "photo.jpg").write_bytes(b"jpeg" * 100)
    (tmp / "escrow").mkdir()
    for name, mode in (("photos", "repokey-blake2"), ("cloud", "keyfile-blake2"), ("spare", "keyfile-blake2")):
        borg(tmp, "init", f"--encryption={mode}", tmp / name)
        borg(tmp, "create", f"{tmp / name}::first", tmp / "data")
        borg(tmp, "key", "export", tmp / name, tmp / "escrow" / f"{name}.key")
    crypt, other = CryptConfig.generate(), CryptConfig.generate()
    write_key_file(tmp / "escrow" / "pbs.key", crypt)
    write_key_file(tmp / "escrow" / "pbs-other.key", other)
    (tmp / "pass").write_text(PASSPHRASE)
    (tmp / "pass").chmod(0o600)      # check-inventory refuses a secret others can read
    (tmp / "fingerprint").write_text(crypt.fingerprint())
    (tmp / "other-fingerprint").write_text(other.fingerprint())
    return tmp


def lint_run(site: Path, name: str, text: str) -> tuple[int, dict[str, str]]:
    return run_lint_drills(site, write(site, f"{name}.yaml", text), name)


def only_failed(results: dict[str, str], failed: str) -> str:
    """The one failing case's message; every other case passed."""
    assert set(results) == set(ALL_CASES)
    assert {name: "passed" for name in ALL_CASES if name != failed} == \
        {name: message for name, message in results.items() if name != failed}
    assert results[failed] != "passed"
    return results[failed]


def test_the_site_proves_every_key(site):
    code, results = lint_run(site, "sound", inventory_text(site))
    assert results == {name: "passed" for name in ALL_CASES} and code == 0


def test_pbs_key_file_with_another_fingerprint_fails_naming_datastore_and_key(site, capsys):
    text = inventory_text(site).replace("key_file: escrow/pbs.key", "key_file: escrow/pbs-other.key")
    assert main(["lint", "--inventory", str(write(site, "pbs-wrong.yaml", text))]) == 0   # the pure lint reads no key
    capsys.readouterr()
    code, results = lint_run(site, "pbs-wrong", text)
    message = only_failed(results, "test_escrowed_key[pbs:local]")
    assert code == 1
    assert "PBS datastore local" in message and str(site / "escrow" / "pbs-other.key") in message
    assert (site / "fingerprint").read_text() in message and (site / "other-fingerprint").read_text() in message
    assert "another key" in message


def test_borg_keyfile_of_another_repository_fails_naming_repository_and_key(site):
    text = inventory_text(site).replace("key_file: escrow/cloud.key", "key_file: escrow/spare.key")
    code, results = lint_run(site, "borg-other-keyfile", text)
    message = only_failed(results, "test_escrowed_key[borg:cloud]")
    assert code == 1
    assert "borg:cloud" in message and "repository cloud" in message
    assert f"escrowed key {site / 'escrow' / 'spare.key'}" in message and "borg key export" in message


def test_borg_keyfile_exported_before_a_passphrase_change_fails(site, tmp_path):
    """The live keyfile was re-encrypted with a new passphrase after the escrow copy was made:
    the live key opens the repository with the new passphrase, the escrowed copy does not."""
    live = site / "escrow" / "cloud-live.key"
    shutil.copy(site / "escrow" / "cloud.key", live)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BORG_")}
    env.update(BORG_BASE_DIR=str(tmp_path / "rotate-base"), BORG_PASSPHRASE=PASSPHRASE,
               BORG_NEW_PASSPHRASE=NEW_PASSPHRASE, BORG_KEY_FILE=str(live))
    run([shutil.which("borg") or "borg", "key", "change-passphrase", str(site / "cloud")], timeout=120, env=env,
        secrets=(PASSPHRASE, NEW_PASSPHRASE), label="test borg")       # rewrites the keyfile, not the repository
    (site / "new-pass").write_text(NEW_PASSPHRASE)
    (site / "new-pass").chmod(0o600)      # check-inventory refuses a secret others can read
    text = inventory_text(site).replace("      location: cloud\n      passphrase: file:pass",
                                        "      location: cloud\n      passphrase: file:new-pass")
    assert "file:new-pass" in text
    code, results = lint_run(site, "borg-live-keyfile", text.replace("escrow/cloud.key", "escrow/cloud-live.key"))
    assert results == {name: "passed" for name in ALL_CASES} and code == 0
    code, results = lint_run(site, "borg-stale-keyfile", text)
    message = only_failed(results, "test_escrowed_key[borg:cloud]")
    assert code == 1 and "repository cloud" in message and "passphrase" in message
    assert f"escrowed key {site / 'escrow' / 'cloud.key'}" in message and "borg key export" in message
    assert NEW_PASSPHRASE not in message and PASSPHRASE not in message
