"""Quality signals, stream smoothness, model versions and the response cache."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

import agentmeter
from agentmeter import Usage
from agentmeter.content import prune
from agentmeter.simulate import SimulatedProvider

PRICES = {"big": {"input": "$10", "output": "$10"}, "small": {"input": "$1", "output": "$1"}}


def provider(clock):
    sim = SimulatedProvider(clock, seed=4)
    for name in list(sim.profiles):
        sim.degrade(name, error_rate=0.0)
    return sim


# -- feedback ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, score, normalized, negative",
    [
        ("thumbs", True, 1.0, 0),
        ("thumbs", "down", 0.0, 1),
        ("rating", 2, 2.0, 1),
        ("rating", 4, 4.0, 0),
        ("score", 0.3, 0.3, 1),
        ("regenerate", None, None, 1),
        ("correction", None, None, 1),
    ],
    ids=[
        "thumbs-up",
        "thumbs-down",
        "rating-2",
        "rating-4",
        "score-0.3",
        "regenerate",
        "correction",
    ],
)
def test_feedback_is_stored_and_normalized(db_path, clock, kind, score, normalized, negative):
    with agentmeter.Meter(db=db_path, clock=clock, pricing=PRICES) as meter:
        run = meter.run("r", tags={"tenant": "acme"})
        record = run.record(model="big", usage=Usage(input_tokens=10), latency_ms=1)
        run.feedback(score, kind=kind, call=record, comment="about step 1")
    row = (
        sqlite3.connect(db_path)
        .execute(
            "select step, kind, score, negative, model, comment, tags from agentmeter_feedback"
        )
        .fetchone()
    )
    assert row == (1, kind, normalized, negative, "big", "about step 1", '{"tenant": "acme"}')


@pytest.mark.parametrize(
    "kind, score", [("thumbs", 3), ("rating", 9), ("score", 1.5), ("stars", 1)]
)
def test_malformed_feedback_is_a_clear_error(clock, kind, score):
    with (
        agentmeter.Meter(db=":memory:", clock=clock) as meter,
        pytest.raises(ValueError, match=kind if kind != "stars" else "unknown feedback kind"),
    ):
        meter.run("r").feedback(score, kind=kind)


def test_bad_ratings_undo_a_downgrade(clock):
    """Spend forces the cheaper model; users rate its answers down; the stronger model comes back."""
    policy = """
version: 1
ladder: {big: [small]}
policies:
  - name: budget
    when: {metric: cost_usd, stat: sum, window: 1h, above: $0.05}
    then: [downgrade]
  - name: quality-guard
    when: {metric: negative_feedback_rate, last: 10, above: 20%}
    cooldown: 0s
    then: [upgrade, alert]
