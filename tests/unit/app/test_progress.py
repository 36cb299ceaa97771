"""The CLI's progress line: what it says, and how often it speaks on a terminal and in a log."""

from __future__ import annotations

import io

from app.progress import Counter, describe


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_describe_with_a_total() -> None:
    line = describe("import persons", 12_000, 48_000, 4.0, {"created": 11_000})
    assert line == "import persons: 12,000 of 48,000 (25%), 3,000 a second, about 12 s left; created 11,000"


def test_describe_without_a_total_or_time() -> None:
    assert describe("disburse", 0, None, 0.0, {}) == "disburse: 0"
    assert describe("disburse", 500, None, 2.0, {}) == "disburse: 500, 250 a second"
    assert describe("import", 10, 10, 1.0, {}) == "import: 10 of 10 (100%), 10 a second"


def test_a_terminal_gets_one_line_rewritten_at_most_five_times_a_second() -> None:
    out, clock = io.StringIO(), Clock()
    counter = Counter("import", stream=out, live=True, clock=clock)
    for done in range(1, 101):
        clock.now = done * 0.01  # 100 updates over one second
        counter.update(done, 100)
    counter.close()
    shown = out.getvalue()
    assert shown.endswith("\n")
    assert shown.count("\r") <= 7  # the first, one per 0.2 s, and the final one
    assert "\n" not in shown[:-1]
    assert shown.rstrip().split("\r")[-1].startswith("import: 100 of 100 (100%)")


def test_a_log_gets_a_line_every_ten_seconds_and_the_last() -> None:
    out, clock = io.StringIO(), Clock()
    counter = Counter("pass", stream=out, live=False, clock=clock)
    for done in range(1, 31):
        clock.now = float(done)
        counter.update(done * 1000, confirmed=done)
    counter.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split(",")[0] for line in lines] == ["pass: 10", "pass: 20", "pass: 30"]
    assert lines[-1].endswith("confirmed 30")


def test_nothing_done_shows_nothing() -> None:
    out = io.StringIO()
    Counter("import", stream=out, live=True).close()
    assert out.getvalue() == ""


def test_short_work_leaves_a_log_alone() -> None:
    out, clock = io.StringIO(), Clock()
    counter = Counter("import", stream=out, live=False, clock=clock)
    for done in range(1, 4):
        clock.now = done
        counter.update(done, 3)
    counter.close()
    assert out.getvalue() == ""
