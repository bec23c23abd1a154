"""Issue 26: relative paths on the command line and in the inventory must not move borg's
files into the restored data. ``borg extract`` runs inside the extract folder, so a relative
``--state-dir`` (hence ``BORG_BASE_DIR``), a relative inventory path (hence a relative
repository location) would be read against the extract folder: borg then wrote its cache and
security record into the restored data (the lab counted 65 files where the archive holds 60)
and threw its security record away every run. With real borg: whatever the working directory
and however the paths are written, the drill restores exactly the archive's files and borg's
own files stay in the state folder."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from restoredrill.lab.borg_history import BorgBuilder, LabRepo
from restoredrill.lab.dataset import build_dataset
from tests.conftest import parse_junit

CASE = "test_restore[site-repo-extract]"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, int]:
    """A folder holding a Borg repository with one archive of the lab's dataset, its passphrase
    and an inventory naming both by relative paths; and the archive's regular-file count."""
    root = tmp_path_factory.mktemp("relative") / "site"
    source = root.parent / "source"
    build_dataset(source)
    secret = root / "repo.pass"
    root.mkdir()
    secret.write_text("relative-paths-test\n")
    secret.chmod(0o600)
    repo = LabRepo("site-repo", str(root / "repo"), secret)
    builder = BorgBuilder(root.parent / "builder", "UTC")
    builder.init(repo)
    builder.create(repo, source, datetime.now(timezone.utc) - timedelta(minutes=5))
    files = sum(1 for path in (source / "app").rglob("*") if path.is_file() and not path.is_symlink())
    inventory = {
        "version": 1,
        "site": {"name": "relative", "timezone": "UTC"},
        "policies": {"retention": {"daily": {"keep_daily": 7}}},
        "scratch": {"work_dir": "scratch", "min_free": "1MiB"},
        "borg": {"repositories": [{"name": "site-repo", "location": "repo", "passphrase": "file:repo.pass",
                                   "retention": "daily", "encryption_required": True}]},
    }
    (root / "inventory.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    return root, files


def drill(cwd: Path, inventory: str, state_dir: str, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "restoredrill.cli", "run", "--inventory", inventory,
                           "--select", "borg", "-k", "extract", "--state-dir", state_dir, "--out", str(out)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    cases = parse_junit(out / "junit.xml") if (out / "junit.xml").exists() else {}
    assert proc.returncode == 0 and CASE in cases, f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    return cases[CASE]


@pytest.mark.parametrize("where", ["inside the site folder", "beside it"])
def test_relative_state_dir_and_inventory_restore_exactly_the_archive(site, where, tmp_path):
    root, files = site
    cwd = root if where == "inside the site folder" else root.parent
    inventory = "inventory.yaml" if cwd == root else "site/inventory.yaml"
    state = f"state-{tmp_path.name}"
    case = drill(cwd, inventory, state, tmp_path / "out")
    assert case["outcome"] == "passed", case
    assert int(case["properties"]["files_restored"]) == files, case["properties"]
    base = cwd / state / "borg" / "site-repo"       # BORG_BASE_DIR, kept between runs
    assert list((base / ".config" / "borg" / "security").iterdir()), "borg's security record was not kept"
    # a second run from the same folder finds the record borg left (no "new repository" again)
    again = drill(cwd, inventory, state, tmp_path / "out2")
    assert int(again["properties"]["files_restored"]) == files, again["properties"]
