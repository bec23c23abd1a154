"""`restoredrill prune-sim`: run() with in-memory streams, JSON shape, worked example, bad input."""

from __future__ import annotations

import argparse
import io
import json
from datetime import date, timedelta

import pytest

from restoredrill import prune_sim

WORKED = ["--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "12", "--keep-yearly", "2", "--tz", "UTC"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prune-sim")
    prune_sim.add_arguments(parser)
    return parser.parse_args(argv)


def sim(argv: list[str], text: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = prune_sim.run(parse(argv), io.StringIO(text), stdout, stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def worked_input() -> str:
    days = (date(2024, 6, 14) - date(2021, 1, 1)).days + 1
    return "".join(f"{date(2021, 1, 1) + timedelta(days=n)}T02:00:00Z\n" for n in range(days))


@pytest.mark.parametrize(("engine", "kept", "dropped"), [("pbs", "2023-05-31", "2024-05-31"),
                                                          ("borg", "2024-05-31", "2023-05-31")])
def test_worked_example_json(engine, kept, dropped):
    code, out, err = sim(["--engine", engine, "--json", *WORKED], worked_input())
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert set(result) == {"engine", "policy", "points"}
    assert result["engine"] == engine
    assert result["policy"] == {"keep-daily": 7, "keep-weekly": 4, "keep-monthly": 12, "keep-yearly": 2}
    assert len(result["points"]) == 1261
    assert all(set(p) == {"time", "keep", "rule", "rank"} for p in result["points"])
    keeps = {p["time"][:10]: (p["rule"], p["rank"]) for p in result["points"] if p["keep"]}
    assert len(keeps) == 25
    assert keeps[kept][0] == "monthly" and dropped not in keeps


def test_json_lists_every_point_once_in_input_order():
    text = "2024-06-01T02:00:00Z\n# comment\n\n2024-06-03T02:00:00+02:00 protected\n2024-06-02T02:00:00Z  # x\n"
    code, out, _ = sim(["--engine", "pbs", "--keep-daily", "1", "--json"], text)
    assert code == 0
    assert json.loads(out)["points"] == [
        {"time": "2024-06-01T02:00:00Z", "keep": False, "rule": None, "rank": None},
        {"time": "2024-06-03T02:00:00+02:00", "keep": True, "rule": "protected", "rank": None},
        {"time": "2024-06-02T02:00:00Z", "keep": True, "rule": "daily", "rank": 1},
    ]


def test_table_groups_by_year_and_month_with_rule_and_rank():
    code, out, _ = sim(["--engine", "borg", "--keep-daily", "2", "--keep-monthly", "2", "--tz", "UTC"],
                       "2024-06-14T02:00:00Z\n2024-06-13T02:00:00Z\n2024-06-12T02:00:00Z checkpoint\n"
                       "2024-05-01T02:00:00Z\n2023-12-31T02:00:00Z\n")
    assert code == 0
    assert out.splitlines() == [
        "borg prune simulation: 2 daily, 2 monthly (zone UTC)",
        "2023",
        "  2023-12",
        "    31 Sun 02:00:00  KEEP    monthly #2",
        "2024",
        "  2024-05",
        "    01 Wed 02:00:00  KEEP    monthly #1",
        "  2024-06",
        "    12 Wed 02:00:00  remove  [checkpoint]",
        "    13 Thu 02:00:00  KEEP    daily #2",
        "    14 Fri 02:00:00  KEEP    daily #1",
        "4 kept, 1 removed, 5 points",
    ]


def test_table_shows_times_in_the_chosen_zone():
    _, out, _ = sim(["--engine", "pbs", "--keep-last", "1", "--tz", "Europe/Berlin"], "2024-06-30T23:30:00Z\n")
    assert "  2024-07" in out and "    01 Mon 01:30:00  KEEP    last #1" in out


def test_keep_within_uses_now():
    text = "2024-06-14T02:00:00Z\n2024-06-10T02:00:00Z\n"
    code, out, _ = sim(["--engine", "borg", "--keep-within", "2d", "--now", "2024-06-14T03:00:00Z", "--json"], text)
    assert code == 0
    assert [p["rule"] for p in json.loads(out)["points"]] == ["within", None]


def test_pbs_without_keep_option_warns_and_keeps_all():
    code, out, err = sim(["--engine", "pbs", "--json"], "2024-06-14T02:00:00Z\n2024-06-13T02:00:00Z\n")
    assert code == 0
    assert "warning" in err and "PBS keeps every snapshot" in err and "Borg refuses" in err
    assert all(p["keep"] for p in json.loads(out)["points"])


def test_borg_without_keep_option_fails():
    code, out, err = sim(["--engine", "borg", "--keep-daily", "0"], "2024-06-14T02:00:00Z\n")
    assert (code, out) == (2, "")
    assert "PBS keeps every snapshot" in err and "Borg refuses" in err and "--keep-daily" in err


def test_borg_accepts_minus_one():
    code, out, _ = sim(["--engine", "borg", "--keep-daily", "-1", "--json"], "2024-06-14T02:00:00Z\n")
    assert code == 0 and json.loads(out)["points"][0]["rule"] == "daily"


@pytest.mark.parametrize(
    ("argv", "text", "message"),
    [
        (["--engine", "pbs", "--keep-daily", "7"], "2024-06-14T02:00:00Z\n\nyesterday\n", "line 3: 'yesterday'"),
        (["--engine", "pbs", "--keep-daily", "7"], "2024-06-14T02:00:00\n", "line 1"),  # no offset
        (["--engine", "pbs", "--keep-daily", "7"], "2024-02-30T02:00:00Z\n", "line 1"),
        (["--engine", "pbs", "--keep-daily", "-1"], "", "negative"),
        (["--engine", "borg", "--keep-daily", "-2"], "", "negative"),
        (["--engine", "borg", "--keep-daily", "100001"], "", "absurdly large"),
        (["--engine", "pbs", "--keep-daily", "seven"], "", "not a whole number"),
        (["--engine", "pbs", "--keep-daily", "7", "--tz", "Mars/Olympus"], "", "Unknown time zone"),
        (["--engine", "pbs", "--keep-within", "2d"], "", "--keep-within is not a PBS option"),
        (["--engine", "pbs", "--keep-minutely", "5"], "", "--keep-minutely is not a PBS option"),
        (["--engine", "borg", "--keep-within", "2x"], "", "keep-within"),
        (["--engine", "borg", "--keep-13weekly", "1", "--keep-3monthly", "1"], "", "mutually exclusive"),
        (["--engine", "pbs", "--keep-daily", "7"], "2024-06-14T02:00:00Z checkpoint\n",
         "line 1: 'checkpoint' is a BORG flag"),
        (["--engine", "borg", "--keep-daily", "7"], "2024-06-14T02:00:00Z protected\n",
         "line 1: 'protected' is a PBS flag"),
        (["--engine", "borg", "--keep-daily", "7"], "2024-06-14T02:00:00Z frozen\n", "line 1: 'frozen' is not a flag"),
        (["--engine", "borg", "--keep-daily", "7", "--now", "tomorrow"], "", "--now 'tomorrow'"),
    ],
)
def test_bad_input_exits_2_with_one_paragraph(argv, text, message):
    code, out, err = sim(argv, text)
    assert (code, out) == (2, "")
    assert message in err
    assert err.count("\n") == 1 and err.startswith("restoredrill prune-sim: error: ")


def test_space_separated_rfc3339_is_accepted():
    code, out, _ = sim(["--engine", "pbs", "--keep-last", "1", "--json"], "2024-06-14 02:00:00Z protected\n")
    assert code == 0 and json.loads(out)["points"][0]["rule"] == "protected"


def test_engine_is_required():
    with pytest.raises(SystemExit):
        parse(["--keep-daily", "1"])
