"""Provider adapters behind ``agentmeter.normalize``: one module per provider family.

Each family exposes a stream accumulator with ``feed(chunk)`` and ``result(provider)``; a single
(non-streamed) response is fed as a one-chunk stream, so there is one code path per family.
"""

from __future__ import annotations

from .anthropic import AnthropicStream
from .bedrock import BedrockStream
from .cohere import CohereStream
from .gemini import GeminiStream
from .openai import OpenAIStream

__all__ = ["FAMILIES", "HINT_FAMILY"]

FAMILIES: dict[str, type[OpenAIStream | AnthropicStream | GeminiStream | BedrockStream | CohereStream]]
FAMILIES = {
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
