"""Exact prices from litellm's map: bucket rates, fallbacks, tiers, names, overrides, exactness."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

from agentmeter.errors import ConfigError
from agentmeter.pricing import (
    PriceTable,
    Rates,
    compute_cost,
    cost_nano_usd,
    default_table,
    nano_to_usd,
    usd_to_nano,
)
from agentmeter.usage import Usage

REPO = Path(__file__).resolve().parents[1]
NANO = Decimal("1E-9")


def rate(model: str, key: str) -> Decimal:
    """A map price exactly as printed in the JSON (the way pricing.py must read it)."""
    return Decimal(repr(litellm.model_cost[model][key]))


def to_nano_usd(total: Decimal) -> Decimal:
    return total.quantize(NANO, rounding=ROUND_HALF_EVEN)


def models_with(
    *keys: str, provider: str | None = None, exclude_provider: str | None = None
) -> list[str]:
    found = []
    for name, entry in litellm.model_cost.items():
        if name == "sample_spec" or not isinstance(entry, dict) or entry.get("mode") != "chat":
            continue
        if all(entry.get(k) is not None for k in keys) and "off_peak_pricing" not in entry:
            prov = entry.get("litellm_provider")
            if (provider is None or prov == provider) and (
                exclude_provider is None or prov != exclude_provider
            ):
                found.append(name)
    return found


# ---------------------------------------------------------------------------------------------
# Exact prices of real models


def test_gpt_4o_cached_tokens_priced_exactly() -> None:
    usage = Usage(input_tokens=12_345, cache_read_tokens=6_789, output_tokens=1_011)
    expected = to_nano_usd(
        12_345 * rate("gpt-4o", "input_cost_per_token")
        + 6_789 * rate("gpt-4o", "cache_read_input_token_cost")
        + 1_011 * rate("gpt-4o", "output_cost_per_token")
    )
    cost = compute_cost("gpt-4o", usage)
    assert cost == expected
    assert cost.as_tuple().exponent == -9
    assert cost_nano_usd("gpt-4o", usage) == int(expected / NANO)


def test_claude_sonnet_cache_read_and_5m_and_1h_writes() -> None:
    model = "claude-sonnet-4-5"
    usage = Usage(
        input_tokens=1_500,
        cache_read_tokens=40_000,
        cache_write_tokens=3_000,
        cache_write_1h_tokens=1_000,
        output_tokens=2_222,
    )
    expected = to_nano_usd(
        1_500 * rate(model, "input_cost_per_token")
        + 40_000 * rate(model, "cache_read_input_token_cost")
        + 2_000 * rate(model, "cache_creation_input_token_cost")
        + 1_000 * rate(model, "cache_creation_input_token_cost_above_1hr")
        + 2_222 * rate(model, "output_cost_per_token")
    )
    assert compute_cost(model, usage) == expected
    # The 1h rate really differs, so the split matters.
    assert rate(model, "cache_creation_input_token_cost_above_1hr") != rate(
        model, "cache_creation_input_token_cost"
    )


def test_reasoning_tokens_are_inside_output_not_added_twice() -> None:
    assert litellm.model_cost["o3"].get("output_cost_per_reasoning_token") is None
    with_reasoning = Usage(input_tokens=100, output_tokens=5_000, reasoning_tokens=4_000)
    without = Usage(input_tokens=100, output_tokens=5_000)
    expected = to_nano_usd(
        100 * rate("o3", "input_cost_per_token") + 5_000 * rate("o3", "output_cost_per_token")
    )
    assert compute_cost("o3", with_reasoning) == compute_cost("o3", without) == expected


def test_distinct_reasoning_rate_bills_reasoning_part_of_output() -> None:
    candidates = [
        m
        for m in models_with(
            "output_cost_per_reasoning_token", "input_cost_per_token", "output_cost_per_token"
        )
        if rate(m, "output_cost_per_reasoning_token") != rate(m, "output_cost_per_token")
        and "tiered_pricing" not in litellm.model_cost[m]
    ]
    if not candidates:
        pytest.skip("no model with a distinct reasoning rate in this litellm map")
    model = candidates[0]
    usage = Usage(input_tokens=1_000, output_tokens=3_000, reasoning_tokens=2_000)
    expected = to_nano_usd(
        1_000 * rate(model, "input_cost_per_token")
        + 1_000 * rate(model, "output_cost_per_token")
        + 2_000 * rate(model, "output_cost_per_reasoning_token")
    )
    assert compute_cost(model, usage) == expected


def test_missing_cache_rates_fall_back_to_input_then_cache_write() -> None:
    # gpt-4o has no cache-write price: written tokens cost plain input (litellm does the same).
    usage = Usage(input_tokens=10, cache_write_tokens=1_000, cache_write_1h_tokens=400)
    expected = to_nano_usd(1_010 * rate("gpt-4o", "input_cost_per_token"))
    assert compute_cost("gpt-4o", usage) == expected
    rates = default_table().rates("gpt-4o")
    assert rates is not None and rates.cache_write == rates.cache_write_1h == rates.input
    # No cache-read price: reads cost input.
    table = PriceTable(
        model_cost={"m": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}
    )
    flat = table.rates("m")
    assert flat == Rates(
        input=10**12,
        output=2 * 10**12,
        cache_read=10**12,
        cache_write=10**12,
        cache_write_1h=10**12,
    )
    # A cache-write price but no 1h price: 1h writes cost the cache-write rate.
    table = PriceTable(
        model_cost={
            "m": {
                "input_cost_per_token": 1e-06,
                "output_cost_per_token": 2e-06,
                "cache_creation_input_token_cost": 1.25e-06,
            }
        }
    )
    assert table.rates("m").cache_write_1h == table.rates("m").cache_write == 1_250_000_000_000


def test_tiered_pricing_above_200k_applies_to_whole_call() -> None:
    candidates = models_with(
        "input_cost_per_token_above_200k_tokens",
        "output_cost_per_token_above_200k_tokens",
        "cache_read_input_token_cost_above_200k_tokens",
        exclude_provider="xai",
    )
    candidates = [
        m
        for m in candidates
        if not any("_above_" in k and "272k" in k for k in litellm.model_cost[m])
    ]
    if not candidates:
        pytest.skip("no model with above-200k pricing in this litellm map")
    model = "gemini/gemini-2.5-pro" if "gemini/gemini-2.5-pro" in candidates else candidates[0]
    # Cache reads count toward the prompt: 150k + 50k = exactly 200k is not above the threshold.
    at_threshold = Usage(input_tokens=150_000, cache_read_tokens=50_000, output_tokens=1_000)
    assert compute_cost(model, at_threshold) == to_nano_usd(
        150_000 * rate(model, "input_cost_per_token")
        + 50_000 * rate(model, "cache_read_input_token_cost")
        + 1_000 * rate(model, "output_cost_per_token")
    )
    above = Usage(input_tokens=150_001, cache_read_tokens=50_000, output_tokens=1_000)
    assert compute_cost(model, above) == to_nano_usd(
        150_001 * rate(model, "input_cost_per_token_above_200k_tokens")
        + 50_000 * rate(model, "cache_read_input_token_cost_above_200k_tokens")
        + 1_000 * rate(model, "output_cost_per_token_above_200k_tokens")
    )


def test_xai_threshold_is_inclusive() -> None:
    candidates = models_with(
        "input_cost_per_token_above_200k_tokens",
        "output_cost_per_token_above_200k_tokens",
        provider="xai",
    )
    if not candidates:
        pytest.skip("no xAI model with above-200k pricing in this litellm map")
    model = candidates[0]
    usage = Usage(input_tokens=200_000, output_tokens=10)
    assert compute_cost(model, usage) == to_nano_usd(
        200_000 * rate(model, "input_cost_per_token_above_200k_tokens")
        + 10 * rate(model, "output_cost_per_token_above_200k_tokens")
    )


def litellm_cost(model: str, usage: Usage) -> float:
    """litellm's own float price for the same usage (no service tier, outside off-peak windows)."""
    from litellm.litellm_core_utils.llm_cost_calc.utils import generic_cost_per_token
    from litellm.types.utils import (
        CacheCreationTokenDetails,
        CompletionTokensDetailsWrapper,
        PromptTokensDetailsWrapper,
    )
    from litellm.types.utils import Usage as LiteUsage

    details = CacheCreationTokenDetails(
        ephemeral_5m_input_tokens=usage.cache_write_tokens - usage.cache_write_1h_tokens,
        ephemeral_1h_input_tokens=usage.cache_write_1h_tokens,
    )
    lite = LiteUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=PromptTokensDetailsWrapper(
            cached_tokens=usage.cache_read_tokens,
            cache_creation_tokens=usage.cache_write_tokens,
            cache_creation_token_details=details if usage.cache_write_tokens else None,
        ),
        completion_tokens_details=CompletionTokensDetailsWrapper(
            reasoning_tokens=usage.reasoning_tokens
        )
        if usage.reasoning_tokens
        else None,
    )
    prompt, completion = generic_cost_per_token(
        model=model,
        usage=lite,
        custom_llm_provider=litellm.model_cost[model]["litellm_provider"],
        current_time=datetime(2025, 1, 1, 12, tzinfo=timezone.utc),
    )
    return prompt + completion


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "o3",
        "claude-sonnet-4-5",
        "gemini/gemini-2.5-pro",
        "gemini-2.5-pro",
        "xai/grok-4.3",
        "gpt-5.4",
        "dashscope/qwen-turbo",
        "dashscope/qwen-flash",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
    ],
)
@pytest.mark.parametrize("prompt_scale", [1_000, 210_000, 300_000])
def test_agrees_with_litellm_cost_calculator(model: str, prompt_scale: int) -> None:
    if model not in litellm.model_cost:
        pytest.skip(f"{model} not in this litellm map")
    usage = Usage(
        input_tokens=prompt_scale // 2,
        cache_read_tokens=prompt_scale // 4,
        cache_write_tokens=prompt_scale // 5,
        cache_write_1h_tokens=prompt_scale // 20,
        output_tokens=3_333,
        reasoning_tokens=1_111,
    )
    rates = default_table().rates(model)
    assert rates is not None
    exact = Decimal(rates.cost_atto(usage)) / Decimal(10**18)
    assert float(exact) == pytest.approx(litellm_cost(model, usage), rel=1e-9, abs=1e-15)


