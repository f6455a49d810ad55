"""tune: thresholds, routing mix and replay check on synthetic histories whose answer is known."""

from __future__ import annotations

import json
import math
import sqlite3
from decimal import Decimal

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmeter import ConfigError, FakeClock, Meter, Usage, load_policies
from agentmeter.cli import _Group, cli
from agentmeter.cli_optimize import register
from agentmeter.policy.spec import Threshold
from agentmeter.tune import PolicyReplay, _Call, _window_sums, tune
from agentmeter.windows import WindowSpec

START = 1_800_000_000.0
PRICING = {
    "cheap": {"input": "$1", "output": "$2"},  # 1000 in + 100 out: $0.0012
    "dear": {"input": "$3", "output": "$6"},  # 1000 in + 100 out: $0.0036
}
POLICIES = """\
# tuned by hand, once
version: 1
ladder:
  dear: [cheap]
policies:
  - name: burst-budget
    when: {metric: cost_usd, stat: sum, window: 10m, scope: run, above: "$2.00"}  # per run
    recover_below: "$1.00"
    then: [downgrade]
  - name: slow-tail
    when: {metric: latency_ms, stat: p90, last: 10, above: 8s}
    then: [alert]
  - name: error-storm
    when: {metric: error_rate, last: 20, above: 30%}
    then: [alert]
  - name: fast-is-suspicious
    when: {metric: latency_ms, stat: p50, last: 10, below: 10ms}
    then: [alert]
  - name: unpriced
    when: {metric: cost_unknown, stat: sum, window: 1h, scope: all, above: 0}
    then: [alert]
  - name: odd-latency
    when: {anomaly: latency, last: 50, above: 6}
    then: [alert]
"""


def _optimize_cli():
    """The real ``agentmeter`` group once the commands are registered there, else a fresh one."""
    if "tune" in cli.commands:
        return cli
    group = _Group("agentmeter")
    register(group)
    return group


CLI = _optimize_cli()


def call(model="cheap", *, dt=60.0, inp=1000, out=100, latency_ms=1000.0, ok=True):
    return {"model": model, "dt": dt, "inp": inp, "out": out, "latency_ms": latency_ms, "ok": ok}


def record(path, runs, *, policies=None):
    """``runs``: ``(tags, [call(...), ...])`` each; calls ``dt`` seconds apart on a fake clock."""
    clock = FakeClock(START)
    with Meter(db=path, clock=clock, pricing=PRICING, policies=policies) as meter:
        for tags, calls in runs:
            with meter.run("task", tags=tags) as run:
                for c in calls:
                    clock.advance(c["dt"])
                    run.record(
                        model=c["model"],
                        usage=Usage(input_tokens=c["inp"], output_tokens=c["out"]),
                        latency_ms=c["latency_ms"],
                        status="ok" if c["ok"] else "error",
                        error_type=None if c["ok"] else "Boom",
                    )
    return path


def tune_db(path, **kwargs):
    kwargs.setdefault("policies", POLICIES)
    kwargs.setdefault("replay_runs", 0)
    conn = sqlite3.connect(path)
    try:
        return tune(conn, **kwargs)
    finally:
        conn.close()


def models(path, spec, *, runs=4, tags=None):
    """``spec``: model -> list of per-call kwargs, spread round-robin over ``runs`` runs."""
    per_run: list[list[dict]] = [[] for _ in range(runs)]
    i = 0
    for model, calls in spec.items():
        for kwargs in calls:
            per_run[i % runs].append(call(model, **kwargs))
            i += 1
    return record(path, [(tags or {}, calls) for calls in per_run])


