"""The HTML report (``report.html``): one self-contained page for people.

No external assets, no JavaScript: inline CSS, inline SVG for the RTO trend, and a
Content-Security-Policy that forbids scripts and every fetch, as a second line of
defence behind the rule that matters: every value that comes from a guest, a
repository, a log or an exception goes through :func:`e` (HTML-escaped).
"""
from __future__ import annotations

import html
from datetime import datetime

from restoredrill.report.calendar import Calendar, Cell
from restoredrill.report.history import Finding
from restoredrill.report.matrix import Matrix
from restoredrill.report.matrix_html import MATRIX_CSS, findings_section, matrix_section
from restoredrill.report.model import ERROR, FAILED, RTO_NOTE, SKIPPED, RunReport, drill_kind
from restoredrill.report.overview import DrillStatus

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
TREND_RUNS = 30
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2530;background:#fff}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dee6;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.meta{color:#5a6675}
.mono,code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
table{border-collapse:collapse;margin:4px 0 12px}
th,td{border:1px solid #d8dee6;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f2f5f8;font-weight:600}
td.num{text-align:right;white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:700;font-size:12px;color:#fff}
.PASS,.pass,.passed{background:#1f883d}
.FAIL,.fail,.failed,.error{background:#cf222e}
.skipped,.NOTRUN,.interrupted,.empty{background:#8c959f}
.verdict{font-size:18px;padding:3px 14px}
.notice{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;margin:6px 0;border-radius:4px}
.failure{background:#ffebe9;border:1px solid #ff818266;padding:6px 10px;margin:6px 0;border-radius:4px}
.facts td:first-child{color:#5a6675;white-space:nowrap}
.wrap{word-break:break-all}
.cal{border-collapse:separate;border-spacing:2px}
.cal td{border:0;width:64px;height:30px;font-size:11px;text-align:center;padding:1px}
.cal td{background:#eef1f4;color:#1d2530}
.cal td.none{background:transparent}
.cal th{background:transparent;border:0;font-weight:400;color:#5a6675;font-size:11px}
.cal td.daily{background:#b7e4c7}
.cal td.weekly{background:#74c69d}
.cal td.monthly{background:#40916c;color:#fff}
.cal td.yearly{background:#1b4332;color:#fff}
.cal td.within,.cal td.last,.cal td.hourly,.cal td.other{background:#a9d6e5}
.cal td.removed{background:#f4c7c3}
.cal td.unknown{background:#d0d7de}
.legend span{display:inline-block;padding:1px 6px;margin-right:4px;font-size:11px}
svg text{font:11px system-ui,sans-serif;fill:#5a6675}
"""


CONTROL = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])


def e(value) -> str:
    """HTML-escape anything (quotes too, so it is safe in attributes); control characters dropped."""
    return html.escape("" if value is None else str(value).translate(CONTROL), quote=True)


def render_html(run: RunReport, statuses: list[DrillStatus], findings: list[Finding],
                calendars: list[Calendar], now: datetime, history_note: str = "", matrix: Matrix | None = None) -> str:
    failing_findings = [f for f in findings if not f.ok]
    overall = "FAIL" if run.verdict != "pass" or failing_findings else "PASS"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>restoredrill {e(overall)}: {e(run.site)} ({e(run.run_id)})</title>",
        f"<style>{CSS}{MATRIX_CSS}</style></head><body>",
        f'<h1>restoredrill: {e(run.site)} <span class="badge verdict {e(overall)}">{e(overall)}</span></h1>',
        f'<div class="meta">run <span class="mono">{e(run.run_id)}</span>, started '
        f"{e(stamp(run.started))}, {run.seconds:.1f} s, pytest exit status {run.exitstatus} "
        f"({e(run.verdict)}); {e(history_note)}</div>",
    ]
    parts += [f'<div class="notice"><b>{e(n.topic)}</b>: {e(n.text)}</div>' for n in run.notices]
    if matrix is not None:
        parts += matrix_section(matrix, now, e, age, stamp)
    parts += glance([s for s in statuses if drill_kind(s.drill) != "lint"], now)
    if matrix is not None:
        parts += findings_section(matrix.findings, e)
    parts += failures(run, failing_findings)
    parts += trends(statuses)
    parts += calendar_sections(calendars)
    parts += evidence_sections(statuses)
    parts += history_checks(findings)
    parts.append(f'<p class="meta">Generated {e(stamp(now))} by restoredrill. Outputs: '
                 + ", ".join(f'{e(k)} <span class="mono">{e(v)}</span>' for k, v in run.outputs.items())
                 + "</p></body></html>")
    return "\n".join(parts) + "\n"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def stamp(when: datetime | None) -> str:
    return "never" if when is None else when.strftime("%Y-%m-%d %H:%M UTC")


def age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    hours = seconds / 3600
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{int(hours // 24)} d {int(hours % 24)} h"


def glance(statuses: list[DrillStatus], now: datetime) -> list[str]:
    """One row per drill (lint drills are in the findings list): verdict, checks, RTO, streak."""
    rows = ["<h2>Drills at a glance</h2>", "<table><tr><th>target</th><th>verdict</th><th>checks</th>"
            "<th>restore time (RTO)</th><th>since</th><th>last passing restore test</th></tr>"]
    for s in statuses:
        verdict = s.verdict.replace(" ", "")
        since = ("passing since " if s.passing else "failing since ") + stamp(s.since) if s.since else ""
        rto = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in s.rto.items()) or "not measured"
        rpo = f"<br><span class='meta'>RPO {s.rpo_hours:g} h</span>" if s.rpo_hours is not None else ""
        rows.append(
            f'<tr><td><b>{e(s.drill)}</b><br><span class="meta">{e(s.label)}</span>{rpo}</td>'
            f'<td><span class="badge {e(verdict)}">{e(s.verdict)}</span></td>'
            f'<td class="num">{s.passed} / {len(s.cases)}</td>'
            f"<td>{e(rto)}</td><td>{e(since)}</td><td>{e(stamp(s.last_restore_test))}</td></tr>")
    rows.append("</table>")
    rows.append(f'<p class="meta">Points per copy and how far they are proven: see the recovery matrix. '
                f"Restore time (RTO): {e(RTO_NOTE)}. NOT RUN: a collected check of that target never ran in "
                f"this run.</p>")
    return rows


def failures(run: RunReport, failing_findings: list[Finding]) -> list[str]:
    failed = [c for c in run.cases if c.outcome in (FAILED, ERROR)]
    if not failed and not failing_findings:
        return ["<h2>Failures</h2>", "<p>None: every check of this run passed and the history shows no "
                                     "regression or coverage gap.</p>"]
    out = ["<h2>Failures</h2>"]
    for case in failed:
        out.append(f'<div class="failure"><b>{e(case.drill)}</b> {e(case.check)} '
                   f'<span class="badge {e(case.outcome)}">{e(case.outcome)}</span><br>'
                   f'<span class="wrap">{e(case.message)}</span></div>')
    for finding in failing_findings:
        out.append(f'<div class="failure"><b>history</b> {e(finding.name)} <span class="badge FAIL">failed</span>'
                   f'<br><span class="wrap">{e(finding.message)}</span></div>')
    return out


def trends(statuses: list[DrillStatus]) -> list[str]:
    out = ["<h2>Restore time over past runs (RTO trend)</h2>", f'<p class="meta">{e(RTO_NOTE)}.</p>']
    shown = False
    for status in statuses:
        for phase, series in status.rto_series.items():
            shown = True
            recent = series[-TREND_RUNS:]
            out.append(f"<h3>{e(status.drill)}: {e(phase)} ({plural(len(recent), 'run')})</h3>")
            out.append(sparkline(recent))
            out.append("<table><tr><th>run</th><th>started</th><th>seconds</th></tr>" + "".join(
                f'<tr><td class="mono">{e(run_id)}</td><td>{e(stamp(when))}</td>'
                f'<td class="num">{seconds:.2f}</td></tr>'
                for run_id, when, seconds in reversed(recent[-10:])) + "</table>")
    if not shown:
        out.append("<p class='meta'>No restore time measured yet.</p>")
    return out


def sparkline(series: list[tuple[str, datetime, float]], width: int = 480, height: int = 90) -> str:
    values = [seconds for _, _, seconds in series]
    top = max(values) * 1.15 or 1.0
    left, bottom = 40, height - 16
    step = (width - left - 10) / max(1, len(values) - 1)
    coords = [(left + i * step, bottom - (v / top) * (bottom - 8)) for i, v in enumerate(values)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#0969da"><title>{e(run_id)}: '
                   f"{seconds:.2f} s</title></circle>" for (x, y), (run_id, _, seconds) in zip(coords, series))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="restore time per run">'
            f'<line x1="{left}" y1="{bottom}" x2="{width - 5}" y2="{bottom}" stroke="#d0d7de"/>'
            f'<text x="2" y="12">{top:.1f} s</text><text x="2" y="{bottom}">0 s</text>'
            f'<polyline points="{line}" fill="none" stroke="#0969da" stroke-width="2"/>{dots}'
            f'<text x="{left}" y="{height - 2}">oldest</text>'
            f'<text x="{width - 50}" y="{height - 2}">newest</text></svg>')


def calendar_sections(calendars: list[Calendar]) -> list[str]:
    out = ["<h2>Retention calendars</h2>"]
    if not calendars:
        out.append("<p class='meta'>No retention drill ran in this run.</p>")
    for cal in calendars:
        out.append(f"<h3>{e(cal.drill)}</h3>")
        if cal.problem:
            out.append(f"<p class='meta'>{e(cal.problem)}</p>")
            continue
        out.append(f"<p class='meta'>{cal.points} points, {cal.kept} kept; times in {e(cal.zone)}; "
                   f"{e(cal.source)}</p>")
        if cal.summary:
            out.append(f"<p>Retention audit: {e(cal.summary)}</p>")
        out.append('<p class="legend">' + "".join(f'<span style="background:{c};color:{t}">{k}</span>'
                                                  for k, c, t in LEGEND) + "</p>")
        out.append("<table class='cal'><tr><th></th>" + "".join(f"<th>{d}</th>" for d in DAYS) + "</tr>")
        for row in cal.weeks_of_days:
            first = next((c for c in row if c is not None), None)
            label = first.period if first else ""
            out.append(f"<tr><th>{e(label)}</th>" + "".join(cal_cell(c, short=True) for c in row) + "</tr>")
        out.append("</table>")
        for title, cells in (("weeks", cal.weeks), ("months", cal.months), ("years", cal.years)):
            out.append(f"<table class='cal'><tr><th>{title}</th>" + "".join(cal_cell(c) for c in cells)
                       + "</tr></table>")
    return out


DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
LEGEND = (("daily", "#b7e4c7", "#1d2530"), ("weekly", "#74c69d", "#1d2530"), ("monthly", "#40916c", "#fff"),
          ("yearly", "#1b4332", "#fff"), ("within/last", "#a9d6e5", "#1d2530"), ("removed", "#f4c7c3", "#1d2530"),
          ("no point", "#eef1f4", "#1d2530"))


def cal_cell(cell: Cell | None, short: bool = False) -> str:
    if cell is None:
        return '<td class="none"></td>'
    heading = cell.period[-2:] if short else cell.period
    if cell.point is None:
        return f'<td title="{e(cell.period)}: no point">{e(heading)}</td>'
    point = cell.point
    more = f" (+{cell.count - 1} more)" if cell.count > 1 else ""
    title = f"{cell.period}: {point.name} {point.time:%Y-%m-%d %H:%M} {point.label}{more}"
    return f'<td class="{e(point.css)}" title="{e(title)}">{e(heading)}<br>{e(point.label)}</td>'


def evidence_sections(statuses: list[DrillStatus]) -> list[str]:
    out = ["<h2>Evidence per drill</h2>"]
    for status in statuses:
        out.append(f"<h3>{e(status.drill)} <span class='badge {e(status.verdict.replace(' ', ''))}'>"
                   f"{e(status.verdict)}</span></h3>")
        out.append("<table><tr><th>check</th><th>outcome</th><th>seconds</th><th>evidence</th></tr>")
        for case in status.cases:
            facts = "".join(f'<tr><td>{e(k)}</td><td class="wrap mono">{e(shorten(v))}</td></tr>'
                            for k, v in case.evidence.items() if k != "points")
            shown = case.outcome != "passed" and case.message
            message = f'<div class="wrap">{e(case.message)}</div>' if shown else ""
            outcome = case.outcome if case.outcome != SKIPPED else "skipped"
            out.append(f'<tr><td>{e(case.check)}</td><td><span class="badge {e(outcome)}">{e(outcome)}</span></td>'
                       f'<td class="num">{(case.measured_seconds() or case.seconds):.2f}</td>'
                       f'<td>{message}<table class="facts">{facts}</table></td></tr>')
        out.append("</table>")
    return out


def shorten(value, limit: int = 400) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def history_checks(findings: list[Finding]) -> list[str]:
    out = ["<h2>History checks</h2>"]
    if not findings:
        return out + ["<p class='meta'>Nothing to judge yet.</p>"]
    out.append("<table><tr><th>check</th><th>result</th><th>detail</th></tr>")
    for f in findings:
        result = "pass" if f.ok else "fail"
        out.append(f'<tr><td class="mono">{e(f.name)}</td><td><span class="badge {result}">{result}</span></td>'
                   f"<td>{e(f.message)}</td></tr>")
    out.append("</table>")
    return out
