"""Secret references and the subprocess wrapper: secrets never leak into messages."""
from __future__ import annotations

import os
import signal
import sys

import pytest

from restoredrill.execute import CommandError, Stop, run, without_tracebacks
from restoredrill.secrets import SecretError, SecretRef, write_private


def test_references_resolve_late(tmp_path, monkeypatch):
    monkeypatch.setenv("RD_SECRET", "s3cr3t")
    assert SecretRef.parse("env:RD_SECRET").resolve() == "s3cr3t"
    write_private(tmp_path / "p", "from-file")
    assert oct((tmp_path / "p").stat().st_mode & 0o777) == "0o600"
    assert SecretRef.parse("file:p").resolve(base_dir=tmp_path) == "from-file"
    script = tmp_path / "show.py"
    script.write_text("print('cmd')\n")
    assert SecretRef.parse(f"command:{sys.executable} {script}").resolve() == "cmd"


@pytest.mark.parametrize("text", ["hunter2", "plain:x", "env:", "file:  "])
def test_non_references_are_refused(text):
    with pytest.raises(ValueError, match="secret reference"):
        SecretRef.parse(text)


def test_errors_never_hold_the_value(tmp_path, monkeypatch):
    monkeypatch.delenv("RD_MISSING", raising=False)
    with pytest.raises(SecretError, match="RD_MISSING is not set"):
        SecretRef.parse("env:RD_MISSING").resolve()
    with pytest.raises(SecretError, match="does not exist"):
        SecretRef.parse(f"file:{tmp_path}/none").resolve()
    script = tmp_path / "leak.py"
    script.write_text("import sys\nprint('leak')\nsys.exit(3)\n")
    with pytest.raises(SecretError) as info:
        SecretRef.parse(f"command:{sys.executable} {script}").resolve()
    assert "leak" not in str(info.value) and "code 3" in str(info.value)


def test_run_masks_secrets_in_errors_and_keeps_the_tail():
    with pytest.raises(CommandError) as info:
        run([sys.executable, "-c", "import sys\nfor i in range(50): print('line', i)\n"
             "print('token=topsecret'); sys.exit(4)"], timeout=30, secrets=["topsecret"])
    text = str(info.value)
    assert "code 4" in text and "token=***" in text and "topsecret" not in text
    assert "line 49" in text and "line 0\n" not in text


def test_run_timeout_and_missing_program():
    with pytest.raises(CommandError, match="did not finish within 0.5 s"):
        run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.5)
    with pytest.raises(CommandError, match="not installed"):
        run(["/nonexistent/program"], timeout=5)


def test_run_passes_fds_without_argv(tmp_path):
    r, w = os.pipe()
    os.write(w, b"via-fd\n")
    os.close(w)
    result = run([sys.executable, "-c", f"import os; print(os.read({r}, 100).decode().strip())"],
                 timeout=30, pass_fds=(r,))
    os.close(r)
    assert result.stdout.strip() == "via-fd"


def test_watch_stops_a_running_program_with_its_reason(tmp_path):
    """The extract's free-space watch: a program still running is stopped when ``watch`` gives a
    reason, and the error carries it (not as a timeout)."""
    marker = tmp_path / "grows"
    calls = []

    def watch():
        calls.append(1)
        return "the file grew past 3 lines" if marker.exists() and len(marker.read_text().split()) > 3 else None
    with pytest.raises(CommandError) as caught:
        run(["sh", "-c", f"while :; do echo x >> {marker}; sleep 0.02; done"], timeout=30, watch=watch)
    assert caught.value.watched == "the file grew past 3 lines"
    assert not caught.value.timed_out and "was stopped (SIGKILL)" in str(caught.value)
    assert len(calls) < 100                      # stopped within a few polls, far from the timeout


def test_watch_keeps_output_of_a_program_that_finishes():
    result = run([sys.executable, "-c", "import time\nfor i in range(5):\n print(i, flush=True); time.sleep(0.03)"],
                 timeout=30, input="ignored", watch=lambda: None)
    assert result.stdout.split() == ["0", "1", "2", "3", "4"]


def test_watch_honours_the_timeout():
    with pytest.raises(CommandError) as caught:
        run(["sleep", "5"], timeout=0.3, watch=lambda: None)
    assert caught.value.timed_out and not caught.value.watched


def test_a_stopped_programs_own_traceback_is_left_out_of_the_tail():
    """borg 1.4 prints Repository.__del__'s traceback when SIGTERM stops it (seen in CI under the
    free-space watch): noise in a message that already names why it was stopped."""
    dying = ("borgbackup version 1.4.5\n"
             "Exception ignored in: <function Repository.__del__ at 0x7fea0d26c360>\n"
             "Traceback (most recent call last):\n"
             '  File "/venv/lib/python3.11/site-packages/borg/repository.py", line 207, in __del__\n'
             '    assert False, "cleanup happened in Repository.__del__"\n'
             "AssertionError: cleanup happened in Repository.__del__\n"
             "Received SIGTERM")
    assert without_tracebacks(dying) == ("borgbackup version 1.4.5\nReceived SIGTERM\n(5 line(s) of the program's "
                                         "own Python traceback while it was stopped, left out)")
    assert without_tracebacks("Received SIGTERM\nrc 143") == "Received SIGTERM\nrc 143"


def test_a_watched_stop_names_the_reason_without_the_programs_traceback(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text("import signal, sys, time\n"
                      "def bye(*_):\n"
                      "    print('Traceback (most recent call last):\\n  File \"x.py\", line 1\\nKeyError: 1',"
                      " file=sys.stderr, flush=True)\n"
                      "    sys.exit(143)\n"
                      "signal.signal(signal.SIGTERM, bye)\n"
                      "print('working', flush=True)\n"
                      "time.sleep(30)\n")
    with pytest.raises(CommandError) as info:
        run([sys.executable, str(script)], timeout=20, stop=Stop(signal.SIGTERM, 5),
            watch=lambda: "the disk is full", watch_every=0.3)
    message = str(info.value)
    assert "the disk is full" in message and "working" in message
    assert "Traceback" not in message and "KeyError" not in message and "left out" in message
