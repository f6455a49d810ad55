"""The built-in compactor: keep the system prompt and the newest turns within a token target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .tokens import count_tokens

__all__ = ["compact_messages"]

MARKER = "[agentmeter: {n} earlier message(s) were compacted away to fit {target} tokens]"


def compact_messages(
    messages: list[dict[str, Any]],
    target_tokens: int,
    *,
    model: str = "gpt-4o",
    count: Callable[[str, Any], int] = count_tokens,
) -> list[dict[str, Any]]:
    """Messages within ``target_tokens``: every system message, then the newest turns that fit.

    What was dropped is marked by one system note in its place. The newest message is always kept
    (an agent's current question must reach the model), even when it alone exceeds the target.
    """
    if not messages:
        return messages
    system = [m for m in messages if m.get("role") == "system"]
    rest = [m for m in messages if m.get("role") != "system"]
    budget = target_tokens - (count(model, system) if system else 0)
    kept: list[dict[str, Any]] = []
    for message in reversed(rest):
        cost = count(model, [message])
        if kept and cost > budget:
            break
        kept.append(message)
        budget -= cost
    kept.reverse()
    dropped = len(rest) - len(kept)
    if dropped == 0:
        return list(messages)
    note = {"role": "system", "content": MARKER.format(n=dropped, target=target_tokens)}
    return [*system, note, *kept]
