"""What-if replay: the same policies reproduce a live run; other policies or prices change it exactly."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from decimal import Decimal

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentmeter
from agentmeter import BudgetExceeded, FakeClock, Meter, PauseRequested, ReplayError, Usage
from agentmeter.cli import cli
from agentmeter.pricing import nano_to_usd
from agentmeter.replay import ReplayDecision, ReplayResult, iter_differences, replay
from agentmeter.simulate import SimulatedProvider, SimulatedProviderError, estimate_tokens

START = 1_800_000_000.0

# -- a live run on the simulated provider --------------------------------------------------------
LIVE_POLICIES = """
version: 1
ladder:
  gpt-4o: [gpt-4o-mini]
policies:
  - name: burst-budget
    when: {metric: cost_usd, stat: sum, window: 5m, scope: run, above: "$0.60"}
    warn_at: 80%
    cooldown: 1m
    recover_below: "$0.30"
    then: [downgrade, alert]
  - name: slow-tail
    when: {metric: latency_ms, stat: p90, last: 8, above: 9s}
    recover_below: 6s
    cooldown: 1m
    then: [downgrade, no_stream]
  - name: context-bloat
    when: {metric: prompt_tokens, stat: next, above: 60k}
    then: [{compact: {target_tokens: 30k}}]
  - name: runaway-loop
    when: {metric: repeated_prompt, last: 20, above: 3}
    cooldown: 5m
    then: [{pause: {for: 30s}}, alert]
  - name: error-storm
    when: {metric: error_rate, last: 10, above: 20%}
    cooldown: 1m
    then: [alert]
  - name: pace
    when: {metric: cost_usd, stat: sum, window: 2m, scope: run, above: "$0.45"}
    then: [pause]
  - name: run-cap
    when: {metric: cost_usd, stat: sum, window: 24h, scope: run, above: "CAP"}
    then: [halt]
