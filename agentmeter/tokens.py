"""Token counting for prompts we have not sent yet (litellm's tokenizers, loaded on first use)."""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["count_tokens", "import_litellm"]


def import_litellm() -> Any:
    """Import litellm with its price map read from the package, never from the network."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


def count_tokens(model: str, messages: Any) -> int:
    """Prompt tokens of ``messages`` (a list of chat messages or a string) for ``model``.

    Uses ``litellm.token_counter``; if that fails (an odd message shape), falls back to one token
    per four characters of the JSON text, which is what providers' own rough guides suggest.
    """
    try:
        litellm = import_litellm()
        if isinstance(messages, str):
            return int(litellm.token_counter(model=model, text=messages))
        return int(litellm.token_counter(model=model, messages=list(messages)))
    except Exception:
        text = messages if isinstance(messages, str) else json.dumps(messages, default=str)
        return max(1, len(text) // 4)
