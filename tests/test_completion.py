"""run.completion / run.acompletion: decide, apply, call, retry, record (no network: mock responses)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

import agentmeter
from agentmeter.simulate import SimulatedProvider, SimulatedProviderError

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def calls(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "select model, status, error_type, input_tokens, output_tokens, cost_nano_usd, ttft_ms, stream, usage_status "
            "from agentmeter_calls order by id"
        ).fetchall()
    finally:
        conn.close()


def test_completion_through_litellm_mock_response(db_path):
    with agentmeter.Meter(db=db_path) as meter, meter.run("r") as run:
        response = run.completion(model="gpt-4o", messages=MESSAGES, mock_response="Paris.")
    assert response.choices[0].message.content == "Paris."
    usage = agentmeter.normalize_usage(response)
    (row,) = calls(db_path)
    assert row[:5] == ("gpt-4o", "ok", None, usage.input_tokens, usage.output_tokens)
    assert row[5] == agentmeter.pricing.cost_nano_usd("gpt-4o", usage)
    assert row[7:] == (0, "reported")


def test_streamed_completion_records_ttft_and_usage(db_path):
    with agentmeter.Meter(db=db_path) as meter:
        run = meter.run("r")
        chunks = list(
            run.completion(
                model="gpt-4o",
                messages=MESSAGES,
                mock_response="Paris is the capital.",
                stream=True,
            )
        )
        run.end()
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Paris is the capital."
    )
    (row,) = calls(db_path)
    assert row[0] == "gpt-4o" and row[1] == "ok"
    assert row[3] > 0 and row[4] > 0 and row[5] > 0
    assert row[6] is not None and row[6] >= 0 and row[7] == 1


def test_simulated_stream_timings_on_a_fake_clock(db_path, clock):
    provider = SimulatedProvider(clock, seed=1)
    provider.degrade("gpt-4o", error_rate=0.0)
    with agentmeter.Meter(db=db_path, clock=clock, completion_fn=provider.completion) as meter:
        run = meter.run("r")
        start = clock.now()
        for _ in run.completion(model="gpt-4o", messages=MESSAGES, stream=True):
            pass
        elapsed_ms = (clock.now() - start) * 1000
        record = run.last_record
    assert record.status == "ok" and record.stream
    assert 0 < record.ttft_ms < record.latency_ms == pytest.approx(elapsed_ms)
    assert record.usage.output_tokens > 0 and not record.usage.estimated


def test_stream_without_usage_is_estimated_and_marked(db_path, clock):
    def no_usage(**kwargs):
        for piece in ["Par", "is"]:
            yield {"model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": piece}}]}

    with agentmeter.Meter(
        db=db_path, clock=clock, completion_fn=no_usage, token_counter=lambda m, x: 7
    ) as meter:
        run = meter.run("r")
        assert (
            "".join(
                c["choices"][0]["delta"]["content"]
                for c in run.completion(model="gpt-4o", messages=MESSAGES, stream=True)
            )
            == "Paris"
        )
        run.end()
    (row,) = calls(db_path)
    assert row[3:5] == (7, 7) and row[8] == "estimated"


def test_transient_errors_are_retried_and_each_attempt_recorded(db_path, clock):
    attempts = []

    def flaky(**kwargs):
        attempts.append(kwargs["model"])
        if len(attempts) < 3:
            raise SimulatedProviderError("rate limited", status_code=429)
        return {
            "model": "gpt-4o",
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        }

    with agentmeter.Meter(db=db_path, clock=clock, completion_fn=flaky) as meter:
        run = meter.run("r")
        run.completion(model="gpt-4o", messages=MESSAGES)
        run.end()
    rows = calls(db_path)
    assert [r[1:3] for r in rows] == [("error", "SimulatedProviderError")] * 2 + [("ok", None)]
    assert [r[5] is None for r in rows] == [True, True, False]  # failed attempts cost nothing
    assert len(clock.slept) == 2  # backoff waited on the clock, not the wall


def test_permanent_errors_are_not_retried(db_path, clock):
    def bad_request(**kwargs):
        raise SimulatedProviderError("invalid request", status_code=400)

    with agentmeter.Meter(db=db_path, clock=clock, completion_fn=bad_request) as meter:
        run = meter.run("r")
        with pytest.raises(SimulatedProviderError):
            run.completion(model="gpt-4o", messages=MESSAGES)
    assert [r[1] for r in calls(db_path)] == ["error"]


def test_retries_give_up_after_max_retries(db_path, clock):
    def down(**kwargs):
        raise SimulatedProviderError("unavailable", status_code=503)

    with agentmeter.Meter(db=db_path, clock=clock, completion_fn=down, max_retries=4) as meter:
        with pytest.raises(SimulatedProviderError):
            meter.run("r").completion(model="gpt-4o", messages=MESSAGES)
    assert len(calls(db_path)) == 5


def test_acompletion_retries_transient_errors_on_the_same_schedule(db_path, clock):
    attempts = []

    async def flaky(**kwargs):
        attempts.append(kwargs["model"])
        if len(attempts) < 3:
            raise SimulatedProviderError("overloaded", status_code=503)
        return {
            "model": "gpt-4o",
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        }

    async def main():
        with agentmeter.Meter(db=db_path, clock=clock, acompletion_fn=flaky) as meter:
            await meter.run("r").acompletion(model="gpt-4o", messages=MESSAGES)

    asyncio.run(main())
    assert [r[1] for r in calls(db_path)] == ["error", "error", "ok"]
    assert len(attempts) == 3 and len(clock.slept) == 2  # backoff on the clock, as sync


def test_no_retries_when_max_retries_is_zero(db_path, clock):
    def down(**kwargs):
        raise SimulatedProviderError("unavailable", status_code=503)

    with agentmeter.Meter(db=db_path, clock=clock, completion_fn=down, max_retries=0) as meter:
        with pytest.raises(SimulatedProviderError):
            meter.run("r").completion(model="gpt-4o", messages=MESSAGES)
    assert len(calls(db_path)) == 1 and clock.slept == []


def test_halt_stops_before_the_provider_is_called(db_path, clock):
    called = []
    policy = "version: 1\npolicies:\n  - name: cap\n    when: {metric: cost_usd, window: 1h, above: $0.0001}\n    then: [halt]\n"
    with agentmeter.Meter(
        db=db_path, clock=clock, policies=policy, completion_fn=lambda **k: called.append(k)
    ) as meter:
        run = meter.run("r")
        run.record(model="gpt-4o", usage=agentmeter.Usage(input_tokens=1000), latency_ms=1)
        with pytest.raises(agentmeter.BudgetExceeded) as info:
            run.completion(model="gpt-4o", messages=MESSAGES)
    assert called == []
    assert info.value.decision.halt and info.value.decision.fired[0].policy == "cap"


def test_downgrade_and_no_stream_are_applied_to_the_request(db_path, clock):
    seen = []

    def fn(**kwargs):
        seen.append((kwargs["model"], kwargs.get("stream")))
        return {
            "model": kwargs["model"],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    policy = (
        "version: 1\nladder:\n  gpt-4o: [gpt-4o-mini]\npolicies:\n  - name: slow\n"
        "    when: {metric: latency_ms, stat: max, last: 1, above: 1s}\n    then: [downgrade, no_stream]\n"
    )
    with agentmeter.Meter(db=db_path, clock=clock, policies=policy, completion_fn=fn) as meter:
        run = meter.run("r")
        run.record(model="gpt-4o", usage=agentmeter.Usage(input_tokens=1), latency_ms=5000)
        run.completion(model="gpt-4o", messages=MESSAGES, stream=True)
    assert seen == [("gpt-4o-mini", False)]
    model, requested = (
        sqlite3.connect(db_path)
        .execute("select model, requested_model from agentmeter_calls order by id desc limit 1")
        .fetchone()
    )
    assert (model, requested) == ("gpt-4o-mini", "gpt-4o")


def test_acompletion_through_litellm_mock_response(db_path):
    async def main():
        with agentmeter.Meter(db=db_path) as meter:
            run = meter.run("r")
            response = await run.acompletion(
                model="gpt-4o-mini", messages=MESSAGES, mock_response="Paris."
            )
            run.end()
        return response

    response = asyncio.run(main())
    assert response.choices[0].message.content == "Paris."
    (row,) = calls(db_path)
    assert row[:2] == ("gpt-4o-mini", "ok") and row[5] > 0
