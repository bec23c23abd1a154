"""Reports against a real lab (real borg, sshd, PostgreSQL): two runs through the CLI write
junit.xml, drill-report.xml (valid against the XSD), report.html (screenshot in a real headless
Chromium), metrics.prom and history, and ping a local heartbeat receiver; the second run shows
a trend. One lab for the module (the session's ``lab`` fixture, built with ``Lab``)."""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from restoredrill import retention
from restoredrill.lab.borg_history import LAB_POLICY, BorgBuilder, LabRepo
from restoredrill.lab.offsite import LAB_BUCKET, LAB_STORE
from restoredrill.report.calendar import build_calendar
from restoredrill.report.metrics import format_value
from tests.conftest import FIRST_RUN_SKIP, parse_junit, without_dangling_references
from tests.integration.test_notify_heartbeat import TOKEN, Receiver
from tests.shared_files import SHARED, require_shared_file
from tests.unit.test_report_metrics import check_exposition

pytestmark = pytest.mark.integration
XSD = SHARED / "junit" / "junit-10.xsd"
OUTPUTS = ["drill-report.xml", "junit.xml", "metrics.prom", "report.html", "summary.json"]
HOSTILE_ARCHIVE = "app-<img src=x onerror=alert(1)>"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass
class LabRun:
    code: int
    stdout: str
    stderr: str
    out: Path
    seconds: float


@pytest.fixture(scope="module")
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture(scope="module")
def site(lab, tmp_path_factory, receiver):
    """A copy of the lab's inventory with a heartbeat (a secret reference to the receiver's URL)."""
    folder = tmp_path_factory.mktemp("report-lab")
    data = copy.deepcopy(lab.inventory_data())
    for repo in data["borg"]["repositories"]:
        # stated explicitly: the schema's default "31d" reaches plan_borg_check unparsed (a str)
        repo["verify_data"]["max_age"] = "31d"
    data["notifications"] = {"heartbeat_url": "env:RESTOREDRILL_TEST_HEARTBEAT"}
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return folder, path, data


def run_cli(inventory: Path, out: Path, state: Path, receiver: Receiver, *extra: str) -> LabRun:
    env = {**os.environ, "RESTOREDRILL_TEST_HEARTBEAT": f"{receiver.base}/ping/{TOKEN}"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "restoredrill.cli", "run", "--inventory", str(inventory),
                           "--select", "borg", "--out", str(out), "--state-dir", str(state), "--notify", *extra],
                          capture_output=True, text=True, env=env, timeout=600)
    return LabRun(proc.returncode, proc.stdout, proc.stderr, out, time.monotonic() - started)


@pytest.fixture(scope="module")
def runs(site, receiver) -> list[LabRun]:
    """Every Borg drill (--select borg: the scope stays fixed as other kinds join the lab), twice,
    sharing one state folder."""
    folder, inventory, _ = site
    done = [run_cli(inventory, folder / f"out{n}", folder / "state", receiver) for n in (1, 2)]
    for run in done:
        assert run.code == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return done


def suites(path: Path) -> dict[str, ET.Element]:
    return {s.get("name"): s for s in ET.parse(path).getroot().iter("testsuite")}


def test_each_run_writes_every_output(runs, record_property):
    for run in runs:
        assert sorted(p.name for p in run.out.iterdir()) == OUTPUTS
        assert "restoredrill reports" in run.stdout and f"drill report   {run.out}/drill-report.xml" in run.stdout
        generated = next(line for line in run.stdout.splitlines() if line.startswith("report time"))
        record_property(f"report_generation_{run.out.name}", generated.split()[-2])
        record_property(f"run_seconds_{run.out.name}", round(run.seconds, 1))
        assert run.stderr.count("NOTE") == 0, run.stderr


