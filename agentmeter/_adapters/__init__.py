"""Provider adapters behind ``agentmeter.normalize``: one module per provider family.

Each family exposes a stream accumulator with ``feed(chunk)`` and ``result(provider)``; a single
(non-streamed) response is fed as a one-chunk stream, so there is one code path per family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from agentmeter.usage import Usage

from .anthropic import AnthropicStream
from .bedrock import BedrockStream
from .cohere import CohereStream
from .gemini import GeminiStream
from .openai import OpenAIStream

__all__ = ["FAMILIES", "HINT_FAMILY", "Accumulator"]


class Accumulator(Protocol):
    """Collects one call's usage from its chunks, then parses it once."""

    def feed(self, chunk: Any) -> None: ...

    def result(self, provider: str | None) -> Usage | None: ...


FAMILIES: dict[str, Callable[[], Accumulator]] = {
    "openai": OpenAIStream,
    "anthropic": AnthropicStream,
    "gemini": GeminiStream,
    "bedrock": BedrockStream,
    "cohere": CohereStream,
}

# Provider hint -> family whose accumulator reads that provider's payloads.
HINT_FAMILY = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "bedrock": "bedrock",
    "deepseek": "openai",
    "mistral": "openai",
    "cohere": "cohere",
    "litellm": "openai",
}
