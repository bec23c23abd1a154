"""The wheel carries what every error message points to (issue 22, section 5): the example
inventory (``restoredrill example-inventory``) and contrib/ (systemd unit, its drop-in, CI
snippets), and an installed wheel prints the example from anywhere."""
from __future__ import annotations

import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    return next(out.glob("restoredrill-*.whl"))


def test_the_wheel_holds_the_example_and_contrib(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "restoredrill/inventory/example-homelab.yaml" in names
    for part in ("systemd/restoredrill-drills.service", "systemd/restoredrill-drills.service.d/runner-netns.conf",
                 "ci/gitlab-ci.yml", "ci/github-actions.yml", "README.md"):
        assert f"restoredrill/contrib/{part}" in names, part


def test_an_installed_wheel_prints_the_example_inventory(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = next((venv / "lib").glob("python3*/site-packages"))
    project_site = next(p for p in map(Path, site.getsitepackages()) if p.is_dir())
    (target / "project-deps.pth").write_text(f"{project_site}\n")     # the dependencies, not restoredrill
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                          "--no-deps", str(wheel)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    shown = subprocess.run([str(venv / "bin" / "restoredrill"), "example-inventory"], capture_output=True,
                           text=True, cwd=tmp_path, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == (ROOT / "inventory" / "example-homelab.yaml").read_text()
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import restoredrill; "
                            "print(restoredrill.example_inventory())"], capture_output=True, text=True,
                           cwd=tmp_path, check=True).stdout.strip()
    assert where.startswith(str(venv))          # the wheel's copy, not the checkout's