# -- the routing mix -----------------------------------------------------------------------------
def test_a_cheaper_model_with_equal_latency_and_errors_takes_the_whole_mix(tmp_path):
    path = models(tmp_path / "a.db", {m: [{"latency_ms": 2000.0}] * 40 for m in ("cheap", "dear")})
    (mix,) = tune_db(path, latency_p90_ms=8000, max_error_rate=0.05).mixes
    assert mix.status == "optimal"
    assert mix.shares == {"cheap": 1.0, "dear": 0.0}
    assert mix.expected_cost_per_call_usd == Decimal("0.0012")
    assert mix.current_shares == {"cheap": 0.5, "dear": 0.5}
    assert mix.current_cost_per_call_usd == Decimal("0.0024")


def test_a_tight_latency_target_buys_the_faster_model_its_share(tmp_path):
    """cheap p90 10 s, dear p90 4 s, target 8 s: 10(1-x) + 4x <= 8 gives x = 1/3 of dear.

    Expected cost: 2/3 x $0.0012 + 1/3 x $0.0036 = $0.0020 per call.
    """
    spec = {"cheap": [{"latency_ms": 10_000.0}] * 40, "dear": [{"latency_ms": 4_000.0}] * 40}
    (mix,) = tune_db(models(tmp_path / "a.db", spec), latency_p90_ms=8000).mixes
    assert mix.status == "optimal"
    assert mix.shares["dear"] == pytest.approx(1 / 3)
    assert mix.shares["cheap"] == pytest.approx(2 / 3)
    assert mix.expected_cost_per_call_usd == Decimal("0.002")
    assert mix.expected_p90_latency_ms == pytest.approx(8000.0)


def test_an_error_cap_shifts_the_mix_to_the_reliable_model(tmp_path):
    """cheap fails 10%, dear never: a 4% cap needs 0.1(1-x) <= 0.04, x = 0.6 of dear."""
    cheap = [{"ok": i % 10 != 0} for i in range(40)]
    (mix,) = tune_db(
        models(tmp_path / "a.db", {"cheap": cheap, "dear": [{}] * 40}), max_error_rate=0.04
    ).mixes
    assert mix.shares["dear"] == pytest.approx(0.6)
    assert mix.expected_error_rate == pytest.approx(0.04)
    assert float(mix.expected_cost_per_call_usd) == pytest.approx(0.4 * 0.0012 + 0.6 * 0.0036)


def test_an_unreachable_target_is_reported_infeasible(tmp_path):
    spec = {"cheap": [{"latency_ms": 10_000.0}] * 40, "dear": [{"latency_ms": 4_000.0}] * 40}
    (mix,) = tune_db(models(tmp_path / "a.db", spec), latency_p90_ms=3000).mixes
    assert mix.status == "infeasible" and mix.shares == {}
    assert mix.message == (
        "infeasible: p90 <= 3.00s is out of reach (the fastest model, dear, has 4.00s)"
    )


def test_models_with_too_few_calls_are_not_in_the_mix(tmp_path):
    path = models(tmp_path / "a.db", {"cheap": [{}] * 29, "dear": [{}] * 30})
    (mix,) = tune_db(path).mixes
    assert mix.shares == {"dear": 1.0}
    (cheap,) = [m for m in mix.models if m.model == "cheap"]
    assert not cheap.eligible and cheap.reason == "29 calls, fewer than 30"


def test_one_mix_per_task_tag(tmp_path):
    path = tmp_path / "a.db"
    record(
        path,
        [
            (
                {"task": "chat"},
                [call("cheap", latency_ms=9000.0)] * 40 + [call("dear", latency_ms=3000.0)] * 40,
            ),
            (
                {"task": "batch"},
                [call("cheap", latency_ms=9000.0)] * 40 + [call("dear", latency_ms=3000.0)] * 40,
            ),
            ({}, [call("cheap")]),
        ],
    )
    result = tune_db(path, by="tag:task", latency_p90_ms=6000)
    assert [m.task for m in result.mixes] == ["batch", "chat"]
    assert all(m.shares["dear"] == pytest.approx(0.5) for m in result.mixes)
    assert result.notes == ("1 call(s) without a tag:task tag are in no task",)


# -- threshold proposals -------------------------------------------------------------------------
def _ceil(value, step):
    return math.ceil(value / step - 1e-6) * step


