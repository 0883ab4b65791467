"""avloc.utils.progress: timestamped lines without a terminal, a final line, nothing when disabled."""

from __future__ import annotations

import io
import re
import sys

from avloc.utils.progress import Progress, format_duration, log

LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] shard: ")


def test_plain_lines_without_a_terminal_carry_count_rate_eta_and_failures():
    out = io.StringIO()
    with Progress(10, "shard", "clip", interval=0, stream=out, tty=False) as bar:
        for i in range(4):
            bar.update(1, failed=int(i == 2), loss=0.5)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and all(LINE.match(ln) for ln in lines)
    assert "4/10 (40.0%)" in lines[3] and "clip/s" in lines[3] and "ETA" in lines[3] and "failed 1" in lines[3]
    assert "done in" in lines[-1] and "loss=0.5" in lines[-1]


def test_interval_limits_the_lines_and_disabled_prints_nothing():
    out = io.StringIO()
    with Progress(100, "shard", "clip", interval=3600, stream=out, tty=False) as bar:
        bar.update(50)
    assert len(out.getvalue().splitlines()) == 1  # only the final line
    quiet = io.StringIO()
    with Progress(100, "shard", "clip", enabled=False, stream=quiet, tty=False) as bar:
        bar.update(50)
    assert quiet.getvalue() == ""


def test_a_terminal_gets_a_bar_that_stays():
    out = io.StringIO()
    with Progress(3, "train", "step", stream=out, tty=True) as bar:
        bar.update(3)
    assert "3/3" in out.getvalue() and "step" in out.getvalue()


def test_log_writes_to_the_current_stderr_even_after_an_old_one_closed(monkeypatch):
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    log("one")
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    log("two")
    assert second.getvalue() == "two\n"


def test_durations():
    assert format_duration(5) == "5s" and format_duration(125) == "2m05s" and format_duration(3700) == "1h01m"
    assert format_duration(None) == "?"
