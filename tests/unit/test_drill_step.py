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


def test_a_drill_message_raised_while_handling_a_client_error_is_not_chained(pytester):
    """pytest.fail(..., pytrace=False) inside an ``except``: the plugin drops the context, so the
    client's error is not printed first with "During handling of the above exception"."""
    pytester.makepyfile(test_chain='''
import pytest

def test_refused():
    try:
        raise RuntimeError("client said: permission check failed")
    except RuntimeError as exc:
        pytest.fail(f"the drill's own words ({exc})", pytrace=False)
''')
    result = pytester.runpytest_subprocess("--junitxml=junit.xml", "-p", "no:cacheprovider")  # plugin: autoloaded
    result.assert_outcomes(failed=1)
    failure = ET.parse(pytester.path / "junit.xml").getroot().find(".//testcase/failure")
    text = (failure.get("message") or "") + (failure.text or "") + result.stdout.str()
    assert "the drill's own words (client said: permission check failed)" in text
    assert "During handling" not in text and "RuntimeError" not in text
