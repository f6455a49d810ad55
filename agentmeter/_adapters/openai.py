"""OpenAI-shaped usage: Chat Completions, the Responses API and the chat-compatible providers.

One family because DeepSeek, Mistral and litellm all report the Chat Completions ``usage`` object
(``prompt_tokens`` / ``completion_tokens``) with the same containment rules; they differ only in
extra fields, which are all read here, and in the provider label.

Chat Completions (openai-python ``types/completion_usage.py``):
    ``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens`` (cache reads) and
    ``prompt_tokens_details.cache_write_tokens`` (cache writes, GPT-5.6+ and OpenRouter; the
    OpenAI prompt-caching guide's example is 2600 input = 2000 read + 400 written + 200 plain).
    ``completion_tokens`` includes ``completion_tokens_details.reasoning_tokens``.
Responses API (openai-python ``types/responses/response_usage.py``):
    the same rules with ``input_tokens`` / ``input_tokens_details`` / ``output_tokens`` /
    ``output_tokens_details``.
DeepSeek (api-docs.deepseek.com, context caching):
    ``prompt_tokens`` = ``prompt_cache_hit_tokens`` + ``prompt_cache_miss_tokens``; hits are cache
    reads, misses plain input. No cache-write bucket. deepseek-reasoner puts its reasoning in
    ``completion_tokens_details.reasoning_tokens``, inside ``completion_tokens``.
Mistral (docs.mistral.ai prompt caching; mistralai ``UsageInfo``):
    OpenAI-compatible; cache reads in ``prompt_tokens_details.cached_tokens`` inside ``prompt_tokens``.
litellm (``litellm/types/utils.py`` ``Usage``):
    ``prompt_tokens`` includes cache reads *and* cache writes for every backend: the Anthropic
    transformation (``AnthropicConfig.calculate_usage``) and Bedrock ``transform_usage`` both add
    ``cache_read_input_tokens`` and ``cache_creation_input_tokens`` into ``prompt_tokens``, and the
    Gemini transformation keeps ``promptTokenCount`` (which includes cached content). Writes sit in
    ``prompt_tokens_details.cache_write_tokens`` (mirrored in ``cache_creation_tokens``) and the
    top-level ``cache_creation_input_tokens``: one number under three names, read once.

Streams: chat chunks carry ``usage: null`` until the final chunk (``stream_options.include_usage``),
some compatible servers repeat a cumulative usage on every chunk, and the Responses API puts it in
``response.completed`` (or ``response.incomplete`` / ``response.failed``). In every case the last
usage seen is the whole call's usage, so the accumulator keeps the last one and never sums.
"""

from __future__ import annotations

from typing import Any

from agentmeter.usage import Usage

from ._common import Unusable, count, field, first, from_litellm, get, make_usage, subtract

__all__ = ["OpenAIStream", "chat_label", "parse_usage"]

# Model-name prefixes of Mistral's API (docs.mistral.ai models overview); only picks the label.
_MISTRAL_PREFIXES = (
    "mistral",
    "magistral",
    "codestral",
    "ministral",
    "pixtral",
    "devstral",
    "voxtral",
    "open-mistral",
    "open-mixtral",
    "mixtral",
)


def chat_label(usage: Any, source: Any) -> str:
    """Which provider of the OpenAI family produced ``usage`` (found in chunk/response ``source``)."""
    if from_litellm(source) or from_litellm(usage):
        return "litellm"
    if first(usage, "prompt_cache_hit_tokens", "prompt_cache_miss_tokens") is not None:
        return "deepseek"
    # Anthropic-style cache names on a chat-shaped usage only come from litellm's mapping.
    if first(usage, "cache_creation_input_tokens", "cache_read_input_tokens") is not None:
        return "litellm"
    model = get(source, "model")
    if isinstance(model, str):
        name = model.lower().rpartition("/")[2]
        if name.startswith(_MISTRAL_PREFIXES):
            return "mistral"
        if name.startswith("deepseek"):
            return "deepseek"
    return "openai"


