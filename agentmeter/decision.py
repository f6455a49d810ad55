"""What the policy engine hands the agent before a call: a value, not an act.

Applying a ``Decision`` (swap the model, compact the context, wait, stop) is a separate, thin step
(``Run.apply`` / ``Run.completion``); keeping the two apart is what makes replay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Compact", "Decision", "Fired"]


@dataclass(frozen=True, slots=True)
class Compact:
    """Compact the context to at most ``target_tokens`` prompt tokens before the call."""

    target_tokens: int
    prompt_tokens: int | None = None  # what the context measured before compaction, if known


@dataclass(frozen=True, slots=True)
class Fired:
    """One policy that fired: which, on what measurement, against which threshold, doing what.

    ``transition`` is ``fire`` (just breached), ``active`` (still breached or not yet recovered),
    ``recover`` (back under its recovery level: its stateful actions are lifted) or ``warn``
    (crossed its warn level). ``value`` and ``threshold`` are in the metric's display unit (USD,
    ms, tokens, ratio); ``reason`` says it in one line.
    """

    policy: str
    metric: str
    stat: str
    value: float | None
    threshold: float
    action: str
    scope: str
    transition: str = "fire"
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer before one call.

    ``model``: the model to call (the requested one, or a step down its ladder). ``compact``:
    ``None`` or a ``Compact`` target. ``pause_s``: seconds to wait first (0.0 when none), with
    ``resume_at`` the clock time to resume. ``halt``: stop the run. ``stream``: ``False`` when a
    policy asked for no streaming, else ``None`` (leave it). ``fired``: every policy involved.
    """

    model: str
    requested_model: str
    compact: Compact | None = None
    pause_s: float = 0.0
    resume_at: float | None = None
    halt: bool = False
    stream: bool | None = None
    fired: tuple[Fired, ...] = ()
    step: int | None = None
    reserved_nano_usd: int = 0

    @property
    def downgraded(self) -> bool:
        """True when ``model`` differs from the requested model."""
        return self.model != self.requested_model

    @property
    def proceed(self) -> bool:
        """True when the call may go ahead now: no halt and no pause."""
        return not self.halt and self.pause_s <= 0.0

    def reasons(self) -> list[str]:
        """One line per fired policy, for logs."""
        return [f.reason for f in self.fired]
