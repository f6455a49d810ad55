"""A simulated LLM provider: realistic usage, latency, streaming and errors, on a fake clock.

No network, no key. Responses are OpenAI Chat Completions bodies (what litellm returns), so the
same code path records them as it records real ones. Time advances on the ``FakeClock`` instead
of sleeping, so a simulated hour takes milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from .clock import FakeClock

__all__ = [
    "MODEL_PROFILES",
    "ModelProfile",
    "SimulatedProvider",
    "SimulatedProviderError",
    "estimate_tokens",
]


def estimate_tokens(messages: Any) -> int:
    """The simulator's tokenizer: one token per four characters of content (plus 4 per message)."""
    if isinstance(messages, str):
        return max(1, len(messages) // 4)
    total = 0
    for message in messages or []:
        content = message.get("content") if isinstance(message, dict) else str(message)
        text = content if isinstance(content, str) else json.dumps(content, default=str)
        total += len(text) // 4 + 4
    return max(1, total)


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """How a simulated model behaves: answering version, speed, output size, errors."""

    version: str
    ttft_ms: float
    tokens_per_s: float
    output_tokens: int
    reasoning_share: float = 0.0
    error_rate: float = 0.02
    slow_factor: float = 1.0  # multiplies latency (a degraded provider)
    caches: bool = True


MODEL_PROFILES: dict[str, ModelProfile] = {
    "gpt-4o": ModelProfile("gpt-4o-2024-08-06", ttft_ms=450, tokens_per_s=85, output_tokens=420),
    "gpt-4o-mini": ModelProfile(
        "gpt-4o-mini-2024-07-18", ttft_ms=280, tokens_per_s=140, output_tokens=380
    ),
    "o4-mini": ModelProfile(
        "o4-mini-2025-04-16", ttft_ms=1800, tokens_per_s=160, output_tokens=900, reasoning_share=0.6
    ),
    "claude-sonnet-4-5": ModelProfile(
        "claude-sonnet-4-5-20250929", ttft_ms=650, tokens_per_s=70, output_tokens=500
    ),
    "claude-haiku-4-5": ModelProfile(
        "claude-haiku-4-5-20251001", ttft_ms=350, tokens_per_s=150, output_tokens=380
    ),
}


class SimulatedProviderError(Exception):
    """A provider failure as litellm would raise it: ``status_code`` says which (429, 503...)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class SimulatedProvider:
    """A drop-in for ``litellm.completion`` that answers from model profiles on a fake clock.

    Prompt caching follows OpenAI's rule: the longest previously seen prefix of the messages (in
    whole messages, at least 1,024 tokens) is reported as ``cached_tokens``.
    """

    def __init__(
        self,
        clock: FakeClock | None = None,
        *,
        seed: int = 7,
        profiles: dict[str, ModelProfile] | None = None,
    ) -> None:
        self.clock = clock or FakeClock()
        self.random = random.Random(seed)
        self.profiles = dict(profiles or MODEL_PROFILES)
        self._seen_prefixes: set[bytes] = set()
        self.calls = 0

    def degrade(
        self, model: str, slow_factor: float = 1.0, error_rate: float | None = None
    ) -> None:
        """Make ``model`` slower (and optionally flakier) from now on."""
        profile = self.profiles[model]
        self.profiles[model] = replace(
            profile,
            slow_factor=slow_factor,
            error_rate=profile.error_rate if error_rate is None else error_rate,
        )

    def _profile(self, model: str) -> ModelProfile:
        bare = model.split("/", 1)[-1]
        if bare not in self.profiles:
            raise SimulatedProviderError(f"model {model!r} is not simulated", status_code=404)
        return self.profiles[bare]

    def _cached_tokens(self, messages: list[dict[str, Any]]) -> int:
        cached = tokens = 0
        digest = b""
        for i, message in enumerate(messages):
            # A chained hash names each prefix in O(1) per message.
            text = json.dumps(message, sort_keys=True, default=str)
            digest = hashlib.blake2b(digest + text.encode(), digest_size=16).digest()
            tokens += estimate_tokens([message])
            if digest in self._seen_prefixes and i < len(messages) - 1:
                cached = tokens
            self._seen_prefixes.add(digest)
        return cached if cached >= 1024 else 0

    def completion(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        stream: bool = False,
        max_tokens: int | None = None,
        **_: Any,
    ) -> Any:
        """Answer like ``litellm.completion(..., mock_response=...)`` would, but with real-looking usage."""
        profile = self._profile(model)
        rng = self.random
        self.calls += 1
        prompt = estimate_tokens(messages)
        cached = self._cached_tokens(messages) if profile.caches else 0
        output = max(16, int(rng.gauss(profile.output_tokens, profile.output_tokens * 0.25)))
        if max_tokens:
            output = min(output, max_tokens)
        reasoning = int(output * profile.reasoning_share)
        ttft_s = (
            profile.slow_factor
            * rng.lognormvariate(0, 0.25)
            * (profile.ttft_ms + prompt * 0.004)
            / 1000
        )
        gen_s = profile.slow_factor * output / profile.tokens_per_s * rng.uniform(0.85, 1.2)
        if rng.random() < profile.error_rate:
            self.clock.advance(ttft_s)
            status = rng.choice((429, 500, 503))
            raise SimulatedProviderError(
                f"simulated provider error {status} for {model}", status_code=status
            )
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
        text = f"(simulated answer from {profile.version}, {output} tokens)"
        ident = f"chatcmpl-sim{self.calls:06d}"
        if not stream:
            self.clock.advance(ttft_s + gen_s)
            return {
                "id": ident,
                "object": "chat.completion",
                "created": int(self.clock.now()),
                "model": profile.version,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        return self._stream(ident, profile, text, usage, ttft_s, gen_s)

    def _stream(
        self,
        ident: str,
        profile: ModelProfile,
        text: str,
        usage: dict[str, Any],
        ttft_s: float,
        gen_s: float,
    ) -> Iterator[dict[str, Any]]:
        pieces = [text[i : i + 8] for i in range(0, len(text), 8)] or [""]
        base = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": int(self.clock.now()),
            "model": profile.version,
        }
        self.clock.advance(ttft_s)
        for i, piece in enumerate(pieces):
            if i:
                self.clock.advance(gen_s / len(pieces))
            yield {
                **base,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                "usage": None,
            }
        yield {
            **base,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": None,
        }
        yield {**base, "choices": [], "usage": usage}