def test_the_latency_alarm_is_the_highest_model_p99_times_the_margin(tmp_path):
    """p99 by numpy's reference (linear) of each model's calls; the slower model sets it."""
    slow = [100.0 * (i + 1) for i in range(100)]  # 100 ms .. 10 s
    fast = [10.0 * (i + 1) for i in range(60)]
    path = models(
        tmp_path / "a.db",
        {"cheap": [{"latency_ms": v} for v in slow], "dear": [{"latency_ms": v} for v in fast]},
    )
    result = tune_db(path)
    (p,) = [p for p in result.proposals if p.policy == "slow-tail"]
    want = _ceil(np.percentile(slow, 99) * 1.2, 1.0)  # 9901 ms x 1.2 = 11881.2 -> 11882
    assert (p.status, p.proposed, p.n) == ("changed", want, 100)
    assert p.basis.startswith(
        "p99 of 100 successful calls on cheap (9.90s, the highest of 2 model(s)"
    )


def _brute_window_sums(rows, window_s):
    """Reference: at each call, the cost of the same key's calls in (ts - window, ts], in USD."""
    return [
        sum(c for k2, t2, c in rows if k2 == k and ts - window_s < t2 <= ts) * 1e-9
        for k, ts, _ in rows
    ]


@pytest.mark.parametrize("scope", ["run", "all", "tag:tenant"], ids=["run", "all", "tag"])
def test_a_budget_is_the_quantile_of_the_windowed_spend_times_the_margin(tmp_path, scope):
    """Calls 1-3 minutes apart with varied costs; the reference sums brute-force the window."""
    runs = []
    for r in range(6):
        calls = [
            call("cheap", dt=60.0 * (1 + (r + i) % 3), inp=1000 * (1 + (r * i) % 7))
            for i in range(20)
        ]
        runs.append(({"tenant": f"t{r % 2}"}, calls))
    path = record(tmp_path / "a.db", runs)
    policies = POLICIES.replace("scope: run, above", f'scope: "{scope}", above')
    result = tune_db(path, policies=policies, margin=1.5, quantile=0.95)
    (p,) = [p for p in result.proposals if p.policy == "burst-budget"]
    conn = sqlite3.connect(path)
    key = {"run": "run_id", "all": "''", "tag:tenant": "json_extract(tags, '$.tenant')"}[scope]
    rows = conn.execute(
        f"SELECT {key}, ts, cost_nano_usd FROM agentmeter_calls ORDER BY ts, id"
    ).fetchall()
    conn.close()
    want = _ceil(np.percentile(_brute_window_sums(rows, 600.0), 95) * 1.5, 1e-6)
    assert p.status == "changed" and p.n == 120
    assert p.proposed == pytest.approx(want, abs=1e-9)
    assert p.recover_below == (1.0, pytest.approx(_ceil(want / 2, 1e-6), abs=1e-9))


def test_thresholds_without_a_rule_are_kept(tmp_path):
    result = tune_db(models(tmp_path / "a.db", {"cheap": [{}] * 40}))
    kept = {p.policy: p.basis for p in result.proposals if p.status == "kept"}
    assert kept == {
        "error-storm": "kept: error_rate mean is not tuned from history",
        "fast-is-suspicious": "kept: a 'below' threshold is not tuned",
        "unpriced": "kept: a zero threshold is a rule, not a statistic",
        "odd-latency": "kept: latency_ms anomaly is not tuned from history",
    }


def test_too_little_history_keeps_every_threshold(tmp_path):
    result = tune_db(models(tmp_path / "a.db", {"cheap": [{}] * 10}))
    assert {p.status for p in result.proposals} == {"kept"}
    assert result.diff == "" and result.proposed_yaml == POLICIES


# -- the proposed file, its diff and the replay check --------------------------------------------
@pytest.fixture
def history(tmp_path):
    """40 runs of 10 calls a minute apart at $0.0012 and 2 s: a $0.0120 10-minute spend per run."""
    return str(record(tmp_path / "a.db", [({}, [call("cheap", latency_ms=2000.0)] * 10)] * 40))


