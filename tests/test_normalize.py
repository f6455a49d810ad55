"""Tests for agentmeter.normalize: provider payloads -> disjoint Usage buckets.

Fixtures live in tests/payloads/*.json as {"_source": <citation>, "payload": <provider payload>};
each ``_source`` names the repository file or documentation page the payload comes from (or the
SDK type definitions it was constructed from). Comments on the cases below repeat the source.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentmeter.normalize import PROVIDERS, detect_provider_family, normalize_usage
from agentmeter.usage import Usage

# litellm reads its cost map from the network unless told otherwise; set before any import.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

PAYLOADS = Path(__file__).parent / "payloads"
REPO = Path(__file__).resolve().parent.parent


def load(name: str) -> Any:
    """The payload of fixture ``name`` (``.json`` optional); every fixture must cite its source."""
    path = PAYLOADS / (name if name.endswith(".json") else f"{name}.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["_source"].strip(), f"{name} has no _source citation"
    return data["payload"]


def buckets(usage: Usage) -> dict[str, int]:
    return {
        "input": usage.input_tokens,
        "read": usage.cache_read_tokens,
        "write": usage.cache_write_tokens,
        "write_1h": usage.cache_write_1h_tokens,
        "output": usage.output_tokens,
        "reasoning": usage.reasoning_tokens,
    }


def expect(input: int, output: int, **parts: int) -> dict[str, int]:
    """Expected buckets; ``parts`` may set read, write, write_1h and reasoning (default 0)."""
    base = {"input": input, "read": 0, "write": 0, "write_1h": 0, "output": output, "reasoning": 0}
    assert set(parts) <= set(base)
    return base | parts


# (fixture, provider label, expected buckets, provider's prompt total, provider's grand total)
# The prompt/grand totals are the provider's own numbers: Usage.prompt_tokens and
# Usage.total_tokens must reproduce them, which proves nothing was dropped or counted twice.
CASES = [
    # github.com/M-Lai-ai/LLM-Provider-reference OpenAI/no-streaming.md
    ("openai_chat", "openai", expect(40, 24), 40, 64),
    # OpenAI API reference chunk example + include_usage final chunk (choices [])
    ("openai_chat_stream_include_usage", "openai", expect(19, 10), 19, 29),
    # OpenAI prompt-caching guide: 1920 of 2006 prompt tokens cached
    ("openai_chat_cached", "openai", expect(86, 300, read=1920), 2006, 2306),
    # OpenAI prompt-caching guide: 2600 input = 2000 read + 400 written + 200 plain
    ("openai_responses_cache_write", "openai", expect(200, 120, read=2000, write=400), 2600, 2720),
    # OpenAI reasoning guide: 1186 output tokens of which 1024 reasoning
    ("openai_responses_reasoning", "openai", expect(75, 1186, reasoning=1024), 75, 1261),
    ("openai_responses_stream", "openai", expect(75, 1186, reasoning=1024), 75, 1261),
    # M-Lai-ai Anthropic/no-streaming.md and streaming.md (message_start says 5, final is 265)
    ("anthropic_message", "anthropic", expect(36, 265), 36, 301),
    ("anthropic_stream", "anthropic", expect(36, 265), 36, 301),
    # litellm issue 9812: real Anthropic usage with a 12304-token cache write
    ("anthropic_cache_write", "anthropic", expect(3, 550, write=12304), 12307, 12857),
    # anthropic-sdk-python types: 5m/1h split and thinking tokens
    (
        "anthropic_cache_1h",
        "anthropic",
        expect(50, 503, read=1800, write=556, write_1h=100, reasoning=320),
        2406,
        2909,
    ),
    # message_delta repeats cumulative input/cache counts: replaced, not added
    (
        "anthropic_stream_cache",
        "anthropic",
        expect(12, 97, read=2048, write=300, write_1h=300, reasoning=60),
        2360,
        2457,
    ),
    # M-Lai-ai GEMINI/no-stream.md
    ("gemini_generate_content", "gemini", expect(26, 68), 26, 94),
    # python-genai UsageMetadata: prompt includes cached, + tool-use input, + thoughts output
    ("gemini_thinking_cache", "gemini", expect(968, 1000, read=4096, reasoning=880), 5064, 6064),
    ("gemini_sdk_snake", "gemini", expect(27, 194, reasoning=194), 27, 221),
    ("gemini_stream", "gemini", expect(11, 39, reasoning=30), 11, 50),
    # apache/apisix t/fixtures/bedrock/converse-basic.json; stream per botocore service model
    ("bedrock_converse", "bedrock", expect(10, 8), 10, 18),
    ("bedrock_converse_stream", "bedrock", expect(10, 8), 10, 18),
    ("bedrock_cache", "bedrock", expect(24, 300, read=3000, write=2000, write_1h=1500), 5024, 5324),
    # opensolon/solon .../features/ai/DeepSeek.md (deepseek-reasoner, stream last chunk)
    ("deepseek_reasoner", "deepseek", expect(6, 92, reasoning=81), 6, 98),
    ("deepseek_reasoner_stream", "deepseek", expect(6, 82, reasoning=71), 6, 88),
    ("deepseek_cache", "deepseek", expect(653, 288, read=512), 1165, 1453),
    # M-Lai-ai Mistral/no-streaming.md and streaming.md; cached per Mistral caching docs
    ("mistral_chat", "mistral", expect(34, 100), 34, 134),
    ("mistral_stream", "mistral", expect(34, 100), 34, 134),
    ("mistral_cached", "mistral", expect(92, 80, read=1408), 1500, 1580),
    # M-Lai-ai Cohere/no-streaming.md and streaming.md: billed_units, not tokens
    ("cohere_chat", "cohere", expect(21, 93), 21, 114),
    ("cohere_stream", "cohere", expect(21, 105), 21, 126),
    # litellm issue 11364: litellm usage whose prompt_tokens already holds read + write
    (
        "litellm_anthropic_cache",
        "litellm",
        expect(10, 5120, read=66360, write=32435, reasoning=1710),
        98805,
        103925,
    ),
]
CASE_IDS = [case[0] for case in CASES]


# ---------------------------------------------------------------- documented payloads, per provider


@pytest.mark.parametrize(("name", "provider", "expected", "prompt", "total"), CASES, ids=CASE_IDS)
def test_detected_without_hint(
    name: str, provider: str, expected: dict[str, int], prompt: int, total: int
) -> None:
    usage = normalize_usage(load(name))
    assert usage is not None
    assert buckets(usage) == expected
    assert usage.provider == provider
    assert usage.prompt_tokens == prompt
    assert usage.total_tokens == total
    assert usage.estimated is False


@pytest.mark.parametrize(("name", "provider", "expected", "prompt", "total"), CASES, ids=CASE_IDS)
def test_hint_gives_the_same_usage(
    name: str, provider: str, expected: dict[str, int], prompt: int, total: int
) -> None:
    usage = normalize_usage(load(name), provider=provider)
    assert usage is not None
    assert buckets(usage) == expected
    assert usage.provider == provider


@pytest.mark.parametrize(
    "name", [case[0] for case in CASES if isinstance(load(case[0]), list)], ids=lambda n: n[:-5]
)
def test_streams_accept_any_iterator(name: str) -> None:
    chunks = load(name)
    expected = normalize_usage(chunks)
    assert expected is not None
    assert normalize_usage(iter(chunks)) == expected
    assert normalize_usage(tuple(chunks)) == expected
    assert normalize_usage(chunk for chunk in chunks) == expected


@pytest.mark.parametrize(
    ("name", "provider"),
    [(case[0], case[1]) for case in CASES if not isinstance(load(case[0]), list)],
    ids=lambda value: value.removesuffix(".json"),
)
def test_raw_is_the_provider_usage_object(name: str, provider: str) -> None:
    payload = load(name)
    usage = normalize_usage(payload)
    assert usage is not None
    key = {"gemini": "usageMetadata", "bedrock": "usage"}.get(provider, "usage")
    if provider == "gemini" and key not in payload:
        key = "usage_metadata"
    assert usage.raw == payload[key]


def test_raw_of_an_anthropic_stream_is_the_final_snapshot() -> None:
    usage = normalize_usage(load("anthropic_stream.json"))
    assert usage is not None and usage.raw == {"input_tokens": 36, "output_tokens": 265}


# ---------------------------------------------------------------- missing usage -> None


@pytest.mark.parametrize(
    ("payload", "provider"),
    [
        # M-Lai-ai OpenAI/streaming.md: no stream_options.include_usage, so no usage at all
        (load("openai_chat_stream_no_usage.json"), "openai"),
        ({"object": "chat.completion", "choices": [], "usage": None}, "openai"),
        ({"object": "response", "status": "in_progress", "usage": None}, "openai"),
        (load("openai_responses_stream.json")[:3], "openai"),  # cut before response.completed
        ({"type": "message", "role": "assistant", "content": []}, "anthropic"),
        (load("anthropic_stream.json")[:7], "anthropic"),  # cut before message_delta
        ({"candidates": [{"content": {"parts": [{"text": "x"}]}}]}, "gemini"),
        (load("bedrock_converse_stream.json")[:5], "bedrock"),  # no metadata event
        (load("cohere_stream.json")[:6], "cohere"),  # no message-end event
        (load("deepseek_reasoner_stream.json")[:1], "deepseek"),
        (load("mistral_stream.json")[:3], "mistral"),
        ({"object": "chat.completion", "choices": []}, "litellm"),
        ({}, None),
        ([], None),
        (None, None),
    ],
)
def test_missing_usage_is_unknown(payload: Any, provider: str | None) -> None:
    assert normalize_usage(payload) is None
    assert normalize_usage(payload, provider=provider) is None


def test_wrong_hint_finds_no_usage() -> None:
    assert normalize_usage(load("anthropic_stream.json"), provider="gemini") is None
    assert normalize_usage(load("gemini_stream.json"), provider="bedrock") is None


def test_unknown_hint_raises_value_error_listing_providers() -> None:
    with pytest.raises(ValueError) as info:
        normalize_usage(load("openai_chat.json"), provider="azure")
    for name in PROVIDERS:
        assert name in str(info.value)
    with pytest.raises(ValueError):
        normalize_usage({}, provider=3)  # type: ignore[arg-type]


def test_hint_is_case_insensitive() -> None:
    assert normalize_usage(load("openai_chat.json"), provider=" OpenAI ") is not None


# ---------------------------------------------------------------- cache / reasoning rules


def test_openai_cached_tokens_are_not_billed_twice() -> None:
    # OpenAI prompt-caching guide: the 1920 cached tokens are inside prompt_tokens 2006.
    usage = normalize_usage(load("openai_chat_cached.json"))
    assert usage is not None
    assert usage.input_tokens + usage.cache_read_tokens == 2006


def test_anthropic_message_delta_output_is_cumulative_not_summed() -> None:
    # M-Lai-ai Anthropic/streaming.md: message_start output_tokens 5, message_delta 265.
    usage = normalize_usage(load("anthropic_stream.json"))
    assert usage is not None and usage.output_tokens == 265


def test_anthropic_stream_with_only_start_and_delta_input_repeats() -> None:
    events = load("anthropic_stream_cache.json")
    usage = normalize_usage(events)
    assert usage is not None
    # input/cache were sent three times (start + two deltas): still counted once
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        12,
        2048,
        300,
    )


def test_anthropic_cache_creation_breakdown_alone_gives_the_write() -> None:
    usage = normalize_usage(
        {
            "type": "message",
            "usage": {
                "input_tokens": 4,
                "output_tokens": 9,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 30,
                    "ephemeral_1h_input_tokens": 70,
                },
            },
        }
    )
    assert usage is not None
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (100, 70)


def test_anthropic_iterations_are_summed() -> None:
    # anthropic-sdk-python types/beta/beta_usage.py "iterations"; summed as litellm does.
    usage = normalize_usage(load("anthropic_iterations"))
    assert usage is not None
    assert buckets(usage) == expect(110, 25, read=7, write=3)


def test_gemini_thoughts_inside_candidates_are_not_added_twice() -> None:
    # The provider's total shows thoughts were already counted in candidatesTokenCount.
    usage = normalize_usage(
        {
            "usageMetadata": {
                "promptTokenCount": 10,
                "candidatesTokenCount": 50,
                "thoughtsTokenCount": 40,
                "totalTokenCount": 60,
            }
        }
    )
    assert usage is not None
    assert (usage.output_tokens, usage.reasoning_tokens, usage.total_tokens) == (50, 40, 60)


def test_deepseek_hit_plus_miss_must_match_prompt() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 1,
        "prompt_cache_hit_tokens": 40,
        "prompt_cache_miss_tokens": 70,
    }
    assert normalize_usage({"usage": usage}) is None


def test_reasoning_larger_than_output_is_clamped() -> None:
    usage = normalize_usage(
        {
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": 3,
                "completion_tokens_details": {"reasoning_tokens": 10},
            }
        }
    )
    assert usage is not None and (usage.output_tokens, usage.reasoning_tokens) == (3, 3)


def test_cache_larger_than_prompt_is_unusable() -> None:
    payload = {
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 6},
        }
    }
    assert normalize_usage(payload) is None
    assert (
        normalize_usage({"usageMetadata": {"promptTokenCount": 5, "cachedContentTokenCount": 9}})
        is None
    )


def test_cohere_falls_back_to_tokens_without_billed_units() -> None:
    usage = normalize_usage({"usage": {"tokens": {"input_tokens": 186, "output_tokens": 93}}})
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (186, 93)


def test_cohere_v1_meta_and_sdk_float_counts() -> None:
    # cohere-python UsageBilledUnits types counts as floats.
    usage = normalize_usage(
        {"text": "hi", "meta": {"billed_units": {"input_tokens": 17.0, "output_tokens": 12.0}}}
    )
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (17, 12)


def test_boto3_converse_stream_response_dict() -> None:
    events = load("bedrock_converse_stream.json")
    response = {"ResponseMetadata": {"HTTPStatusCode": 200}, "stream": iter(events)}
    usage = normalize_usage(response)
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (10, 8)


def test_bare_usage_objects() -> None:
    assert normalize_usage(load("openai_chat.json")["usage"]) == normalize_usage(
        load("openai_chat.json")
    )
    assert normalize_usage(load("anthropic_cache_1h.json")["usage"]) == normalize_usage(
        load("anthropic_cache_1h.json")
    )
    assert normalize_usage(load("gemini_thinking_cache.json")["usageMetadata"]) is not None
    assert normalize_usage(load("bedrock_cache.json")["usage"]) is not None


def test_stream_mixing_two_providers_is_refused() -> None:
    mixed = [*load("anthropic_stream.json"), *load("gemini_stream.json")]
    assert normalize_usage(mixed) is None


def test_stream_that_raises_midway_gives_none() -> None:
    def broken() -> Iterator[Any]:
        yield from load("anthropic_stream.json")[:3]
        raise ConnectionError("socket closed")

    assert normalize_usage(broken()) is None


def test_detect_provider_family() -> None:
    assert detect_provider_family(load("anthropic_stream.json")[0]) == "anthropic"
    assert detect_provider_family(load("cohere_stream.json")[-1]) == "cohere"
    assert detect_provider_family(load("bedrock_converse_stream.json")[0]) == "bedrock"
    assert detect_provider_family(load("gemini_stream.json")[0]) == "gemini"
    assert detect_provider_family(load("openai_responses_stream.json")[2]) == "openai"
    assert detect_provider_family(42) is None


# ---------------------------------------------------------------- objects instead of dicts


def _namespace(value: Any) -> Any:
    """Nested SimpleNamespace view of a JSON value (an attribute-only SDK-like object)."""
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _namespace(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_namespace(v) for v in value]
    return value


@pytest.mark.parametrize(
    "name",
    [
        "anthropic_stream_cache.json",
        "gemini_thinking_cache.json",
        "bedrock_cache.json",
        "cohere_stream.json",
        "openai_responses_stream.json",
        "deepseek_cache.json",
    ],
)
def test_attribute_objects_read_like_dicts(name: str) -> None:
    payload = load(name)
    expected = normalize_usage(payload)
    assert expected is not None
    assert normalize_usage(_namespace(payload)) == expected


def test_sdk_event_envelopes_are_unwrapped() -> None:
    # mistralai's chat.stream() yields CompletionEvent objects whose .data is the chunk.
    events = [SimpleNamespace(event=None, data=_namespace(c)) for c in load("mistral_stream.json")]
    usage = normalize_usage(iter(events))
    assert usage is not None and usage.provider == "mistral"
    assert buckets(usage) == expect(34, 100)


def test_openai_sdk_models() -> None:
    chat = pytest.importorskip("openai.types.chat")
    completion = chat.ChatCompletion.model_validate(
        load("openai_chat_cached.json")
        | {"id": "x", "object": "chat.completion", "created": 1, "model": "gpt-4o", "choices": []}
    )
    usage = normalize_usage(completion)
    assert usage is not None and buckets(usage) == expect(86, 300, read=1920)
    assert usage.raw is not None and usage.raw["prompt_tokens"] == 2006
    chunks = [
        chat.ChatCompletionChunk.model_validate(c)
        for c in load("openai_chat_stream_include_usage.json")
    ]
    streamed = normalize_usage(iter(chunks))
    assert streamed is not None and buckets(streamed) == expect(19, 10)


# ---------------------------------------------------------------- litellm


# pydantic warns while litellm builds its models lazily on the first completion(); the project
# turns warnings into errors, and this one is litellm's, not ours.
_LITELLM_PYDANTIC_WARNING = "ignore:Item .* is using the `ReadOnly` qualifier:UserWarning"


@pytest.fixture(scope="module")
def litellm() -> Any:
    return pytest.importorskip("litellm")


@pytest.mark.filterwarnings(_LITELLM_PYDANTIC_WARNING)
def test_litellm_model_response(litellm: Any) -> None:
    response = litellm.completion(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], mock_response="hello"
    )
    usage = normalize_usage(response)
    assert usage is not None
    assert usage.provider == "litellm"
    assert usage.input_tokens == response.usage.prompt_tokens
    assert usage.output_tokens == response.usage.completion_tokens
    assert usage.total_tokens == response.usage.total_tokens
    assert usage.raw is not None and usage.raw["prompt_tokens"] == response.usage.prompt_tokens
    assert normalize_usage(response, provider="litellm") == usage
    assert normalize_usage(response.usage) == usage  # the Usage object alone
    dumped = normalize_usage(response.model_dump())  # the dict form
    assert dumped is not None and buckets(dumped) == buckets(usage)


_COUNTS = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=200_000),
    st.sampled_from([-1, 3.5, "12", True, 2**60]),  # corrupt or odd spellings
)


@pytest.mark.filterwarnings(_LITELLM_PYDANTIC_WARNING)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prompt=_COUNTS,
    completion=_COUNTS,
    cached=_COUNTS,
    creation=_COUNTS,
    read_input=_COUNTS,
    creation_input=_COUNTS,
    reasoning=_COUNTS,
    hour=_COUNTS,
)
def test_litellm_response_fast_path_matches_general_path(
    litellm: Any,
    prompt: Any,
    completion: Any,
    cached: Any,
    creation: Any,
    read_input: Any,
    creation_input: Any,
    reasoning: Any,
    hour: Any,
) -> None:
    # normalize_usage reads a litellm ModelResponse without detecting its shape (the hot path of
    # run.completion); it must give exactly what the general, detecting path gives.
    from agentmeter import normalize

    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    details: dict[str, Any] = {"cached_tokens": cached, "cache_creation_tokens": creation}
    if hour is not None:
        details["cache_creation_token_details"] = {"ephemeral_1h_input_tokens": hour}
    usage["prompt_tokens_details"] = details
    usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    if read_input is not None:
        usage["cache_read_input_tokens"] = read_input
    if creation_input is not None:
        usage["cache_creation_input_tokens"] = creation_input
    try:
        response = litellm.ModelResponse(model="gpt-4o", usage=litellm.Usage(**usage))
    except Exception:
        return  # litellm itself refuses this usage: nothing reaches agentmeter
    assert normalize._is_litellm_response(response)
    fast = normalize_usage(response)
    try:
        general = normalize._normalize(response, None, None)
    except Exception:  # normalize_usage's failure policy: a corrupt usage is unknown
        general = None
    assert fast == general
    assert (fast.raw if fast else None) == (general.raw if general else None)


def test_plain_reads_a_model_as_a_dict_only_when_it_computes_nothing():
    import pydantic

    from agentmeter._adapters._common import get, plain

    class Details(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        cached_tokens: int | None = None

    class Flat(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        prompt_tokens: int
        prompt_tokens_details: Details | None = None

    class Computed(Flat):
        @property
        def cache_read_input_tokens(self) -> int:
            return 7

    flat = Flat(
        prompt_tokens=3, prompt_tokens_details=Details(cached_tokens=1, odd=2), extra_field=5
    )
    view = plain(flat, ("prompt_tokens_details",))
    assert view == {
        "prompt_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 1, "odd": 2},
        "extra_field": 5,
    }
    for key in ("prompt_tokens", "extra_field", "absent"):
        assert get(view, key) == get(flat, key)
    computed = Computed(prompt_tokens=3)
    assert plain(computed) is computed  # a dict would lose the computed field
    assert get(computed, "cache_read_input_tokens") == 7


@pytest.mark.filterwarnings(_LITELLM_PYDANTIC_WARNING)
def test_litellm_stream_usage_on_last_chunk(litellm: Any) -> None:
    stream = litellm.completion(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        mock_response="hello world",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    last = [c for c in chunks if getattr(c, "usage", None) is not None][-1].usage
    usage = normalize_usage(iter(chunks))
    assert usage is not None and usage.provider == "litellm"
    assert (usage.prompt_tokens, usage.output_tokens) == (
        last.prompt_tokens,
        last.completion_tokens,
    )


@pytest.mark.filterwarnings(_LITELLM_PYDANTIC_WARNING)
def test_litellm_stream_without_usage(litellm: Any) -> None:
    stream = litellm.completion(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        mock_response="hello world",
        stream=True,
    )
    assert normalize_usage(stream) is None


def test_litellm_anthropic_transformation_matches_direct_anthropic(litellm: Any) -> None:
    # litellm/llms/anthropic/chat/transformation.py calculate_usage folds cache read AND cache
    # creation into prompt_tokens; reading its Usage must give Anthropic's own buckets.
    module = pytest.importorskip("litellm.llms.anthropic.chat.transformation")
    for name in ("anthropic_cache_1h.json", "anthropic_cache_write.json"):
        payload = load(name)
        converted = module.AnthropicConfig().calculate_usage(
            payload["usage"], reasoning_content=None
        )
        via_litellm = normalize_usage(converted)
        direct = normalize_usage(payload)
        assert via_litellm is not None and direct is not None
        assert buckets(via_litellm) == buckets(direct)
        assert via_litellm.provider == "litellm"


def test_litellm_bedrock_and_gemini_transformations_match_direct(litellm: Any) -> None:
    bedrock = pytest.importorskip("litellm.llms.bedrock.chat.converse_transformation")
    gemini = pytest.importorskip("litellm.llms.vertex_ai.gemini.vertex_and_google_ai_studio_gemini")
    payload = load("bedrock_cache.json")
    converted = bedrock.AmazonConverseConfig().transform_usage(payload["usage"])
    assert buckets(normalize_usage(converted)) == buckets(normalize_usage(payload))  # type: ignore[arg-type]
    payload = load("gemini_thinking_cache.json")
    converted = gemini.VertexGeminiConfig.calculate_usage(payload)
    assert buckets(normalize_usage(converted)) == buckets(normalize_usage(payload))  # type: ignore[arg-type]


def test_import_does_not_load_heavy_modules() -> None:
    code = (
        "import sys\n"
        "import agentmeter.normalize\n"
        "print(','.join(m for m in ('litellm', 'numpy', 'scipy') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    # A failure here may come from agentmeter/__init__.py importing a heavy module eagerly.
    assert result.stdout.strip() == "", f"imported eagerly: {result.stdout.strip()}"


# ---------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12", 12), (" 12 ", 12), (12.0, 12), (12, 12), (0, 0)],
)
def test_tolerated_count_spellings(value: Any, expected: int) -> None:
    usage = normalize_usage({"usage": {"prompt_tokens": value, "completion_tokens": 1}})
    assert usage is not None and usage.input_tokens == expected


_BAD_NUMBERS = [-1, "-1", True, False, 1.5, float("nan"), float("inf"), 2**60, 10**400]
_BAD_OTHERS = ["12abc", "", "１２", "9" * 40, [1], {"a": 1}, b"12"]


@pytest.mark.parametrize("value", _BAD_NUMBERS + _BAD_OTHERS)
def test_corrupt_counts_make_the_payload_unusable(value: Any) -> None:
    assert normalize_usage({"usage": {"prompt_tokens": value, "completion_tokens": 1}}) is None
    assert (
        normalize_usage({"type": "message", "usage": {"input_tokens": 1, "output_tokens": value}})
        is None
    )


def test_nested_nulls_are_absent_fields() -> None:
    usage = normalize_usage(
        {
            "usage": {
                "prompt_tokens": 7,
                "completion_tokens": 2,
                "prompt_tokens_details": None,
                "completion_tokens_details": {"reasoning_tokens": None},
            }
        }
    )
    assert usage is not None and buckets(usage) == expect(7, 2)


def test_hostile_objects_never_raise() -> None:
    class Exploding:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(name)

    class BadMapping(dict):  # type: ignore[type-arg]
        def get(self, *args: Any) -> Any:
            raise RuntimeError("boom")

    for payload in (
        Exploding(),
        BadMapping(usage={}),
        {"usage": Exploding()},
        [Exploding()],
        {"usage": {"prompt_tokens": Exploding()}},
        object(),
        "usage",
        b"usage",
        3.5,
    ):
        assert normalize_usage(payload) is None


def test_fast_enough_for_a_hot_loop() -> None:
    payload = load("anthropic_cache_1h.json")
    stream = load("anthropic_stream.json")
    started = time.perf_counter()
    for _ in range(2000):
        normalize_usage(payload)
        normalize_usage(stream)
    # Typically well under 0.2 s; the bound only catches accidental pathologies.
    assert time.perf_counter() - started < 2.0


# ---------------------------------------------------------------- property tests


def _names(value: Any, keys: set[str], words: set[str]) -> None:
    """Collect the field names and short string values used anywhere in ``value``."""
    if isinstance(value, dict):
        keys.update(value)
        for item in value.values():
            _names(item, keys, words)
    elif isinstance(value, list):
        for item in value:
            _names(item, keys, words)
    elif isinstance(value, str) and len(value) < 30:
        words.add(value)


# Field names and type tags of the real payloads (plus a few only the adapters read), so random
# payloads hit the real code paths.
_key_set = {"iterations", "event_type", "meta", "stream", "data", "cacheReadInputTokenCount"}
_word_set = {"stream-end", "message", "1h"}
for _fixture in PAYLOADS.glob("*.json"):
    _names(json.loads(_fixture.read_text(encoding="utf-8"))["payload"], _key_set, _word_set)
_KEYS, _TYPES = sorted(_key_set), sorted(_word_set)
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=0, max_value=5000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(_TYPES)
    | st.text(max_size=6)
    | st.sampled_from(["12", "-3", "1e3", "0x10", " 7 "])
)
adversarial = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=4), children, max_size=6)
    ),
    max_leaves=40,
)
hints = st.sampled_from([None, *PROVIDERS])


def _assert_sane(usage: Usage | None) -> None:
    if usage is None:
        return
    assert isinstance(usage, Usage)
    for value in buckets(usage).values():
        assert type(value) is int and value >= 0
    assert usage.reasoning_tokens <= usage.output_tokens
    assert usage.cache_write_1h_tokens <= usage.cache_write_tokens


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=adversarial, hint=hints)
def test_adversarial_payloads_never_raise(payload: Any, hint: str | None) -> None:
    _assert_sane(normalize_usage(payload, provider=hint))
    _assert_sane(normalize_usage(iter([payload, payload]), provider=hint))


_FIXTURES = sorted(path.name for path in PAYLOADS.glob("*.json"))


def _mutate(value: Any, path: list[int], replacement: Any) -> Any:
    """``value`` with the leaf reached by following ``path`` (mod sizes) replaced."""
    if isinstance(value, dict) and value and path:
        keys = sorted(value)
        key = keys[path[0] % len(keys)]
        return {**value, key: _mutate(value[key], path[1:], replacement)}
    if isinstance(value, list) and value and path:
        index = path[0] % len(value)
        return [*value[:index], _mutate(value[index], path[1:], replacement), *value[index + 1 :]]
    return replacement


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from(_FIXTURES),
    path=st.lists(st.integers(min_value=0, max_value=50), max_size=8),
    replacement=adversarial,
    hint=hints,
)
def test_corrupted_fixtures_never_raise(
    name: str, path: list[int], replacement: Any, hint: str | None
) -> None:
    _assert_sane(normalize_usage(_mutate(load(name), path, replacement), provider=hint))


counts = st.integers(min_value=0, max_value=10**7)


@settings(max_examples=200, deadline=None)
@given(plain=counts, read=counts, write=counts, output=counts, reasoning=counts)
def test_chat_totals_are_preserved(
    plain: int, read: int, write: int, output: int, reasoning: int
) -> None:
    prompt = plain + read + write
    usage = normalize_usage(
        {
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": output,
                "total_tokens": prompt + output,
                "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write},
                "completion_tokens_details": {"reasoning_tokens": reasoning},
            }
        }
    )
    assert usage is not None
    assert (usage.prompt_tokens, usage.total_tokens) == (prompt, prompt + output)
    assert usage.reasoning_tokens == min(reasoning, output)


@settings(max_examples=200, deadline=None)
@given(plain=counts, read=counts, write=counts, output=counts)
def test_anthropic_and_bedrock_add_cache_on_top(
    plain: int, read: int, write: int, output: int
) -> None:
    anthropic = normalize_usage(
        {
            "type": "message",
            "usage": {
                "input_tokens": plain,
                "output_tokens": output,
                "cache_read_input_tokens": read,
                "cache_creation_input_tokens": write,
            },
        }
    )
    bedrock = normalize_usage(
        {
            "usage": {
                "inputTokens": plain,
                "outputTokens": output,
                "totalTokens": plain + read + write + output,
                "cacheReadInputTokens": read,
                "cacheWriteInputTokens": write,
            }
        }
    )
    for usage in (anthropic, bedrock):
        assert usage is not None
        assert buckets(usage) == expect(plain, output, read=read, write=write)


@settings(max_examples=200, deadline=None)
@given(uncached=counts, cached=counts, candidates=counts, thoughts=counts, tool=counts)
def test_gemini_total_is_preserved(
    uncached: int, cached: int, candidates: int, thoughts: int, tool: int
) -> None:
    prompt = uncached + cached
    total = prompt + candidates + thoughts + tool
    usage = normalize_usage(
        {
            "usageMetadata": {
                "promptTokenCount": prompt,
                "cachedContentTokenCount": cached,
                "candidatesTokenCount": candidates,
                "thoughtsTokenCount": thoughts,
                "toolUsePromptTokenCount": tool,
                "totalTokenCount": total,
            }
        }
    )
    assert usage is not None
    assert usage.total_tokens == total
    assert usage.cache_read_tokens == cached
    assert usage.reasoning_tokens <= usage.output_tokens