# ---------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("openai/gpt-4o", "gpt-4o"),
        ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("gemini/gemini-2.5-pro", "gemini/gemini-2.5-pro"),
        ("vertex_ai/gemini-2.5-pro", "gemini-2.5-pro"),
        ("azure/gpt-4o", "azure/gpt-4o"),
        (
            "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
    ],
)
def test_provider_prefixed_names_resolve(name: str, key: str) -> None:
    if key not in litellm.model_cost:
        pytest.skip(f"{key} not in this litellm map")
    table = default_table()
    assert table.resolve(name) == key
    usage = Usage(input_tokens=1_000, cache_read_tokens=100, output_tokens=100)
    assert compute_cost(name, usage) == compute_cost(key, usage) is not None


def test_bare_name_finds_first_party_prefixed_key() -> None:
    if "xai/grok-4.3" not in litellm.model_cost or "grok-4.3" in litellm.model_cost:
        pytest.skip("map layout differs")
    assert default_table().resolve("grok-4.3") == "xai/grok-4.3"


def test_prefix_never_borrows_another_providers_price() -> None:
    # together_ai has no gpt-4o entry: stripping the prefix must not bill it at OpenAI's price.
    assert default_table().resolve("together_ai/gpt-4o") is None
    assert compute_cost("together_ai/gpt-4o", Usage(input_tokens=1)) is None


