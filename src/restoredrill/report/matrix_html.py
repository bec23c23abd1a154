"""The proof matrix and the findings list as HTML (part of ``report.html``): one table, a
column per declared copy, rows grouped by dataset with the 3-2-1 verdict under each group.
Every value goes through ``e``; a red cell's reasons are a click away (``<details>``, no script)."""
from __future__ import annotations

from datetime import datetime

from restoredrill.report import cells as C
from restoredrill.report.matrix import Matrix, MatrixFinding

MATRIX_CSS = """
table.matrix td.cell{min-width:120px;font-size:12.5px}
td.cell.ok,.key.ok{background:#dafbe1}
td.cell.late,.key.late{background:#fff1c2}
td.cell.fail,.key.fail{background:#ffd7d5;border:2px solid #cf222e}
td.cell.none,.key.none{background:#f2f5f8;color:#5a6675}
.key{padding:0 6px}
td.cell.live{background:#fff;color:#5a6675}
td.cell.blank{background:#fafbfc}
tr.group th{background:#e8eef5;text-align:left}
tr.verdict td{font-size:12.5px;color:#3d4752;background:#fbfcfd}
.proof{font-weight:600}
details summary{cursor:pointer;color:#cf222e}
ul.findings li.fail{color:#a40e26}
"""
LEGEND = (("ok", "proven, within the RPO"), ("late", "proven, but not restore-tested within max_untested_days"),
          ("fail", "a check failed or the newest point is over the RPO"), ("none", "not checked in this run"))


def matrix_section(m: Matrix, now: datetime, e, age, stamp) -> list[str]:
    cols = m.columns
    out = ["<h2>Recovery matrix (3-2-1 with proof)</h2>",
           '<p class="meta">Each cell: age of the newest point in that copy; the strongest proof reached '
           "(listed &lt; verified &lt; read back offsite &lt; extracted and checked &lt; restored, booted and "
           f"healthy) and when; the last restore time (RTO) measured from that copy. Colours: "
           + "; ".join(f'<span class="key {k}">{e(k)}</span> {e(text)}' for k, text in LEGEND)
           + f". Restore-test limit: {m.max_untested_days:g} days.</p>",
           '<table class="matrix"><tr><th>protected</th>' + "".join(
               f'<th data-copy="{e(c.ref)}">{e(c.title)}<br><span class="mono">{e(c.ref)}</span><br>'
               f'<span class="meta">{e(c.detail)}</span></th>' for c in cols) + "</tr>"]
    for group in m.groups:
        name = f"dataset {group.name}" if group.name else "not in a dataset"
        out.append(f'<tr class="group"><th colspan="{len(cols) + 1}">{e(name)}</th></tr>')
        for row in group.rows:
            out.append(f'<tr data-row="{e(row.target)}"><td><b>{e(row.title)}</b><br>'
                       f'<span class="meta">{e(row.what)}</span></td>'
                       + "".join(cell_html(row.target, c.ref, row.cells.get(c.ref), now, e, age, stamp) for c in cols)
                       + "</tr>")
        verdict_class = "" if group.meets is None else (' data-meets="yes"' if group.meets else ' data-meets="no"')
        out.append(f'<tr class="verdict"{verdict_class}><td colspan="{len(cols) + 1}"><b>3-2-1:</b> '
                   f"{e(group.verdict)}</td></tr>")
    out.append("</table>")
    return out


def cell_html(row: str, ref: str, cell: C.Cell | None, now: datetime, e, age, stamp) -> str:
    attrs = f'data-row="{e(row)}" data-copy="{e(ref)}"'
    if cell is None:
        return f'<td class="cell blank" {attrs}><span class="meta" title="not a copy of this">—</span></td>'
    if cell.state == "live":
        return f'<td class="cell live" {attrs} data-state="live">live data (not a backup)</td>'
    parts = []
    if cell.point_time is not None:
        rpo = f" (RPO {cell.rpo_hours:g} h)" if cell.rpo_hours is not None else ""
        parts.append(f'<b class="age">{e(age(cell.age_seconds(now)))}</b> old{e(rpo)}<br>'
                     f'<span class="mono">{e(cell.point_name)}</span>')
    else:
        parts.append('<span class="meta">no point seen in this run</span>')
    if cell.proof:
        parts.append(f'<span class="proof">{e(C.PROOFS[cell.proof])}</span> '
                     f'<span class="meta">{e(stamp(cell.proof_time))}</span><br>'
                     f'<span class="meta">{e(cell.proof_how)}</span>')
    if cell.rto:
        rto = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in cell.rto.items())
        parts.append(f"RTO {e(rto)} <span class='meta'>({e(stamp(cell.rto_when))})</span>")
    elif cell.restorable and cell.checks:
        parts.append("<span class='meta'>RTO not measured from this copy yet</span>")
    if cell.last_restore is not None and cell.proof < C.EXTRACTED:
        parts.append(f"<span class='meta'>last restore test {e(stamp(cell.last_restore))}</span>")
    parts += [f"<span class='meta'>{e(note)}</span>" for note in cell.notes]
    if cell.problems:
        count = len(cell.problems)
        parts.append(f"<details><summary>{count} problem{'s' if count != 1 else ''}</summary>"
                     + "".join(f'<div class="wrap">{e(p)}</div>' for p in cell.problems) + "</details>")
    return f'<td class="cell {e(cell.state)}" {attrs} data-state="{e(cell.state)}">' + "<br>".join(parts) + "</td>"


def findings_section(findings: list[MatrixFinding], e) -> list[str]:
    out = ["<h2>Findings (lint and configuration)</h2>"]
    if not findings:
        return out + ["<p class='meta'>No lint drill ran and the matrix found nothing to say.</p>"]
    out.append('<ul class="findings">')
    for f in sorted(findings, key=lambda f: not f.failing):
        badge = '<span class="badge FAIL">finding</span> ' if f.failing else ""
        out.append(f'<li class="{"fail" if f.failing else "ok"}">{badge}<b>{e(f.source)}</b>: {e(f.text)}</li>')
    out.append("</ul>")
    return out
