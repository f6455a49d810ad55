"""compare: arm statistics and verdicts on synthetic experiments whose right answer is known."""

from __future__ import annotations

import json
import random
import sqlite3
from decimal import Decimal

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmeter import ConfigError, FakeClock, Meter, Usage
from agentmeter.cli import _Group, cli
from agentmeter.cli_optimize import register
from agentmeter.compare import Comparison, _permutation_p, compare

START = 1_800_000_000.0
PRICING = {"model-a": {"input": "$1", "output": "$2"}, "model-b": {"input": "$3", "output": "$6"}}


def _optimize_cli():
    """The real ``agentmeter`` group once the commands are registered there, else a fresh one."""
    if "compare" in cli.commands:
        return cli
    group = _Group("agentmeter")
    register(group)
    return group


CLI = _optimize_cli()


def record_arms(path, arms, *, runs=40, seed=1):
    """Runs tagged ``experiment_id=ARM``: 5-15 calls each, lognormal tokens and latency.

    Per arm: ``tokens`` scales the tokens (so the cost, linear in tokens), ``slow`` the latency,
    ``err`` is the chance a call fails, ``model`` the model.
    """
    rng = random.Random(seed)
    clock = FakeClock(START)
    with Meter(db=path, clock=clock, pricing=PRICING) as meter:
        for _ in range(runs):
            for label, spec in arms.items():
                with meter.run("exp", tags={"experiment_id": label}) as run:
                    for _ in range(rng.randint(5, 15)):
                        clock.advance(2)
                        tokens = int(rng.lognormvariate(7, 0.5) * spec.get("tokens", 1.0))
                        failed = rng.random() < spec.get("err", 0.02)
                        run.record(
                            model=spec.get("model", "model-a"),
                            usage=Usage(input_tokens=tokens, output_tokens=tokens // 10),
                            latency_ms=rng.lognormvariate(7.5, 0.4) * spec.get("slow", 1.0),
                            status="error" if failed else "ok",
                            error_type="Boom" if failed else None,
                        )
    return path


def compare_db(path, **kwargs):
    conn = sqlite3.connect(path)
    try:
        return compare(conn, **kwargs)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def same_db(tmp_path_factory):
    return record_arms(str(tmp_path_factory.mktemp("same") / "a.db"), {"A": {}, "B": {}})


@pytest.fixture(scope="module")
def cheaper_db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cheaper") / "a.db")
    return record_arms(path, {"A": {}, "B": {"tokens": 0.7}}, runs=60)


# -- the statistics ------------------------------------------------------------------------------
def test_no_real_effect_is_not_significant(same_db):
    """Two arms from one distribution: no test fires at alpha 0.05 and the cost CI holds 0."""
    result = compare_db(same_db, by="tag:experiment_id")
    (c,) = result.comparisons
    assert not (c.cost_significant or c.latency_significant or c.error_rate_significant)
    low, high = c.cost_per_run_change_ci
    assert low < 0 < high
    assert "cost per run difference not significant" in c.verdict()
    assert "latency difference not significant" in c.verdict()


def test_a_real_30_percent_cost_reduction_is_detected(cheaper_db):
    """B's tokens are 0.7x A's: 30% cheaper per run, the CI holds 30%, latency is unchanged."""
    result = compare_db(cheaper_db, by="tag:experiment_id", baseline="A")
    (c,) = result.comparisons
    assert (c.arm, c.baseline) == ("B", "A")
    assert c.cost_significant and c.cost_per_run_p < 0.001
    low, high = c.cost_per_run_change_ci
    assert low <= -0.30 <= high
    assert c.cost_per_call_change == pytest.approx(-0.30, abs=0.03)
    assert not c.latency_significant
    assert c.verdict().startswith("B vs A: ")
    assert "cheaper per run (95% CI " in c.verdict()


def test_the_tests_are_calibrated_across_independent_null_experiments(tmp_path):
    """40 experiments without an effect: the cost test fires about alpha of the time, no more."""
    fired = 0
    for seed in range(40):
        path = record_arms(str(tmp_path / f"{seed}.db"), {"A": {}, "B": {}}, runs=20, seed=seed)
        (c,) = compare_db(path, by="tag:experiment_id", resamples=500).comparisons
        fired += c.cost_significant
    assert fired <= 5  # expected 2 of 40; P(> 5) < 1% under a calibrated test


def test_the_30_percent_ci_covers_the_truth_in_most_experiments(tmp_path):
    covered = 0
    for seed in range(20):
        path = str(tmp_path / f"{seed}.db")
        record_arms(path, {"A": {}, "B": {"tokens": 0.7}}, runs=30, seed=seed)
        (c,) = compare_db(path, by="tag:experiment_id", baseline="A", resamples=1000).comparisons
        low, high = c.cost_per_run_change_ci
        covered += low <= -0.30 <= high
    assert covered >= 16  # a 95% interval; 20 draws


def test_slower_arm_is_detected_by_mann_whitney(tmp_path):
    path = record_arms(str(tmp_path / "a.db"), {"A": {}, "B": {"slow": 1.5}}, runs=20)
    (c,) = compare_db(path, by="tag:experiment_id", baseline="A").comparisons
    assert c.latency_significant and c.p50_latency_change > 0.3
    assert "slower (p50 " in c.verdict()
    assert not c.cost_significant


def test_higher_error_rate_is_detected_by_fisher(tmp_path):
    path = record_arms(str(tmp_path / "a.db"), {"A": {}, "B": {"err": 0.25}}, runs=20)
    (c,) = compare_db(path, by="tag:experiment_id", baseline="A").comparisons
    assert c.error_rate_significant and c.error_rate[0] > c.error_rate[1]
    assert ", significantly higher (p" in c.verdict()


def test_means_are_exact_decimals(tmp_path):
    """Two runs of 3 calls at $0.0012 and one of 2 calls: exact per-call and per-run means."""
    path = str(tmp_path / "a.db")
    clock = FakeClock(START)
    with Meter(db=path, clock=clock, pricing=PRICING) as meter:
        for calls in (3, 3, 2):
            with meter.run("exp", tags={"experiment_id": "A"}) as run:
                for _ in range(calls):
                    clock.advance(1)
                    run.record(
                        model="model-a",
                        usage=Usage(input_tokens=1000, output_tokens=100),
                        latency_ms=100.0,
                    )
    (arm,) = compare_db(path, by="tag:experiment_id").arms
    assert arm.cost_per_call_usd == Decimal("0.0012")
    assert arm.cost_per_run_usd == Decimal("0.0032")  # (3 + 3 + 2) x 0.0012 / 3
    assert (arm.calls, arm.runs, arm.priced_runs, arm.errors) == (8, 3, 3, 0)
    assert arm.p50_latency_ms == 100.0
    assert arm.mean_output_tokens == 100.0


def test_unknown_cost_leaves_the_run_out_of_cost_per_run(tmp_path):
    path = str(tmp_path / "a.db")
    clock = FakeClock(START)
    with Meter(db=path, clock=clock, pricing=PRICING) as meter:
        for model in ("model-a", "unpriced-model"):
            with meter.run("exp", tags={"experiment_id": "A"}) as run:
                clock.advance(1)
                run.record(model="model-a", usage=Usage(input_tokens=1000), latency_ms=10.0)
                run.record(model=model, usage=Usage(input_tokens=1000), latency_ms=10.0)
    (arm,) = compare_db(path, by="tag:experiment_id").arms
    assert (arm.unknown_cost_calls, arm.priced_runs, arm.runs) == (1, 1, 2)
    assert arm.cost_per_call_usd == Decimal("0.001")
    assert arm.cost_per_run_usd == Decimal("0.002")


def test_baseline_defaults_to_the_arm_with_most_calls(cheaper_db, tmp_path):
    result = compare_db(cheaper_db, by="tag:experiment_id")
    assert result.baseline == max(result.arms, key=lambda a: a.calls).arm
    flipped = compare_db(cheaper_db, by="tag:experiment_id", baseline="B")
    assert flipped.comparisons[0].cost_per_run_change > 0.3  # A costs ~1/0.7 - 1 = 43% more
    assert "more expensive per run" in flipped.verdicts()[0]


def test_the_seed_makes_the_result_deterministic(cheaper_db):
    one = compare_db(cheaper_db, by="tag:experiment_id", seed=3).as_dict()
    assert one == compare_db(cheaper_db, by="tag:experiment_id", seed=3).as_dict()
    assert one != compare_db(cheaper_db, by="tag:experiment_id", seed=4).as_dict()


def test_one_run_per_arm_says_it_cannot_tell(tmp_path):
    path = record_arms(str(tmp_path / "a.db"), {"A": {}, "B": {"model": "model-b"}}, runs=1)
    result = compare_db(path, by="model")
    (c,) = result.comparisons
    assert c.cost_per_run_change is None and result.arms[0].cost_per_run_ci_usd is None
    assert "too few priced runs to compare (1 vs 1; at least 2 per arm)" in c.verdict()


def test_calls_without_the_tag_are_excluded(cheaper_db):
    result = compare_db(cheaper_db, by="tag:tenant")
    assert result.arms == () and result.excluded_calls > 0
    assert result.verdicts() == ["no calls match: nothing to compare"]


def test_the_verdict_reads_as_plain_language():
    c = Comparison(
        arm="B",
        baseline="A",
        alpha=0.05,
        cost_per_run_change=-0.31,
        cost_per_run_change_ci=(-0.40, -0.22),
        cost_per_run_p=0.0004,
        cost_per_call_change=-0.3,
        cost_per_call_change_ci=(-0.35, -0.25),
        p50_latency_change=0.02,
        p50_latency_ms=(1020.0, 1000.0),
        latency_p=0.41,
        error_rate=(0.021, 0.018),
        error_rate_p=0.62,
        priced_runs=(50, 50),
    )
    assert c.verdict() == (
        "B vs A: 31% cheaper per run (95% CI 22–40%, p<0.001); latency difference not "
        "significant (p=0.41); error rate 2.1% vs 1.8% (p=0.62)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"by": "day"}, "cannot compare by 'day'; choose one of model"),
        ({"by": "tag:bad name"}, "tag name 'bad name' is not valid"),
        ({"by": "tag:experiment_id", "baseline": "Z"}, "no arm 'Z' when comparing by"),
        ({"by": "model", "alpha": 1.5}, "alpha is a significance level"),
    ],
    ids=["time-grouping", "bad-tag", "unknown-baseline", "bad-alpha"],
)
def test_bad_input_is_a_config_error(same_db, kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        compare_db(same_db, **kwargs)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 10**6), min_size=2, max_size=12),
    st.lists(st.integers(0, 10**6), min_size=2, max_size=12),
)
def test_permutation_p_is_a_probability_and_one_for_equal_means(a, b):
    import numpy as np

    p = _permutation_p(a, b, 200, np.random.default_rng(0))
    assert 0 < p <= 1
    assert _permutation_p(a, list(a), 200, np.random.default_rng(0)) == 1.0


