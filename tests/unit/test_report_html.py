"""The HTML page: self-contained, every outside value escaped, the figures people look for."""
from __future__ import annotations

import re
from collections import OrderedDict
from datetime import timedelta
from html.parser import HTMLParser

from restoredrill.report import history as hist
from restoredrill.report.calendar import build_calendar
from restoredrill.report.html import e, render_html
from restoredrill.report.overview import drill_statuses
from tests.unit.test_report_drill_report import FINDINGS, sample_run


def render(run=None):
    run = run or sample_run()
    history = hist.History.from_run(run)
    statuses = drill_statuses(run, history)
    calendars = [build_calendar(c.drill, c.properties, run.finished, "UTC") for c in run.cases
                 if c.check == "retention"]
    return render_html(run, statuses, FINDINGS, calendars, run.finished, "history: this run only")


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parsed(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    return parser


def test_hostile_values_are_escaped_everywhere():
    page = render()
    elements = parsed(page)
    assert not [tag for tag, _ in elements.tags if tag in ("script", "iframe", "object", "embed", "img", "link")]
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert not [attrs for _, attrs in elements.tags if any(name.startswith("on") for name in attrs)]
    text = "".join(elements.text)
    assert "app-<script>alert('x')</script>" in text            # shown to the reader as text


def test_the_page_is_self_contained():
    page = render()
    elements = parsed(page)
    for tag, attrs in elements.tags:
        for name in ("src", "href", "action", "data", "srcset"):
            assert name not in attrs, (tag, attrs)
    assert "@import" not in page and "url(" not in page
    csp = next(a["content"] for t, a in elements.tags if t == "meta" and a.get("http-equiv") ==
               "Content-Security-Policy")
    assert "default-src 'none'" in csp and "script-src" not in csp


def test_verdicts_points_rto_and_failures_are_shown():
    page = render()
    text = re.sub(r"\s+", " ", "".join(parsed(page).text))
    assert "restoredrill: site <script>" in text and "FAIL" in text
    assert "borg:app-local" in text and "Borg repository" in text and "RPO 27 h" in text
    assert "restore 2.9 s" in text                                   # RTO of this run
    assert "Points per copy and how far they are proven: see the recovery matrix" in text
    assert "repository app-offsite: expected an archive younger than 1 day" in text
    assert "coverage:borg:app-offsite" in text and "at least every 35 days" in text
    assert "heartbeat failure ping to https://hc.example/*** failed" in text      # the notice
    assert "7 points, 7 kept; times in Europe/Berlin" in text                    # the calendar
    assert "daily #1" in text


def test_rto_trend_draws_one_point_per_run():
    runs = []
    for day, seconds in enumerate([3.0, 4.0, 3.5]):
        run = sample_run()
        run.run_id = f"run-{day}"
        runs.append(run)
        for case in run.cases:
            if case.check == "extract" and case.ok:
                case.properties["seconds"] = seconds
    rows = [hist.row_of_case(r.run_id, r.started + timedelta(days=i), c) for i, r in enumerate(runs)
            for c in r.cases]
    history = hist.History(rows, OrderedDict((r.run_id, r.started) for r in runs))
    statuses = drill_statuses(runs[-1], history)
    page = render_html(runs[-1], statuses, [], [], runs[-1].finished)
    assert "borg:app-local: restore (3 runs)" in page
    svg = page.split("borg:app-local: restore (3 runs)")[1].split("</svg>")[0]
    assert svg.count("<circle") == 3 and "run-1: 4.00 s" in svg


def test_escape_helper_quotes_attributes():
    assert e('"><x onload=1>') == "&quot;&gt;&lt;x onload=1&gt;"
    assert e(None) == ""