"""


def record_live(path: str, *, pause: str, cap: str, steps: int = 80) -> str:
    """An agent on the simulated provider: a slow spell, an error storm, a loop, a growing context."""
    policies = LIVE_POLICIES.replace("CAP", cap)
    clock = FakeClock(START)
    provider = SimulatedProvider(clock, seed=7)
    meter = Meter(
        db=path,
        policies=policies,
        clock=clock,
        completion_fn=provider.completion,
        token_counter=lambda _model, messages: estimate_tokens(messages),
        pause=pause,
    )
    messages = [
        {"role": "system", "content": "You are careful. " * 40},
        {"role": "user", "content": "Write the report."},
    ]
    with meter:
        run = meter.run("scenario", tags={"tenant": "t1"})
        with run:
            for step in range(1, steps + 1):
                if step == 15:
                    provider.degrade("gpt-4o", slow_factor=4.0)
                if step == 24:
                    provider.degrade("gpt-4o", slow_factor=1.0)
                if step in (30, 36):
                    rate = 0.6 if step == 30 else 0.02
                    provider.degrade("gpt-4o", error_rate=rate)
                    provider.degrade("gpt-4o-mini", error_rate=rate)
                looping = 50 <= step < 58
                outgoing = (
                    messages
                    if not looping
                    else [messages[0], {"role": "user", "content": "Reflect."}]
                )
                try:
                    while True:
                        try:
                            response = run.completion(
                                model="gpt-4o",
                                messages=outgoing,
                                stream=step % 3 == 0,
                                max_tokens=800,
                            )
                            if step % 3 == 0:
                                for _ in response:
                                    pass
                            break
                        except PauseRequested as exc:
                            clock.set(exc.resume_at)
                except SimulatedProviderError:
                    pass
                except BudgetExceeded:
                    break
                if not looping:
                    messages.append({"role": "assistant", "content": f"Step {step}. " * 30})
                    messages.append(
                        {"role": "tool", "content": "data " * (1800 + 120 * (step % 5))}
                    )
                clock.advance(2.0)
    return run.run_id


@pytest.fixture(scope="module")
def live_runs(tmp_path_factory):
    """Runs recorded live: pause by sleeping or by raising, with a cap that is or is not reached."""
    out = {}
    for pause in ("sleep", "raise"):
        for cap in ("$5.00", "$1.00"):
            path = str(tmp_path_factory.mktemp("live") / f"{pause}.db")
            out[(pause, cap)] = (
                path,
                record_live(path, pause=pause, cap=cap),
                LIVE_POLICIES.replace("CAP", cap),
            )
    return out


@pytest.mark.parametrize("pause", ["sleep", "raise"])
@pytest.mark.parametrize("cap", ["$5.00", "$1.00"], ids=["cap-not-reached", "cap-halts"])
def test_the_recorded_policies_reproduce_the_live_run_exactly(live_runs, pause, cap):
    path, run_id, policies = live_runs[(pause, cap)]
    result = replay(path, run_id, policies=policies)

    assert [d.key for d in result.decisions] == [d.key for d in result.recorded]
    assert result.reproduces and not result.removed and not result.added
    assert result.counterfactual_cost == result.recorded_cost
    assert result.calls_made == result.calls and result.calls_rerouted == 0
    actions = {(d.policy, d.action) for d in result.recorded}
    assert {
        ("burst-budget", "warn"),
        ("burst-budget", "downgrade"),
        ("burst-budget", "alert"),
        ("slow-tail", "downgrade"),
        ("slow-tail", "no_stream"),
        ("slow-tail", "recover"),
        ("context-bloat", "compact"),
        ("runaway-loop", "pause"),
        ("error-storm", "alert"),
        ("pace", "pause"),
    } <= actions or cap == "$1.00"
    if cap == "$1.00":
        assert result.halted_at_step == result.recorded_halted_at_step is not None
        assert ("run-cap", "halt") in actions
    else:
        assert result.halted_at_step is None


def test_a_replay_is_deterministic(live_runs):
    path, run_id, _ = live_runs[("sleep", "$5.00")]
    assert replay(path, run_id, policies="strict-budget") == replay(
        path, run_id, policies="strict-budget"
    )


def test_a_tighter_burst_budget_downgrades_earlier_in_the_live_run(live_runs):
    path, run_id, policies = live_runs[("sleep", "$5.00")]
    tighter = policies.replace('above: "$0.60"', 'above: "$0.30"').replace(
        'recover_below: "$0.30"', 'recover_below: "$0.15"'
    )
    result = replay(path, run_id, policies=tighter)

    def first(decisions):
        return min(
            d.step for d in decisions if d.policy == "burst-budget" and d.action == "downgrade"
        )

    assert first(result.decisions) < first(result.recorded)
    assert result.counterfactual_cost < result.recorded_cost
    assert result.calls_rerouted > 0


# -- scripted runs, costs computed by hand --------------------------------------------------------
# test-model: $1 / $2 per million input / output tokens; cheap-model: $0.10 / $0.20.
# A call of 1,000 prompt and 500 output tokens costs $0.002 on test-model, $0.0002 on cheap-model.
HEAD = """version: 1
ladder:
  test-model: [cheap-model]
pricing:
  test-model: {input: "$1", output: "$2"}
  cheap-model: {input: "$0.10", output: "$0.20"}
policies:
"""
PRICES = {
    "test-model": {"input": "$1", "output": "$2"},
    "cheap-model": {"input": "$0.10", "output": "$0.20"},
}
LOOSE = (
    HEAD
    + """  - name: loose-burst
    when: {metric: cost_usd, stat: sum, window: 1h, scope: run, above: "$1.00"}
    then: [downgrade]
"""
)
TIGHT = (
    HEAD
    + """  - name: tight-burst
    when: {metric: cost_usd, stat: sum, window: 1h, scope: run, above: "$0.005"}
    then: [downgrade]
"""
)
CAPPED = (
    HEAD
    + """  - name: run-cap
    when: {metric: cost_usd, stat: sum, window: 24h, scope: run, above: "$0.011"}
    then: [halt]
"""
)
LOOP_GUARD = (
    HEAD
    + """  - name: loop
    when: {metric: repeated_prompt, last: 10, above: 2}
    then: [{pause: {for: 20s}}]
