"""Issue 20 §4: names from an archive reach the terminal. A borg archive name may hold ESC,
OSC and line breaks (the real borg accepts them); the progress line, the summary and
pytest's failure text print it. Nothing raw may reach the terminal: no ESC (title change,
fake colors, cleared screen) and no fake line starting with a verdict."""
from __future__ import annotations

import subprocess

import pytest
import yaml

from restoredrill.clients.borg import resolve_binary
from tests.conftest import parse_junit, run_cli
from tests.hostile.conftest import Secrets, borg_env

pytestmark = pytest.mark.integration
EVIL_NAME = "evil\x1b]0;owned by the archive\x07\n\x1b[32mPASS  borg:fake  9 of 9 checks\x1b[0m\u202e"


def test_an_archive_name_with_escapes_never_reaches_the_terminal_raw(tmp_path, hostile_secrets: Secrets):
    borg, repo, source = resolve_binary("borg"), tmp_path / "repo", tmp_path / "src"
    source.mkdir()
    (source / "canary").write_text("not what the inventory expects\n")
    env = borg_env(tmp_path / "base", hostile_secrets.marker)
    for argv in (["init", "--encryption=repokey-blake2", str(repo)], ["create", f"{repo}::{EVIL_NAME}", "."]):
        subprocess.run([borg, *argv], cwd=source, env=env, check=True, capture_output=True, timeout=300)
    inventory = {"version": 1, "site": {"name": "names", "timezone": "UTC"},
                 "scratch": {"work_dir": str(tmp_path / "scratch"), "min_free": "1MiB"},
                 "borg": {"repositories": [{
                     "name": "names", "location": str(repo), "passphrase": f"file:{hostile_secrets.passphrase_file}",
                     "encryption_required": True, "lock_wait": "1m",
                     "checks": {"canary": {"path": "canary", "equals": "expected-canary"}}}]}}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))

    proc = run_cli("run", "--inventory", str(path), "--out", str(tmp_path / "out"), "--state-dir",
                   str(tmp_path / "state"), "--select", "borg", "-k", "restore", timeout=600)

    output = proc.stdout + proc.stderr
    cases = parse_junit(tmp_path / "out" / "junit.xml")
    assert cases["test_restore[names-canary:canary]"]["outcome"] == "failure", output[-3000:]
    assert "evil?]0;owned by the archive" in output           # the name is shown, made harmless
    for raw in ("\x1b", "\x07", "\r", "\u202e"):
        assert raw not in output, (raw, output[-3000:])
    assert not [line for line in output.splitlines() if line.lstrip().startswith("?[32mPASS")
                or line.lstrip().startswith("PASS  borg:fake")], output[-3000:]