# -- the command ---------------------------------------------------------------------------------
def test_cli_compare_json(cheaper_db):
    result = CliRunner().invoke(
        CLI, ["compare", "--db", cheaper_db, "--by", "tag:experiment_id", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [a["arm"] for a in data["arms"]] == [
        data["baseline"],
        *[c["arm"] for c in data["comparisons"]],
    ]
    (c,) = data["comparisons"]
    assert c["cost_per_run_significant"] is True
    assert data["verdicts"] == [c["verdict"]]
    Decimal(data["arms"][0]["cost_per_run_usd"])  # exact decimal strings
    assert data["confidence"] == 0.95


def test_cli_compare_table_ends_with_the_verdicts(cheaper_db):
    result = CliRunner().invoke(
        CLI, ["compare", "--db", cheaper_db, "--by", "tag:experiment_id", "--baseline", "A"]
    )
    assert result.exit_code == 0, result.output
    assert "cost / run (CI)" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("B vs A: ")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--by", "day"],
            "Error: cannot compare by 'day'; choose one of model, requested_model, provider, tag:NAME",
        ),
        (
            ["--by", "model", "--baseline", "nope"],
            "Error: no arm 'nope' when comparing by model; the arms are: model-a",
        ),
    ],
    ids=["bad-by", "unknown-baseline"],
)
def test_cli_compare_errors_are_one_line(same_db, args, line):
    result = CliRunner().invoke(CLI, ["compare", "--db", same_db, *args])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [line]


def test_cli_compare_without_a_database(tmp_path):
    result = CliRunner().invoke(
        CLI, ["compare", "--db", str(tmp_path / "none.db"), "--by", "model"]
    )
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == f"Error: no flight recorder at {tmp_path / 'none.db'} (pass --db or set AGENTMETER_DB)"
    )


def test_since_keeps_only_recent_calls(cheaper_db):
    conn = sqlite3.connect(cheaper_db)
    last, total = conn.execute("SELECT max(ts), count(*) FROM agentmeter_calls").fetchone()
    (recent,) = conn.execute(
        "SELECT count(*) FROM agentmeter_calls WHERE ts >= ?", (last - 600,)
    ).fetchone()
    conn.close()
    result = compare_db(cheaper_db, by="tag:experiment_id", since_s=600, now=last)
    assert sum(a.calls for a in result.arms) == recent
    assert 0 < recent < total


def test_cli_compare_on_an_empty_recorder(tmp_path):
    path = str(tmp_path / "empty.db")
    Meter(db=path).close()
    result = CliRunner().invoke(CLI, ["compare", "--db", path, "--by", "model"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "no calls with a model value",
        "no calls match: nothing to compare",
    ]