def test_unknown_model_is_none_never_zero() -> None:
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    for name in ("no-such-model-xyz", "openai/no-such-model", ""):
        cost = compute_cost(name, usage)
        assert cost is None and cost != Decimal(0)
        assert cost_nano_usd(name, usage) is None
        assert default_table().worst_case_nano_usd(name, 100, 100) is None
    assert compute_cost("gpt-4o", None) is None
    # Zero tokens on a known model is a real zero, distinct from unknown.
    assert compute_cost("gpt-4o", Usage()) == Decimal("0E-9")


def test_lookup_is_cached_including_misses() -> None:
    table = PriceTable()
    first = table.rates("openai/gpt-4o")
    assert table.rates("openai/gpt-4o") is first
    assert table.rates("never-heard-of-it") is None
    assert "never-heard-of-it" in table._cache


# ---------------------------------------------------------------------------------------------
# Overrides


def test_override_known_model_merges_with_map_entry() -> None:
    table = PriceTable(overrides={"gpt-4o": {"input": "$2.00", "cache_write": 3}})
    rates = table.rates("gpt-4o")
    assert rates is not None
    assert rates.input == 2 * 10**12
    assert rates.cache_write == rates.cache_write_1h == 3 * 10**12
    # Not overridden: the map's own prices.
    assert Decimal(rates.output) == rate("gpt-4o", "output_cost_per_token") * 10**18
    assert Decimal(rates.cache_read) == rate("gpt-4o", "cache_read_input_token_cost") * 10**18
    assert rates.max_output_tokens == litellm.model_cost["gpt-4o"]["max_output_tokens"]
    # Every spelling that resolves to the entry sees the override; the shared table does not.
    assert table.rates("openai/gpt-4o") is rates
    assert default_table().rates("gpt-4o") != rates


