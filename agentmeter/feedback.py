"""Quality signals: thumbs, ratings, regenerations and corrections, normalized to one question.

Every signal answers "was this answer bad?" (``negative``), which is what a policy can watch
(``negative_feedback_rate``) and what ``compare``/``tune`` weigh against savings.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KINDS", "is_negative"]

KINDS = ("thumbs", "rating", "score", "regenerate", "correction")


def is_negative(kind: str, score: Any) -> tuple[float | None, bool]:
    """(normalized score, negative?) for one signal; ``ValueError`` for a signal that makes no sense.

    - ``thumbs``: ``True``/``1``/``"up"`` is positive, ``False``/``0``/``"down"`` negative.
    - ``rating``: 1 to 5 stars; 1 and 2 are negative.
    - ``score``: 0.0 to 1.0; below 0.5 is negative.
    - ``regenerate`` and ``correction``: the user asked again or fixed the answer: negative (no score).
    """
    if kind == "thumbs":
        if score in (True, 1, "up", "+1"):
            return 1.0, False
        if score in (False, 0, "down", "-1"):
            return 0.0, True
        raise ValueError(f"thumbs feedback is True/False, 1/0 or 'up'/'down', got {score!r}")
    if kind == "rating":
        if isinstance(score, bool) or not isinstance(score, int | float) or not 1 <= score <= 5:
            raise ValueError(f"rating feedback is 1 to 5 stars, got {score!r}")
        return float(score), score <= 2
    if kind == "score":
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            raise ValueError(f"score feedback is a number from 0.0 to 1.0, got {score!r}")
        return float(score), score < 0.5
    if kind in ("regenerate", "correction"):
        return None, True
    raise ValueError(f"unknown feedback kind {kind!r}; expected one of: {', '.join(KINDS)}")
