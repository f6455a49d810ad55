"""Rolling windows equal a brute-force computation over the same samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmeter.windows import (
    GRAIN_PARTS,
    MERGE_AT,
    QUANTILES,
    STATS,
    Window,
    WindowSpec,
    quantile_of_sorted,
)

values = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
gaps = st.floats(min_value=0, max_value=50, allow_nan=False)


def brute(samples, now, spec, stat):
    if spec.seconds is not None:
        kept = [v for ts, v in samples if ts + spec.seconds > now]  # leaves at exactly ts + seconds
    else:
        kept = [v for _, v in samples][-spec.count :]
    if stat == "sum":
        return sum(kept)
    if stat == "count":
        return len(kept)
    if not kept:
        return None
    if stat == "mean":
        return sum(kept) / len(kept)
    if stat == "max":
        return max(kept)
    if stat == "min":
        return min(kept)
    if stat == "last":
        return kept[-1]
    return float(np.percentile(kept, QUANTILES[stat] * 100))


@pytest.mark.parametrize("stat", ["sum", "count", "mean", "max", "min", "last", *QUANTILES])
@pytest.mark.parametrize(
    "spec", [WindowSpec(seconds=60), WindowSpec(count=7)], ids=["time-60s", "count-7"]
)
@settings(max_examples=60, deadline=None)
@given(data=st.lists(st.tuples(gaps, values), min_size=0, max_size=60), probe=gaps)
def test_statistic_equals_brute_force(stat, spec, data, probe):
    window = Window(spec, keep_sorted=True, keep_extremes=True)
    samples, now = [], 1000.0
    for gap, value in data:
        now += gap
        window.add(now, value)
        samples.append((now, value))
        got, want = window.stat(stat, now), brute(samples, now, spec, stat)
        if want is None:
            assert got is None
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-6)
    now += probe
    want = brute(samples, now, spec, stat)
    got = window.stat(stat, now)
    assert (got is None) if want is None else got == pytest.approx(want, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("stat", ["sum", "count", "max", "min", "p90"])
@settings(max_examples=60, deadline=None)
@given(data=st.lists(st.tuples(gaps, values, st.booleans()), min_size=0, max_size=80), probe=gaps)
def test_statistic_equals_brute_force_when_read_now_and_then(stat, data, probe):
    # Samples a time window no longer holds leave as new ones arrive, read or not: a window fed
    # by a meter that only records must give what brute force gives whenever it is read.
    spec = WindowSpec(seconds=60)
    window = Window(spec, keep_sorted=True, keep_extremes=True)
    samples, now = [], 1000.0
    for gap, value, read in data:
        now += gap
        window.add(now, value)
        samples.append((now, value))
        if read:
            want = brute(samples, now, spec, stat)
            got = window.stat(stat, now)
            assert (got is None) if want is None else got == pytest.approx(want, rel=1e-9, abs=1e-6)
    now += probe
    want = brute(samples, now, spec, stat)
    got = window.stat(stat, now)
    assert (got is None) if want is None else got == pytest.approx(want, rel=1e-9, abs=1e-6)


def test_a_time_window_fed_and_never_read_holds_only_its_samples():
    window = Window(WindowSpec(seconds=60), keep_sorted=True)
    keyed = Window(WindowSpec(seconds=60), keep_counts=True)
    for i in range(100_000):  # one sample a second for ~28 hours; never read
        window.add(float(i), 1.0)
        keyed.add_key(float(i), i % 7)
    assert len(window) == 60 and len(keyed) == 60
    assert len(window._ts) <= 2 * 600  # compacted as it goes, not one entry per sample fed
    assert len(window._sorted) == 60 and sum(keyed._counts.values()) == 60
    assert window.total == 60


def test_a_busy_sum_window_keeps_a_bounded_number_of_slots():
    # A tenant's 24-hour budget at 100 calls a second: 8.6M samples a day, a bounded few slots.
    window = Window(WindowSpec(seconds=86_400))
    exact = Window(WindowSpec(seconds=86_400), merge_at=10**9)  # never merges
    now = 0.0
    for i in range(300_000):  # 100 a second: 50 minutes
        now = i / 100
        window.add(now, 7)
        exact.add(now, 7)
    assert len(window) == len(exact) == 300_000  # every sample is counted
    assert window.stat("sum", now) == exact.stat("sum", now) == 2_100_000  # ints stay ints
    assert window.stat("count", now) == 300_000
    assert len(window._ts) <= MERGE_AT + 300_000 / 100 / (86_400 / GRAIN_PARTS) + 1
    assert len(exact._ts) == 300_000


slot_gaps = st.floats(min_value=0, max_value=3, allow_nan=False)
costs = st.integers(min_value=0, max_value=10**6)


@settings(max_examples=100, deadline=None)
@given(data=st.lists(st.tuples(slot_gaps, costs), min_size=1, max_size=120), probes=st.lists(gaps))
def test_merged_slots_count_a_sample_at_most_one_grain_longer_never_shorter(data, probes):
    # seconds=4096 makes the grain 1 s; merging starts past 8 slots.
    spec = WindowSpec(seconds=GRAIN_PARTS * 1.0)
    window = Window(spec, merge_at=8)
    samples, now = [], 0.0
    for gap, value in data:
        now += gap
        window.add(now, value)
        samples.append((now, value))
    # Probe just before and after each sample's exact leaving time, and anywhere after.
    edges = [ts + spec.seconds + d for ts, _ in samples for d in (-1e-6, 1e-6, 0.5)]
    for at in sorted({*edges, *(now + probe * 100 for probe in probes)}):
        got_sum, got_count = window.stat("sum", at), window.stat("count", at)
        exact = [v for ts, v in samples if ts + spec.seconds > at]
        late = [v for ts, v in samples if ts + spec.seconds + 1.0 > at]  # left < 1 grain ago
        assert sum(exact) <= got_sum <= sum(late)
        assert len(exact) <= got_count <= len(late)


def test_a_slot_fed_slightly_out_of_order_still_leaves_with_its_newest_sample():
    # Recording threads take the time, then feed the engine: a window may see 10.0 after 10.2.
    window = Window(WindowSpec(seconds=GRAIN_PARTS * 1.0), merge_at=1)
    window.add(0.0, 1)  # its own slot
    window.add(10.2, 1)
    window.add(10.0, 1)  # joins the 10.2 slot
    assert len(window) == 3 and len(window._ts) == 2
    assert window.stat("sum", 10.2 + GRAIN_PARTS - 1e-6) == 2  # 10.2's sample is still in


@settings(max_examples=100, deadline=None)
@given(data=st.lists(st.tuples(slot_gaps, costs), min_size=1, max_size=120), level=costs)
def test_time_until_at_most_is_exact_for_merged_slots(data, level):
    """The wait brings the merged window's own sum to the level; any less does not."""
    spec = WindowSpec(seconds=GRAIN_PARTS * 1.0)
    window = Window(spec, merge_at=8)
    now = 0.0
    for gap, value in data:
        now += gap
        window.add(now, value)
    wait = window.time_until_at_most(level, now)
    assert wait is not None
    before = Window(spec, merge_at=10**9)  # the slots as they are now (reading expires them)
    for ts, value in window.samples():
        before.add(ts, value)
    assert window.stat("sum", now + wait) <= level
    if wait > 0:
        assert before.stat("sum", now + wait - 1e-6) > level


