"""The shipped CI snippets and systemd unit work as written (issue 22, section 5): every
restoredrill command line parses with the real CLI, nothing is installed from PyPI (restoredrill is
not there), GitLab's image gets the Debian packages borgbackup builds with, and the secret
variables the snippets export are exactly the table of contrib/README.md, which turns the example
inventory into a valid one."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from restoredrill.cli import build_parser
from restoredrill.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[2]
GITLAB, GITHUB = ROOT / "contrib" / "ci" / "gitlab-ci.yml", ROOT / "contrib" / "ci" / "github-actions.yml"
UNIT = ROOT / "contrib" / "systemd" / "restoredrill-drills.service"


def borg_build_packages() -> list[str]:
    """The line of scripts/install-deps.sh that CI and the README must install too."""
    lines = (ROOT / "scripts" / "install-deps.sh").read_text().splitlines()
    return lines[lines.index("  # build libraries for borgbackup from PyPI") + 1].split()


def shell_lines(path: Path) -> list[str]:
    data = yaml.safe_load(path.read_text())
    if path == GITLAB:
        job = data["restore-gate"]
        return [" ".join(line.split()) for line in job["before_script"] + job["script"]]
    return [step["run"] for step in data["jobs"]["gate"]["steps"] if "run" in step]


def restoredrill_argv(line: str) -> list[str] | None:
    words = shlex.split(line)
    if words and (words[0] == "restoredrill" or words[0] == "$RESTOREDRILL"):
        return words[1:]
    return None


@pytest.mark.parametrize("snippet", [GITLAB, GITHUB], ids=["gitlab", "github"])
def test_every_restoredrill_command_of_the_snippet_parses(snippet):
    commands = [argv for argv in map(restoredrill_argv, shell_lines(snippet)) if argv is not None]
    assert len(commands) >= 2
    for argv in commands:
        build_parser().parse_args(argv)          # a usage error exits 2 and fails the test
    assert any(argv[:1] == ["run"] and "gate" in argv for argv in commands)


def test_nothing_is_installed_from_pypi_by_name_and_gitlab_can_build_borg():
    for snippet in (GITLAB, GITHUB):
        for line in shell_lines(snippet):
            assert not re.search(r"pip install +restoredrill\b", line), line
    gitlab = shell_lines(GITLAB)
    apt = next(line for line in gitlab if "apt-get install" in line)
    assert set(borg_build_packages()) <= set(apt.split()), apt
    assert 'pip install "$RESTOREDRILL_PACKAGE"' in gitlab
    assert yaml.safe_load(GITLAB.read_text())["restore-gate"]["variables"]["RESTOREDRILL_PACKAGE"]
    github = yaml.safe_load(GITHUB.read_text())
    assert github["env"]["RESTOREDRILL"] == "/opt/restoredrill/.venv/bin/restoredrill"


def test_the_readme_install_section_names_the_packages_borg_builds_with():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Install on your runner host"):readme.index("## The inventory")]
    assert all(package in section for package in borg_build_packages())
    assert "pip install restoredrill" not in readme + (ROOT / "contrib" / "README.md").read_text()


def secret_table() -> dict[str, str]:
    text = (ROOT / "contrib" / "README.md").read_text()
    section = text[text.index("## Secrets in CI"):]
    return dict(re.findall(r"^\| `([^`]+)` \| `([A-Z0-9_]+)` \|$", section, re.MULTILINE))


def test_the_snippets_export_exactly_the_tables_variables():
    table = secret_table()
    assert len(table) == 8
    github = yaml.safe_load(GITHUB.read_text())["jobs"]["gate"]["env"]
    assert set(github) == set(table.values())
    assert all(value == f"${{{{ secrets.{name} }}}}" for name, value in github.items())
    assert "Secrets in CI" in GITLAB.read_text() and "Secrets in CI" in GITHUB.read_text()


def test_the_table_turns_the_example_inventory_into_a_valid_ci_inventory(tmp_path, monkeypatch):
    data = yaml.safe_load((ROOT / "inventory" / "example-homelab.yaml").read_text())
    for key, variable in secret_table().items():
        *parents, leaf = re.findall(r"([a-z_0-9]+)(?:\[([a-z0-9-]*)\])?", key)
        node = data
        for name, index in parents:
            node = node[name]
            if index is not None and isinstance(node, list):
                node = [item for item in node if not index or item["name"] == index]
                assert len(node) == 1, key
                node = node[0]
        assert leaf[0] in node, key
        node[leaf[0]] = f"env:{variable}"
        monkeypatch.setenv(variable, "set-by-ci")
    for notification in ("smtp_password", "heartbeat_url"):       # CI: no mail, no heartbeat
        data["notifications"].pop(notification)
    data["notifications"]["smtp_user"] = None
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_inventory(path)       # every file: secret is gone, so the host checks pass: nothing left to a file


def test_the_systemd_unit_runs_a_valid_command_from_the_documented_venv():
    text = UNIT.read_text().replace("\\\n", " ")
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    program, *argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert program == "/opt/restoredrill/.venv/bin/restoredrill"
    build_parser().parse_args(argv)
    dropin = ROOT / "contrib" / "systemd" / "restoredrill-drills.service.d" / "runner-netns.conf"
    assert "User=root" in dropin.read_text()
