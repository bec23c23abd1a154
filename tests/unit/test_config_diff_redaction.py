"""The config diff of a restore (evidence: JUnit, HTML, the evidence bundle, state.db)
names every key that changed, was removed or added, but never shows the value of a
secret or free-text key: cloud-init credentials and user data, notes, raw QEMU args,
raw LXC keys."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from restoredrill.bundle import evidence_files
from restoredrill.checks.isolation import (
    REDACTED,
    config_diff,
    parse_config_text,
    plan_isolation,
)

CIPASSWORD = "$5$Qx1eU3tz$Lm0sZbJ4yQpP1k3T7v9Wc2dR8fGhN6aX5eYu0iOq4B."
SSHKEY = "ssh-ed25519%20AAAAC3NzaC1lZDI1NTE5AAAAIKq7secretkeymaterial%20ops%40example"
NOTES = "Billing VM: admin password is hunter2-Billing"
ARGS = "-vnc 0.0.0.0:77,password=on -object secret,id=vnc0,data=Vnc-Secret-77"
LXC_ENV = "DB_PASSWORD=Lxc-Env-Secret-55"
BACKUP_VM = f"""#{NOTES}
#second line of the notes
agent: 1
args: {ARGS}
cicustom: user=local:snippets/billing-user.yaml
cipassword: {CIPASSWORD}
ciuser: billing-admin
ipconfig0: ip=10.0.0.15/24,gw=10.0.0.1
name: billing
net0: virtio=BC:24:11:5E:A0:15,bridge=vmbr0,firewall=1
onboot: 1
sshkeys: {SSHKEY}
#qmdump#map:scsi0:drive-scsi0:local-zfs:raw:

[snap1]
cipassword: $5$older$hash
"""
SECRETS = (CIPASSWORD, SSHKEY, "AAAAC3NzaC1lZDI1NTE5", NOTES, "hunter2", ARGS, "Vnc-Secret-77",
           "billing-user.yaml", "billing-admin", LXC_ENV, "Lxc-Env-Secret-55")


def scratch_config(backup: dict[str, str]) -> dict[str, object]:
    """What PVE answers for the restored guest: the plan's overrides over the backup's
    values, cipassword masked as PVE's API masks it, the keys given another value."""
    plan = plan_isolation("qemu", backup, bridge="vmbr-drill", storage="local-zfs", pool="restoredrill",
                          tag="restoredrill", run_id="R1", name="billing",
                          expires=datetime(2026, 1, 1, tzinfo=timezone.utc))
    after: dict[str, object] = {k: v for k, v in backup.items() if k not in plan.delete}
    after.update(plan.create)
    after.update(cipassword="**********", sshkeys="ssh-ed25519%20AAAAother", ciuser="root",
                 cicustom="user=local:snippets/other.yaml", args="-no-hpet")
    return after


def test_secret_and_free_text_values_never_reach_the_diff():
    backup = parse_config_text(BACKUP_VM)
    diff = config_diff(backup, scratch_config(backup))
    text = json.dumps(diff)
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"the config diff shows {leaked}: {text}"
    changed = {key: (old, new) for key, old, new in diff["changed"]}
    for key in ("cipassword", "sshkeys", "ciuser", "cicustom", "args"):
        assert changed[key] == (REDACTED, REDACTED), key       # that it changed still shows
    assert changed["net0"] == ("virtio=BC:24:11:5E:A0:15,bridge=vmbr0,firewall=1", "virtio,bridge=vmbr-drill")
    assert changed["onboot"] == ("1", "0")
    assert "description" in diff["added"]                    # the notes are comment lines in the file


def test_a_description_and_raw_lxc_keys_present_on_both_sides_are_redacted():
    before = {"description": NOTES, "lxc.environment": LXC_ENV, "hostname": "db"}
    after = {"description": "restoredrill scratch guest of db", "lxc.environment": "DB_PASSWORD=x",
             "hostname": "drill-db"}
    diff = config_diff(before, after)
    assert diff["changed"] == [["description", REDACTED, REDACTED], ["hostname", "db", "drill-db"],
                               ["lxc.environment", REDACTED, REDACTED]]


def test_the_evidence_bundle_holds_no_secret_of_the_backup_config():
    class Case:
        drill, check = "guest:billing", "restore"
        properties: dict

    backup = parse_config_text(BACKUP_VM)
    case = Case()
    case.properties = {"config_diff": json.dumps(config_diff(backup, scratch_config(backup)))}
    files = evidence_files([case])
    body = files["config-diffs/guest_billing.json"]
    assert "cipassword" in body and not [secret for secret in SECRETS if secret in body]
