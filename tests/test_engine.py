"""The policy engine: statistics, hysteresis, ladders, compaction, pauses, hard caps, restarts."""

from __future__ import annotations

import threading
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentmeter
from agentmeter import Usage
from agentmeter.policy.metrics import METRICS
from agentmeter.pricing import compute_cost

PRICES = {
    "test-model": {"input": "$1", "output": "$2"},
    "cheap-model": {"input": "$0.10", "output": "$0.20"},
}


def policies(*rules: str, ladder: str = "") -> str:
    return "version: 1\n" + ladder + "policies:\n" + "".join(rules)


def rule(name: str, when: str, then: str = "[alert]", extra: str = "") -> str:
    return f"  - name: {name}\n    when: {when}\n    then: {then}\n{extra}"


# -- statistics through the engine equal brute force ------------------------------------------------
CASES = [
    ("cost_usd", "sum"),
    ("cost_usd", "max"),
    ("cost_usd", "mean"),
    ("input_tokens", "sum"),
    ("output_tokens", "p50"),
    ("cache_read_tokens", "sum"),
    ("prompt_tokens", "last"),
    ("total_tokens", "min"),
    ("latency_ms", "p90"),
    ("latency_ms", "p99"),
    ("latency_ms", "p95"),
    ("ttft_ms", "mean"),
    ("errors", "sum"),
    ("error_rate", "mean"),
    ("calls", "count"),
    ("calls", "rate"),
    ("cache_hit_ratio", "ratio"),
    ("repeated_prompt", "repeats"),
    ("reasoning_tokens", "max"),
    ("cache_write_tokens", "sum"),
    ("cost_usd", "anomaly"),
    ("latency_ms", "anomaly"),
    ("output_tokens", "anomaly"),
]

calls_strategy = st.lists(
    st.tuples(
        st.floats(0, 40),  # gap before the call, seconds
        st.integers(0, 5000),
        st.integers(1, 800),
        st.integers(0, 3000),
        st.integers(0, 500),
        st.floats(10, 20_000),
        st.booleans(),
        st.sampled_from(["p1", "p2", "p3", "p4"]),
    ),
    min_size=1,
    max_size=30,
)


def brute_value(metric, stat, calls, now, window_s, last):
    if window_s is not None:
        kept = [c for c in calls if c["ts"] + window_s > now]
        span = window_s
    else:
        kept = calls[-last:]
        span = max(now - kept[0]["ts"], 1e-9) if kept else 1
    m = METRICS[metric]
    if metric == "cache_hit_ratio":
        prompt = sum(c["prompt_tokens"] for c in kept if c["prompt_tokens"] is not None)
        return (
            sum(c["cache_read_tokens"] for c in kept if c["prompt_tokens"] is not None) / prompt
            if prompt
            else None
        )
    if metric == "repeated_prompt":
        hashes = [c["prompt_hash"] for c in kept]
        return max(hashes.count(h) for h in hashes) if hashes else 0
    values = [c[m.sample] for c in kept if c[m.sample] is not None]
    if stat == "anomaly":
        if not values:
            return None
        if len(values) < 10:
            return 0.0
        med = float(np.median(values))
        mad = float(np.median([abs(v - med) for v in values]))
        x = values[-1]
        if x == med:
            return 0.0
        return (x - med) / (1.4826 * mad) if mad else (np.inf if x > med else -np.inf)
    if stat == "sum":
        return sum(values) * m.scale
    if stat == "count":
        return len(values)
    if stat == "rate":
        return sum(values) / span if values else None
    if not values:
        return None
    result = {
        "mean": lambda: sum(values) / len(values),
        "max": lambda: max(values),
        "min": lambda: min(values),
        "last": lambda: values[-1],
    }.get(
        stat,
        lambda: float(np.percentile(values, {"p50": 50, "p90": 90, "p95": 95, "p99": 99}[stat])),
    )()
    return result * m.scale


