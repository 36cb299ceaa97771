"""Long command-line work counted up as it goes (imports, a disbursement run, the silent pass).

On a terminal, one line on stderr rewritten in place, at most five times a second, with the rate and,
when the total is known, the share done and the time left. In a log or a pipe, a line every ten
seconds and, if it spoke at all, one at the end: a run under a supervisor can be followed without
being flooded, and a short one leaves its report alone on stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from core.text import number

# The CLI speaks English (its help, its reports); counts are grouped the English way.
_LOCALE = "en"


def describe(what: str, done: int, total: int | None, elapsed_s: float, also: dict[str, int]) -> str:
    """ "import persons: 12,000 of 48,000 (25%), 3,000 a second, about 12 s left; created 11,000"."""
    line = f"{what}: {number(done, _LOCALE)}"
    if total:
        line += f" of {number(total, _LOCALE)} ({100 * done // total}%)"
    if elapsed_s > 0 and done:
        rate = done / elapsed_s
        line += f", {number(round(rate), _LOCALE)} a second"
        if total and done < total:
            line += f", about {number(round((total - done) / rate), _LOCALE)} s left"
    if also:
        line += "; " + ", ".join(f"{name} {number(count, _LOCALE)}" for name, count in also.items())
    return line


class Counter:
    def __init__(
        self,
        what: str,
        *,
        stream: TextIO | None = None,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what
        self._stream = stream or sys.stderr
        self._live = self._stream.isatty() if live is None else live
        self._clock = clock
        self._started = clock()
        # A log hears first after ten seconds; a terminal at once.
        self._shown_at: float | None = None if self._live else self._started
        self._last = self._shown = ""
        self._width = 0

    def update(self, done: int, total: int | None = None, **also: int) -> None:
        """The work done so far (absolute counts, not increments)."""
        now = self._clock()
        self._last = describe(self._what, done, total, now - self._started, also)
        if self._shown_at is None or now - self._shown_at >= (0.2 if self._live else 10.0):
            self._show(now)

    def close(self) -> None:
        """The final count, shown whatever the time since the last one (in a log, only after others)."""
        if self._last and (self._live or self._shown_at != self._started):
            if self._last != self._shown:
                self._show(self._clock())
            if self._live:
                print(file=self._stream, flush=True)

    def _show(self, now: float) -> None:
        self._shown_at, self._shown = now, self._last
        if self._live:
            # Padded to the longest line yet, so a shorter line leaves no tail of the one before.
            self._width = max(self._width, len(self._last))
            print(f"\r{self._last:<{self._width}}", end="", file=self._stream, flush=True)
        else:
            print(self._last, file=self._stream, flush=True)
