"""``Deferred``: updates queued by threads that must not wait for a lock, applied in order."""

from __future__ import annotations

import threading
import time

from agentmeter.deferred import Deferred


def test_items_apply_in_order_at_once_when_the_lock_is_free_else_at_the_next_flush():
    applied: list[int] = []
    deferred = Deferred(applied.append)
    deferred.add(1)
    assert applied == [1]  # the lock was free: applied by the adding thread
    with deferred.lock:  # a reader holds it
        adder = threading.Thread(target=lambda: [deferred.add(i) for i in (2, 3)])
        adder.start()
        adder.join(timeout=5)
        assert not adder.is_alive() and applied == [1]  # queued, the adder did not wait
        deferred.flush()
    assert applied == [1, 2, 3]


def test_past_its_limit_an_adding_thread_waits_for_the_lock_and_applies_the_queue():
    applied: list[int] = []
    deferred = Deferred(applied.append, limit=2)
    deferred.lock.acquire()
    for i in range(2):
        deferred.add(i)  # under the limit: queued without waiting
    blocked = threading.Thread(target=deferred.add, args=(2,))
    blocked.start()
    time.sleep(0.05)
    assert blocked.is_alive() and applied == []  # the third waits for the lock
    deferred.lock.release()
    blocked.join(timeout=5)
    assert not blocked.is_alive() and applied == [0, 1, 2]