@pytest.mark.parametrize("metric, stat", CASES, ids=[f"{m}-{s}" for m, s in CASES])
@pytest.mark.parametrize("window", ["window: 60s", "last: 7"], ids=["time", "count"])
@settings(max_examples=15, deadline=None)
@given(calls=calls_strategy, probe=st.floats(0, 90))
def test_engine_statistic_equals_brute_force(metric, stat, window, calls, probe):
    stat_text = "" if stat in ("ratio", "repeats") else f"stat: {stat}, "
    policy_set = agentmeter.parse_policies(
        policies(rule("p", f"{{metric: {metric}, {stat_text}{window}, above: 1000000000}}"))
        + "pricing:\n  test-model: {input: $1, output: $2}\n"
    )
    clock = agentmeter.FakeClock(1_000.0)
    with agentmeter.Meter(db=":memory:", policies=policy_set, clock=clock) as meter:
        run = meter.run("r")
        recorded = []
        for gap, inp, out, cread, reasoning, latency, error, phash in calls:
            clock.advance(gap)
            usage = Usage(
                input_tokens=inp,
                output_tokens=out,
                cache_read_tokens=cread,
                reasoning_tokens=min(reasoning, out),
            )
            rec = run.record(
                model="test-model",
                usage=usage,
                latency_ms=latency,
                ttft_ms=latency / 3,
                status="error" if error else "ok",
                prompt_hash=phash,
            )
            recorded.append(
                {
                    "ts": clock.now(),
                    "cost": rec.cost_nano_usd,
                    "input_tokens": inp,
                    "output_tokens": out,
                    "cache_read_tokens": cread,
                    "cache_write_tokens": 0,
                    "reasoning_tokens": min(reasoning, out),
                    "prompt_tokens": inp + cread,
                    "total_tokens": inp + cread + out,
                    "latency_ms": latency,
                    "ttft_ms": latency / 3,
                    "error": 1 if error else 0,
                    "prompt_hash": phash,
                    "cost_unknown": 0,
                }
            )
        clock.advance(probe)
        got = meter.engine.value("p", now=clock.now(), run_id=run.run_id, model="test-model")
        window_s, last = (60.0, None) if window.startswith("window") else (None, 7)
        want = brute_value(metric, stat, recorded, clock.now(), window_s, last)
        if want is None:
            assert got is None or got == 0
        elif np.isinf(want):
            assert got == want
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


# -- hysteresis ----------------------------------------------------------------------------------
def test_no_flapping_on_a_signal_oscillating_around_the_threshold(clock):
    """p90 latency wobbling 7.9s/8.1s around an 8s threshold fires once and does not recover."""
    ps = policies(
        rule(
            "slow",
            "{metric: latency_ms, stat: p90, last: 5, above: 8s}",
            "[downgrade]",
            "    cooldown: 30s\n",
        ),
        ladder="ladder:\n  test-model: [cheap-model]\n",
    )
    with agentmeter.Meter(db=":memory:", policies=ps, clock=clock, pricing=PRICES) as meter:
        run = meter.run("r")
        transitions = []
        for i in range(200):
            decision = run.decide(model="test-model")
            transitions += [
                f.transition for f in decision.fired if f.transition in ("fire", "recover")
            ]
            latency = 8100.0 if i % 2 else 7900.0
            run.record(
                model=decision.model,
                usage=Usage(input_tokens=10, output_tokens=10),
                latency_ms=latency,
            )
            clock.advance(5)
        assert transitions == ["fire"]


def test_downgrade_and_recovery_walk_the_ladder(clock):
    ps = policies(
        rule(
            "slow",
            "{metric: latency_ms, stat: max, last: 3, above: 5s}",
            "[downgrade]",
            "    cooldown: 0s\n    recover_below: 2s\n",
        ),
        rule(
            "spendy",
            "{metric: cost_usd, stat: sum, window: 60s, above: $0.01}",
            "[downgrade]",
            "    cooldown: 0s\n    recover_below: $0.001\n",
        ),
        ladder="ladder:\n  big: [medium, small]\n",
    )
    pricing = {
        "big": {"input": "$10", "output": "$10"},
        "medium": {"input": "$1", "output": "$1"},
        "small": {"input": "$0.1", "output": "$0.1"},
    }
    with agentmeter.Meter(db=":memory:", policies=ps, clock=clock, pricing=pricing) as meter:
        run = meter.run("r")
        assert run.decide(model="big").model == "big"
        run.record(
            model="big", usage=Usage(input_tokens=10, output_tokens=10), latency_ms=6000
        )  # slow, $0.0002
        assert run.decide(model="big").model == "medium"  # one step: slow
        run.record(
            model="medium", usage=Usage(input_tokens=10_000, output_tokens=0), latency_ms=6000
        )  # $0.01 + 0.0002 > cap
        assert run.decide(model="big").model == "small"  # two steps: slow and spendy
        for _ in range(3):
            run.record(model="small", usage=Usage(input_tokens=1, output_tokens=1), latency_ms=100)
        assert run.decide(model="big").model == "medium"  # slow recovered, spend still high
        clock.advance(61)
        decision = run.decide(model="big")
        assert decision.model == "big"
        assert [f.transition for f in decision.fired] == ["recover"]


