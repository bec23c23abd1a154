"""The one-screen terminal summary: a line per drill, then one per failure."""
from __future__ import annotations

import re
from collections import OrderedDict


def _props(report) -> dict[str, str]:
    return {str(k): str(v) for k, v in getattr(report, "user_properties", [])}


def drill_of(report) -> str:
    props = _props(report)
    if "drill" in props:
        return props["drill"]
    nodeid = report.nodeid
    return nodeid.split("[", 1)[1].rstrip("]").split("-")[0] if "[" in nodeid else nodeid


def summary_lines(reports) -> list[str]:
    drills: "OrderedDict[str, list]" = OrderedDict()
    for report in reports:
        drills.setdefault(drill_of(report), []).append(report)
    lines = []
    width = max((len(name) for name in drills), default=10)
    for name, items in drills.items():
        failed = [r for r in items if r.outcome == "failed"]
        passed = sum(1 for r in items if r.outcome == "passed" and r.when == "call")
        skipped = [r for r in items if r.outcome == "skipped"]
        # a target whose every case was skipped passed nothing: SKIP, or BLOCKED by a failed preflight
        verdict = "FAIL" if failed else ("PASS" if passed or not skipped else
                                         "BLOCKED" if any(_blocked(r) for r in skipped) else "SKIP")
        facts = _headline(items) + (f"  ({len(skipped)} skipped)" if skipped else "")
        lines.append(f"{verdict:4}  {name:<{width}}  {passed}/{passed + len(failed)} checks{facts}")
    for name, items in drills.items():
        for report in items:
            if report.outcome == "failed":
                check = _props(report).get("check") or report.nodeid.split("::")[-1]
                message = _first_line(report)
                lines.append(f"  FAILED {name} {check}: {message}")
    return lines


def _blocked(report) -> bool:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")
    return "blocked by preflight" in str(reason)


def _headline(items) -> str:
    merged: dict[str, str] = {}
    for report in items:
        merged.update(_props(report))
    parts = []
    if "archive" in merged:
        parts.append(f"archive {merged['archive']}")
    if "age_hours" in merged:
        parts.append(f"age {merged['age_hours']} h")
    if "bytes_restored" in merged:
        parts.append(f"{int(float(merged['bytes_restored'])):,} bytes restored")
    if merged.get("access") == "none" and "boot_proven_by" in merged:
        parts.append("restore and boot only: access none, no check inside")
    return ("  (" + ", ".join(parts) + ")") if parts else ""


def _first_line(report) -> str:
    text = getattr(report, "longreprtext", "") or str(report.longrepr or "")
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("E "):
            line = line[2:].strip()
        if re.match(r"\[gw\d+\] ", line):     # pytest-xdist's "[gw0] linux -- Python ..." header
            continue
        if line and not line.startswith(("def ", "@", ">", "_")):
            return line[:200]
    return "failed"
