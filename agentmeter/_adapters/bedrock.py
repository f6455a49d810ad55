"""AWS Bedrock Converse / ConverseStream ``TokenUsage``.

Semantics (botocore ``data/bedrock-runtime/2023-09-30/service-2.json`` shapes ``TokenUsage`` and
``CacheDetail``; Bedrock user guide "Prompt caching": with caching on, ``inputTokens`` is only the
non-cached input and total input = ``inputTokens + cacheReadInputTokens + cacheWriteInputTokens``;
litellm's ``AmazonConverseConfig.transform_usage`` adds the cache counts on top the same way):

* ``inputTokens`` -> plain input; ``cacheReadInputTokens`` -> cache read;
  ``cacheWriteInputTokens`` -> cache write; ``cacheDetails[]`` entries with ``ttl == "1h"`` -> the
  1-hour part of the cache write.
* ``outputTokens`` -> output (Converse reports no separate reasoning count).
* InvokeModel metrics spell the cache counts ``cacheReadInputTokenCount`` /
  ``cacheWriteInputTokenCount``; both spellings are read.

Streams: ConverseStream sends one ``metadata`` event whose ``usage`` covers the whole call.
"""

from __future__ import annotations

from typing import Any

from agentmeter.usage import Usage

from ._common import field, first, get, make_usage

__all__ = ["BedrockStream", "parse_usage"]


def parse_usage(usage: Any, provider: str = "bedrock") -> Usage | None:
    """A ``Usage`` from a Converse ``usage`` block; ``None`` when it has no ``inputTokens``."""
    input_tokens = field(usage, "inputTokens")
    if input_tokens is None:
        return None
    write = field(usage, "cacheWriteInputTokens", "cacheWriteInputTokenCount") or 0
    details = get(usage, "cacheDetails")
    write_1h = 0
    if isinstance(details, (list, tuple)):
        for detail in details:
            if get(detail, "ttl") == "1h":
                write_1h += field(detail, "inputTokens") or 0
    return make_usage(
        provider,
        usage,
        input_tokens=input_tokens,
        output_tokens=field(usage, "outputTokens") or 0,
        cache_read_tokens=field(usage, "cacheReadInputTokens", "cacheReadInputTokenCount") or 0,
        cache_write_tokens=write,
        cache_write_1h_tokens=write_1h,
    )


class BedrockStream:
    """Keeps the usage of the ``metadata`` event (or of a complete Converse response)."""

    def __init__(self) -> None:
        self._usage: Any = None

    def feed(self, chunk: Any) -> None:
        """Remember the usage carried by ``chunk``, if any."""
        metadata = get(chunk, "metadata")
        usage = get(metadata, "usage") if metadata is not None else get(chunk, "usage")
        if usage is None and first(chunk, "inputTokens", "outputTokens") is not None:
            usage = chunk  # a bare TokenUsage
        if usage is not None:
            self._usage = usage

    def result(self, provider: str | None) -> Usage | None:
        """The call's ``Usage``, or ``None`` when no usage was seen."""
        if self._usage is None:
            return None
        return parse_usage(self._usage, provider or "bedrock")
