"""run.stats() and run.summary_for_prompt(): what a run can tell the agent about itself."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

import agentmeter
from agentmeter import Usage

PRICES = {"m": {"input": "$1", "output": "$2"}}


def test_stats_track_spend_windows_latency_cache_and_decisions(clock):
    policy = "version: 1\npolicies:\n  - name: big\n    when: {metric: cost_usd, stat: max, last: 1, above: $0.5}\n    then: [alert]\n"
    with agentmeter.Meter(db=":memory:", clock=clock, pricing=PRICES, policies=policy) as meter:
        run = meter.run("r")
        latencies = []
        for i in range(12):
            run.record(
                model="m",
                usage=Usage(input_tokens=100_000, cache_read_tokens=50_000, output_tokens=10_000),
                latency_ms=100.0 * (i + 1),
            )
            latencies.append(100.0 * (i + 1))
            clock.advance(120)  # 2 minutes apart
        run.record(model="m", usage=None, latency_ms=5, status="error", error_type="Timeout")
        run.decide(model="m")
        stats = run.stats()
    per_call = (
        Decimal("0.1") + Decimal("0.05") + Decimal("0.02")
    )  # input + cache read (at input rate) + output
    assert stats.calls == 13 and stats.errors == 1 and stats.error_rate == pytest.approx(1 / 13)
    assert stats.spent_usd == 12 * per_call
    # Calls at t0 .. t0+1320 s, now t0+1440: the last 10 minutes hold 4 calls (t0+960 .. t0+1320).
    assert stats.spent_last_10m_usd == 4 * per_call
    assert stats.spent_last_1h_usd == 12 * per_call
    assert stats.p90_latency_ms == pytest.approx(float(np.percentile(latencies, 90)))
    assert stats.cache_hit_ratio == pytest.approx(50_000 / 150_000)
    assert (
        stats.unknown_cost_calls == 0
    )  # the failed call had no usage: an error, not an unknown price
    assert stats.fired == {}


def test_latency_quantiles_cover_the_latest_calls_and_stay_bounded(clock):
    # A run recording for days keeps the latest LATENCY_CALLS latencies, not one per call.
    from agentmeter.stats import LATENCY_CALLS

    with agentmeter.Meter(db=":memory:", clock=clock, pricing=PRICES) as meter:
        run = meter.run("long")
        latencies = [float((i * 7919) % 5003) for i in range(3 * LATENCY_CALLS)]
        for latency in latencies:
            run.record(model="m", usage=Usage(input_tokens=1), latency_ms=latency)
        stats = run.stats()
        assert len(run._tally.latencies) == LATENCY_CALLS
    recent = latencies[-LATENCY_CALLS:]
    assert stats.calls == 3 * LATENCY_CALLS
    assert stats.p50_latency_ms == pytest.approx(float(np.percentile(recent, 50)))
    assert stats.p90_latency_ms == pytest.approx(float(np.percentile(recent, 90)))
    assert stats.p90_latency_ms != pytest.approx(float(np.percentile(latencies, 90)))


def test_summary_for_prompt_reads_like_a_sentence(clock):
    with agentmeter.Meter(db=":memory:", clock=clock, pricing=PRICES) as meter:
        run = meter.run("r")
        assert run.summary_for_prompt() == "No LLM calls yet in this run."
        run.record(model="m", usage=Usage(input_tokens=1_000_000), latency_ms=2000)
        run.record(model="unpriced-model", usage=Usage(input_tokens=10), latency_ms=1000)
        text = run.summary_for_prompt()
    assert text.startswith(
        "So far this run made 2 LLM calls costing $1.0000 ($1.0000 in the last 10 minutes), plus 1 of unknown cost."
    )
    assert (
        "Latency p50 1.5s, p90 1.9s." in text
        and "0% of prompt tokens were served from cache." in text
    )


def test_fired_policies_are_counted(clock):
    policy = "version: 1\npolicies:\n  - name: loop\n    when: {metric: repeated_prompt, last: 10, above: 1}\n    cooldown: 0s\n    then: [alert]\n"
    with agentmeter.Meter(db=":memory:", clock=clock, pricing=PRICES, policies=policy) as meter:
        run = meter.run("r")
        for _ in range(2):
            run.record(model="m", usage=Usage(input_tokens=1), latency_ms=1, prompt_hash="same")
        run.decide(model="m")
        assert run.stats().fired == {"loop -> alert": 1}
        assert "Policies acted: loop -> alert." in run.summary_for_prompt()


def test_a_long_run_keeps_only_the_last_hour_of_spend_in_memory(clock):
    """The hourly spend figure reads a deque of recent calls; a run of days must not grow it."""
    with agentmeter.Meter(db=":memory:", clock=clock, pricing=PRICES) as meter:
        run = meter.run("r")
        for _ in range(3000):
            run.record(model="m", usage=Usage(input_tokens=1000), latency_ms=1)
            clock.advance(60)  # 50 hours in all
        held = len(run._tally.recent)
        stats = run.stats()
    assert held <= 61
    # now is 60 s after the last call: the hour back holds the calls 60 .. 3540 s ago, 59 of them
    assert stats.spent_last_1h_usd == 59 * stats.spent_usd / 3000


def test_threads_sharing_a_run_never_wait_on_its_tally_and_every_call_counts(clock):
    """Recording does not block while the tally is held; spent, stats and steps see every call."""
    import threading

    with agentmeter.Meter(db=":memory:", clock=clock, pricing=PRICES) as meter:
        run = meter.run("r")
        usage = Usage(input_tokens=1000)

        def record(times):
            for _ in range(times):
                run.record(model="m", usage=usage, latency_ms=1)

        with run._tally_lock:  # a reader in progress: stats() on another thread
            blocked = threading.Thread(target=record, args=(5,))
            blocked.start()
            blocked.join(timeout=5)
            assert not blocked.is_alive()
        threads = [threading.Thread(target=record, args=(500,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        records = [run.record(model="m", usage=usage, latency_ms=1) for _ in range(3)]
        stats = run.stats()
    assert stats.calls == 4008 and run.step == 4008
    assert run.spent == 4008 * records[0].cost
    assert sorted({r.step for r in records}) == [4006, 4007, 4008]


def test_threads_sharing_a_long_run_record_every_call(clock):
    """Past 8,192 calls a run trims its step -> model map; threads trimming at once must not fail."""
    import threading

    with agentmeter.Meter(db=":memory:", clock=clock, pricing=PRICES) as meter:
        run = meter.run("r")
        usage = Usage(input_tokens=10)
        failed = []

        def record():
            for _ in range(6000):
                if run.record(model="m", usage=usage, latency_ms=1) is None:
                    failed.append(1)

        threads = [threading.Thread(target=record) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        health = meter.health()
    assert failed == [] and health["internal_errors"] == 0
    assert run.stats().calls == 24_000


def test_a_run_remembers_only_its_latest_fired_decisions_in_memory(clock):
    """Deciding again and again under a breached cap keeps the last 1,000 decisions, not all."""
    policy = "version: 1\npolicies:\n  - name: cap\n    when: {metric: cost_usd, window: 1h, above: $0.001}\n    then: [pause]\n"
    with agentmeter.Meter(db=":memory:", clock=clock, pricing=PRICES, policies=policy) as meter:
        run = meter.run("r")
        run.record(model="m", usage=Usage(input_tokens=100_000), latency_ms=1)
        for _ in range(1500):
            clock.advance(0.5)
            last = run.decide(model="m")
    assert len(run.decisions) == 1000 and run.decisions[-1] is last and last.pause_s > 0