def test_warn_fires_once_at_the_warn_level(clock):
    ps = policies(
        rule(
            "cap",
            "{metric: cost_usd, stat: sum, window: 1h, above: $1}",
            "[alert]",
            "    warn_at: 80%\n",
        )
    )
    with agentmeter.Meter(db=":memory:", policies=ps, clock=clock, pricing=PRICES) as meter:
        run = meter.run("r")
        run.record(model="test-model", usage=Usage(input_tokens=850_000), latency_ms=1)  # $0.85
        warn = run.decide(model="test-model").fired
        assert [(f.action, f.transition) for f in warn] == [("warn", "warn")]
        assert warn[0].value == pytest.approx(0.85)
        assert run.decide(model="test-model").fired == ()  # once
        run.record(model="test-model", usage=Usage(input_tokens=200_000), latency_ms=1)  # $1.05
        assert [(f.action, f.transition) for f in run.decide(model="test-model").fired] == [
            ("alert", "fire")
        ]


# -- compaction ----------------------------------------------------------------------------------
def test_compaction_hook_gets_the_target_and_its_result_is_sent(clock):
    seen = []

    def compactor(messages, target_tokens):
        seen.append((len(messages), target_tokens))
        return messages[-1:]

    ps = policies(
        rule(
            "bloat",
            "{metric: prompt_tokens, stat: next, above: 1k}",
            "[{compact: {target_tokens: 500}}]",
        )
    )
    sent = []

    def fake_completion(**kwargs):
        sent.append(kwargs["messages"])
        return {
            "model": "test-model",
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    messages = [{"role": "user", "content": "x" * 400} for _ in range(20)]
    with agentmeter.Meter(
        db=":memory:",
        policies=ps,
        clock=clock,
        pricing=PRICES,
        compactor=compactor,
        completion_fn=fake_completion,
        token_counter=lambda m, msgs: 100 * len(msgs),
    ) as meter:
        run = meter.run("r")
        run.completion(model="test-model", messages=messages)
    assert seen == [(20, 500)]
    assert sent == [[{"role": "user", "content": "x" * 400}]]
    assert len(messages) == 1  # the agent's list now holds the compacted context


def test_builtin_compactor_keeps_system_and_newest_turns():
    from agentmeter.compaction import compact_messages

    count = lambda model, msgs: sum(len(m["content"]) for m in msgs)  # noqa: E731
    messages = [{"role": "system", "content": "s" * 10}] + [
        {"role": "user", "content": str(i) * 10} for i in range(10)
    ]
    out = compact_messages(messages, 45, count=count)
    assert out[0] == messages[0]
    assert out[1]["role"] == "system" and "7 earlier message(s)" in out[1]["content"]
    assert out[2:] == messages[-3:]


# -- pause ---------------------------------------------------------------------------------------
def test_pause_resume_time_is_exact(clock):
    """$1 cap over 10 minutes: the pause lasts until enough of the oldest spend leaves the window."""
    ps = policies(rule("pace", "{metric: cost_usd, stat: sum, window: 10m, above: $1}", "[pause]"))
    with agentmeter.Meter(
        db=":memory:", policies=ps, clock=clock, pricing=PRICES, pause="raise"
    ) as meter:
        run = meter.run("r")
        t0 = clock.now()
        for i in range(4):  # $0.30 each at t0, t0+60, t0+120, t0+180
            run.record(model="test-model", usage=Usage(input_tokens=300_000), latency_ms=1)
            if i < 3:
                clock.advance(60)
        decision = run.decide(model="test-model")
        # $1.20 > $1: dropping the first call ($0.30) brings it to $0.90 <= $1 at t0 + 600.
        assert decision.resume_at == pytest.approx(t0 + 600)
        assert decision.pause_s == pytest.approx(t0 + 600 - clock.now())
        with pytest.raises(agentmeter.PauseRequested) as info:
            run.apply(decision)
        assert info.value.resume_at == decision.resume_at
        clock.set(decision.resume_at)
        assert run.decide(model="test-model").pause_s == 0.0


def test_pause_sleeps_on_the_clock_by_default(clock):
    ps = policies(
        rule("loop", "{metric: repeated_prompt, last: 10, above: 2}", "[{pause: {for: 30s}}]")
    )
    with agentmeter.Meter(db=":memory:", policies=ps, clock=clock, pricing=PRICES) as meter:
        run = meter.run("r")
        for _ in range(3):
            run.record(
                model="test-model",
                usage=Usage(input_tokens=1),
                latency_ms=1,
                messages=[{"role": "user", "content": "again"}],
            )
        decision = run.decide(model="test-model")
        assert decision.pause_s == 30.0
        run.apply(decision)
        assert clock.slept == [30.0]


# -- halt and hard caps ----------------------------------------------------------------------------
def test_halt_raises_budget_exceeded_and_marks_the_run(clock, db_path):
    ps = policies(rule("cap", "{metric: cost_usd, stat: sum, window: 1h, above: $0.50}", "[halt]"))
    with agentmeter.Meter(db=db_path, policies=ps, clock=clock, pricing=PRICES) as meter:
        with pytest.raises(agentmeter.BudgetExceeded, match="cap"), meter.run("r") as run:
            run.record(model="test-model", usage=Usage(input_tokens=600_000), latency_ms=1)
            run.apply(run.decide(model="test-model"))
    import sqlite3

    conn = sqlite3.connect(db_path)
    assert conn.execute("select status from agentmeter_runs").fetchone() == ("halted",)
    assert conn.execute("select policy, action from agentmeter_decisions").fetchall() == [
        ("cap", "halt")
    ]


def test_hard_cap_holds_with_32_concurrent_threads(clock):
    """Each call reserves its worst case before it runs: recorded spend never passes the cap."""
    from agentmeter.simulate import SimulatedProvider, estimate_tokens

    provider = SimulatedProvider(clock, seed=3)
    for name in list(provider.profiles):
        provider.degrade(name, error_rate=0.0)
    cap = Decimal("0.50")
    ps = policies(
        rule(
            "cap",
            f'{{metric: cost_usd, stat: sum, window: 24h, scope: all, above: "${cap}"}}',
            "[halt]",
        )
    )
    halted = []
    with agentmeter.Meter(
        db=":memory:",
        policies=ps,
        clock=clock,
        completion_fn=provider.completion,
        token_counter=lambda m, msgs: estimate_tokens(msgs),
    ) as meter:

        def agent(i):
            run = meter.run(f"agent-{i}")
            try:
                for _ in range(50):
                    run.completion(
                        model="gpt-4o",
                        messages=[{"role": "user", "content": "word " * 2000}],
                        max_tokens=600,
                    )
            except agentmeter.BudgetExceeded:
                halted.append(i)

        threads = [threading.Thread(target=agent, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        meter.flush()
        total = meter._recorder._conn.execute(
            "select sum(cost_nano_usd), count(*) from agentmeter_calls"
        ).fetchone()
    spent = agentmeter.pricing.nano_to_usd(total[0])
    assert len(halted) == 32
    assert spent <= cap
    assert spent > cap * Decimal("0.8")  # and the budget was actually used, not refused early


def test_budgets_survive_a_restart(clock, db_path):
    ps = policies(
        rule(
            "daily",
            "{metric: cost_usd, stat: sum, window: 24h, scope: {tag: tenant}, above: $1}",
            "[halt]",
        )
    )
    with agentmeter.Meter(db=db_path, policies=ps, clock=clock, pricing=PRICES) as meter:
        run = meter.run("r", tags={"tenant": "acme"})
        run.record(model="test-model", usage=Usage(input_tokens=1_200_000), latency_ms=1)  # $1.20
    clock.advance(3600)
    with agentmeter.Meter(db=db_path, policies=ps, clock=clock, pricing=PRICES) as meter:
        assert meter.run("other", tags={"tenant": "acme"}).decide(model="test-model").halt
        assert not meter.run("x", tags={"tenant": "globex"}).decide(model="test-model").halt
    clock.advance(24 * 3600)
    with agentmeter.Meter(db=db_path, policies=ps, clock=clock, pricing=PRICES) as meter:
        assert not meter.run("later", tags={"tenant": "acme"}).decide(model="test-model").halt


def test_decisions_are_written_with_their_reason(clock, db_path):
    ps = policies(
        rule("slow", "{metric: latency_ms, stat: max, last: 2, above: 1s}", "[downgrade]"),
        ladder="ladder:\n  test-model: [cheap-model]\n",
    )
    with agentmeter.Meter(db=db_path, policies=ps, clock=clock, pricing=PRICES) as meter:
        run = meter.run("r")
        run.record(model="test-model", usage=Usage(input_tokens=1), latency_ms=2500)
        decision = run.decide(model="test-model")
        assert decision.model == "cheap-model" and decision.downgraded
        assert run.decide(model="test-model").model == "cheap-model"  # still active, not re-written
    import json
    import sqlite3

    rows = (
        sqlite3.connect(db_path)
        .execute(
            "select step, policy, metric, value, threshold, action, scope, detail from agentmeter_decisions"
        )
        .fetchall()
    )
    assert len(rows) == 1
    step, policy, metric, value, threshold, action, scope, detail = rows[0]
    assert (step, policy, metric, value, threshold, action) == (
        2,
        "slow",
        "latency_ms",
        2500.0,
        1000.0,
        "downgrade",
    )
    assert scope == f"run {run.run_id}"
    detail = json.loads(detail)
    assert detail["model"] == "cheap-model" and detail["transition"] == "fire"
    assert detail["reason"].startswith("slow: latency_ms max over last 2 calls = 2.50s > 1.00s")


def test_unknown_price_is_recorded_as_unknown_not_zero(clock, db_path):
    with agentmeter.Meter(db=db_path, clock=clock) as meter:
        rec = meter.run("r").record(
            model="no-such-model-xyz", usage=Usage(input_tokens=10, output_tokens=5), latency_ms=3
        )
    assert rec.cost is None and rec.cost_status == "unknown_model"
    import sqlite3

    row = (
        sqlite3.connect(db_path)
        .execute("select cost_nano_usd, cost_status, input_tokens from agentmeter_calls")
        .fetchone()
    )
    assert row == (None, "unknown_model", 10)


def test_cost_matches_compute_cost(clock):
    with agentmeter.Meter(db=":memory:", clock=clock) as meter:
        usage = Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=500)
        rec = meter.run("r").record(model="gpt-4o", usage=usage, latency_ms=3)
    assert rec.cost == compute_cost("gpt-4o", usage)


def test_scope_all_sees_calls_other_processes_record(tmp_path):
    """Two meters on one file (as two processes would be): shared windows fold in the other's calls."""
    path = str(tmp_path / "shared.db")
    ps = policies(
        rule(
            "fleet-cap",
            "{metric: cost_usd, stat: sum, window: 1h, scope: all, above: $1}",
            "[halt]",
        )
    )
    a = agentmeter.Meter(db=path, policies=ps, pricing=PRICES, sync_s=0.05)
    b = agentmeter.Meter(db=path, policies=ps, pricing=PRICES, sync_s=0.05)
    try:
        run_b = b.run("b")
        assert not run_b.decide(model="test-model").halt
        a.run("a").record(
            model="test-model", usage=Usage(input_tokens=1_500_000), latency_ms=1
        )  # $1.50
        a.flush()
        import time

        deadline = time.monotonic() + 10
        while not run_b.decide(model="test-model").halt:
            assert time.monotonic() < deadline, "meter b never saw meter a's spend"
            time.sleep(0.02)
        assert b.engine.value("fleet-cap", now=time.time()) == pytest.approx(1.5)
    finally:
        a.close()
        b.close()


def test_anomaly_catches_a_spike_without_a_hand_set_threshold(clock):
    """A call costing 10x the run's norm fires; ordinary +-20% fluctuation never does."""
    import random

    ps = policies(
        rule("spike", "{anomaly: cost_per_call, last: 50}", "[alert]", "    cooldown: 0s\n")
    )
    rng = random.Random(5)
    with agentmeter.Meter(db=":memory:", policies=ps, clock=clock, pricing=PRICES) as meter:
        run = meter.run("r")
        fired_at = []
        for step in range(1, 201):
            tokens = int(10_000 * rng.uniform(0.8, 1.2)) * (10 if step == 150 else 1)
            run.record(model="test-model", usage=Usage(input_tokens=tokens), latency_ms=1)
            clock.advance(1)
            if any(f.transition == "fire" for f in run.decide(model="test-model").fired):
                fired_at.append(step)
        assert fired_at == [150]


def test_shared_cap_refuses_what_another_process_spent(tmp_path, clock):
    """shared: true checks the database itself, so another meter's fresh spend counts at once."""
    path = str(tmp_path / "fleet.db")
    ps = policies(
        rule(
            "fleet",
            "{metric: cost_usd, stat: sum, window: 1h, scope: all, above: $1}",
            "[halt]",
            "    shared: true\n",
        )
    )
    a = agentmeter.Meter(db=path, policies=ps, pricing=PRICES, clock=clock, sync_s=3600)
    b = agentmeter.Meter(db=path, policies=ps, pricing=PRICES, clock=clock, sync_s=3600)
    try:
        a.run("a").record(
            model="test-model", usage=Usage(input_tokens=900_000), latency_ms=1
        )  # $0.90
        a.flush()
        run_b = b.run("b")
        ok = run_b.decide(model="test-model", prompt_tokens=50_000, max_tokens=1000)  # worst $0.052
        assert ok.proceed
        run_b.record(model="test-model", usage=Usage(input_tokens=50_000), latency_ms=1)
        b.flush()
        refused = run_b.decide(
            model="test-model", prompt_tokens=60_000, max_tokens=1000
        )  # 0.95 + 0.062 > 1
        assert refused.halt
        (fired,) = [f for f in refused.fired if f.detail.get("shared")]
        assert fired.reason.startswith(
            "fleet: every process together spent $0.9500 + in flight $0.0000"
        )
    finally:
        a.close()
        b.close()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["system", "user", "assistant"]), st.text(max_size=300)),
        min_size=1,
        max_size=8,
    )
)
def test_prompt_upper_bound_is_never_below_the_tokenizer(chat):
    from agentmeter.run import prompt_upper_bound
    from agentmeter.tokens import count_tokens

    messages = [{"role": role, "content": text} for role, text in chat]
    assert prompt_upper_bound(messages) >= count_tokens("gpt-4o", messages)