def test_the_proposed_yaml_loads_keeps_comments_and_differs(history):
    result = tune_db(history)
    proposed = load_policies(result.proposed_yaml)
    rules = {r.name: r for r in proposed.policies}
    assert rules["burst-budget"].conditions[0].threshold == pytest.approx(0.0144)  # $0.012 x 1.2
    assert rules["burst-budget"].recover_level == pytest.approx(0.0072)
    assert rules["slow-tail"].conditions[0].threshold == 2400.0
    assert "# tuned by hand, once" in result.proposed_yaml
    assert 'above: "$0.0144"}  # per run' in result.proposed_yaml
    assert result.changed == 2
    assert "-    above: 2.0\n+    above: 0.0144\n" in result.diff
    assert result.diff.startswith("--- <string> (current, normalized)\n+++ proposed (normalized)\n")


def test_an_ambiguous_line_falls_back_to_a_dumped_document(history):
    policies = (
        "version: 1\npolicies:\n  - name: both\n    when: {any: [{metric: latency_ms, stat: p90, "
        'last: 10, above: 8s}, {metric: cost_usd, stat: sum, window: 10m, above: "$2"}]}\n'
        "    then: [alert]\n"
    )
    result = tune_db(history, policies=policies)
    (rule,) = load_policies(result.proposed_yaml).policies
    assert [c.threshold for c in rule.conditions] == [2400.0, pytest.approx(0.0144)]
    assert [p.condition for p in result.proposals] == [0, 1]


def test_a_policy_set_object_is_tuned_too(history):
    result = tune_db(history, policies=load_policies(POLICIES))
    assert load_policies(result.proposed_yaml).digest != load_policies(POLICIES).digest


def test_the_replay_check_compares_current_and_proposed_policies(history):
    """A steady history stays under both the current and the proposed (x 1.2) thresholds."""
    check = tune_db(history, replay_runs=5).replay
    assert (check.runs, check.recorded_cost_usd) == (5, Decimal("0.06"))  # 50 calls x $0.0012
    assert check.current == check.proposed == PolicyReplay(Decimal("0.06"), 0, {}, 0, 0)
    assert check.summary() == (
        "replayed 5 run(s) (recorded $0.0600): current policies $0.0600 with 0 decision(s), 0 "
        "halted; proposed $0.0600 with 0 decision(s), 0 halted"
    )