def parse_usage(usage: Any, provider: str, raw: Any = None) -> Usage | None:
    """A ``Usage`` from a Chat Completions or Responses usage object; ``None`` if it has no counts.

    ``raw``: what ``Usage.raw`` keeps, when ``usage`` is a plain view of it (``_common.plain``).
    """
    if first(usage, "prompt_tokens") is not None:
        return _chat(usage, provider, usage if raw is None else raw)
    if first(usage, "input_tokens") is not None:
        return _responses(usage, provider, usage if raw is None else raw)
    return None


def _chat(usage: Any, provider: str, raw: Any) -> Usage:
    """Chat shape: plain input = prompt - cache reads - cache writes; output = completion."""
    prompt = field(usage, "prompt_tokens") or 0
    completion = field(usage, "completion_tokens") or 0
    details = get(usage, "prompt_tokens_details")
    hit = field(usage, "prompt_cache_hit_tokens")
    miss = field(usage, "prompt_cache_miss_tokens")
    # DeepSeek's own hit count wins over its OpenAI-compatible mirror; litellm mirrors reads and
    # writes under several names (see module docstring): take the first sent, never add them.
    cache_read = _sent(
        hit, field(details, "cached_tokens"), field(usage, "cache_read_input_tokens")
    )
    cache_write = _sent(
        field(details, "cache_write_tokens"),
        field(details, "cache_creation_tokens"),
        field(usage, "cache_creation_input_tokens"),
    )
    input_tokens = subtract(prompt, cache_read, cache_write)
    if miss is not None and hit is not None and miss != input_tokens:
        raise Unusable(f"DeepSeek hit {hit} + miss {miss} != prompt_tokens {prompt}")
    ttl = get(details, "cache_creation_token_details")  # litellm's Anthropic 5m/1h split
    reasoning = count(first(get(usage, "completion_tokens_details"), "reasoning_tokens"))
    return make_usage(
        provider,
        raw,
        input_tokens=input_tokens,
        output_tokens=completion,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning or 0,
        cache_write_1h_tokens=field(ttl, "ephemeral_1h_input_tokens") or 0,
    )


def _sent(*counts: int | None) -> int:
    """The first count the provider sent (``None`` means absent), or 0."""
    for value in counts:
        if value is not None:
            return value
    return 0


def _responses(usage: Any, provider: str, raw: Any) -> Usage:
    """Responses shape: plain input = input - cached - cache writes; output includes reasoning."""
    total_input = field(usage, "input_tokens") or 0
    details = get(usage, "input_tokens_details")
    cache_read = field(details, "cached_tokens") or 0
    cache_write = field(details, "cache_write_tokens") or 0
    return make_usage(
        provider,
        raw,
        input_tokens=subtract(total_input, cache_read, cache_write),
        output_tokens=field(usage, "output_tokens") or 0,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=field(get(usage, "output_tokens_details"), "reasoning_tokens") or 0,
    )


def _is_usage(obj: Any) -> bool:
    """Whether ``obj`` is itself a chat/Responses usage object rather than a response or chunk."""
    return (
        first(obj, "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")
        is not None
    )


class OpenAIStream:
    """Keeps the last usage of a chat/Responses stream (or of a single response) and parses it."""

    def __init__(self) -> None:
        self._usage: Any = None
        self._source: Any = None

    def feed(self, chunk: Any) -> None:
        """Remember ``chunk``'s usage if it carries one (later usage replaces earlier usage)."""
        kind = get(chunk, "type")
        if isinstance(kind, str) and kind.startswith("response."):
            source = get(chunk, "response")
            usage = get(source, "usage")
        else:
            source = chunk
            usage = get(chunk, "usage")
            if usage is None and _is_usage(chunk):
                usage, source = chunk, None  # a bare usage object (e.g. ``response.usage``)
        if usage is not None:
            self._usage, self._source = usage, source

    def result(self, provider: str | None) -> Usage | None:
        """The call's ``Usage``, labelled ``provider`` or the detected family member."""
        if self._usage is None:
            return None
        label = provider or chat_label(self._usage, self._source)
        return parse_usage(self._usage, label)
