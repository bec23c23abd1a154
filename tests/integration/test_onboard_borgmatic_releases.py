"""``restoredrill init`` on configurations the REAL borgmatic writes, for several releases.

Each release is installed from PyPI into a throwaway virtualenv (pip's cache makes the next
run fast). Per release: (1) the file ``borgmatic config generate`` writes with its defaults,
and (2) our values merged in by ``borgmatic config generate --source`` (the release's own
upgrade path) and accepted by ``borgmatic config validate``: 1.7 in its sectioned layout,
1.8+ flat. The draft from each must pass check-inventory and carry the values, and no
secret of the configuration may reach the draft or the output.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from restoredrill import cli
from tests.integration.onboard_site import borgmatic_writes, install_borgmatic

pytestmark = pytest.mark.integration
RELEASES = ("1.7.15", "1.8.14", "2.0.13", "2.1.10")
PUSH_TOKEN = "PushTokenNeverCopied42"
PASSPHRASE = "inline-passphrase-never-copied"
FLAT = {
    "source_directories": ["/srv/app"],
    "repositories": [{"path": "ssh://u1@box.example:23/./app.borg", "label": "offsite"},
                     {"path": "/mnt/backup/app", "label": "local"}],
    "encryption_passphrase": PASSPHRASE,
    "ssh_command": "ssh -i /root/.ssh/box_key -o UserKnownHostsFile=/root/.ssh/box_known_hosts",
    "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6,
    "postgresql_databases": [{"name": "nextcloud"}],
    "healthchecks": {"ping_url": f"https://hc.example/ping/{PUSH_TOKEN}"},
}
KUMA = {"uptime_kuma": {"push_url": f"https://kuma.example/api/push/{PUSH_TOKEN}"}}     # borgmatic 1.8+
SECTIONS = {"location": ("source_directories", "repositories"),
            "storage": ("encryption_passphrase", "ssh_command"),
            "retention": ("keep_daily", "keep_weekly", "keep_monthly"),
            "hooks": ("postgresql_databases", "healthchecks")}


def sectioned(flat: dict) -> dict:
    return {section: {key: flat[key] for key in keys} for section, keys in SECTIONS.items()}


@pytest.fixture(scope="module", params=RELEASES)
def borgmatic(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, install_borgmatic(tmp_path_factory.mktemp(f"borgmatic-{request.param}"), request.param)


def init(config: Path, out: Path, capsys) -> tuple[dict, str]:
    assert cli.main(["init", "--out", str(out), "--borgmatic", str(config)]) == 0
    printed = capsys.readouterr().out
    assert cli.main(["check-inventory", str(out)]) == 0
    capsys.readouterr()
    return yaml.safe_load(out.read_text()), printed


def test_the_generated_default_configuration(borgmatic, tmp_path, capsys):
    release, program = borgmatic
    generated = tmp_path / "config.yaml"
    borgmatic_writes(program, generated)
    data, printed = init(generated, tmp_path / "inventory.yaml", capsys)
    repos = data["borg"]["repositories"]
    assert repos[0]["location"] == "ssh://user@backupserver/./sourcehostname.borg"
    assert repos[0]["encryption_required"] is False          # the generated file sets no passphrase
    assert data["policies"]["retention"][repos[0]["retention"]] == {"keep_daily": 7}
    assert data["offsite"]["storage_boxes"][0]["host"] == "backupserver"
    assert repos[0]["checks"]["spot_check"]["source"] == "/home"
    assert "known_hosts_file" in printed


def test_our_values_merged_by_the_release(borgmatic, tmp_path, capsys):
    release, program = borgmatic
    source = tmp_path / "mine.yaml"
    layout = sectioned(FLAT) if release.startswith("1.7") else FLAT | KUMA
    source.write_text(yaml.safe_dump(layout, sort_keys=False))
    merged = tmp_path / "config.yaml"
    borgmatic_writes(program, merged, source)
    out = tmp_path / "inventory.yaml"
    data, printed = init(merged, out, capsys)
    text = out.read_text()
    for secret in (PASSPHRASE, PUSH_TOKEN):
        assert secret not in text and secret not in printed
    offsite, local = data["borg"]["repositories"]
    assert (offsite["name"], offsite["location"]) == ("offsite", "ssh://u1@box.example:23/./app.borg")
    assert (local["name"], local["location"]) == ("local", "/mnt/backup/app")
    written = yaml.safe_load(merged.read_text())
    present = {k: v for section in SECTIONS for k, v in (written.get(section) or {}).items()} | written
    if release.startswith("2."):     # before 2.0 a merge comments out the options the sample leaves commented
        assert set(FLAT) | set(KUMA) <= set(present), sorted(set(FLAT) - set(present))
    if "encryption_passphrase" in present:
        assert offsite["passphrase"] == "env:RESTOREDRILL_BORG_PASSPHRASE_OFFSITE"
        assert "holds this passphrase inline (not copied)" in printed
    else:
        assert offsite["encryption_required"] is False and "names no passphrase" in printed
    keeps = {k: v for k, v in present.items() if k.startswith("keep_")}
    assert data["policies"]["retention"][offsite["retention"]] == keeps
    box = data["offsite"]["storage_boxes"][0]
    assert (box["host"], box["port"], box["user"]) == ("box.example", 23, "u1")
    assert offsite["storage_box"] == box["name"]
    if "ssh_command" in present:
        assert (box["key_file"], box["known_hosts_file"]) == ("/root/.ssh/box_key", "/root/.ssh/box_known_hosts")
        assert offsite["ssh_key_file"] == "/root/.ssh/box_key"
    if "postgresql_databases" in present:
        assert offsite["checks"]["postgres_dumps"] == [
            {"path": "borgmatic/postgresql_databases/localhost/nextcloud", "database": "nextcloud"}]
    assert offsite["checks"]["spot_check"] == {"source": "/srv/app"}
    if "healthchecks" in present:
        assert "healthchecks at https://hc.example" in printed
    if "uptime_kuma" in present:
        assert "uptime_kuma at https://kuma.example" in printed


def test_our_configuration_as_the_release_validates_it(borgmatic, tmp_path, capsys):
    """Our own file (every option set), first accepted by the release's `config validate`."""
    release, program = borgmatic
    mine = tmp_path / "config.yaml"
    mine.write_text(yaml.safe_dump(sectioned(FLAT) if release.startswith("1.7") else FLAT | KUMA, sort_keys=False))
    valid = subprocess.run([str(program), "config", "validate", "-c", str(mine)], capture_output=True,
                           text=True, timeout=120)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    out = tmp_path / "inventory.yaml"
    data, printed = init(mine, out, capsys)
    assert PASSPHRASE not in out.read_text() + printed and PUSH_TOKEN not in out.read_text() + printed
    offsite = data["borg"]["repositories"][0]
    assert offsite["passphrase"] == "env:RESTOREDRILL_BORG_PASSPHRASE_OFFSITE"
    assert data["policies"]["retention"][offsite["retention"]] == {"keep_daily": 7, "keep_weekly": 4,
                                                                   "keep_monthly": 6}
    assert data["offsite"]["storage_boxes"][0]["known_hosts_file"] == "/root/.ssh/box_known_hosts"
    assert offsite["checks"]["postgres_dumps"][0]["database"] == "nextcloud"
    assert "healthchecks at https://hc.example" in printed