"""
)


@dataclass(frozen=True)
class Step:
    prompt: int = 1000
    output: int = 500
    latency_s: float = 2.0
    gap_s: float = 8.0
    error: bool = False
    prompt_hash: str | None = None
    decide: bool = True  # False: a retry recorded without a decide of its own


def record_scripted(db, steps, *, policies, clock=None, max_tokens=500, pause="sleep"):
    """Drive ``run.decide`` / ``run.apply`` / ``run.record`` like an agent loop; return (meter, run_id)."""
    clock = clock or FakeClock(START)
    meter = Meter(db=db, policies=policies, clock=clock, pause=pause, pricing=PRICES)
    chosen = "test-model"
    with meter.run("scripted", tags={"tenant": "t1"}) as run:
        for i, step in enumerate(steps):
            if step.decide:
                decision = run.decide(
                    "test-model", prompt_tokens=step.prompt, max_tokens=max_tokens
                )
                try:
                    run.apply(decision)
                except BudgetExceeded:
                    break
                except PauseRequested as exc:
                    clock.set(exc.resume_at)
                chosen = decision.model
            clock.advance(step.latency_s)
            run.record(
                model=chosen,
                requested_model="test-model",
                usage=None
                if step.error
                else Usage(input_tokens=step.prompt, output_tokens=step.output),
                latency_ms=step.latency_s * 1000,
                status="error" if step.error else "ok",
                error_type="RateLimitError" if step.error else None,
                prompt_hash=step.prompt_hash or f"prompt-{i}",
                max_tokens=max_tokens,
            )
            clock.advance(step.gap_s)
    meter.flush()
    return meter, run.run_id


@pytest.fixture
def memory_db():
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    yield conn
    conn.close()


def keys(decisions):
    return [d.key for d in decisions]


def test_a_tighter_budget_fires_earlier_and_lowers_the_cost_by_the_rerouted_calls(memory_db):
    meter, run_id = record_scripted(memory_db, [Step()] * 10, policies=LOOSE)
    result = replay(memory_db, run_id, policies=TIGHT)
    # After 3 calls the hour holds $0.006 > $0.005: call 4 and the 6 after it go to cheap-model.
    assert keys(result.added) == [(4, "tight-burst", "downgrade", "fire")]
    assert result.removed == ()
    assert result.recorded_cost == Decimal("0.020")
    assert result.counterfactual_cost == Decimal("3") * Decimal("0.002") + Decimal("7") * Decimal(
        "0.0002"
    )
    assert result.saved == Decimal("0.0126")
    assert (result.calls, result.calls_made, result.calls_rerouted) == (10, 10, 7)
    meter.close()


def test_a_hard_cap_halts_and_every_later_call_counts_as_not_made(memory_db):
    meter, run_id = record_scripted(memory_db, [Step()] * 10, policies=LOOSE)
    result = replay(memory_db, run_id, policies=CAPPED)
    # Before call 6: spent $0.010 + worst case (1,000 x $1 + 500 x $2 per million = $0.002) > $0.011.
    assert result.halted_at_step == 6
    assert keys(result.added) == [(6, "run-cap", "halt", "fire")]
    assert (result.calls_made, result.calls_not_made) == (5, 5)
    assert result.counterfactual_cost == Decimal("0.010")
    meter.close()


def test_calls_after_a_halt_are_counted_with_their_recorded_cost_known_or_not(memory_db):
    """The tail after a halt is summed, not replayed: the same totals as the recorded calls."""
    steps = [Step()] * 6 + [Step(error=True), Step(), Step(error=True), Step()]
    meter, run_id = record_scripted(memory_db, steps, policies=LOOSE)
    result = replay(memory_db, run_id, policies=CAPPED)
    calls, known, cost = memory_db.execute(
        "SELECT count(*), count(cost_nano_usd), sum(cost_nano_usd) FROM agentmeter_calls "
        "WHERE run_id = ?",
        (run_id,),
    ).fetchone()
    assert result.halted_at_step == 6
    assert result.calls == calls == 10
    assert result.recorded_unknown_cost_calls == calls - known == 2
    assert result.recorded_cost == nano_to_usd(cost)
    meter.close()


def test_a_pause_only_the_replay_takes_counts_that_call_as_not_made(memory_db):
    # Recorded without policies: every call is decided at its start (ts - latency).
    meter, run_id = record_scripted(memory_db, [Step(prompt_hash="same")] * 6, policies=None)
    result = replay(memory_db, run_id, policies=LOOP_GUARD)
    # Calls 1-3 repeat the prompt 3 times (> 2): call 4 pauses; the next pause waits for the
    # 60 s cooldown, which calls 5 and 6 (10 s apart) do not reach.
    assert keys(result.added) == [(4, "loop", "pause", "fire")]
    assert (result.calls_made, result.calls_not_made) == (5, 1)
    assert result.counterfactual_cost == Decimal("0.010")
    meter.close()


def test_a_run_recorded_without_policies_is_decided_on_the_prompts_it_sent(memory_db):
    steps = [Step(prompt=1000), Step(prompt=5000), Step(prompt=1000)]
    meter, run_id = record_scripted(memory_db, steps, policies=None)
    bloat = (
        HEAD
        + """  - name: bloat
    when: {metric: prompt_tokens, stat: next, above: 4000}
    then: [{compact: {target_tokens: 2000}}]