def test_decide_counts_tokens_exactly_only_when_it_could_matter(clock):
    """Far under every threshold the byte bound is enough; near one, the tokenizer is asked."""
    counted = []

    def counter(model, messages):
        counted.append(len(messages))
        return 10

    ps = policies(
        rule(
            "bloat",
            "{metric: prompt_tokens, stat: next, above: 1000}",
            "[{compact: {target_tokens: 500}}]",
        ),
        rule("cap", "{metric: cost_usd, stat: sum, window: 1h, above: $1}", "[halt]"),
    )
    with agentmeter.Meter(
        db=":memory:", policies=ps, clock=clock, pricing=PRICES, token_counter=counter
    ) as meter:
        run = meter.run("r")
        small = [{"role": "user", "content": "hi there"}]
        assert run.decide(model="test-model", messages=small, max_tokens=100).proceed
        assert counted == []
        big = [{"role": "user", "content": "x" * 5000}]  # bound 5,000+ > 1,000: count it
        assert (
            run.decide(model="test-model", messages=big, max_tokens=100).compact is None
        )  # 10 tokens really
        assert counted == [1]
        run.record(
            model="test-model", usage=Usage(input_tokens=999_990), latency_ms=1
        )  # $0.99999 of $1
        run.decide(
            model="test-model", messages=small, max_tokens=100
        )  # the bound's worst case no longer fits
        assert counted == [1, 1]


