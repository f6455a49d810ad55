"""Policy files: shipped ones load; each mistake gives its exact, clear message; no tracebacks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import agentmeter
from agentmeter.cli import cli
from agentmeter.errors import ConfigError

SHIPPED = sorted(Path(agentmeter.__file__).parent.joinpath("policies").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_policy_file_loads(path):
    policy_set = agentmeter.load_policies(path)
    assert policy_set.policies, path
    assert agentmeter.load_policies(path.stem).digest == policy_set.digest  # built-in name


def test_top_level_policies_dir_is_the_shipped_one():
    assert sorted(p.name for p in Path("policies").glob("*.yaml")) == [p.name for p in SHIPPED]


BASE = """\
version: 1
policies:
  - name: p
    when: {WHEN}
    then: {THEN}
"""


def doc(when="{metric: cost_usd, stat: sum, window: 10m, above: 2}", then="[downgrade]"):
    return BASE.replace("{WHEN}", when).replace("{THEN}", then)


MALFORMED = [
    (
        "unknown-metric",
        doc(when="{metric: cost_usdd, stat: sum, window: 10m, above: 2}"),
        "f.yaml:4: policies[0].when.metric: unknown metric 'cost_usdd'; did you mean 'cost_usd'?",
    ),
    (
        "stat-not-for-metric",
        doc(when="{metric: latency_ms, stat: p91, last: 10, above: 8s}"),
        "f.yaml:4: policies[0].when.stat: stat 'p91' does not apply to metric 'latency_ms'; did you mean 'p99'?",
    ),
    (
        "bad-window",
        doc(when="{metric: cost_usd, window: 10x, above: 2}"),
        "f.yaml:4: policies[0].when.window: expected a duration like '30s', '10m' or '24h', got '10x'",
    ),
    (
        "zero-window",
        doc(when="{metric: cost_usd, window: 0s, above: 2}"),
        "f.yaml:4: policies[0].when.window: a duration must be positive, got '0s'",
    ),
    (
        "negative-cap",
        doc(when='{metric: cost_usd, window: 10m, above: "-$2"}'),
        "f.yaml:4: policies[0].when.above: the threshold must not be negative, got '-$2'",
    ),
    (
        "money-not-a-number",
        doc(when='{metric: cost_usd, window: 10m, above: "two dollars"}'),
        "f.yaml:4: policies[0].when.above: 'two dollars' is not a threshold for cost_usd (unit: usd); write it like \"$2.00\"",
    ),
    (
        "no-threshold",
        doc(when="{metric: cost_usd, window: 10m}"),
        "f.yaml:4: policies[0].when: a condition needs a threshold: 'above' (e.g. above: \"$2.00\") or 'below'",
    ),
    (
        "no-window",
        doc(when="{metric: cost_usd, stat: sum, above: 2}"),
        "f.yaml:4: policies[0].when: a condition needs a window: 'window' (a time like 10m, 24h) or 'last' (a count of calls like 50)",
    ),
    (
        "window-and-last",
        doc(when="{metric: cost_usd, window: 10m, last: 5, above: 2}"),
        "f.yaml:4: policies[0].when: give either 'window' (a time like 10m) or 'last' (a count), not both",
    ),
    (
        "unknown-scope",
        doc(when="{metric: cost_usd, window: 10m, above: 2, scope: tenant}"),
        "f.yaml:4: policies[0].when.scope: unknown scope 'tenant'; expected one of: run, all, model, tag:NAME (e.g. tag:tenant) or {tag: NAME}",
    ),
    (
        "unknown-action",
        doc(then="[downgrde]"),
        "f.yaml:5: policies[0].then: unknown action 'downgrde'; did you mean 'downgrade'?",
    ),
    (
        "compact-without-target",
        doc(then="[compact]"),
        "f.yaml:5: policies[0].then: compact needs a target: {compact: {target_tokens: 40k}}",
    ),
    (
        "pause-bad-param",
        doc(then="[{pause: {for: 10s, until: later}}]"),
        "f.yaml:5: policies[0].then: unknown parameter(s) until for 'pause'; allowed: for",
    ),
    (
        "unknown-policy-field",
        BASE.replace("{WHEN}", "{metric: cost_usd, window: 10m, above: 2}").replace(
            "{THEN}", "[halt]"
        )
        + "    cooldwn: 1m\n",
        "f.yaml:6: policies[0].cooldwn: unknown field 'cooldwn'; did you mean 'cooldown'?",
    ),
    (
        "missing-then",
        "version: 1\npolicies:\n  - name: p\n    when: {metric: cost_usd, window: 10m, above: 2}\n",
        "f.yaml:3: policies[0].then: missing required field 'then'",
    ),
    (
        "duplicate-names",
        doc() + "  - name: p\n    when: {metric: errors, last: 5, above: 2}\n    then: [halt]\n",
        "f.yaml:1: (top level): policy names must be unique; repeated: p",
    ),
    (
        "ladder-cycle",
        "version: 1\nladder:\n  gpt-4o: [gpt-4o-mini, gpt-4o]\npolicies: []\n",
        "f.yaml:3: ladder: ladder for 'gpt-4o' has a cycle: gpt-4o -> gpt-4o-mini -> gpt-4o; each model may appear once",
    ),
    (
        "empty-ladder",
        "version: 1\nladder:\n  gpt-4o: []\n",
        "f.yaml:3: ladder: ladder for 'gpt-4o' is empty; list at least one cheaper model",
    ),
    (
        "wrong-version",
        "version: 2\npolicies: []\n",
        "f.yaml:1: version: unsupported version 2; this agentmeter reads version: 1",
    ),
    (
        "yaml-syntax",
        doc(then="[halt"),
        "f.yaml:6: invalid YAML: expected ',' or ']', but got '<stream end>'",
    ),
    (
        "duplicate-key",
        "version: 1\nversion: 1\n",
        "f.yaml:2: invalid YAML: duplicate key 'version' (a mapping may name each key once)",
    ),
    (
        "not-a-mapping",
        "- just\n- a list\n",
        "f.yaml:1: a policy file is a mapping with 'version', 'ladder', 'pricing' and 'policies'; got a _LinesList",
    ),
    (
        "warn-at-over-100",
        BASE.replace("{WHEN}", "{metric: cost_usd, window: 10m, above: 2}").replace(
            "{THEN}", "[halt]"
        )
        + "    warn_at: 120%\n",
        "f.yaml:6: policies[0].warn_at: warn_at is a share of the threshold like '80%', got '120%'",
    ),
    (
        "next-on-wrong-metric",
        doc(when="{metric: latency_ms, stat: next, above: 2}"),
        "f.yaml:4: policies[0].when.stat: stat 'next' does not apply to metric 'latency_ms'",
    ),
    (
        "scope-mapping-wrong",
        doc(when="{metric: cost_usd, window: 10m, above: 2, scope: {tags: tenant}}"),
        "f.yaml:4: policies[0].when.scope: scope as a mapping is {tag: NAME} (e.g. {tag: tenant}), got {'tags': 'tenant'}",
    ),
    (
        "bad-pricing-value",
        "version: 1\npricing:\n  my-model: {input: cheap, output: $1}\n",
        "f.yaml:3: pricing.my-model.input: expected a price in USD per million tokens such as \"$2.50\", got 'cheap'",
    ),
    (
        "last-zero",
        doc(when="{metric: errors, last: 0, above: 2}"),
        "f.yaml:4: policies[0].when.last: 'last' is a number of calls >= 1, got 0",
    ),
    (
        "any-empty",
        doc(when="{any: []}"),
        "f.yaml:4: policies[0].when.any: List should have at least 1 item after validation, not 0",
    ),
    (
        "any-child-error",
        doc(
            when="{any: [{metric: cost_usd, window: 10m, above: 2}, {metric: latncy_ms, last: 5, above: 1s}]}"
        ),
        "f.yaml:4: policies[0].when.any[1].metric: unknown metric 'latncy_ms'; did you mean 'latency_ms'?",
    ),
    (
        "downgrade-steps-zero",
        doc(then="[{downgrade: {steps: 0}}]"),
        "f.yaml:5: policies[0].then: downgrade steps must be >= 1, got 0",
    ),
]


@pytest.mark.parametrize(
    "text, expected", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_policy_gives_its_exact_error(tmp_path, text, expected):
    path = tmp_path / "f.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        agentmeter.load_policies(path)
    message = str(info.value).replace(str(path), "f.yaml")
    assert message.startswith(expected), message
    assert "Traceback" not in message


@pytest.mark.parametrize(
    "text, expected", [m[1:] for m in MALFORMED[:8]], ids=[m[0] for m in MALFORMED[:8]]
)
def test_check_command_prints_the_error_and_exits_1(tmp_path, text, expected):
    path = tmp_path / "f.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["check", str(path)])
    assert result.exit_code == 1
    assert result.output.replace(str(path), "f.yaml").startswith("Error: " + expected)
    assert "Traceback" not in result.output


def test_check_prints_normalized_policy_set(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(doc(when='{metric: cost_usd, window: 10m, above: "$2.50"}'))
    result = CliRunner().invoke(cli, ["check", "--json", str(path)])
    assert result.exit_code == 0, result.output
    import json

    policy = json.loads(result.output)[str(path)]["policies"][0]
    assert policy["when"] == {
        "metric": "cost_usd",
        "stat": "sum",
        "window_s": 600.0,
        "scope": "run",
        "above": 2.5,
    }
    assert policy["then"] == [{"downgrade": {"steps": 1}}]


def test_missing_file_is_one_clear_error():
    result = CliRunner().invoke(cli, ["check", "no/such.yaml"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: no/such.yaml: no such policy file"


def test_every_problem_in_a_file_is_reported_together(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            policies:
              - name: a
                when: {metric: cost_usdd, window: 10m, above: 2}
                then: [halt]
              - name: b
                when: {metric: errors, last: 5, above: 2}
                then: [hlt]
            """
        )
    )
    with pytest.raises(ConfigError) as info:
        agentmeter.load_policies(path)
    assert len(info.value.problems) == 2
    assert ":4: policies[0].when.metric" in info.value.problems[0]
    assert (
        ":8: policies[1].then: unknown action 'hlt'; did you mean 'halt'?" in info.value.problems[1]
    )


def test_friendly_units_are_parsed():
    policy_set = agentmeter.parse_policies(
        textwrap.dedent(
            """\
            version: 1
            policies:
              - name: a
                when: {metric: latency_ms, stat: p90, last: 10, above: 8s}
                then: [alert]
              - name: b
                when: {metric: prompt_tokens, stat: next, above: 100k}
                then: [{compact: {target_tokens: 40k}}]
              - name: c
                when: {metric: error_rate, last: 20, above: 30%}
                then: [{pause: {for: 2m}}]
            """
        )
    )
    a, b, c = policy_set.policies
    assert a.conditions[0].threshold == 8000.0
    assert b.conditions[0].threshold == 100_000 and b.actions[0].target_tokens == 40_000
    assert c.conditions[0].threshold == pytest.approx(0.30) and c.actions[0].pause_s == 120.0


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_model_in_a_shipped_ladder_has_a_price(path):
    """A downgrade target without a price would record cost unknown: shipped ladders never do."""
    from agentmeter.pricing import default_table

    policy_set = agentmeter.load_policies(path)
    models = {m for model, chain in policy_set.ladder.items() for m in (model, *chain)}
    assert [m for m in sorted(models) if default_table().rates(m) is None] == []
