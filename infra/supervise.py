"""Keeps the parts of `socialcard up` running: a part that stops is started again, with backoff.

A database restart, a killed worker or an out-of-memory kill takes one part down for a moment; it
must not take the whole system down with it. A part that keeps dying (a crash loop: a bad setting,
a full disk) is not restarted for ever: after `Restarts.limit` stops within `Restarts.window_s` the
system stops and says which part failed.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restarts:
    """When a part that stopped starts again: 1, 2, 4 ... s after, at most `max_s`; None (give up)
    once it stopped more than `limit` times within `window_s`."""

    first_s: float = 1.0
    max_s: float = 30.0
    limit: int = 5
    window_s: float = 600.0

    def delay(self, stops: Sequence[float], now: float) -> float | None:
        """`stops`: when the part stopped, the latest included."""
        recent = sum(1 for at in stops if now - at < self.window_s)
        if recent > self.limit:
            return None
        return min(self.first_s * (1 << max(0, recent - 1)), self.max_s)


@dataclass
class Part:
    """One supervised part: how to tell it runs, how to start it again, how to ask it to stop and how
    to wait for that (killing it once `wait`'s seconds are over).

    `grace_s`: how long it may look down before it counts as stopped. A database being restarted by
    its operator is down for a second or two and must not be started twice."""

    name: str
    alive: Callable[[], bool]
    start: Callable[[], None]
    stop: Callable[[], None]
    wait: Callable[[float], None] = lambda _s: None
    grace_s: float = 0.0
    stops: list[float] = field(default_factory=list)
    down_since: float | None = None
    restart_at: float | None = None


def supervise(parts: Sequence[Part], policy: Restarts = Restarts(), poll_s: float = 0.2, drain_s: float = 30.0) -> int:
    """Run until SIGINT or SIGTERM (0) or until a part crash-loops (1); then ask every part to stop at
    once (they drain side by side) and give them `drain_s` in all."""
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    status = 0
    while not stopping:
        now = time.monotonic()
        for part in parts:
            if part.restart_at is not None:
                if now >= part.restart_at:
                    part.restart_at = None
                    _restart(part)
                continue
            if part.alive():
                part.down_since = None
                continue
            part.down_since = part.down_since if part.down_since is not None else now
            if now - part.down_since < part.grace_s:
                continue
            part.down_since = None
            part.stops.append(now)
            delay = policy.delay(part.stops, now)
            if delay is None:
                log.error(
                    "a part keeps stopping; stopping the system",
                    extra={"part": part.name, "stops": len(part.stops), "window_s": policy.window_s},
                )
                stopping, status = True, 1
                break
            log.error("a part stopped; starting it again", extra={"part": part.name, "in_s": delay})
            part.restart_at = now + delay
        time.sleep(poll_s)
    for part in reversed(parts):
        try:
            part.stop()
        except Exception:
            log.exception("could not stop a part", extra={"part": part.name})
    deadline = time.monotonic() + drain_s
    for part in reversed(parts):
        part.wait(max(0.1, deadline - time.monotonic()))
    return status


def _restart(part: Part) -> None:
    try:
        part.start()
    except Exception as exc:
        # Counted as one more stop when it is next found down, so a part that cannot start ends in the limit.
        log.error("a part could not be started", extra={"part": part.name, "error": repr(exc)})
    else:
        log.info("a part started again", extra={"part": part.name})
