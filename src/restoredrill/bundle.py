"""The evidence bundle of a monthly drill: ``OUT/evidence/`` and ``OUT/evidence.tar.gz``.

It holds the run's junit.xml, drill-report.xml, report.html, metrics and runbook, the config
diffs and task references (UPIDs, task logs) found in the cases' evidence, and
``MANIFEST.sha256`` (``sha256sum`` format: ``sha256sum -c MANIFEST.sha256`` inside the folder)
hashing every other file of the bundle.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
from pathlib import Path

BUNDLE_DIR, BUNDLE_TAR, MANIFEST = "evidence", "evidence.tar.gz", "MANIFEST.sha256"
REPORT_FILES = ("junit.xml", "drill-report.xml", "report.html", "metrics.prom", "runbook.md")
TASK_KEYS = re.compile(r"(^|_)(upids?|restore_upid|.*task_log.*|log)$")


def build_evidence_bundle(out: Path, *, junit: Path, cases) -> Path:
    """Write the bundle folder and its tarball (both replaced if present); return the folder."""
    folder = out / BUNDLE_DIR
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in REPORT_FILES:
        source = junit if name == "junit.xml" else out / name
        if source.is_file():
            shutil.copy2(source, folder / name)
    for relative, text in evidence_files(cases).items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (folder / MANIFEST).write_text(render_manifest(folder))
    with tarfile.open(out / BUNDLE_TAR, "w:gz") as tar:
        tar.add(folder, arcname=BUNDLE_DIR)
    return folder


def evidence_files(cases) -> dict[str, str]:
    """Config diffs (``config-diffs/DRILL.json``) and task references (``task-logs/DRILL-CHECK.txt``)
    taken from the cases' properties."""
    files: dict[str, str] = {}
    for case in cases:
        props = case.properties
        diff = props.get("config_diff")
        if diff:
            try:
                diff = json.dumps(json.loads(diff), indent=2, sort_keys=True)
            except ValueError:
                pass
            files[f"config-diffs/{safe_name(case.drill)}.json"] = diff + "\n"
        tasks = [f"{key}: {value}" for key, value in sorted(props.items()) if TASK_KEYS.search(key) and value]
        if tasks:
            files[f"task-logs/{safe_name(case.drill)}-{safe_name(case.check)}.txt"] = "\n".join(tasks) + "\n"
    return files


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "case"


def render_manifest(folder: Path) -> str:
    lines = [f"{sha256_of(path)}  {path.relative_to(folder).as_posix()}"
             for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MANIFEST]
    return "\n".join(lines) + "\n"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_manifest(folder: Path) -> list[str]:
    """Problems (a wrong hash, a missing file, a file not listed); empty when the bundle is intact."""
    listed: dict[str, str] = {}
    for line in (folder / MANIFEST).read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    problems = [f"{name}: missing" for name in listed if not (folder / name).is_file()]
    problems += [f"{name}: hash differs" for name, digest in listed.items()
                 if (folder / name).is_file() and sha256_of(folder / name) != digest]
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST}
    return problems + [f"{name}: not in the manifest" for name in sorted(present - set(listed))]
