"""Google Gemini ``usageMetadata`` (REST camelCase and google-genai snake_case).

Semantics (googleapis/python-genai ``types.py`` ``GenerateContentResponseUsageMetadata``):

* ``promptTokenCount`` is the whole prompt and *includes* ``cachedContentTokenCount``
  ("When ``cached_content`` is set, this also includes the number of tokens in the cached
  content"), so plain input = prompt - cached.
* ``toolUsePromptTokenCount`` (results of tool executions fed back to the model) is billed as
  input and is *not* part of ``promptTokenCount``.
* ``candidatesTokenCount`` excludes ``thoughtsTokenCount``; both are billed as output, so
  output = candidates + thoughts and reasoning = thoughts.
* ``totalTokenCount`` = prompt + candidates + tool-use + thoughts. Some Vertex responses counted
  thoughts inside candidates; when the provider's own total shows that (prompt + candidates +
  tool-use == total), thoughts are not added again (the same check as litellm's
  ``is_candidate_token_count_inclusive``).
* Gemini has no cache-write bucket (explicit caches are billed as storage, not per call).
* The Live API reports ``responseTokenCount`` instead of ``candidatesTokenCount``.

Streams: every chunk repeats the cumulative ``usageMetadata``; the last one is the call's usage.
"""

from __future__ import annotations

from typing import Any

from agentmeter.usage import Usage

from ._common import field, first, make_usage, subtract

__all__ = ["GeminiStream", "parse_usage"]

_METADATA = ("usageMetadata", "usage_metadata")
_PROMPT = ("promptTokenCount", "prompt_token_count")


def parse_usage(meta: Any, provider: str = "gemini") -> Usage | None:
    """A ``Usage`` from ``usageMetadata``; ``None`` when it has no ``promptTokenCount``."""
    prompt = field(meta, *_PROMPT)
    if prompt is None:
        return None
    cached = field(meta, "cachedContentTokenCount", "cached_content_token_count") or 0
    candidates = (
        field(
            meta,
            "candidatesTokenCount",
            "candidates_token_count",
            "responseTokenCount",
            "response_token_count",
        )
        or 0
    )
    thoughts = field(meta, "thoughtsTokenCount", "thoughts_token_count") or 0
    tool_use = field(meta, "toolUsePromptTokenCount", "tool_use_prompt_token_count") or 0
    total = field(meta, "totalTokenCount", "total_token_count")
    output = candidates + thoughts
    if thoughts and total is not None and prompt + candidates + tool_use == total:
        output = candidates  # thoughts already inside candidates (see module docstring)
    return make_usage(
        provider,
        meta,
        input_tokens=subtract(prompt, cached) + tool_use,
        output_tokens=output,
        cache_read_tokens=cached,
        reasoning_tokens=thoughts,
    )


class GeminiStream:
    """Keeps the last ``usageMetadata`` of a stream (or of a single response)."""

    def __init__(self) -> None:
        self._meta: Any = None

    def feed(self, chunk: Any) -> None:
        """Remember ``chunk``'s usage metadata; cumulative, so later replaces earlier."""
        meta = first(chunk, *_METADATA)
        if meta is None and first(chunk, *_PROMPT) is not None:
            meta = chunk  # a bare usage-metadata object
        if meta is not None:
            self._meta = meta

    def result(self, provider: str | None) -> Usage | None:
        """The call's ``Usage`` from the last metadata seen, or ``None``."""
        if self._meta is None:
            return None
        return parse_usage(self._meta, provider or "gemini")
