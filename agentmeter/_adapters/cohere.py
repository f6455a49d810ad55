"""Cohere Chat usage, billed on ``billed_units``.

Semantics (cohere-python ``types/usage.py``, ``types/usage_billed_units.py``; Cohere docs "How
does Cohere's pricing work?"): ``usage.tokens`` counts every token the model processed, including
tokens Cohere adds itself (templates, special tokens) that are not charged; ``usage.billed_units``
counts the tokens actually invoiced. The buckets here drive cost, so they use ``billed_units`` and
fall back to ``tokens`` only when ``billed_units`` is absent. Cohere reports no cache or reasoning
split. The SDK types the counts as floats, so integral floats are accepted.

Shapes: v2 ``response.usage`` and the v2 stream's ``message-end`` event ``delta.usage``; v1
``response.meta`` (same ``billed_units`` / ``tokens``) and the v1 ``stream-end`` event's
``response.meta``.
"""

from __future__ import annotations

from typing import Any

from agentmeter.usage import Usage

from ._common import field, first, get, make_usage

__all__ = ["CohereStream", "parse_usage"]


def parse_usage(usage: Any, provider: str = "cohere") -> Usage | None:
    """A ``Usage`` from a Cohere usage/meta object; ``None`` when it has no input count."""
    billed = get(usage, "billed_units")
    source = billed if field(billed, "input_tokens") is not None else get(usage, "tokens")
    input_tokens = field(source, "input_tokens")
    if input_tokens is None:
        return None
    return make_usage(
        provider,
        usage,
        input_tokens=input_tokens,
        output_tokens=field(source, "output_tokens") or 0,
    )


class CohereStream:
    """Keeps the usage of the terminal event (or of a complete response)."""

    def __init__(self) -> None:
        self._usage: Any = None

    def feed(self, chunk: Any) -> None:
        """Remember the usage carried by ``chunk``, if any."""
        if get(chunk, "type") == "message-end":
            usage = get(get(chunk, "delta"), "usage")
        elif get(chunk, "event_type") == "stream-end":
            usage = get(get(chunk, "response"), "meta")
        else:
            usage = first(chunk, "usage", "meta")
            if usage is None and first(chunk, "billed_units", "tokens") is not None:
                usage = chunk  # a bare usage object
        if usage is not None:
            self._usage = usage

    def result(self, provider: str | None) -> Usage | None:
        """The call's ``Usage``, or ``None`` when no usage was seen."""
        if self._usage is None:
            return None
        return parse_usage(self._usage, provider or "cohere")