def test_drill_report_validates_with_one_suite_per_drill(runs):
    report = runs[-1].out / "drill-report.xml"
    import xmlschema
    xmlschema.XMLSchema(str(require_shared_file(XSD, "drill-report.xml was not validated against the JUnit "
                                                     "schema"))).validate(str(report))
    found = suites(report)
    assert list(found) == ["borg:app-local", "borg:app-offsite", "history", "restoredrill"]
    for name in ("borg:app-local", "borg:app-offsite"):
        props = {p.get("name"): p.get("value") for p in found[name].iter("property")}
        assert props["verdict"] == "PASS" and props["repository"] == name.split(":")[1]
        assert props["archive"].startswith("app-") and int(props["bytes_restored"]) > 100_000
        assert float(props["extract.seconds"]) > 0 and props["encryption"] == "repokey-blake2"
        checks = [c.get("name") for c in found[name].iter("testcase")]
        assert checks[:6] == ["reachable", "encrypted", "fresh", "retention", "check", "extract"]
    history = found["history"]
    assert history.get("failures") == "0"
    assert {c.get("name") for c in history.iter("testcase")} >= {"coverage:borg:app-local",
                                                                  "rto:borg:app-offsite:restore"}


def test_history_holds_both_runs_and_the_second_report_shows_a_trend(runs, site):
    folder, _, _ = site
    with sqlite3.connect(folder / "state" / "state.db") as db:
        assert db.execute("SELECT verdict FROM runs ORDER BY started_at").fetchall() == [("pass",), ("pass",)]
        extracts = db.execute("SELECT run_id, seconds, evidence FROM results WHERE drill='borg:app-local' "
                              "AND name='extract'").fetchall()
    assert len(extracts) == 2 and all(json.loads(e)["bytes_restored"] > 100_000 for _, _, e in extracts)
    page = (runs[-1].out / "report.html").read_text()
    for drill in ("borg:app-local", "borg:app-offsite"):
        heading = f"{drill}: restore (2 runs)"
        assert heading in page
        assert page.split(heading)[1].split("</svg>")[0].count("<circle") == 2
    assert "borg:app-local: restore (1 run)" in (runs[0].out / "report.html").read_text()


def test_metrics_file_is_valid_and_complete(runs):
    families = check_exposition((runs[-1].out / "metrics.prom").read_text())
    joined = "\n".join(line for lines in families.values() for line in lines)
    assert 'restoredrill_run_success{site="restoredrill-lab"} 1' in joined
    for drill in ("borg:app-local", "borg:app-offsite"):
        assert f'restoredrill_drill_success{{site="restoredrill-lab",drill="{drill}"}} 1' in joined
        assert f'restoredrill_rto_seconds{{site="restoredrill-lab",drill="{drill}",phase="restore"}}' in joined
        assert f'restoredrill_rpo_seconds{{site="restoredrill-lab",drill="{drill}",point="restore_tested"}}' in joined


def test_heartbeat_was_pinged_start_and_success_and_the_token_never_shown(runs, receiver):
    pings = [(p.method, p.path) for p in receiver.pings[:4]]
    assert pings == [("POST", f"/ping/{TOKEN}/start"), ("POST", f"/ping/{TOKEN}")] * 2
    assert receiver.pings[1].body.startswith("PASS restoredrill-lab: 26 checks of 2 drills passed")
    for run in runs:
        assert TOKEN not in run.stdout + run.stderr
        assert all(TOKEN not in (run.out / name).read_text() for name in OUTPUTS)
        assert f"healthchecks http://127.0.0.1:{receiver.server.server_address[1]}/***: start, success" in run.stdout


def find_chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("headless Chromium is needed for the HTML report test and is not installed: "
                    "apt-get install -y --no-install-recommends chromium", pytrace=False)
    return found


def screenshot(page: Path, png: Path, profile: Path) -> float:
    profile.mkdir()
    started = time.monotonic()
    proc = subprocess.run([find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
                           "--window-size=1280,2000", page.as_uri()], capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    assert proc.returncode == 0 and png.is_file(), proc.stderr[-2000:]
    return seconds


def test_html_report_renders_in_headless_chromium(runs, tmp_path, record_property):
    png = tmp_path / "report.png"
    seconds = screenshot(runs[-1].out / "report.html", png, tmp_path / "profile")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 2000)
    assert len(data) > 50_000, "the screenshot looks empty"
    record_property("screenshot", str(png))
    record_property("screenshot_seconds", round(seconds, 2))


