"""The proof matrix from a lab-shaped inventory and the evidence a green lab run records (values
from a real `restoredrill lab` run of 2026-12-07): a row per dataset's guest and Borg data, the
firewall config and Kuma's data; a column per declared copy; ages and proofs where the run saw
points (never "none" for pbs:local / pbs:offsite); a failing S3 case that names one guest's
group turns exactly that cell red; metrics as timestamps."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from restoredrill.inventory.model import Inventory
from restoredrill.report import cells as C
from restoredrill.report import history as hist
from restoredrill.report.matrix import build_matrix
from restoredrill.report.metrics import render_metrics
from restoredrill.report.model import FAILED, Case, RunReport
from restoredrill.report.html import render_html
from restoredrill.report.overview import drill_statuses
from tests.unit.test_report_metrics import check_exposition

STARTED = datetime(2026, 12, 7, 19, 20, 0, tzinfo=timezone.utc)
NOW = STARTED + timedelta(minutes=1)
VM_SNAP, CT_SNAP = "vm/110/2026-12-07T01:00:03Z", "ct/120/2026-12-07T01:01:03Z"


def lab_inventory(**changes) -> Inventory:
    escrow = {"location": "paper", "outside_site": True}
    data = {
        "version": 1, "site": {"name": "restoredrill-lab", "timezone": "Europe/Berlin"},
        "policies": {"retention": {"lab": {"keep_daily": 7}, "pbs-local": {"keep_last": 2}},
                     "rpo": {"daily": {"max_age": "25h", "grace": "2h"}, "lab-s3": {"max_age": "25h", "grace": "3h"}}},
        "borg": {"repositories": [
            {"name": "app-local", "location": "/srv/repos/app-local", "passphrase": "file:/x", "retention": "lab",
             "rpo": "daily", "key_escrow": escrow},
            {"name": "app-offsite", "location": "ssh://root@127.0.0.1:2222/repos/app-offsite", "passphrase": "file:/x",
             "retention": "lab", "rpo": "daily", "storage_box": "lab-box", "key_escrow": escrow}]},
        "proxmox": {"pve": {"url": "https://127.0.0.1:8006", "token_id": "d@pve!t", "token_secret": "file:/x",
                            "fingerprint": "AA:" * 31 + "AA"},
                    "pbs": {"url": "https://127.0.0.1:8007", "token_id": "d@pbs!t", "token_secret": "file:/x",
                            "fingerprint": "AA:" * 31 + "AA", "datastores": [
                                {"name": "local", "role": "local", "pve_storage": "pbs", "retention": "pbs-local",
                                 "rpo": "daily", "encryption_required": False, "key_escrow": escrow},
                                {"name": "offsite", "role": "offsite", "pve_storage": "pbs-offsite",
                                 "namespace": "homelab", "retention": "lab", "rpo": "lab-s3", "backend": "s3",
                                 "s3_target": "lab-s3", "encryption_required": False, "key_escrow": escrow}]}},
        "offsite": {"storage_boxes": [{"name": "lab-box", "host": "127.0.0.1", "port": 2222, "user": "root",
                                       "key_file": "/k", "known_hosts_file": "/kh"}],
                    "s3": [{"name": "lab-s3", "endpoint": "https://127.0.0.1:9000", "region": "us-east-1",
                            "bucket": "b", "store_prefix": "offsite", "access_key": "file:/a",
                            "secret_key": "file:/s", "encryption_required": False}],
                    "config_exports": [{"name": "fw-encrypted", "kind": "opnsense", "storage_box": "lab-box",
                                        "path_glob": "opnsense/*.xml", "rpo": "daily"}]},
        "guests": [
            {"name": "opnsense", "vmid": 100, "type": "qemu", "strategy": "config-export", "exception": "config",
             "config_export": "fw-encrypted"},
            {"name": "app-vm", "vmid": 110, "type": "qemu", "strategy": "pbs", "rpo": "daily", "access": "agent"},
            {"name": "app-ct", "vmid": 120, "type": "lxc", "strategy": "pbs", "rpo": "daily", "access": "pct"}],
        "datasets": [
            {"name": "app-data", "copies": [
                {"where": "production", "media": "disk"}, {"where": "borg:app-local", "media": "disk"},
                {"where": "borg:app-offsite", "media": "storage-box", "offsite": True}]},
            {"name": "app-vm", "copies": [
                {"where": "production", "media": "zfs"}, {"where": "pbs:local", "media": "zfs"},
                {"where": "pbs:offsite", "media": "object-storage", "offsite": True}]},
            {"name": "app-ct", "copies": [
                {"where": "production", "media": "zfs"}, {"where": "pbs:local", "media": "zfs"},
                {"where": "pbs:offsite", "media": "object-storage", "offsite": True}]}],
        "monitoring": {"uptime_kuma": {"url": "http://127.0.0.1:3001", "username": "u", "password": "file:/p",
                                       "data": {"borg": "app-local", "path": "app/uptime-kuma/kuma.db"}}},
    }
    data.update(changes)
    return Inventory.model_validate(data)


def case(drill: str, check: str, outcome: str = "passed", message: str = "", **facts) -> Case:
    return Case(f"drills/x.py::{drill}-{check}", drill, check, outcome, message,
                properties={"drill": drill, "check": check, **{k: str(v) for k, v in facts.items()}})


def borg_cases(repo: str) -> list[Case]:
    drill, archive = f"borg:{repo}", {"archive": "app-2026-12-07T17:18", "archive_time": "2026-12-07T17:18:00+00:00"}
    return [case(drill, "reachable"), case(drill, "fresh", rpo_hours=27.0, age_hours=2.04, **archive),
            case(drill, "retention"), case(drill, "check", check_mode="verify-data"),
            case(drill, "extract", seconds=0.951, **archive), case(drill, "paths", **archive),
            case(drill, "sqlite:app/uptime-kuma/kuma.db", **archive)]


def pbs_cases(store: str, guest: str, snap: str, rpo: float) -> list[Case]:
    drill, when = f"pbs:{store}", snap.split("/")[-1].replace("Z", "+00:00")
    return [case(drill, f"fresh:{guest}", guest=guest, datastore=store, rpo_hours=rpo, snapshot=snap, snapshot_time=when),
            case(drill, f"verified:{guest}", guest=guest, datastore=store, last_verified=snap, last_verify_state="ok",
                 last_verify_time="2026-12-07T19:20:25+00:00"),
            case(drill, f"retention:{guest}", guest=guest, datastore=store)]


def guest_cases(guest: str, snap: str) -> list[Case]:
    drill = f"guest:{guest}"
    return [case(drill, "backed-up", guest=guest, newest_backup=f"pbs:backup/{snap}"),
            case(drill, "restore", guest=guest, snapshot=f"pbs:backup/{snap}",
                 snapshot_time=snap.split("/")[-1].replace("Z", "+00:00"), scratch_vmid=9900,
                 restore_seconds=0.31, boot_to_reachable_seconds=0.899),
            case(drill, "webapp-running", guest=guest)]


def s3_cases(chunks_present: Case | None = None) -> list[Case]:
    drill = "offsite:lab-s3"
    return [case(drill, "reachable"), case(drill, "manifests"),
            chunks_present or case(drill, "chunks-present"), case(drill, "chunk-sample"),
            case(drill, "fresh", rpo_hours=28.0), case(drill, "cross-copy")]


def green_cases() -> list[Case]:
    return [*borg_cases("app-local"), *borg_cases("app-offsite"),
            *pbs_cases("local", "app-vm", VM_SNAP, 27.0), *pbs_cases("local", "app-ct", CT_SNAP, 27.0),
            *pbs_cases("offsite", "app-vm", VM_SNAP, 28.0), *pbs_cases("offsite", "app-ct", CT_SNAP, 28.0),
            *guest_cases("app-vm", VM_SNAP), *guest_cases("app-ct", CT_SNAP), *s3_cases(),
            case("offsite:fw-encrypted", "fresh", newest="opnsense/config-1.xml", rpo_hours=27.0,
                 revision_time="2026-12-07T16:20:00+00:00"),
            case("offsite:fw-encrypted", "parses", revision_time="2026-12-07T16:20:00+00:00"),
            case("lint:3-2-1", "3-2-1"), case("lint:strategy", "strategy")]


def matrix_of(cases: list[Case], inv: Inventory | None = None):
    run = RunReport("r1", "restoredrill-lab", STARTED, NOW, cases=cases)
    return build_matrix(inv or lab_inventory(), cases, hist.History.from_run(run), NOW, 35, STARTED), run


def cell(matrix, row: str, copy: str) -> C.Cell:
    return next(r for r in matrix.rows() if r.target == row).cells[copy]


def test_rows_columns_and_groups_of_the_lab():
    matrix, _ = matrix_of(green_cases())
    assert [c.ref for c in matrix.columns] == ["production", "pbs:local", "pbs:offsite", "borg:app-local",
                                               "borg:app-offsite", "config:fw-encrypted"]
    assert [c.title for c in matrix.columns][1:5] == ["PBS local", "PBS offsite", "Borg local", "Borg offsite"]
    assert [(g.name, [r.target for r in g.rows]) for g in matrix.groups] == [
        ("app-data", ["data:app-data", "kuma-data"]), ("app-vm", ["guest:app-vm"]), ("app-ct", ["guest:app-ct"]),
        (None, ["config:opnsense"])]
    assert all(g.meets for g in matrix.groups[:3])
    assert "meets 3-2-1: 3 copies (production, pbs:local, pbs:offsite)" in matrix.groups[1].verdict
    assert "proven in this run: 2 of 2 backup copies" in matrix.groups[1].verdict


def test_every_copy_of_a_green_run_has_an_age_and_its_proof():
    matrix, _ = matrix_of(green_cases())
    local, offsite = cell(matrix, "guest:app-vm", "pbs:local"), cell(matrix, "guest:app-vm", "pbs:offsite")
    assert local.point_name == VM_SNAP and local.age_seconds(NOW) > 18 * 3600
    assert (local.proof, local.state) == (C.RESTORED, "ok") and local.rto == {"restore": 0.31, "boot": 0.899}
    assert (offsite.proof, offsite.state) == (C.READ_OFFSITE, "ok") and offsite.point_time is not None
    assert offsite.rto == {}                       # no restore from the offsite copy yet (issue 23)
    borg = cell(matrix, "data:app-data", "borg:app-offsite")
    assert (borg.proof, borg.state, borg.rto) == (C.EXTRACTED, "ok", {"restore": 0.951})
    kuma = cell(matrix, "kuma-data", "borg:app-local")
    assert kuma.proof == C.EXTRACTED and "1 data check(s)" in kuma.proof_how
    fw = cell(matrix, "config:opnsense", "config:fw-encrypted")
    assert (fw.proof, fw.state) == (C.EXTRACTED, "ok") and fw.point_name == "opnsense/config-1.xml"
    assert cell(matrix, "guest:app-vm", "production").state == "live"


def test_a_restore_naming_the_offsite_copy_proves_that_cell():
    cases = green_cases()
    restore = next(c for c in cases if c.drill == "guest:app-ct" and c.check == "restore")
    restore.properties["copy"] = "offsite"
    matrix, _ = matrix_of(cases)
    assert cell(matrix, "guest:app-ct", "pbs:offsite").proof == C.RESTORED
    assert cell(matrix, "guest:app-ct", "pbs:offsite").rto["boot"] == 0.899
    assert cell(matrix, "guest:app-ct", "pbs:local").proof == C.VERIFIED
    assert cell(matrix, "guest:app-ct", "pbs:local").state == "late"      # never restore-tested from local


def test_a_restore_without_a_health_check_is_not_called_healthy():
    """access none (or health: []): the guest was restored and booted, nothing checked it inside,
    so the cell stops one rung below "restored, booted and healthy"."""
    cases = [c for c in green_cases() if not (c.drill == "guest:app-ct" and c.check == "webapp-running")]
    matrix, _ = matrix_of(cases)
    ct = cell(matrix, "guest:app-ct", "pbs:local")
    assert (ct.proof, ct.state) == (C.EXTRACTED, "ok") and ct.rto["boot"] == 0.899
    assert "restored into scratch guest 9900 and booted; no health check ran" in ct.proof_how
    assert cell(matrix, "guest:app-vm", "pbs:local").proof == C.RESTORED


def test_a_lost_chunk_of_one_guest_turns_exactly_that_cell_red():
    lost = case("offsite:lab-s3", "chunks-present", FAILED,
                "S3 target lab-s3: expected every referenced chunk; found 1 missing: offsite/.chunks/ab12/ab12cd: "
                "missing from the bucket listing; referenced by offsite/ns/homelab/vm/110/2026-12-07T01:00:03Z/"
                "drive-scsi0.img.fidx")
    matrix, _ = matrix_of(green_cases()[:-4] + s3_cases(lost) + green_cases()[-4:])
    states = {(r.target, ref): c.state for r in matrix.rows() for ref, c in r.cells.items()}
    red = [key for key, state in states.items() if state == "fail"]
    assert red == [("guest:app-vm", "pbs:offsite")]
    assert "vm/110" in cell(matrix, "guest:app-vm", "pbs:offsite").problems[0]
    assert cell(matrix, "guest:app-ct", "pbs:offsite").proof == C.READ_OFFSITE    # its own group read fine
    assert "failing: pbs:offsite" in matrix.groups[1].verdict


def test_an_s3_failure_naming_no_group_fails_every_guest_in_that_copy():
    broken = case("offsite:lab-s3", "manifests", FAILED, "S3 target lab-s3: the bucket listing failed")
    cases = [c for c in green_cases() if not (c.drill == "offsite:lab-s3" and c.check == "manifests")] + [broken]
    matrix, _ = matrix_of(cases)
    assert {r.target for r in matrix.rows() if r.cells.get("pbs:offsite") and r.cells["pbs:offsite"].state == "fail"} \
        == {"guest:app-vm", "guest:app-ct"}


def test_a_point_over_the_rpo_is_red_and_a_dataset_without_its_guest_is_a_finding():
    cases = green_cases()
    fresh = next(c for c in cases if c.drill == "borg:app-local" and c.check == "fresh")
    fresh.properties["rpo_hours"] = "1"
    inv = lab_inventory(datasets=[{"name": "photos", "copies": [{"where": "pbs:local", "media": "zfs"}]}])
    matrix, _ = matrix_of(cases, inv)
    assert cell(matrix, "data:app-local", "borg:app-local").state == "fail"
    assert "over the RPO of 1 h" in cell(matrix, "data:app-local", "borg:app-local").problems[-1]
    assert any(f.failing and "no guest is named photos" in f.text for f in matrix.findings)
    assert matrix.groups[0].meets is False and "falls short of 3-2-1" in matrix.groups[0].verdict


def test_lint_moves_to_the_findings_and_the_page_shows_the_matrix():
    cases = green_cases() + [case("lint:key-escrow", "key-escrow", FAILED, "borg:app-local has no key escrow")]
    matrix, run = matrix_of(cases)
    assert matrix.findings[0].failing and matrix.findings[0].source == "lint:key-escrow"
    page = render_html(run, drill_statuses(run, hist.History.from_run(run)), [], [], NOW, "", matrix)
    glance = page.split("<h2>Drills at a glance</h2>")[1].split("</table>")[0]
    assert "lint:" not in glance and "none proven" not in page
    assert 'data-row="guest:app-vm" data-copy="pbs:offsite" data-state="ok"' in page
    assert "borg:app-local has no key escrow" in page.split("<h2>Findings")[1]


def test_metrics_export_timestamps_per_target_and_copy():
    matrix, run = matrix_of(green_cases())
    text = render_metrics(run, drill_statuses(run, hist.History.from_run(run)), [], NOW, matrix)
    joined = "\n".join(sum(check_exposition(text).values(), []))
    vm_time = datetime(2026, 12, 7, 1, 0, 3, tzinfo=timezone.utc).timestamp()
    base = 'site="restoredrill-lab",target="guest:app-vm"'
    assert f'restoredrill_newest_point_timestamp_seconds{{{base},copy="pbs:local",proof="restored"}} {int(vm_time)}' \
        in joined
    assert f'restoredrill_newest_point_timestamp_seconds{{{base},copy="pbs:offsite",proof="read_offsite"}}' in joined
    assert f'restoredrill_last_rto_seconds{{{base},copy="pbs:local",phase="boot"}} 0.899' in joined
    assert f'restoredrill_copy_rpo_seconds{{{base},copy="pbs:offsite"}} 100800' in joined
    assert 'restoredrill_pbs_snapshot_verify_ok{site="restoredrill-lab",datastore="offsite",vm_id="120",' \
        'vm_name="app-ct"} 1' in joined
    for target, copy in (("data:app-data", "borg:app-offsite"), ("guest:app-ct", "pbs:offsite"),
                         ("config:opnsense", "config:fw-encrypted")):
        assert f'target="{target}",copy="{copy}"' in joined


def test_kuma_data_needs_its_database_check_only_in_the_repository_the_inventory_names():
    cases = [c for c in green_cases() if c.check != "sqlite:app/uptime-kuma/kuma.db"]
    matrix, _ = matrix_of(cases)
    named, other = cell(matrix, "kuma-data", "borg:app-local"), cell(matrix, "kuma-data", "borg:app-offsite")
    assert named.state == "fail" and "no sqlite:app/uptime-kuma/kuma.db check" in named.problems[0]
    assert (other.state, other.proof) == ("ok", C.VERIFIED)     # a copy, not proven extracted, not failed


def test_a_hostile_message_and_point_name_are_escaped_in_the_cell():
    """Server text (an S3 key, a snapshot name from PBS) reaches the cell only escaped."""
    hostile = "<img src=x onerror=alert(1)>"
    lost = case("offsite:lab-s3", "chunks-present", FAILED, f"vm/110/{hostile} missing")
    cases = [c for c in green_cases() if not (c.drill == "offsite:lab-s3" and c.check == "chunks-present")] + [lost]
    fresh = next(c for c in cases if c.drill == "pbs:offsite" and c.check == "fresh:app-vm")
    fresh.properties["snapshot"] = f'vm/110/"{hostile}'
    matrix, run = matrix_of(cases)
    page = render_html(run, drill_statuses(run, hist.History.from_run(run)), [], [], NOW, "", matrix)
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'data-row="guest:app-vm" data-copy="pbs:offsite" data-state="fail"' in page