"""
    )
    result = replay(memory_db, run_id, policies=bloat)
    assert keys(result.added) == [(2, "bloat", "compact", "fire")]
    assert result.counterfactual_cost == result.recorded_cost  # tokens are billed as recorded
    meter.close()


STREAM_VERSION_CACHE = (
    HEAD
    + """  - name: stutter
    when: {metric: itl_ms, stat: p90, last: 3, above: 200ms}
    recover_below: 100ms
    then: [downgrade]
  - name: silent-update
    when: {metric: model_versions, last: 4, above: 1}
    cooldown: 1m
    then: [alert]
  - name: cache-heavy
    when: {metric: response_cache_hit_rate, last: 4, above: 50%}
    cooldown: 1m
    then: [alert]
"""
)


def test_stream_smoothness_model_versions_and_cache_hits_replay_exactly(memory_db):
    # Replay must feed every sample the live engine sees, not only tokens, cost and latency.
    clock = FakeClock(START)
    meter = Meter(db=memory_db, policies=STREAM_VERSION_CACHE, clock=clock, pricing=PRICES)
    with meter.run("streams", tags={"tenant": "t1"}) as run:
        for i in range(24):
            decision = run.decide("test-model", prompt_tokens=100, max_tokens=50)
            clock.advance(2)
            run.record(
                model=decision.model,
                requested_model="test-model",
                usage=Usage(input_tokens=100, output_tokens=50),
                latency_ms=2000,
                stream=True,
                chunks=20,
                itl_mean_ms=50.0,
                itl_p90_ms=400.0 if 6 <= i < 10 else 40.0,
                model_version="test-model-0613" if 12 <= i < 14 else "test-model-0501",
                cache_hit=16 <= i < 20,
                prompt_hash=f"p{i}",
            )
            clock.advance(8)
    meter.flush()
    recorded = {
        policy
        for (policy,) in memory_db.execute("SELECT policy FROM agentmeter_decisions").fetchall()
    }
    assert recorded == {"stutter", "silent-update", "cache-heavy"}
    result = replay(memory_db, run.run_id, policies=STREAM_VERSION_CACHE)
    assert result.reproduces and not result.removed and not result.added
    meter.close()


def test_a_flight_recorder_from_before_streams_and_versions_replays(memory_db):
    meter, run_id = record_scripted(memory_db, [Step()] * 4, policies=TIGHT)
    for column in ("itl_p90_ms", "model_version", "cache_hit"):  # as before migration m004
        memory_db.execute(f"ALTER TABLE agentmeter_calls DROP COLUMN {column}")
    result = replay(memory_db, run_id, policies=TIGHT)
    assert result.reproduces and result.calls == 4
    meter.close()


def test_a_retry_follows_the_decision_of_the_attempt_it_retries(memory_db):
    steps = [Step()] * 3 + [Step(error=True, latency_s=0.2), Step(decide=False)] + [Step()] * 2
    meter, run_id = record_scripted(memory_db, steps, policies=LOOSE)
    decided = memory_db.execute(
        "SELECT decided_at IS NOT NULL FROM agentmeter_calls WHERE run_id = ? ORDER BY id",
        (run_id,),
    ).fetchall()
    assert [d for (d,) in decided] == [1, 1, 1, 1, 0, 1, 1]
    assert replay(memory_db, run_id, policies=LOOSE).reproduces

    result = replay(memory_db, run_id, policies=TIGHT)
    assert keys(result.added) == [(4, "tight-burst", "downgrade", "fire")]
    # The failed attempt costs nothing known; its retry and the two calls after it are cheap.
    assert result.counterfactual_cost == Decimal("0.006") + 3 * Decimal("0.0002")
    assert result.counterfactual_unknown_cost_calls == result.recorded_unknown_cost_calls == 1
    assert result.calls_rerouted == 4
    meter.close()


@pytest.mark.parametrize("form", ["mapping", "file"])
def test_other_prices_reprice_every_call(memory_db, tmp_path, form):
    meter, run_id = record_scripted(memory_db, [Step()] * 4, policies=LOOSE)
    doubled = {"test-model": {"input": "$2", "output": "$4"}}
    if form == "file":
        path = tmp_path / "prices.yaml"
        path.write_text('pricing:\n  test-model: {input: "$2", output: "$4"}\n')
        pricing = str(path)
    else:
        pricing = doubled
    result = replay(memory_db, run_id, policies=LOOSE, pricing=pricing)
    assert result.recorded_cost == Decimal("0.008")
    assert result.counterfactual_cost == Decimal("0.016")
    assert result.reproduces
    meter.close()


def test_a_pricing_file_without_a_pricing_section_is_refused(memory_db, tmp_path):
    meter, run_id = record_scripted(memory_db, [Step()], policies=LOOSE)
    path = tmp_path / "prices.yaml"
    path.write_text("models: {}\n")
    with pytest.raises(
        agentmeter.ConfigError, match="a pricing file is a mapping with a 'pricing:' section"
    ):
        replay(memory_db, run_id, policies=LOOSE, pricing=str(path))
    meter.close()


def test_decisions_from_budgets_shared_with_other_processes_are_not_compared(memory_db):
    meter, run_id = record_scripted(memory_db, [Step()] * 3, policies=LOOSE)
    memory_db.execute(
        "INSERT INTO agentmeter_decisions (run_id, step, ts, policy, action, detail) VALUES (?, 4, ?, 'tenant-cap', 'halt', ?)",
        (run_id, START + 100, json.dumps({"shared": True, "transition": "fire"})),
    )
    result = replay(memory_db, run_id, policies=LOOSE)
    assert result.reproduces
    assert any("shared with other processes" in note for note in result.notes)
    meter.close()


# -- the property: whatever the agent did, its own policies replay it exactly ---------------------
PROPERTY_POLICIES = agentmeter.load_policies(
    HEAD
    + """  - name: burst
    when: {metric: cost_usd, stat: sum, window: 2m, scope: run, above: "$0.006"}
    warn_at: 70%
    cooldown: 30s
    recover_below: "$0.003"
    then: [downgrade, alert]
  - name: slow
    when: {metric: latency_ms, stat: p90, last: 5, above: 3s}
    cooldown: 20s
    then: [downgrade, no_stream]
  - name: loop
    when: {metric: repeated_prompt, last: 8, above: 2}
    cooldown: 1m
    then: [{pause: {for: 15s}}, alert]
  - name: errors
    when: {metric: error_rate, last: 6, above: 30%}
    then: [alert]
  - name: pace
    when: {metric: cost_usd, stat: sum, window: 1m, scope: run, above: "$0.008"}
    then: [pause]
  - name: cap
    when: {metric: cost_usd, stat: sum, window: 24h, scope: run, above: "$0.03"}
    then: [halt]