@settings(max_examples=100, deadline=None)
@given(st.lists(values, min_size=1, max_size=200), st.sampled_from(sorted(QUANTILES.values())))
def test_quantile_matches_numpy_linear(xs, q):
    assert quantile_of_sorted(sorted(xs), q) == pytest.approx(float(np.percentile(xs, q * 100)))


@settings(max_examples=100, deadline=None)
@given(
    data=st.lists(st.tuples(gaps, st.integers(0, 10_000)), min_size=1, max_size=40),
    level=st.integers(0, 50_000),
)
def test_time_until_at_most_is_exact(data, level):
    """Waiting the returned time brings the sum to the level; waiting any less does not."""
    spec = WindowSpec(seconds=100)
    window = Window(spec)
    now = 0.0
    for gap, value in data:
        now += gap
        window.add(now, value)
    wait = window.time_until_at_most(level, now)
    assert wait is not None  # every sample leaves a time window eventually
    clone = Window(spec)
    for ts, value in window.samples():
        clone.add(ts, value)
    assert clone.stat("sum", now + wait) <= level
    if wait > 0:
        later = Window(spec)
        for ts, value in window.samples():
            later.add(ts, value)
        assert later.stat("sum", now + wait - 1e-6) > level


def test_integer_sums_stay_exact():
    window = Window(WindowSpec(seconds=10))
    for i in range(10_000):
        window.add(float(i), 123_456_789)
    assert window.stat("sum", 9_999.0) == 10 * 123_456_789
    assert isinstance(window.stat("sum", 9_999.0), int)


def test_repeats_counts_the_most_repeated_key():
    window = Window(WindowSpec(count=5), keep_counts=True)
    for key in ["a", "b", "a", "c", "a", "b"]:
        window.add_key(0.0, key)
    # last 5: b a c a b -> a and b twice each
    assert window.stat("repeats", 0.0) == 2
    window.add_key(0.0, "a")  # a c a b a
    assert window.stat("repeats", 0.0) == 3


def test_rate_over_time_window_is_sum_per_second():
    window = Window(WindowSpec(seconds=60))
    for i in range(30):
        window.add(float(i), 1)
    assert window.stat("rate", 29.0) == pytest.approx(30 / 60)


def test_empty_window_stats():
    window = Window(WindowSpec(count=3), keep_sorted=True)
    assert window.stat("sum", 0.0) == 0
    assert window.stat("count", 0.0) == 0
    assert window.stat("p90", 0.0) is None
    assert window.stat("mean", 0.0) is None
    assert math.isclose(window.time_until_at_most(0, 0.0), 0.0)


@pytest.mark.parametrize("stat", [*STATS, "repeats"])
@pytest.mark.parametrize(
    "spec", [WindowSpec(seconds=60), WindowSpec(count=7)], ids=["time-60s", "count-7"]
)
@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(st.tuples(gaps, st.integers(0, 6), st.booleans()), max_size=60),
    probes=st.lists(gaps, min_size=1, max_size=5),
)
def test_bound_reader_equals_stat(stat, spec, data, probes):
    """A reader bound once (cached ``repeats`` and ``anomaly``) equals ``stat`` at every query."""
    keyed = stat in ("repeats", "distinct")
    window = Window(spec, keep_sorted=not keyed, keep_extremes=not keyed, keep_counts=keyed)
    twin = Window(spec, keep_sorted=not keyed, keep_extremes=not keyed, keep_counts=keyed)
    read = window.reader(stat)
    now = 1000.0
    for gap, value, query in data:
        now += gap
        for w in (window, twin):
            w.add_key(now, value) if keyed else w.add(now, float(value))
        if query:  # read at arbitrary moments, twice: a cached value must not outlive a change
            assert read(now) == twin.stat(stat, now)
            assert read(now) == twin.stat(stat, now)
    for gap in probes:
        now += gap
        assert read(now) == twin.stat(stat, now)