def test_retention_calendar_from_the_labs_real_archives(lab, tmp_path):
    """The drill records no `points` yet: here they come from `borg list --json` of the lab."""
    repo = LabRepo("app-local", str(lab.root / "repos" / "app-local"), lab.root / "secrets" / "app-local.pass")
    builder = BorgBuilder(tmp_path / "builder", "Europe/Berlin")
    archives = json.loads(builder.borg(repo, "list", "--json", repo.location).stdout)["archives"]
    # the builder runs borg with TZ=Europe/Berlin, so `start` is a naive Berlin time (borg 1.x
    # helpers/time.py OutputTimestamp); read as UTC, summer month-ends slide into the next month
    points = [{"time": datetime.fromisoformat(a["start"]).replace(tzinfo=ZoneInfo("Europe/Berlin")).isoformat(),
               "name": a["name"]} for a in archives]
    now = datetime.now(timezone.utc)
    cal = build_calendar("borg:app-local", {"points": json.dumps(points), "timezone": "Europe/Berlin"}, now,
                         "UTC", "borg", retention.Policy.from_mapping(LAB_POLICY))
    assert cal.problem is None and cal.points == len(archives) == cal.kept   # prune already ran
    rules = {c.point.css for c in cal.months + cal.weeks if c.point}
    assert {"monthly", "weekly"} <= rules
    assert sum(1 for row in cal.weeks_of_days for c in row if c and c.point and c.point.css == "daily") == 7
    assert now - timedelta(days=400) < min(p.time for row in cal.weeks_of_days for c in row if c and c.point
                                           for p in [c.point])


def test_a_failing_run_pings_failure_and_escapes_a_hostile_archive_name(lab, site, receiver, tmp_path):
    folder, _, data = site
    inv = copy.deepcopy(data)
    inv["borg"]["repositories"] = [r for r in inv["borg"]["repositories"] if r["name"] == "app-local"]
    without_dangling_references(inv)
    copy_dir = tmp_path / "repo-copy"
    shutil.copytree(lab.root / "repos" / "app-local", copy_dir)
    inv["borg"]["repositories"][0]["location"] = str(copy_dir)
    inv["borg"]["repositories"][0]["checks"]["min_files"] = 1_000_000
    repo = LabRepo("copy", str(copy_dir), lab.root / "secrets" / "app-local.pass")
    BorgBuilder(tmp_path / "builder", "Europe/Berlin").borg(
        repo, "create", "--compression=lz4", f"{copy_dir}::{HOSTILE_ARCHIVE}", "app", cwd=lab.root / "source")
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    before = len(receiver.pings)
    run = run_cli(path, tmp_path / "out", tmp_path / "state", receiver, "-k", "fresh or extract or min_files")
    assert run.code == 1, run.stdout[-3000:]
    start, fail = receiver.pings[before:]
    assert (fail.method, fail.path) == ("POST", f"/ping/{TOKEN}/fail")
    assert "FAIL restoredrill-lab: 1 of 3 checks failed (borg:app-local min_files:" in fail.body
    report = suites(run.out / "drill-report.xml")["borg:app-local"]
    message = report.find("testcase[@name='min_files']/failure").get("message")
    assert "1000000" in message or "1,000,000" in message
    page = (run.out / "report.html").read_text()
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'restoredrill_drill_success{site="restoredrill-lab",drill="borg:app-local"} 0' in \
        (run.out / "metrics.prom").read_text()


# --- every drill of the lab (Borg, PBS audit and restores, offsite, lint): the report's rows -------