"""
    with agentmeter.Meter(db=":memory:", clock=clock, pricing=PRICES, policies=policy) as meter:
        run = meter.run("r")
        run.record(model="big", usage=Usage(input_tokens=10_000), latency_ms=1)  # $0.10
        decision = run.decide(model="big")
        assert decision.model == "small"
        for i in range(5):
            record = run.record(model=decision.model, usage=Usage(input_tokens=10), latency_ms=1)
            run.feedback(i != 0, call=record)  # one thumbs down in five: 20%, not above
        assert run.decide(model="big").model == "small"
        record = run.record(model="small", usage=Usage(input_tokens=10), latency_ms=1)
        run.feedback(False, call=record)  # 2 of 6 negative: 33%
        restored = run.decide(model="big")
        assert restored.model == "big"
        assert {(f.policy, f.action) for f in restored.fired} >= {
            ("quality-guard", "upgrade"),
            ("quality-guard", "alert"),
        }


# -- streams -------------------------------------------------------------------------------------
def test_streams_record_chunks_and_inter_chunk_latency(db_path, clock):
    gaps_s = [0.05, 0.05, 0.40, 0.05, 0.05, 0.05, 0.05, 0.05]

    def stuttering(**kwargs):
        clock.advance(0.3)
        yield {"model": "gpt-4o-2024-08-06", "choices": [{"index": 0, "delta": {"content": "a"}}]}
        for gap in gaps_s:
            clock.advance(gap)
            yield {
                "model": "gpt-4o-2024-08-06",
                "choices": [{"index": 0, "delta": {"content": "b"}}],
            }
        yield {
            "model": "gpt-4o-2024-08-06",
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
        }

    with agentmeter.Meter(db=db_path, clock=clock, completion_fn=stuttering) as meter:
        run = meter.run("r")
        list(
            run.completion(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        run.end()
    chunks, itl_mean, itl_p90, ttft, version = (
        sqlite3.connect(db_path)
        .execute(
            "select chunks, itl_mean_ms, itl_p90_ms, ttft_ms, model_version from agentmeter_calls"
        )
        .fetchone()
    )
    all_gaps = [g * 1000 for g in [*gaps_s, 0.0]]  # the usage chunk arrives with no delay
    assert chunks == 10
    assert itl_mean == pytest.approx(np.mean(all_gaps))
    assert itl_p90 == pytest.approx(np.percentile(all_gaps, 90))
    assert ttft == pytest.approx(300.0)
    assert version == "gpt-4o-2024-08-06"


def test_a_stuttering_stream_is_a_policy_metric(clock):
    policy = "version: 1\npolicies:\n  - name: stutter\n    when: {metric: itl_ms, stat: max, last: 3, above: 250ms}\n    then: [no_stream]\n"
    with agentmeter.Meter(db=":memory:", clock=clock, policies=policy) as meter:
        run = meter.run("r")
        run.record(
            model="gpt-4o",
            usage=Usage(input_tokens=1),
            latency_ms=1,
            stream=True,
            chunks=40,
            itl_mean_ms=30,
            itl_p90_ms=400,
        )
        assert run.decide(model="gpt-4o").stream is False


# -- model versions --------------------------------------------------------------------------------
def test_a_silent_model_version_change_is_caught(clock):
    policy = "version: 1\npolicies:\n  - name: version-drift\n    when: {metric: model_versions, window: 1h, scope: model, above: 1}\n    then: [alert]\n"
    with agentmeter.Meter(db=":memory:", clock=clock, policies=policy) as meter:
        run = meter.run("r")
        for version in ["gpt-4o-2024-08-06"] * 3:
            run.record(
                model="gpt-4o",
                response={
                    "model": version,
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
                latency_ms=1,
            )
        assert run.decide(model="gpt-4o").fired == ()
        run.record(
            model="gpt-4o",
            response={
                "model": "gpt-4o-2024-11-20",
                "system_fingerprint": "fp_new",
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
            latency_ms=1,
        )
        (fired,) = run.decide(model="gpt-4o").fired
        assert (fired.policy, fired.value) == ("version-drift", 2)


def test_report_by_model_version(tmp_path, clock):
    from agentmeter import report as reports

    db = str(tmp_path / "v.db")
    with agentmeter.Meter(db=db, clock=clock) as meter:
        run = meter.run("r")
        for version in ["gpt-4o-2024-08-06", "gpt-4o-2024-08-06", "gpt-4o-2024-11-20"]:
            run.record(
                model="gpt-4o",
                response={
                    "model": version,
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
                latency_ms=1,
            )
    groups = {
        g["group"]: g["calls"] for g in reports.report(sqlite3.connect(db), by="model_version")
    }
    assert groups == {"gpt-4o-2024-08-06": 2, "gpt-4o-2024-11-20": 1}


# -- response cache -------------------------------------------------------------------------------
MESSAGES = [
    {"role": "user", "content": "Summarize: the cat sat on the mat. Contact ops@example.com"}
]


def test_identical_requests_are_served_from_the_cache(db_path, clock):
    sim = provider(clock)
    with agentmeter.Meter(
        db=db_path, clock=clock, completion_fn=sim.completion, cache_ttl="1h"
    ) as meter:
        run = meter.run("r")
        first = run.completion(model="gpt-4o", messages=MESSAGES)
        meter.flush()
        second = run.completion(model="gpt-4o", messages=MESSAGES)
        third = run.completion(
            model="gpt-4o", messages=MESSAGES, temperature=0.9
        )  # another request
        run.end()
    assert sim.calls == 2
    assert second["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
    assert third is not None
    rows = (
        sqlite3.connect(db_path)
        .execute(
            "select step, cache_hit, cost_nano_usd, saved_nano_usd, cost_status from agentmeter_calls order by id"
        )
        .fetchall()
    )
    assert rows[1][1:] == (1, 0, rows[0][2], "cached") and rows[0][1] == 0 and rows[2][1] == 0
    stored = sqlite3.connect(db_path).execute("select request from agentmeter_cache").fetchall()
    assert all("ops@example.com" not in r[0] for r in stored)  # redacted like captured content


def test_cache_entries_expire(db_path, clock):
    sim = provider(clock)
    with agentmeter.Meter(
        db=db_path, clock=clock, completion_fn=sim.completion, cache_ttl="10m"
    ) as meter:
        run = meter.run("r")
        run.completion(model="gpt-4o", messages=MESSAGES)
        meter.flush()
        clock.advance(601)
        run.completion(model="gpt-4o", messages=MESSAGES)
    assert sim.calls == 2


def test_similarity_hook_accepts_near_duplicates(db_path, clock):
    sim = provider(clock)

    def same_words(a, b):
        words = lambda r: set(r["messages"][-1]["content"].lower().replace(".", "").split())  # noqa: E731
        return len(words(a) & words(b)) / len(words(a) | words(b))

    with agentmeter.Meter(
        db=db_path, clock=clock, completion_fn=sim.completion, cache_ttl="1h", similarity=same_words
    ) as meter:
        run = meter.run("r")
        run.completion(
            model="gpt-4o",
            messages=[{"role": "user", "content": "What is the capital of France today and why"}],
        )
        meter.flush()
        run.completion(
            model="gpt-4o",
            messages=[{"role": "user", "content": "what is the capital of france today and why."}],
        )
        run.completion(
            model="gpt-4o", messages=[{"role": "user", "content": "Name three rivers in Spain"}]
        )
    assert sim.calls == 2


def test_prune_removes_cached_responses_but_not_telemetry(db_path, clock):
    sim = provider(clock)
    with agentmeter.Meter(
        db=db_path, clock=clock, completion_fn=sim.completion, cache_ttl="30d"
    ) as meter:
        meter.run("r").completion(model="gpt-4o", messages=MESSAGES)
    conn = sqlite3.connect(db_path)
    clock.advance(2 * 86400)
    assert prune(conn, 86400, clock=clock) == 1
    assert conn.execute("select count(*) from agentmeter_cache").fetchone() == (0,)
    assert conn.execute("select count(*) from agentmeter_calls").fetchone() == (1,)


def test_report_shows_cache_savings_and_feedback(db_path, clock):
    from agentmeter import report as reports

    sim = provider(clock)
    with agentmeter.Meter(
        db=db_path, clock=clock, completion_fn=sim.completion, cache_ttl="1h"
    ) as meter:
        run = meter.run("r")
        run.completion(model="gpt-4o", messages=MESSAGES)
        meter.flush()
        run.completion(model="gpt-4o", messages=MESSAGES)
        run.feedback(1, kind="rating", call=1)
        run.end()
    (group,) = reports.report(sqlite3.connect(db_path), by="model")
    conn = sqlite3.connect(db_path)
    (first_cost,) = conn.execute(
        "select cost_nano_usd from agentmeter_calls where step = 1"
    ).fetchone()
    assert (group["response_cache_hits"], group["saved_nano_usd"]) == (1, first_cost)
    assert (group["feedback"], group["negative_feedback"]) == (1, 1)
    assert reports.report_extras([group]).startswith("response cache: 1 of 2 calls (50%), saved $")


def test_streamed_requests_are_served_from_the_cache_as_streams(db_path, clock):
    sim = provider(clock)
    with agentmeter.Meter(
        db=db_path, clock=clock, completion_fn=sim.completion, cache_ttl="1h"
    ) as meter:
        run = meter.run("r")
        first = list(run.completion(model="gpt-4o", messages=MESSAGES, stream=True))
        meter.flush()
        again = list(run.completion(model="gpt-4o", messages=MESSAGES, stream=True))
        plain = run.completion(model="gpt-4o", messages=MESSAGES)  # not the same request: no stream
        run.end()
    assert sim.calls == 2
    assert again == first
    assert "choices" in plain
    rows = (
        sqlite3.connect(db_path)
        .execute("select stream, cache_hit, cost_status from agentmeter_calls order by id")
        .fetchall()
    )
    assert rows == [(1, 0, "ok"), (1, 1, "cached"), (0, 0, "ok")]


def test_a_stream_closed_early_is_not_cached(db_path, clock):
    sim = provider(clock)
    with agentmeter.Meter(
        db=db_path, clock=clock, completion_fn=sim.completion, cache_ttl="1h"
    ) as meter:
        run = meter.run("r")
        stream = run.completion(model="gpt-4o", messages=MESSAGES, stream=True)
        next(stream)
        stream.close()
        meter.flush()
        list(run.completion(model="gpt-4o", messages=MESSAGES, stream=True))
    assert sim.calls == 2


def test_async_streams_are_cached_too(db_path, clock):
    import asyncio

    calls = []

    async def provider_stream(**kwargs):
        calls.append(kwargs["model"])

        async def chunks():
            for piece in ["Pa", "ris"]:
                yield {
                    "model": "gpt-4o-2024-08-06",
                    "choices": [{"index": 0, "delta": {"content": piece}}],
                }
            yield {
                "model": "gpt-4o-2024-08-06",
                "choices": [],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            }

        return chunks()

    async def main():
        with agentmeter.Meter(
            db=db_path, clock=clock, acompletion_fn=provider_stream, cache_ttl="1h"
        ) as meter:
            run = meter.run("r")
            first = [
                c
                async for c in await run.acompletion(model="gpt-4o", messages=MESSAGES, stream=True)
            ]
            meter.flush()
            again = [
                c
                async for c in await run.acompletion(model="gpt-4o", messages=MESSAGES, stream=True)
            ]
            return first, again

    first, again = asyncio.run(main())
    assert calls == ["gpt-4o"] and again == first
