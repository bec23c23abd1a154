"""``restoredrill init`` against the double's PVE and PBS and a borgmatic configuration.

The draft is written 0600, ``check-inventory`` accepts it as it stands, it holds what the
APIs say (guests with node and backup strategy from the vzdump job, the PBS datastores with
their PVE storage, namespace, sync job, server retention and encryption, the drill bridge and
scratch storage), never a secret, and the PBS audit drills pass on it after filling in only
keys marked TODO(init). An existing file is never written over; an endpoint that cannot be
read ends init with exit 1 and no file.
"""
from __future__ import annotations

import stat

import pytest
import yaml

from restoredrill import cli
from restoredrill.lab.proxmox import ProxmoxDouble, homelab
from restoredrill.lab.proxmox.seed import LOCAL_POLICY, OFFSITE_POLICY
from tests.integration.test_pbs_audit_drills import closed_port, run_audit

pytestmark = pytest.mark.integration

BORGMATIC = """\
source_directories:
    - {source}
repositories:
    - path: {repo}
      label: app-local
encryption_passcommand: cat {secret}
keep_daily: 7
keep_weekly: 4
"""


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("onboard-init")) as running:
        assert running.pbs_jobs.run_and_wait("verify", "offsite-verify").exitstatus == "OK"
        yield running


def init_args(double, out, borgmatic) -> list[str]:
    return ["init", "--out", str(out),
            "--pve-url", double.pve_url, "--pve-token-id", double.drill_token.token_id,
            "--pve-token-secret-file", str(double.drill_token.secret_file), "--pve-fingerprint", double.fingerprint,
            "--pbs-url", double.pbs_url, "--pbs-token-id", double.pbs_audit_token.token_id,
            "--pbs-token-secret-file", str(double.pbs_audit_token.secret_file),
            "--pbs-fingerprint", double.pbs_fingerprint, "--borgmatic", str(borgmatic)]


@pytest.fixture(scope="module")
def drafted(double, tmp_path_factory):
    folder = tmp_path_factory.mktemp("drafted")
    borgmatic = folder / "config.yaml"
    borgmatic.write_text(BORGMATIC.format(source=folder, repo=folder / "repo", secret=folder / "pass"))
    out = folder / "inventory.yaml"
    return double, out, borgmatic


def test_init_writes_a_draft_check_inventory_accepts(drafted, capsys):
    double, out, borgmatic = drafted
    assert cli.main(init_args(double, out, borgmatic)) == 0
    printed = capsys.readouterr().out
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert cli.main(["check-inventory", str(out)]) == 0
    text = out.read_text()
    for secret in (double.drill_token.secret(), double.pbs_audit_token.secret()):
        assert secret not in text and secret not in printed
    data = yaml.safe_load(text)
    guests = {g["vmid"]: g for g in data["guests"]}
    assert {v: (g["strategy"], g["node"], g["type"]) for v, g in guests.items()} == {
        100: ("none", "pve1", "qemu"), 110: ("pbs", "pve2", "qemu"), 120: ("pbs", "pve3", "lxc")}
    assert guests[100]["exception"].startswith("TODO(init)")
    stores = {d["name"]: d for d in data["proxmox"]["pbs"]["datastores"]}
    assert stores["local"]["role"] == "local" and stores["local"]["pve_storage"] == "pbs"
    assert stores["offsite"].items() >= {"role": "offsite", "pve_storage": "pbs-offsite",
                                         "namespace": homelab.OFFSITE_NAMESPACE, "sync_job": "offsite-pull"}.items()
    policies = data["policies"]["retention"]
    assert policies["pbs-local"] == {k.replace("-", "_"): v for k, v in LOCAL_POLICY.items()}
    assert policies["pbs-offsite"] == {k.replace("-", "_"): v for k, v in OFFSITE_POLICY.items()}
    assert stores["local"]["key_fingerprint"] == double.key_fingerprint
    assert data["scratch"]["bridge"] == homelab.ISOLATED_BRIDGE and data["scratch"]["storage"] == "local-zfs"
    assert data["proxmox"]["pve"]["nodes"] == list(homelab.PVE_NODES)
    repo = data["borg"]["repositories"][0]
    assert repo["passphrase"] == f"command:cat {borgmatic.parent / 'pass'}"
    assert policies[repo["retention"]] == {"keep_daily": 7, "keep_weekly": 4}
    assert "guests[0].strategy" in printed and "scratch.vmid_range" in printed
    for marked in ("guests[1].health", "proxmox.pbs.datastores[1].role", "site.timezone"):
        assert marked in printed and f"# TODO(init)" in text


def test_the_pbs_audit_passes_after_filling_in_what_init_marked(drafted, tmp_path):
    double, out, _ = drafted
    if not out.exists():
        pytest.fail("the draft test must run first in this module")
    data = yaml.safe_load(out.read_text())
    # TODO(init) guests[0].strategy: the firewall is excepted, its config exported
    data["guests"][0]["exception"] = "a snapshot freezes the firewall; its config is exported"
    # TODO(init) policies.rpo: the offsite copy arrives through the nightly sync, 3 h later
    data["policies"]["rpo"]["daily"]["grace"] = "3h"
    run = run_audit(data, tmp_path)
    assert run.code == 0 and run.failed() == {}, (run.failed(), run.stdout[-3000:], run.stderr[-2000:])
    assert len(run.cases) >= 20


def test_init_never_writes_over_a_file(drafted, capsys, tmp_path):
    double, _, borgmatic = drafted
    out = tmp_path / "inventory.yaml"
    out.write_text("mine\n")
    assert cli.main(init_args(double, out, borgmatic)) == 2
    assert "never writes over a file" in capsys.readouterr().err
    assert out.read_text() == "mine\n"


def test_an_unreadable_endpoint_ends_init_without_a_file(drafted, capsys, tmp_path):
    double, _, borgmatic = drafted
    out = tmp_path / "inventory.yaml"
    args = init_args(double, out, borgmatic)
    args[args.index("--pve-url") + 1] = f"https://127.0.0.1:{closed_port()}"
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "unreachable" in err and "nothing was written" in err and not out.exists()
    assert double.drill_token.secret() not in err