"""
)

steps_strategy = st.lists(
    st.builds(
        Step,
        prompt=st.integers(10, 3000),
        output=st.integers(1, 1500),
        latency_s=st.floats(0.05, 6.0),
        gap_s=st.floats(0.0, 40.0),
        error=st.sampled_from([False] * 5 + [True]),
        prompt_hash=st.sampled_from(["a", "b", None, None]),
        decide=st.sampled_from([True] * 5 + [False]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps_strategy, pause=st.sampled_from(["sleep", "raise"]))
def test_any_scripted_run_replays_exactly_under_its_own_policies(steps, pause):
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    meter, run_id = record_scripted(
        conn, steps, policies=PROPERTY_POLICIES, max_tokens=800, pause=pause
    )
    result = replay(conn, run_id, policies=PROPERTY_POLICIES)
    assert keys(result.decisions) == keys(result.recorded)
    assert result.counterfactual_cost == result.recorded_cost
    meter.close()


# -- inputs and errors ---------------------------------------------------------------------------
def test_an_unknown_run_is_a_replay_error(memory_db):
    meter, _ = record_scripted(memory_db, [Step()], policies=LOOSE)
    with pytest.raises(ReplayError, match="no run 'nope' in the flight recorder"):
        replay(memory_db, "nope", policies=LOOSE)
    meter.close()


def test_a_missing_database_is_a_replay_error(tmp_path):
    with pytest.raises(ReplayError, match="no flight recorder at"):
        replay(tmp_path / "missing.db", "r1", policies=LOOSE)


def test_differences_are_listed_in_timeline_order():
    a = ReplayDecision(
        step=2, ts=10.0, policy="p", action="downgrade", transition="fire", reason=""
    )
    b = ReplayDecision(step=1, ts=5.0, policy="q", action="alert", transition="fire", reason="")
    result = ReplayResult(
        run_id="r",
        policies="x",
        policy_digest="d",
        started_at=0.0,
        calls=0,
        calls_made=0,
        calls_not_made=0,
        calls_rerouted=0,
        recorded_cost=Decimal(0),
        counterfactual_cost=Decimal(0),
        recorded_unknown_cost_calls=0,
        counterfactual_unknown_cost_calls=0,
        decisions=(a,),
        recorded=(b,),
        kept=(),
        removed=(b,),
        added=(a,),
        halted_at_step=None,
        recorded_halted_at_step=None,
    )
    assert iter_differences(result) == [("-", b), ("+", a)]


# -- the command ---------------------------------------------------------------------------------
@pytest.fixture
def scripted_file(tmp_path):
    path = str(tmp_path / "agent.db")
    meter, run_id = record_scripted(path, [Step()] * 10, policies=LOOSE)
    meter.close()
    tight = tmp_path / "tight.yaml"
    tight.write_text(TIGHT)
    loose = tmp_path / "loose.yaml"
    loose.write_text(LOOSE)
    return path, run_id, str(tight), str(loose)


def test_cli_replay_prints_the_differences_and_the_summary(scripted_file):
    path, run_id, tight, _ = scripted_file
    result = CliRunner().invoke(cli, ["replay", run_id[:6], "--policies", tight, "--db", path])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        lines[0]
        == f"What-if replay of run {run_id} under {tight} (10 recorded calls, 0 recorded decisions)"
    )
    assert any("tight-burst" in line and "downgrade" in line and "+" in line for line in lines)
    assert lines[-1] == (
        "recorded $0.0200, counterfactual $0.0074 (-$0.0126, -63%); decisions: 0 kept, 0 removed, "
        "1 added; calls: 10 of 10 made, 7 on another model"
    )


def test_cli_replay_with_the_same_policies_says_there_is_no_difference(scripted_file):
    path, _, _, loose = scripted_file
    result = CliRunner().invoke(cli, ["replay", "last", "--policies", loose, "--db", path])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "No differences: these policies take exactly the 0 recorded decisions.",
        "recorded $0.0200, counterfactual $0.0200 (the same); decisions: 0 kept, 0 removed, 0 added; "
        "calls: 10 of 10 made, 0 on another model",
    ]


def test_cli_replay_json_is_the_full_result(scripted_file):
    path, run_id, tight, _ = scripted_file
    result = CliRunner().invoke(
        cli, ["replay", run_id, "--policies", tight, "--db", path, "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["counterfactual_cost_usd"] == "0.007400000"
    assert data["saved_usd"] == "0.012600000"
    assert [(d["step"], d["policy"], d["action"]) for d in data["added"]] == [
        (4, "tight-burst", "downgrade")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["replay", "nope", "--policies", "default"],
            "Error: no recorded run has an id starting with 'nope' (see `agentmeter runs`)",
        ),
        (
            ["replay", "last", "--policies", "missing.yaml"],
            "Error: missing.yaml: no such policy file",
        ),
        (
            ["replay", "last", "--policies", "default", "--pricing", "missing.yaml"],
            "Error: missing.yaml: no such pricing file",
        ),
    ],
    ids=["unknown-run", "missing-policies", "missing-pricing"],
)
def test_cli_replay_errors_are_one_line(scripted_file, args, message):
    path = scripted_file[0]
    result = CliRunner().invoke(cli, [*args, "--db", path])
    assert result.exit_code == 1
    assert result.output == message + "\n"
