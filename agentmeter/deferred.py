"""Updates that recording threads queue instead of waiting for a lock.

Under the GIL a thread that blocks on a held lock must also wait for the interpreter afterwards,
so threads recording flat out into shared state (the policy engine's windows, a run's tally)
form a convoy at every call. ``Deferred`` lets them queue the update instead: whoever holds the
lock applies the queue, the adding thread itself when the lock is free; every reader takes the
lock and calls ``flush`` first, so nothing reads state that misses an update.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Deferred"]

T = TypeVar("T")


class Deferred(Generic[T]):
    """Items applied in order, under ``lock``, by whoever holds it."""

    __slots__ = ("_apply", "_limit", "_queue", "lock")

    def __init__(self, apply: Callable[[T], None], *, limit: int = 1024) -> None:
        self.lock = threading.Lock()
        self._apply = apply
        self._queue: deque[T] = deque()
        self._limit = limit  # past this many queued items the adding thread waits for the lock

    def add(self, item: T) -> None:
        """Queue ``item``; apply the queue now if the lock is free (or the queue is too long)."""
        queue = self._queue
        queue.append(item)
        if self.lock.acquire(len(queue) > self._limit):
            try:
                self.flush()
            finally:
                self.lock.release()

    def flush(self) -> None:
        """Apply every queued item, oldest first. The caller holds ``lock``."""
        queue, apply = self._queue, self._apply
        while queue:
            apply(queue.popleft())