def test_override_by_prefixed_name_reaches_bare_name() -> None:
    table = PriceTable(overrides={"anthropic/claude-sonnet-4-5": {"output": "$20"}})
    assert table.rates("claude-sonnet-4-5").output == 20 * 10**12
    assert table.rates("anthropic/claude-sonnet-4-5").output == 20 * 10**12


def test_override_input_of_tiered_model_is_flat_but_other_tiers_stay() -> None:
    model = "gemini/gemini-2.5-pro"
    if model not in litellm.model_cost:
        pytest.skip("map layout differs")
    table = PriceTable(overrides={model: {"input": "$1"}})
    tiered = table.rates(model).for_prompt(300_000)
    assert tiered.input == 10**12
    assert Decimal(tiered.output) == rate(model, "output_cost_per_token_above_200k_tokens") * 10**18


def test_new_model_from_overrides_and_value_forms() -> None:
    table = PriceTable(
        overrides={
            "my-llm": {
                "input": "$0.10",
                "output": 0.1,
                "cache_read": Decimal("0.01"),
                "cache_write": "0.125",
                "cache_write_1h": 1,
                "reasoning": "$0.3",
                "max_output_tokens": 4096,
            }
        }
    )
    rates = table.rates("my-llm")
    assert rates == Rates(
        input=10**11,
        output=10**11,
        cache_read=10**10,
        cache_write=125 * 10**9,
        cache_write_1h=10**12,
        reasoning=3 * 10**11,
        max_output_tokens=4096,
    )
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, reasoning_tokens=500_000)
    # 0.1 + 0.05 + 0.15, with no binary-float residue anywhere.
    assert compute_cost("my-llm", usage, prices=table) == Decimal("0.300000000")
    assert table.worst_case_nano_usd("my-llm", 1_000_000) == usd_to_nano("0.1") + usd_to_nano(
        "0.0012288"
    )  # 4096 x $0.3/M