def test_shared_cap_per_tenant_counts_only_that_tenant(tmp_path, clock):
    """The database check filters by the tag: another meter's acme spend halts acme, not globex."""
    path = str(tmp_path / "tenants.db")
    ps = policies(
        rule(
            "tenant-cap",
            "{metric: cost_usd, stat: sum, window: 1h, scope: {tag: tenant}, above: $1}",
            "[halt]",
            "    shared: true\n",
        )
    )
    a = agentmeter.Meter(db=path, policies=ps, pricing=PRICES, clock=clock, sync_s=3600)
    b = agentmeter.Meter(db=path, policies=ps, pricing=PRICES, clock=clock, sync_s=3600)
    try:
        a.run("a", tags={"tenant": "acme"}).record(
            model="test-model", usage=Usage(input_tokens=990_000), latency_ms=1
        )
        a.flush()
        acme = b.run("b", tags={"tenant": "acme"}).decide(
            model="test-model", prompt_tokens=20_000, max_tokens=1000
        )
        globex = b.run("g", tags={"tenant": "globex"}).decide(
            model="test-model", prompt_tokens=20_000, max_tokens=1000
        )
    finally:
        a.close()
        b.close()
    assert acme.halt and any(f.detail.get("shared") for f in acme.fired)
    assert globex.proceed


