"""Canonical token usage: five disjoint buckets, whatever the provider reported.

=====================  =====================================================================
bucket                 meaning
=====================  =====================================================================
``input_tokens``       prompt tokens billed at the plain input rate (no cache reads or writes)
``cache_read_tokens``  prompt tokens served from the provider's prompt cache
``cache_write_tokens`` prompt tokens written to the cache (billed at the cache-write rate)
``output_tokens``      all generated tokens billed at the output rate, reasoning included
``reasoning_tokens``   the reasoning part of ``output_tokens`` (visibility only, never added twice)
=====================  =====================================================================

``prompt_tokens`` (input + cache read + cache write) is what the model read; ``total_tokens`` adds
``output_tokens``. Provider payloads are turned into a ``Usage`` by ``normalize_usage``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUCKETS", "Usage"]

BUCKETS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one call in five disjoint buckets (see the module docstring).

    ``cache_write_1h_tokens`` is the part of ``cache_write_tokens`` written with a one-hour
    time-to-live (Anthropic bills it at a higher rate). ``estimated`` is true when the counts come
    from a local tokenizer instead of the provider. ``provider`` names the adapter that read the
    payload and ``raw`` keeps the provider's own usage object (not compared, not hashed).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0
    estimated: bool = False
    provider: str | None = None
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        for name in (*BUCKETS, "cache_write_1h_tokens"):
            value = getattr(self, name)
            if type(value) is not int:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"Usage.{name} must be an int, got {value!r}")
                object.__setattr__(self, name, int(value))
            if value < 0:
                raise ValueError(f"Usage.{name} must be >= 0, got {value}")
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                f"Usage.reasoning_tokens ({self.reasoning_tokens}) is part of output_tokens "
                f"({self.output_tokens}) and cannot exceed it"
            )
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValueError(
                f"Usage.cache_write_1h_tokens ({self.cache_write_1h_tokens}) is part of "
                f"cache_write_tokens ({self.cache_write_tokens}) and cannot exceed it"
            )

    @property
    def prompt_tokens(self) -> int:
        """Every token the model read: input + cache read + cache write."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        """Prompt tokens plus output tokens."""
        return self.prompt_tokens + self.output_tokens

    @property
    def cache_hit_ratio(self) -> float | None:
        """Share of prompt tokens served from cache, or None for an empty prompt."""
        prompt = self.prompt_tokens
        return self.cache_read_tokens / prompt if prompt else None

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            estimated=self.estimated or other.estimated,
            provider=self.provider if self.provider == other.provider else None,
        )

    def as_dict(self) -> dict[str, Any]:
        """The buckets and flags as a plain dict (no raw payload)."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cache_write_1h_tokens": self.cache_write_1h_tokens,
            "estimated": self.estimated,
            "provider": self.provider,
        }
