"""Anthropic Messages usage: ``input_tokens`` already excludes cache reads and cache writes.

Semantics (anthropic-sdk-python ``types/usage.py``, ``types/cache_creation.py``,
``types/output_tokens_details.py``; Anthropic prompt-caching docs: total input =
``cache_read_input_tokens + cache_creation_input_tokens + input_tokens``):

* ``input_tokens`` -> plain input; ``cache_read_input_tokens`` -> cache read;
  ``cache_creation_input_tokens`` -> cache write, of which
  ``cache_creation.ephemeral_1h_input_tokens`` were written with the 1-hour TTL.
* ``output_tokens`` is the inclusive, billed output; ``output_tokens_details.thinking_tokens``
  is its reasoning part.
* ``iterations`` (beta, server-side compaction/tool loops) lists per-iteration usage; when present
  the iterations are summed, as litellm's ``AnthropicConfig.calculate_usage`` does.

Streams (SDK ``lib/streaming/_messages.py`` ``accumulate_event``; ``types/message_delta_usage.py``):
``message_start.message.usage`` carries input and cache counts plus a provisional
``output_tokens``; every ``message_delta.usage`` field is *cumulative*, so each non-null field
replaces the snapshot's value (never added). A stream that ends before any ``message_delta`` has no
final output count and yields ``None``.
"""

from __future__ import annotations

from typing import Any

from agentmeter.usage import Usage

from ._common import Unusable, field, first, get, make_usage, to_raw

__all__ = ["AnthropicStream", "parse_usage"]


def parse_usage(usage: Any, provider: str = "anthropic") -> Usage | None:
    """A ``Usage`` from an Anthropic usage object; ``None`` when it has no ``input_tokens``."""
    if get(usage, "input_tokens") is None:
        return None
    iterations = get(usage, "iterations")
    if isinstance(iterations, (list, tuple)) and iterations:
        parts = [_counts(item) for item in iterations]
        input_tokens, output_tokens, read, write, write_1h = (
            sum(col) for col in zip(*parts, strict=True)
        )
    else:
        input_tokens, output_tokens, read, write, write_1h = _counts(usage)
    thinking = field(get(usage, "output_tokens_details"), "thinking_tokens")
    return make_usage(
        provider,
        usage,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=thinking or 0,
        cache_write_1h_tokens=write_1h,
    )


def _counts(usage: Any) -> tuple[int, int, int, int, int]:
    """(input, output, cache read, cache write, 1h cache write) of one usage or iteration."""
    if first(usage, "input_tokens", "output_tokens") is None:
        raise Unusable("usage iteration without token counts")
    ttl = get(usage, "cache_creation")
    write_5m = field(ttl, "ephemeral_5m_input_tokens")
    write_1h = field(ttl, "ephemeral_1h_input_tokens")
    write = field(usage, "cache_creation_input_tokens")
    if write is None:  # only the TTL breakdown was sent
        write = (write_5m or 0) + (write_1h or 0)
    return (
        field(usage, "input_tokens") or 0,
        field(usage, "output_tokens") or 0,
        field(usage, "cache_read_input_tokens") or 0,
        write,
        write_1h or 0,
    )


class AnthropicStream:
    """Rebuilds the final usage of a Messages stream (or takes a complete message's usage)."""

    def __init__(self) -> None:
        self._snapshot: dict[str, Any] | None = None
        self._final = False

    def feed(self, chunk: Any) -> None:
        """Apply one event: ``message_start`` seeds, ``message_delta`` overwrites, a message sets."""
        kind = get(chunk, "type")
        if kind == "message_start":
            self._snapshot = _copy(get(get(chunk, "message"), "usage"))
            self._final = False
        elif kind == "message_delta":
            delta = _copy(get(chunk, "usage"))
            if delta is None:
                return
            if self._snapshot is None:
                self._snapshot = {}
            # Cumulative counts: replace, never add (newer APIs repeat input counts here).
            self._snapshot.update({k: v for k, v in delta.items() if v is not None})
            self._final = True
        elif kind is None or kind == "message":
            usage = get(chunk, "usage")
            if usage is None and kind is None and get(chunk, "input_tokens") is not None:
                usage = chunk  # a bare usage object (e.g. ``message.usage``)
            if usage is not None:
                self._snapshot = _copy(usage)
                self._final = True

    def result(self, provider: str | None) -> Usage | None:
        """The message's ``Usage`` once its final output count is known, else ``None``."""
        if self._snapshot is None or not self._final:
            return None
        return parse_usage(self._snapshot, provider or "anthropic")


def _copy(usage: Any) -> dict[str, Any] | None:
    """A private dict copy of a usage object, so merging never mutates the caller's payload."""
    raw = to_raw(usage)
    if raw is None:
        return None
    # Dumped SDK objects keep nested models; a shallow copy is enough because only top-level
    # fields are replaced. ``count`` still validates every value that is read.
    return dict(raw)