def test_a_tighter_budget_changes_what_a_replay_costs(tmp_path):
    """The newest run spends 20x; a budget at the median x 1.2 downgrades it from dear to cheap."""
    runs = [({}, [call("dear")] * 10)] * 39 + [({}, [call("dear", inp=20_000)] * 10)]
    result = tune_db(record(tmp_path / "a.db", runs), replay_runs=1, quantile=0.5)
    check = result.replay
    assert check.current.decisions == 0 and check.current.cost_usd == check.recorded_cost_usd
    assert check.proposed.by_policy["burst-budget"] >= 1
    assert check.proposed.cost_usd < check.recorded_cost_usd


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"by": "model"}, "the routing mix splits tasks by tag:NAME"),
        ({"by": "tag:no good"}, "tag name 'no good' is not valid"),
        ({"margin": 0}, "tune needs margin > 0"),
        ({"max_error_rate": 2.0}, "max_error_rate is a share"),
        ({"policies": "nope"}, "'nope' is neither a policy file path nor a built-in"),
    ],
    ids=["by-model", "bad-tag", "margin", "error-rate", "policies"],
)
def test_bad_input_is_a_config_error(history, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        tune_db(history, **kwargs)


# -- the command ---------------------------------------------------------------------------------
def test_cli_tune_json_and_write(history, tmp_path):
    policy_file = tmp_path / "current.yaml"
    policy_file.write_text(POLICIES)
    out = tmp_path / "proposed.yaml"
    args = ["tune", "--db", history, "--policies", str(policy_file), "--latency-p90", "8s"]
    result = CliRunner().invoke(
        CLI, [*args, "--max-error-rate", "5%", "--replay-runs", "3", "--write", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["changed"] == 2 and data["latency_p90_target_ms"] == 8000.0
    assert data["max_error_rate"] == 0.05
    assert data["routing"][0]["shares"] == {"cheap": 1.0}
    assert data["replay"]["runs"] == 3 and data["replay"]["proposed"]["cost_usd"] == "0.036000000"
    assert out.read_text() == data["proposed_yaml"]
    assert load_policies(out).policies[0].conditions[0].threshold == pytest.approx(0.0144)


def test_cli_tune_prints_tables_diff_and_check(history):
    result = CliRunner().invoke(
        CLI, ["tune", "--db", history, "--policies", "default", "--replay-runs", "2"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Thresholds of " + str(load_policies("default").source) + " (400 calls)"
    assert "Routing mix for task all: optimal" in lines
    assert "route cheap 100%" in lines
    assert any(line.startswith("+++ proposed (normalized)") for line in lines)
    assert lines[-1].startswith("replayed 2 run(s)")


@pytest.mark.parametrize(
    ("args", "code", "last_line"),
    [
        (
            ["--policies", "nope"],
            1,
            "Error: 'nope' is neither a policy file path nor a built-in policy set; expected one of: default, latency-slo, loop-guard, multi-tenant, strict-budget",
        ),
        (
            ["--policies", "default", "--by", "model"],
            1,
            "Error: the routing mix splits tasks by tag:NAME (like tag:task), got 'model'",
        ),
        (
            ["--policies", "default", "--latency-p90", "fast"],
            2,
            "Error: Invalid value for '--latency-p90': expected a duration like '30s', '10m' or '24h', got 'fast' (like 8s or 2500ms)",
        ),
        (
            ["--policies", "default", "--replay-runs", "0", "--write", "/nonexistent/p.yaml"],
            1,
            "Error: cannot write /nonexistent/p.yaml: No such file or directory",
        ),
    ],
    ids=["unknown-policies", "by-model", "bad-duration", "unwritable"],
)
def test_cli_tune_errors(history, args, code, last_line):
    result = CliRunner().invoke(CLI, ["tune", "--db", history, *args])
    assert result.exit_code == code
    assert result.stderr.splitlines()[-1] == last_line
    if code == 1:
        assert len(result.stderr.splitlines()) == 1


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["r1", "r2", "r3"]), st.integers(0, 120), st.integers(0, 10**7)),
        min_size=1,
        max_size=40,
    ),
    st.one_of(
        st.builds(lambda s: WindowSpec(seconds=s), st.integers(1, 300)),
        st.builds(lambda n: WindowSpec(count=n), st.integers(1, 8)),
    ),
)
def test_window_sums_equal_brute_force(steps, spec):
    """At each call: the cost of its run's calls in (ts - window, ts], or its run's last N calls."""
    calls, ts = [], START
    for run_id, dt, cost in steps:
        ts += dt
        calls.append(_Call(run_id, ts, "m", cost, True, 1.0, None, None, {}))
    cond = Threshold("cost_usd", "sum", spec, "run", True, 1.0, 1e9)
    sums, keys = _window_sums(calls, cond)
    want = []
    for run_id in dict.fromkeys(c.run_id for c in calls):
        mine = [c for c in calls if c.run_id == run_id]
        for i, c in enumerate(mine):
            if spec.seconds is not None:
                inside = [d for d in mine[: i + 1] if c.ts - spec.seconds < d.ts]
            else:
                inside = mine[max(0, i + 1 - spec.count) : i + 1]
            want.append(sum(d.cost for d in inside) * 1e-9)
    assert keys == len({c.run_id for c in calls})
    assert sums == pytest.approx(want, abs=1e-12)