# -- bound plans and reused fired values equal a fresh evaluation ------------------------------------
BOUND_POLICIES = (
    policies(
        rule(
            "burst",
            "{metric: cost_usd, stat: sum, window: 60s, above: $0.002}",
            "[downgrade, alert]",
            "    warn_at: 50%\n    recover_below: $0.001\n    cooldown: 20s\n",
        ),
        rule(
            "tenant-cap",
            "{metric: cost_usd, window: 300s, scope: tag:tenant, above: $0.004}",
            "[halt]",
        ),
        rule("cap", "{metric: cost_usd, window: 120s, scope: all, above: $0.003}", "[pause]"),
        rule("loop", "{metric: repeated_prompt, last: 6, above: 2}", "[{pause: {for: 5s}}, alert]"),
        rule(
            "slow",
            "{metric: latency_ms, stat: p90, last: 5, scope: model, above: 800ms}",
            "[no_stream]",
        ),
        rule("spike", "{metric: latency_ms, stat: anomaly, last: 20, above: 2}", "[alert]"),
        rule(
            "cache",
            "{metric: cache_hit_ratio, last: 8, below: 20%}",
            "[alert]",
            "    cooldown: 10s\n",
        ),
        rule(
            "big",
            "{metric: prompt_tokens, stat: next, above: 900}",
            "[{compact: {target_tokens: 300}}]",
        ),
        rule(
            "either",
            "{any: [{metric: errors, stat: sum, last: 4, above: 1}, "
            "{metric: ttft_ms, stat: max, window: 30s, scope: tag:user, above: 400ms}]}",
            "[downgrade]",
            "    recover_after: 15s\n",
        ),
        rule(
            "both",
            "{all: [{metric: calls, stat: rate, window: 30s, above: 0.2}, "
            "{metric: output_tokens, stat: mean, last: 3, above: 300}]}",
            "[{pause: {for: 2s}}]",
            "    cooldown: 5s\n",
        ),
        ladder="ladder:\n  test-model: [cheap-model]\n",
    )
    + "pricing:\n  test-model: {input: $1, output: $2}\n  cheap-model: {input: $0.10, output: $0.20}\n"
)

