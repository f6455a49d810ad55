"""The one place that reads the wall clock.

Everything else takes a ``Clock``: tests and replay move a fake clock and never sleep.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Time source: ``now()`` in epoch seconds, ``monotonic()`` for durations, ``sleep(s)``."""

    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    async def asleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    __slots__ = ()
    now = staticmethod(time.time)
    monotonic = staticmethod(time.perf_counter)
    sleep = staticmethod(time.sleep)

    async def asleep(self, seconds: float) -> None:
        import asyncio

        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that moves only when told to (``advance``) or when something sleeps on it."""

    __slots__ = ("_now", "slept")

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self.slept: list[float] = []

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds

    def set(self, now: float) -> None:
        """Jump to ``now`` (never backwards)."""
        if now < self._now:
            raise ValueError("a clock cannot go backwards")
        self._now = now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
