"""Issue 22's done-when on the lab: ``restoredrill init`` against the lab's PVE and PBS and a
borgmatic configuration written by the real borgmatic (2.1.10 from PyPI) for the lab's two
Borg repositories gives an inventory ``check-inventory`` accepts as it stands, and after
filling in ONLY keys init marked TODO(init), the borg, PBS audit and offsite drills pass.

What is filled in, each at a key init marked: site.timezone, policies.rpo (grace), the
firewall's exception (guests[0].strategy), the Borg checks' archive_path (the lab backs up
from inside its source folder), and offsite.s3 (from the lab's endpoints.json, with the
encryption init found for the datastore it holds) with the datastore's backend/s3_target.
"""
from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import run_cli
from tests.integration.onboard_site import borgmatic_writes, install_borgmatic

pytestmark = pytest.mark.e2e


def borgmatic_config(lab) -> dict:
    local, offsite = lab.repos
    return {"source_directories": [str(lab.root / "source" / "app")],
            "repositories": [{"path": local.location, "label": local.name},
                             {"path": offsite.location, "label": offsite.name}],
            "encryption_passcommand": f"cat {local.passphrase_file}",
            "ssh_command": lab.box.borg_rsh(),
            "match_archives": "sh:app-*",
            "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 2}


def test_init_on_the_lab_then_the_drills_pass(lab, drill, tmp_path):
    local, offsite = lab.repos
    if local.passphrase_file.read_text() != offsite.passphrase_file.read_text():
        offsite_config = borgmatic_config(lab) | {"repositories": [{"path": offsite.location,
                                                                    "label": offsite.name}],
                                                  "encryption_passcommand": f"cat {offsite.passphrase_file}"}
        local_config = borgmatic_config(lab) | {"repositories": [{"path": local.location, "label": local.name}]}
    else:
        local_config, offsite_config = borgmatic_config(lab), None
    program = install_borgmatic(tmp_path / "venv", "2.1.10")
    configs = []
    for number, config in enumerate(c for c in (local_config, offsite_config) if c):
        mine, written = tmp_path / f"mine{number}.yaml", tmp_path / f"config{number}.yaml"
        mine.write_text(yaml.safe_dump(config, sort_keys=False))
        borgmatic_writes(program, written, mine)
        configs += ["--borgmatic", str(written)]
    ends = json.loads(lab.endpoints_path.read_text())
    pve, pbs = ends["pve"], ends["pbs"]
    out = tmp_path / "inventory.yaml"
    made = run_cli("init", "--out", str(out), "--pve-url", pve["url"], "--pve-token-id", pve["token_id"],
                   "--pve-token-secret-file", pve["token_secret_file"], "--pve-fingerprint", pve["fingerprint"],
                   "--pbs-url", pbs["url"], "--pbs-token-id", lab.double.pbs_audit_token.token_id,
                   "--pbs-token-secret-file", str(lab.double.pbs_audit_token.secret_file),
                   "--pbs-fingerprint", pbs["fingerprint"], *configs)
    assert made.returncode == 0, made.stdout + made.stderr
    checked = run_cli("check-inventory", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = out.read_text()
    data = yaml.safe_load(text)
    marked = made.stdout

    def fill(dotted: str) -> None:
        assert f"{dotted}:" in marked, f"init did not mark {dotted}:\n{marked}"

    fill("site.timezone")
    data["site"]["timezone"] = "Europe/Berlin"
    fill("policies.rpo")
    data["policies"]["rpo"]["daily"]["grace"] = "3h"
    fill("guests[0].strategy")
    data["guests"][0]["exception"] = "a snapshot freezes the firewall; its config is exported"
    for number, repo in enumerate(data["borg"]["repositories"]):
        fill(f"borg.repositories[{number}].checks")
        repo["checks"]["spot_check"]["archive_path"] = "app"
        repo["prune_timezone"] = data["site"]["timezone"]       # the site's zone, as site.timezone says
    fill("offsite.s3")
    s3 = ends["s3"]
    store = next(d for d in data["proxmox"]["pbs"]["datastores"] if d["name"] == "offsite")
    data["offsite"]["s3"] = [{
        "name": "lab-s3", "endpoint": s3["endpoint"], "region": s3["region"], "bucket": s3["bucket"],
        "store_prefix": s3["store_prefix"], "access_key": f"file:{s3['access_key_file']}",
        "secret_key": f"file:{s3['secret_key_file']}", "rpo": "daily", "require_object_lock": True,
        **({"ca_file": s3["ca_file"]} if s3.get("ca_file") else {}),
        # the bucket holds this datastore: its encryption as init found it in the snapshots
        "encryption_required": store["encryption_required"],
        **({"key_fingerprint": store["key_fingerprint"]} if "key_fingerprint" in store else {})}]
    store.update(backend="s3", s3_target="lab-s3")
    filled = tmp_path / "filled.yaml"
    filled.write_text(yaml.safe_dump(data, sort_keys=False))
    run = drill(filled, "--select", "borg", "--select", "pbs", "--select", "offsite", "-k", "not test_pbs_restore")
    assert run.failed() == {}, (run.failed(), run.stdout[-3000:], run.stderr[-2000:])
    assert run.code == 0
    kinds = {name.split("[")[0] for name in run.cases}
    assert {"test_reachable", "test_retention", "test_check", "test_snapshot_fresh", "test_cross_copy",
            "test_s3_chunk_sample"} <= kinds, kinds
