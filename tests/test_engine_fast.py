"""The engine's fast paths equal the plain code they stand in for.

``decision.new_decision`` / ``new_fired`` and the replay's ``_replay_decision`` build frozen
dataclasses through their slots; ``Window.time_until_at_most`` keeps the resume time it found.
Each is checked against the dataclass constructor or a window that never cached anything.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmeter.decision import (
    Compact,
    Decision,
    Fired,
    new_decision,
    new_fired,
    slot_setters,
)
from agentmeter.replay import ReplayDecision, _replay_decision
from agentmeter.windows import Window, WindowSpec

floats = st.one_of(st.none(), st.floats(allow_nan=False), st.integers(-(10**12), 10**12))


@settings(max_examples=60, deadline=None)
@given(
    value=floats,
    threshold=st.floats(allow_nan=False),
    warn_at=st.one_of(st.none(), st.floats(0, 1)),
    pause=st.one_of(st.none(), st.floats(0, 1e6)),
    above=st.booleans(),
    note=st.text(max_size=5),
)
def test_new_fired_equals_the_dataclass(value, threshold, warn_at, pause, above, note):
    detail = {} if pause is None else {"pause_s": pause}
    args = ("p", "cost_usd", "sum", value, threshold, "pause", "run r", "active", "1h")
    fast = new_fired(*args, above, note, warn_at, dict(detail))
    plain = Fired(*args, above=above, note=note, warn_at=warn_at, detail=dict(detail))
    assert fast == plain
    assert repr(fast) == repr(plain)
    assert fast.reason == plain.reason
    assert [getattr(fast, f.name) for f in dataclasses.fields(Fired)] == [
        getattr(plain, f.name) for f in dataclasses.fields(Fired)
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.value = 1.0  # type: ignore[misc]


@settings(max_examples=60, deadline=None)
@given(
    pause=st.floats(0, 1e6),
    halt=st.booleans(),
    stream=st.sampled_from([None, False]),
    step=st.one_of(st.none(), st.integers(0, 10**6)),
    reserved=st.integers(0, 10**12),
    compact=st.one_of(st.none(), st.builds(Compact, st.integers(0, 10**6))),
)
def test_new_decision_equals_the_dataclass(pause, halt, stream, step, reserved, compact):
    fired = (new_fired("p", "m", "sum", 1.0, 2.0, "alert", "s", "fire", "w", True, "", None, {}),)
    resume = 5.0 + pause if pause else None
    fast = new_decision("a", "b", compact, pause, resume, halt, stream, fired, step, reserved)
    plain = Decision(
        model="a",
        requested_model="b",
        compact=compact,
        pause_s=pause,
        resume_at=resume,
        halt=halt,
        stream=stream,
        fired=fired,
        step=step,
        reserved_nano_usd=reserved,
    )
    assert fast == plain
    assert repr(fast) == repr(plain)
    assert (fast.proceed, fast.downgraded, fast.reasons()) == (
        plain.proceed,
        plain.downgraded,
        plain.reasons(),
    )


def test_replay_decision_equals_the_dataclass():
    args = (3, 12.5, "p", "pause", "active", "p: why -> pause 1.0s", "cost_usd", 1.5, 2.0)
    fast = _replay_decision(*args)
    plain = ReplayDecision(*args)
    assert fast == plain
    assert fast.as_dict() == plain.as_dict()
    assert fast.key == plain.key


def test_slot_setters_insist_on_every_field_in_order():
    with pytest.raises(RuntimeError):
        slot_setters(Decision, ("requested_model", "model"))


ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "reserve", "unreserve", "ask", "tick"]),
        st.integers(0, 10_000),
        st.floats(0, 40, allow_nan=False),
    ),
    max_size=80,
)


def fresh_wait(window: Window, level: float, now: float) -> float | None:
    """The wait asked of a window that never answered before (nothing cached)."""
    clone = Window(WindowSpec(seconds=window.seconds))
    for ts, value in window.samples():
        clone.add(ts, value)
    clone.reserved = window.reserved
    return clone.time_until_at_most(level, now)


@settings(max_examples=150, deadline=None)
@given(ops=ops, levels=st.lists(st.integers(0, 30_000), min_size=1, max_size=3))
def test_cached_resume_equals_a_fresh_answer(ops, levels):
    """Asked again and again (the clock moving, samples and reservations coming and going), the
    wait equals the one a window without the cached resume time gives, to the last bit."""
    window = Window(WindowSpec(seconds=100))
    now = 0.0
    held: list[int] = []
    for i, (op, amount, gap) in enumerate(ops):
        if op == "add":
            window.add(now, amount)
        elif op == "reserve":
            window.reserved += amount
            held.append(amount)
        elif op == "unreserve" and held:
            window.reserved -= held.pop()
        elif op == "tick":
            now += gap
        level = levels[i % len(levels)]
        want = fresh_wait(window, level, now)
        got = window.time_until_at_most(level, now)
        assert got == want and type(got) is type(want)
