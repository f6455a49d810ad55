"""Turn any provider's usage payload (response, stream, SDK object) into a disjoint ``Usage``.

``normalize_usage(payload, provider=None)`` accepts:

* a single response or usage object: a dict (JSON, boto3), an SDK object (openai, anthropic,
  google-genai, cohere pydantic models) or a litellm ``ModelResponse`` / ``Usage``;
* a stream: a list, tuple or any iterator (generator, SDK stream, litellm ``CustomStreamWrapper``)
  of chunks/events, which is consumed and aggregated with each provider's own stream rules;
* a boto3 ``converse_stream`` response dict, whose ``stream`` entry is read as the stream.

Providers and their containment rules are documented in ``agentmeter/_adapters/*``. Without a
``provider`` hint the shape is detected per chunk; with a hint the payload is read as that
provider's (an unknown hint raises ``ValueError``, the only error this module ever raises).

Failure policy (this runs in an agent's hot loop): a missing usage returns ``None`` (unknown, never
zero-filled); a corrupt one (negative, non-numeric, bool, fractional, > 2**53, cached parts larger
than the prompt, a stream mixing providers, a stream that raises while being read) also returns
``None``. Sub-counts that only split a billed bucket are clamped instead: ``reasoning_tokens`` to
``output_tokens`` and ``cache_write_1h_tokens`` to ``cache_write_tokens``. Numeric strings ("12")
and integral floats (12.0) are accepted. Importing this module imports no provider SDK, litellm,
numpy or scipy: litellm objects are recognised by their class module and read like any object.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from agentmeter._adapters import FAMILIES, HINT_FAMILY, Accumulator
from agentmeter._adapters._common import first, from_litellm, get, plain
from agentmeter._adapters.openai import parse_usage
from agentmeter.usage import Usage

__all__ = ["PROVIDERS", "detect_provider_family", "normalize_usage"]

PROVIDERS = ("openai", "anthropic", "gemini", "bedrock", "deepseek", "mistral", "cohere", "litellm")

_ANTHROPIC_EVENTS = frozenset(
    {
        "message",
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "ping",
    }
)
# Cohere v2 stream events are hyphenated, which no other provider uses.
_COHERE_EVENTS = frozenset(
    {
        "message-start",
        "message-end",
        "content-start",
        "content-delta",
        "content-end",
        "tool-plan-delta",
        "tool-call-start",
        "tool-call-delta",
        "tool-call-end",
        "citation-start",
        "citation-end",
        "debug",
    }
)
_OPENAI_OBJECTS = frozenset(
    {"chat.completion", "chat.completion.chunk", "text_completion", "response"}
)
_GEMINI_KEYS = (
    "usageMetadata",
    "usage_metadata",
    "candidates",
    "promptFeedback",
    "prompt_feedback",
)
_ANTHROPIC_USAGE_KEYS = (
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation",
    "iterations",
    "server_tool_use",
    "inference_geo",
)
_BEDROCK_EVENTS = (
    "metadata",
    "messageStart",
    "messageStop",
    "contentBlockStart",
    "contentBlockDelta",
    "contentBlockStop",
)


def normalize_usage(payload: Any, provider: str | None = None) -> Usage | None:
    """A disjoint ``Usage`` from a provider payload or stream; ``None`` when usage is unknown.

    Never raises for any payload; raises ``ValueError`` only for an unknown ``provider`` hint.
    Iterators are consumed. See the module docstring for accepted inputs and the failure policy.
    """
    family = None
    if provider is None:
        fast = _LITELLM_RESPONSE.get(type(payload))
        if fast is None:
            fast = _is_litellm_response(payload)
        if fast:
            try:
                return _litellm_response(payload)
            except Exception:  # as below: never raise into the agent's loop
                return None
    elif provider is not None:
        hint = provider.strip().lower() if isinstance(provider, str) else None
        if hint not in HINT_FAMILY:
            raise ValueError(
                f"unknown provider {provider!r}; expected one of: {', '.join(PROVIDERS)}"
            )
        provider, family = hint, HINT_FAMILY[hint]
    try:
        return _normalize(payload, provider, family)
    except Exception:  # a telemetry fault must never reach the agent's loop
        return None


# litellm's ModelResponse class(es) seen so far: True when the fast path below applies.
_LITELLM_RESPONSE: dict[type, bool] = {}


def _is_litellm_response(payload: Any) -> bool:
    cls = type(payload)
    fast = cls.__name__ == "ModelResponse" and from_litellm(payload)
    if len(_LITELLM_RESPONSE) < 64:
        _LITELLM_RESPONSE[cls] = fast
    return fast


def _litellm_response(payload: Any) -> Usage | None:
    """What ``_normalize`` gives for one litellm ``ModelResponse``, without detecting its shape.

    ``run.completion`` normalizes one of these per call (~24 us the general way, most of it
    detection: family, envelope, label). Its usage is chat-shaped and its label is "litellm",
    exactly as the general path finds them; anything unexpected takes the general path.
    """
    usage = get(payload, "usage")
    if usage is None or get(payload, "type") is not None or get(payload, "data") is not None:
        return _normalize(payload, None, None)
    return parse_usage(plain(usage, _USAGE_DETAILS), "litellm", raw=usage)


# The nested objects of a litellm usage that the chat parser reads fields of.
_USAGE_DETAILS = (
    "prompt_tokens_details",
    "completion_tokens_details",
    "cache_creation_token_details",
)


def detect_provider_family(chunk: Any) -> str | None:
    """The adapter family (``openai``, ``anthropic``, ...) whose shape ``chunk`` has, or ``None``.

    ``openai`` covers the OpenAI-compatible providers too (DeepSeek, Mistral, litellm); the exact
    label is picked from the usage fields and model name when the usage is parsed.
    """
    if from_litellm(chunk):
        return "openai"
    kind = get(chunk, "type")
    if isinstance(kind, str):
        if kind.startswith("response."):
            return "openai"
        if kind in _ANTHROPIC_EVENTS:
            return "anthropic"
        if kind in _COHERE_EVENTS:
            return "cohere"
    if isinstance(get(chunk, "event_type"), str):  # Cohere v1 stream events
        return "cohere"
    obj = get(chunk, "object")
    if (isinstance(obj, str) and obj in _OPENAI_OBJECTS) or get(chunk, "choices") is not None:
        return "openai"
    usage = get(chunk, "usage")
    if usage is not None:
        return _usage_family(usage) or _usage_family(chunk)
    if first(chunk, *_GEMINI_KEYS) is not None:
        return "gemini"
    if first(chunk, *_BEDROCK_EVENTS) is not None:
        return "bedrock"
    if first(get(chunk, "meta"), "billed_units", "tokens") is not None:  # Cohere v1 response
        return "cohere"
    return _usage_family(chunk)


def _usage_family(usage: Any) -> str | None:
    """The family of a bare usage object, judged by its field names."""
    if first(usage, "billed_units", "tokens") is not None:
        return "cohere"
    if first(usage, "inputTokens", "outputTokens", "cacheReadInputTokens") is not None:
        return "bedrock"
    if first(usage, "promptTokenCount", "prompt_token_count", "candidatesTokenCount") is not None:
        return "gemini"
    if first(usage, "prompt_tokens", "completion_tokens") is not None:
        return "openai"
    if first(usage, "input_tokens", "output_tokens") is not None:
        # Both Anthropic and the Responses API say input_tokens (with opposite cache containment).
        # Anthropic-only names win; then Responses-only ones; with neither, both readings agree.
        if first(usage, *_ANTHROPIC_USAGE_KEYS) is not None:
            return "anthropic"
        if first(usage, "input_tokens_details", "total_tokens") is not None:
            return "openai"
        if first(get(usage, "output_tokens_details"), "reasoning_tokens") is not None:
            return "openai"
        return "anthropic"
    return None


def _is_stream(payload: Any) -> bool:
    # Only explicit sequences and iterators: pydantic models are iterable too (field tuples).
    if isinstance(payload, (list, tuple)):
        return True
    return isinstance(payload, Iterator) and not isinstance(payload, (str, bytes, Mapping))


def _normalize(payload: Any, provider: str | None, family: str | None) -> Usage | None:
    if payload is None:
        return None
    if _is_stream(payload):
        chunks: Any = payload
    else:
        chunks = (payload,)
        events = get(payload, "stream") if isinstance(payload, Mapping) else None
        # boto3 converse_stream() returns {"stream": EventStream, ...}; EventStream is iterable
        # but not an Iterator, and a request dict's "stream": True is neither.
        if events is not None and get(payload, "usage") is None and _is_event_stream(events):
            chunks = events
    accumulators: dict[str, Accumulator] = {}
    for item in chunks:
        chunk = _unwrap(item)
        name = family or detect_provider_family(chunk)
        if name is None:
            continue
        accumulator = accumulators.get(name)
        if accumulator is None:
            accumulator = accumulators[name] = FAMILIES[name]()
        accumulator.feed(chunk)
    results = [acc.result(provider) for acc in accumulators.values()]
    found = [usage for usage in results if usage is not None]
    # Chunks of two providers in one stream cannot be one call: refuse to guess.
    return found[0] if len(found) == 1 else None


def _unwrap(chunk: Any) -> Any:
    """The chunk inside an SDK event envelope (mistralai streams yield ``CompletionEvent.data``)."""
    data = get(chunk, "data")
    if data is None or isinstance(data, (str, bytes, bytearray, int, float, list, tuple)):
        return chunk
    if get(chunk, "usage") is not None or get(chunk, "type") is not None:
        return chunk  # a provider event that merely has a "data" field
    return data


def _is_event_stream(events: Any) -> bool:
    if _is_stream(events):
        return True
    if isinstance(events, (str, bytes, bytearray, Mapping, bool, int, float)):
        return False
    return callable(getattr(type(events), "__iter__", None))