bound_steps = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.5, 1.0, 2.5, 7.0, 30.0])
        | st.floats(0, 60),  # seconds since the last
        st.sampled_from(["r1", "r2"]),
        st.sampled_from(["acme", "globex"]),
        st.sampled_from(["u1", "u2"]),
        st.integers(0, 1200),  # prompt tokens of the call decided
        st.integers(0, 1500),  # output tokens (past max_tokens: a cap can be breached)
        st.sampled_from([100.0, 110.0, 120.0, 900.0, 4000.0]),  # latency (ms): spikes now and then
        st.sampled_from(["p1", "p2", "p3", "p4"]),
        st.booleans(),  # failed
        st.sampled_from(["observe", "observe", "release", "end"]),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(steps=bound_steps)
def test_bound_plans_decide_as_a_fresh_evaluation(steps):
    """Decisions from cached plans (bound windows, reused ``Fired``) equal ones bound afresh."""
    from agentmeter.meter import samples
    from agentmeter.policy.engine import Engine, Observation
    from agentmeter.pricing import PriceTable

    policy_set = agentmeter.parse_policies(BOUND_POLICIES)
    prices = PriceTable(overrides=dict(policy_set.pricing))
    cached, fresh = Engine(policy_set), Engine(policy_set)
    now = 1_000.0
    for gap, run_id, tenant, user, prompt, out, latency, phash, failed, then in steps:
        now += gap
        tags = {"tenant": tenant, "user": user}

        def worst(model: str, prompt: int = prompt) -> int | None:
            return prices.worst_case_nano_usd(model, prompt, 600)

        fresh._plans.clear()  # every decide binds its rules anew: no reuse of any kind
        fresh._probes.clear()
        decided = [
            engine.decide(
                now=now,
                model="test-model",
                run_id=run_id,
                tags=tags,
                prompt_tokens=prompt,
                worst_case=worst,
                step=1,
            )
            for engine in (cached, fresh)
        ]
        (a, hold_a), (b, hold_b) = decided
        assert a == b
        assert [f.reason for f in a.fired] == [f.reason for f in b.fired]
        if then == "end":
            for engine, hold in ((cached, hold_a), (fresh, hold_b)):
                engine.release(hold)
                engine.end_run(run_id)
            continue
        model = a.model
        cost = prices.worst_case_nano_usd(model, prompt, out)
        obs_samples = samples(
            cost_nano=None if failed else cost,
            input_tokens=None if failed else prompt,
            output_tokens=None if failed else out,
            cache_read_tokens=None if failed else (prompt // 3 if phash < "p3" else 0),
            cache_write_tokens=None if failed else 0,
            reasoning_tokens=None if failed else 0,
            prompt_tokens=None if failed else prompt + (prompt // 3 if phash < "p3" else 0),
            latency_ms=latency,
            ttft_ms=latency / 2,
            error=failed,
            prompt_hash=phash,
        )
        for engine, hold in ((cached, hold_a), (fresh, hold_b)):
            if then == "release":
                engine.release(hold)
            elif a.proceed:
                engine.observe(Observation(now, run_id, model, tags, dict(obs_samples)), hold)


def test_a_still_active_budget_pause_says_its_own_wait_each_time():
    """Decides at the same spend but later times each get their own pause, detail and reason."""
    from agentmeter.meter import samples
    from agentmeter.policy.engine import Engine, Observation

    policy_set = agentmeter.parse_policies(
        policies(rule("cap", "{metric: cost_usd, window: 100s, above: $0.001}", "[pause]"))
    )
    engine = Engine(policy_set)
    spend = samples(
        cost_nano=2_000_000,
        input_tokens=1,
        output_tokens=1,
        cache_read_tokens=0,
        cache_write_tokens=0,
        reasoning_tokens=0,
        prompt_tokens=1,
        latency_ms=1.0,
        ttft_ms=None,
        error=False,
        prompt_hash=None,
    )
    engine.observe(Observation(0.0, "r", "m", {}, spend))  # over the cap, as a call gone over
    seen = []
    for now in (10.0, 10.0, 40.0):
        decision, _ = engine.decide(now=now, model="m", run_id="r", tags={})
        (fired,) = decision.fired
        seen.append((decision.pause_s, fired.detail, fired.transition, fired.reason))
    assert seen == [
        (
            90.0,
            {"pause_s": 90.0},
            "fire",
            "cap: cost_usd sum over 100s = $0.0020 > $0.0010 (run r) -> pause 90.0s",
        ),
        (
            90.0,
            {"pause_s": 90.0},
            "active",
            "cap: cost_usd sum over 100s = $0.0020 > $0.0010 (run r) -> pause 90.0s",
        ),
        (
            60.0,
            {"pause_s": 60.0},
            "active",
            "cap: cost_usd sum over 100s = $0.0020 > $0.0010 (run r) -> pause 60.0s",
        ),
    ]


def test_reasons_read_their_own_values_when_the_measured_text_is_shared():
    """Fired values that differ only in their wait, or in a zero's sign, each read as their own."""
    from agentmeter.decision import Fired

    def fired(value: float, pause_s: float) -> Fired:
        return Fired(
            "p",
            "latency_ms",
            "max",
            value,
            1.0,
            "pause",
            "all calls",
            "active",
            "1m",
            detail={"pause_s": pause_s},
        )

    assert [fired(2.0, w).reason for w in (3.0, 4.25, 3.0)] == [
        "p: latency_ms max over 1m = 2ms > 1ms (all calls) -> pause 3.0s",
        "p: latency_ms max over 1m = 2ms > 1ms (all calls) -> pause 4.2s",
        "p: latency_ms max over 1m = 2ms > 1ms (all calls) -> pause 3.0s",
    ]
    assert fired(0.0, 1.0).reason != fired(-0.0, 1.0).reason


def test_observe_never_waits_for_the_lock_and_readers_see_every_queued_call():
    """A recording thread does not block on a busy engine; the next reader feeds what it queued."""
    from agentmeter.meter import samples
    from agentmeter.policy.engine import Engine, Observation

    engine = Engine(
        agentmeter.parse_policies(
            policies(rule("cap", "{metric: cost_usd, window: 100s, above: $0.005}", "[pause]"))
        )
    )

    def spend(nano):
        return samples(
            cost_nano=nano,
            input_tokens=1,
            output_tokens=1,
            cache_read_tokens=0,
            cache_write_tokens=0,
            reasoning_tokens=0,
            prompt_tokens=1,
            latency_ms=1.0,
            ttft_ms=None,
            error=False,
            prompt_hash=None,
        )

    with engine._lock:  # a decide in progress on another thread
        recorders = [
            threading.Thread(
                target=engine.observe, args=(Observation(1.0, "r", "m", {}, spend(1_000_000)),)
            )
            for _ in range(3)
        ]
        for thread in recorders:
            thread.start()
        for thread in recorders:
            thread.join(timeout=5)
        assert not any(thread.is_alive() for thread in recorders)
    assert engine.value("cap", now=2.0, run_id="r", model="m") == pytest.approx(0.003)
    engine.observe(Observation(3.0, "r", "m", {}, spend(3_000_000)))
    decision, _ = engine.decide(now=4.0, model="m", run_id="r", tags={})
    assert decision.pause_s > 0  # $0.006 in the window: all four calls count