def test_with_overrides_layers_field_by_field() -> None:
    base = PriceTable(overrides={"my-llm": {"input": "$1", "output": "$2"}})
    layered = base.with_overrides({"my-llm": {"output": "$3"}, "gpt-4o": {"input": "$9"}})
    assert layered.rates("my-llm").input == 10**12
    assert layered.rates("my-llm").output == 3 * 10**12
    assert layered.rates("gpt-4o").input == 9 * 10**12
    assert base.rates("my-llm").output == 2 * 10**12


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"my-llm": {"input": "$1"}}, ["my-llm", "output", "input:"]),
        ({"my-llm": {"output": "$1"}}, ["my-llm", "input", "output:"]),
        ({"gpt-4o": {"input": "-$1"}}, ["gpt-4o", "input", "negative", '"$2.50"']),
        ({"gpt-4o": {"output": -0.5}}, ["gpt-4o", "output", "negative"]),
        ({"gpt-4o": {"cache_read": "cheap"}}, ["gpt-4o", "cache_read", "per million", '"$2.50"']),
        ({"gpt-4o": {"cache_write": float("nan")}}, ["gpt-4o", "cache_write", "per million"]),
        ({"gpt-4o": {"cache_write_1h": True}}, ["gpt-4o", "cache_write_1h"]),
        ({"gpt-4o": {"input_price": "$1"}}, ["gpt-4o", "input_price", "input, output, cache_read"]),
        ({"gpt-4o": "$1"}, ["gpt-4o", "mapping"]),
        ({"gpt-4o": {"max_output_tokens": -5}}, ["gpt-4o", "max_output_tokens"]),
        (
            {"gpt-4o": {"input": "$1"}, "openai/gpt-4o": {"input": "$2"}},
            ["gpt-4o", "openai/gpt-4o"],
        ),
    ],
)
def test_bad_override_names_model_and_field(
    overrides: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        PriceTable(overrides=overrides)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    with pytest.raises(ConfigError):
        PriceTable().with_overrides(overrides)


def test_all_override_problems_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        PriceTable(overrides={"a-new": {"input": "x"}, "gpt-4o": {"bogus": 1}})
    assert len(info.value.problems) == 2


# ---------------------------------------------------------------------------------------------
# Money, rounding, worst case


def test_nano_helpers_exact() -> None:
    assert nano_to_usd(1) == Decimal("0.000000001")
    assert nano_to_usd(0).as_tuple().exponent == -9
    assert nano_to_usd(10**30) == Decimal(10**21)  # beyond Decimal's default 28-digit precision
    assert usd_to_nano("$2.50") == 2_500_000_000
    assert usd_to_nano(0.1) == 100_000_000
    assert usd_to_nano(Decimal("0.0000000015")) == 2  # half-even below a nano
    assert usd_to_nano(Decimal("0.0000000025")) == 2
    with pytest.raises(ConfigError):
        usd_to_nano("two dollars")


def test_rounded_once_half_even_on_the_call_total() -> None:
    # $0.0005 per million tokens is 5e-10 USD a token: exactly half a nano-USD.
    table = PriceTable(
        overrides={"half": {"input": "$0.0005", "output": "$0.0005", "cache_read": "$0.0005"}}
    )
    assert cost_nano_usd("half", Usage(input_tokens=1), prices=table) == 0
    assert cost_nano_usd("half", Usage(input_tokens=3), prices=table) == 2
    assert cost_nano_usd("half", Usage(input_tokens=5), prices=table) == 2
    # Three half-nano buckets: rounding each would give 0, the total 1.5 -> 2.
    usage = Usage(input_tokens=1, cache_read_tokens=1, output_tokens=1)
    assert cost_nano_usd("half", usage, prices=table) == 2


def test_worst_case_uses_map_max_output_and_rounds_up() -> None:
    table = default_table()
    rates = table.rates("gpt-4o")
    expected_atto = 10_000 * rates.input + rates.max_output_tokens * rates.output
    assert table.worst_case_nano_usd("gpt-4o", 10_000) == -(-expected_atto // 10**9)
    assert table.worst_case_nano_usd("gpt-4o", 10_000, 0) == 10_000 * rates.input // 10**9
    no_limit = PriceTable(overrides={"x": {"input": "$1", "output": "$1"}})
    assert no_limit.worst_case_nano_usd("x", 10) is None
    with pytest.raises(ConfigError):
        table.worst_case_nano_usd("gpt-4o", -1)
    for prompt, output in ((True, 1), (1.5, 1), ("9", 1), (1, -1), (1, False), (1, 2.0)):
        with pytest.raises(ConfigError, match="whole number"):
            table.worst_case_nano_usd("gpt-4o", prompt, output)


def test_import_does_not_import_litellm() -> None:
    code = "import sys, agentmeter.pricing; sys.exit(1 if 'litellm' in sys.modules else 0)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------
# Properties

PROPERTY_MODELS = [
    m
    for m in (
        "gpt-4o",
        "o3",
        "claude-sonnet-4-5",
        "gemini-2.5-pro",
        "xai/grok-4.3",
        "dashscope/qwen-turbo",
        "dashscope/qwen-flash",
        "gpt-5.4",
    )
    if m in litellm.model_cost
]


@st.composite
def usages(draw: st.DrawFn, limit: int = 400_000) -> Usage:
    tokens = st.integers(min_value=0, max_value=limit)
    cache_write = draw(tokens)
    output = draw(st.integers(min_value=0, max_value=100_000))
    return Usage(
        input_tokens=draw(tokens),
        cache_read_tokens=draw(tokens),
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=draw(st.integers(min_value=0, max_value=cache_write)),
        output_tokens=output,
        reasoning_tokens=draw(st.integers(min_value=0, max_value=output)),
    )


@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(PROPERTY_MODELS), usage=usages())
def test_cost_never_negative_and_decimal_matches_int(model: str, usage: Usage) -> None:
    nano = cost_nano_usd(model, usage)
    assert nano is not None and nano >= 0
    cost = compute_cost(model, usage)
    assert cost == nano_to_usd(nano)
    assert cost.as_tuple().exponent == -9


@settings(max_examples=100, deadline=None)
@given(calls=st.lists(st.tuples(st.sampled_from(PROPERTY_MODELS), usages()), max_size=40))
def test_sum_of_nano_ints_equals_sum_of_decimals(calls: list[tuple[str, Usage]]) -> None:
    total_nano = sum(cost_nano_usd(m, u) for m, u in calls)
    total_decimal = sum((compute_cost(m, u) for m, u in calls), Decimal(0))
    assert nano_to_usd(total_nano) == total_decimal


BUCKET_STEPS = {
    "input": {"input_tokens": 1},
    "cache_read": {"cache_read_tokens": 1},
    "cache_write_5m": {"cache_write_tokens": 1},
    "cache_write_1h": {"cache_write_tokens": 1, "cache_write_1h_tokens": 1},
    "output": {"output_tokens": 1},
    "reasoning": {"output_tokens": 1, "reasoning_tokens": 1},
}


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(PROPERTY_MODELS),
    usage=usages(),
    bucket=st.sampled_from(sorted(BUCKET_STEPS)),
    extra=st.integers(min_value=1, max_value=50_000),
)
def test_cost_monotone_in_each_bucket(model: str, usage: Usage, bucket: str, extra: int) -> None:
    fields = usage.as_dict()
    for name, step in BUCKET_STEPS[bucket].items():
        fields[name] += step * extra
    more = Usage(**fields)
    rates = default_table().rates(model)
    # Crossing a long-context threshold reprices the whole call (and a map can list a lower
    # above-threshold rate for one bucket), so compare calls billed in the same tier.
    assume(rates.for_prompt(usage.prompt_tokens) is rates.for_prompt(more.prompt_tokens))
    assert cost_nano_usd(model, more) >= cost_nano_usd(model, usage)


def test_load_map_false_checks_shape_only_and_defers_the_map() -> None:
    with pytest.raises(ConfigError, match=r"pricing\.x\.input"):
        PriceTable(overrides={"x": {"input": "free"}}, load_map=False)
    # Partial override of a known model passes without reading the map...
    table = PriceTable(overrides={"gpt-4o": {"input": "$1"}}, load_map=False)
    assert table.rates("gpt-4o").input == 10**12
    # ...and an incomplete new model is reported when the map is first read.
    lazy = PriceTable(overrides={"brand-new": {"input": "$1"}}, load_map=False)
    with pytest.raises(ConfigError, match="brand-new"):
        lazy.rates("brand-new")


def test_default_and_provider_of() -> None:
    assert PriceTable.default() is default_table()
    assert default_table().provider_of("openai/gpt-4o") == "openai"
    assert default_table().provider_of("no-such-model-xyz") is None