@pytest.fixture(scope="module")
def full_run(lab, tmp_path_factory) -> LabRun:
    """One run of every drill kind, as `restoredrill lab` does (no heartbeat: the Borg runs above
    own the receiver's pings)."""
    folder = tmp_path_factory.mktemp("report-lab-full")
    data = copy.deepcopy(lab.inventory_data())
    for repo in data["borg"]["repositories"]:
        repo["verify_data"]["max_age"] = "31d"
    inventory = folder / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "restoredrill.cli", "run", "--inventory", str(inventory),
                           "--out", str(folder / "out"), "--state-dir", str(folder / "state")],
                          capture_output=True, text=True, timeout=900)
    run = LabRun(proc.returncode, proc.stdout, proc.stderr, folder / "out", time.monotonic() - started)
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return run


def junit_properties(path: Path) -> dict[str, list[dict]]:
    """Recorded drill -> the properties of each of its cases, from pytest's junit.xml."""
    found: dict[str, list[dict]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        found.setdefault(props["drill"], []).append(props)
    return found


def glance_rows(page: str) -> dict[str, str]:
    table = page.split("<h2>Drills at a glance</h2>")[1].split("</table>")[0]
    rows = table.split("<tr>")[2:]
    return {row.split("<b>", 1)[1].split("</b>", 1)[0]: row for row in rows}


def test_a_green_full_run_shows_a_row_per_recorded_target_and_none_not_run(full_run):
    recorded = junit_properties(full_run.out / "junit.xml")
    rows = glance_rows((full_run.out / "report.html").read_text())
    assert sorted(rows) == sorted(d for d in recorded if not d.startswith("lint:"))   # lint: the findings list
    assert {"pve:cluster", "guest:app-vm", "guest:app-ct", "pbs:local", "pbs:offsite"} <= set(rows)
    cases = parse_junit(full_run.out / "junit.xml")
    skipped = {name for name, case in cases.items() if case["outcome"] == "skipped"}
    assert skipped <= {FIRST_RUN_SKIP[0]}     # a fresh state dir: the heartbeat has no earlier push to check
    for drill, row in rows.items():
        passed = len(recorded[drill]) - (1 if drill == "monitoring:kuma" and skipped else 0)
        assert "NOT RUN" not in row and f"{passed} / {len(recorded[drill])}" in row, (drill, row)
    report_suites = set(suites(full_run.out / "drill-report.xml")) - {"history", "restoredrill"}
    assert report_suites == set(recorded)


def test_guest_restores_reach_the_row_the_trend_and_the_metrics(full_run):
    recorded = junit_properties(full_run.out / "junit.xml")
    page = (full_run.out / "report.html").read_text()
    rows = glance_rows(page)
    joined = "\n".join(sum(check_exposition((full_run.out / "metrics.prom").read_text()).values(), []))
    for guest in ("guest:app-vm", "guest:app-ct"):
        restore = next(p for p in recorded[guest] if p["check"] == "restore")
        seconds, boot = float(restore["restore_seconds"]), float(restore["boot_to_reachable_seconds"])
        assert f"restore {seconds:.1f} s, boot {boot:.1f} s" in rows[guest]
        assert "not measured" not in rows[guest]
        cell = page.split(f'data-row="{guest}" data-copy="pbs:local"')[1].split("</td>")[0]
        assert restore["snapshot"].split(":", 1)[1].removeprefix("backup/") in cell and "RTO restore" in cell
        labels = f'site="restoredrill-lab",drill="{guest}"'
        copy = f',copy="{restore["copy"]}"' if restore.get("copy") else ""     # issue 23: the copy restored from
        assert f'restoredrill_rto_seconds{{{labels},phase="restore"{copy}}} {format_value(seconds)}' in joined
        assert f'restoredrill_rto_seconds{{{labels},phase="boot"{copy}}} {format_value(boot)}' in joined
        assert f'restoredrill_rpo_seconds{{{labels},point="restore_tested"}}' in joined
        assert f"{guest}: restore (1 run)" in page and f"{guest}: boot (1 run)" in page


def test_the_cluster_audit_is_not_labelled_a_guest(full_run):
    rows = glance_rows((full_run.out / "report.html").read_text())
    assert '<span class="meta">Proxmox VE cluster</span>' in rows["pve:cluster"]
    assert '<span class="meta">guest</span>' not in rows["pve:cluster"]


# --- the recovery matrix as Chromium renders it (issue 24) ---------------------------------------

class MatrixDom(HTMLParser):
    """The proof matrix out of the DOM Chromium rendered: column copies, and per (row, copy) the
    cell's state and text."""

    def __init__(self):
        super().__init__()
        self.columns: list[str] = []
        self.cells: dict[tuple[str, str], dict] = {}
        self.rows: list[str] = []
        self.text: list[str] = []
        self._in_matrix = False
        self._cell: dict | None = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "matrix" in (a.get("class") or "").split():
            self._in_matrix = True
        if not self._in_matrix:
            return
        if tag == "th" and "data-copy" in a:
            self.columns.append(a["data-copy"])
        elif tag == "tr" and "data-row" in a:
            self.rows.append(a["data-row"])
        elif tag == "td" and "data-copy" in a:
            self._cell = {"state": a.get("data-state", "blank"), "text": "", "class": a.get("class", "")}
            self.cells[(a["data-row"], a["data-copy"])] = self._cell
            self._depth = 0
        elif tag == "td" and self._cell is not None:
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "table" and self._in_matrix and self._cell is None:
            self._in_matrix = False
        if tag == "td" and self._cell is not None:
            if self._depth:
                self._depth -= 1
            else:
                self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell["text"] += data


def rendered_matrix(page: Path, profile: Path) -> MatrixDom:
    """The DOM after Chromium parsed and laid out the page (--dump-dom), not the HTML source."""
    profile.mkdir()
    proc = subprocess.run([find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "<table" in proc.stdout, proc.stderr[-2000:]
    dom = MatrixDom()
    dom.feed(proc.stdout)
    return dom


def declared_copies(data: dict) -> set[str]:
    copies = {c["where"] for d in data.get("datasets", []) for c in d["copies"]}
    copies |= {f"pbs:{s['name']}" for s in data["proxmox"]["pbs"]["datastores"]}
    copies |= {f"borg:{r['name']}" for r in data["borg"]["repositories"]}
    return copies | {f"config:{e['name']}" for e in data["offsite"]["config_exports"]}


AGE = re.compile(r"\d+\.\d h old|\d+ d \d+ h old")


def test_the_rendered_matrix_has_a_row_per_guest_and_dataset_and_a_column_per_copy(lab, full_run, tmp_path):
    data = lab.inventory_data()
    dom = rendered_matrix(full_run.out / "report.html", tmp_path / "profile")
    assert set(dom.columns) == declared_copies(data) and len(dom.columns) == len(set(dom.columns))
    borg_datasets = {d["name"] for d in data["datasets"] if any(c["where"].startswith("borg:") for c in d["copies"])}
    assert {"guest:app-vm", "guest:app-ct", "kuma-data", "config:opnsense"} | {f"data:{d}" for d in borg_datasets} \
        <= set(dom.rows)
    assert "none proven" not in "".join(dom.text)
    for row, copies in (("guest:app-vm", ("pbs:local", "pbs:offsite")), ("guest:app-ct", ("pbs:local", "pbs:offsite")),
                        ("data:app-data", ("borg:app-local", "borg:app-offsite"))):
        for column in copies:
            cell = dom.cells[(row, column)]
            assert cell["state"] == "ok" and AGE.search(cell["text"]), (row, column, cell)
    assert "restored, booted and healthy" in dom.cells[("guest:app-vm", "pbs:local")]["text"]
    assert "read back offsite" in dom.cells[("guest:app-vm", "pbs:offsite")]["text"]
    assert "extracted and checked" in dom.cells[("data:app-data", "borg:app-offsite")]["text"]
    assert not [key for key, cell in dom.cells.items() if cell["state"] == "fail"]


def test_promtool_accepts_a_lab_runs_metrics_file(full_run):
    from tests.integration.test_prometheus_rules import promtool
    text = (full_run.out / "metrics.prom").read_text()
    proc = promtool("check", "metrics", stdin=text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for target in ("guest:app-vm", "guest:app-ct", "data:app-data"):
        assert f'restoredrill_newest_point_timestamp_seconds{{site="restoredrill-lab",target="{target}"' in text
    for column in ("pbs:local", "pbs:offsite", "borg:app-offsite"):
        assert f'copy="{column}"' in text


def chunk_only_of(double, group: tuple[str, str]) -> str:
    """The bucket key of a chunk that the newest snapshot of ``group`` uses and no other group does."""
    from restoredrill.pbsformat import DatastoreReader
    reader = DatastoreReader(Path(double.datastores["offsite"]))
    uses: dict[bytes, set] = {}
    snaps = [s for s in reader.list_snapshots() if s.finished]
    for snap in snaps:
        for name in snap.files:
            if name.endswith((".fidx", ".didx")):
                for digest in reader.read_archive_index(snap, name).digests:
                    uses.setdefault(digest, set()).add((snap.ref.backup_type, snap.ref.backup_id))
    newest = max((s for s in snaps if (s.ref.backup_type, s.ref.backup_id) == group), key=lambda s: s.ref.epoch)
    index = next(name for name in newest.files if name.endswith(".fidx"))
    digest = next(d for d in reader.read_archive_index(newest, index).digests if uses[d] == {group})
    return f"{LAB_STORE}/.chunks/{digest.hex()[:4]}/{digest.hex()}"


def test_one_damaged_chunk_in_the_offsite_copy_turns_exactly_that_cell_red(lab, tmp_path):
    """A byte of one chunk only app-vm uses is flipped in the bucket (CRC mismatch); the S3 drill reads
    every chunk this run (read_data_runs 1): only app-vm's PBS offsite cell goes red, its reason a click
    away; the Borg drills are not selected, so their cells are grey, never green."""
    data = copy.deepcopy(lab.inventory_data())
    for target in data["offsite"]["s3"]:
        target["read_data_runs"] = 1
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    admin = lab.offsite.seaweed.client("admin")
    victim = chunk_only_of(lab.double, ("vm", "110"))
    original = admin.get_object(Bucket=LAB_BUCKET, Key=victim)["Body"].read()
    damaged = bytearray(original)
    damaged[-1] ^= 0xFF
    admin.put_object(Bucket=LAB_BUCKET, Key=victim, Body=bytes(damaged))
    try:
        proc = subprocess.run([sys.executable, "-m", "restoredrill.cli", "run", "--inventory", str(inventory),
                               "--select", "pbs", "--select", "offsite", "--out", str(tmp_path / "out"),
                               "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=900)
    finally:
        admin.put_object(Bucket=LAB_BUCKET, Key=victim, Body=original)
    assert proc.returncode == 1, proc.stdout[-3000:]
    failed = {name for name, case in parse_junit(tmp_path / "out" / "junit.xml").items() if case["outcome"] != "passed"}
    assert failed == {"test_s3_chunk_sample[lab-s3]"}, failed
    dom = rendered_matrix(tmp_path / "out" / "report.html", tmp_path / "profile")
    red = [key for key, cell in dom.cells.items() if cell["state"] == "fail"]
    assert red == [("guest:app-vm", "pbs:offsite")]
    reason = dom.cells[red[0]]["text"]
    assert "1 problem" in reason and "chunk-sample" in reason and victim.rsplit("/", 1)[1] in reason
    assert "vm/110" in reason
    assert dom.cells[("guest:app-ct", "pbs:offsite")]["state"] == "ok"
    assert "read back offsite" in dom.cells[("guest:app-ct", "pbs:offsite")]["text"]
    assert dom.cells[("data:app-data", "borg:app-offsite")]["state"] == "none"
    screenshot(tmp_path / "out" / "report.html", tmp_path / "failing.png", tmp_path / "profile-shot")
