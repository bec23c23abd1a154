"""A drill failure is one paragraph in the JUnit report: the message once, no chained copy."""
from __future__ import annotations

import xml.etree.ElementTree as ET

pytest_plugins = ["pytester"]


def test_a_drill_failure_appears_once_in_junit(pytester):
    pytester.makepyfile(test_step='''
from restoredrill.checks.errors import CheckFailed
from restoredrill.fixtures.common import drill_step

def test_step():
    with drill_step("repository r: borg check"):
        raise CheckFailed("repository r", "a clean check", "one damaged segment")
''')
    result = pytester.runpytest_subprocess("-p", "no:restoredrill", "--junitxml=junit.xml", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    case = ET.parse(pytester.path / "junit.xml").getroot().find(".//testcase")
    failure = case.find("failure")
    text = (failure.get("message") or "") + (failure.text or "")
    assert text.count("one damaged segment") == 2       # the message attribute and the body, once each
    assert "During handling" not in text and "Traceback" not in text
