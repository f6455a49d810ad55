"""What the policy engine hands the agent before a call: a value, not an act.

Applying a ``Decision`` (swap the model, compact the context, wait, stop) is a separate, thin step
(``Run.apply`` / ``Run.completion``); keeping the two apart is what makes replay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["UNRECORDED_ACTIVE", "Compact", "Decision", "Fired"]

# A stateful action that stays in force is written to the flight recorder when it fires and when
# it recovers, not again on every decision in between.
UNRECORDED_ACTIVE = ("downgrade", "upgrade", "no_stream", "halt")


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
    ms, tokens, ratio; a robust z-score for ``anomaly``); ``reason`` says it in one line (built
    when read, so a decision that nobody prints costs no formatting).
    """

    policy: str
    metric: str
    stat: str
    value: float | None
    threshold: float
    action: str
    scope: str
    transition: str = "fire"
    window: str = ""
    above: bool = True
    note: str = ""
    warn_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # ``reason`` once built: the engine hands out the same Fired while a rule stays as it was.
    _reason: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def reason(self) -> str:
        """One line: the measurement, the threshold, the scope and the action."""
        reason = self._reason
        if reason is None:
            reason = self._build_reason()
            object.__setattr__(self, "_reason", reason)
        return reason

    def _build_reason(self) -> str:
        if self.note:
            return self.note
        if self.transition in ("recover", "warn"):
            measured, threshold = self._measured()
            if self.transition == "recover":
                return f"{self.policy}: recovered, {measured} (threshold {threshold}, {self.scope})"
            return (
                f"{self.policy}: {measured} >= warn at {self.warn_at or 0:.0%} of {threshold} "
                f"({self.scope}) -> warn"
            )
        action = self.action
        if action == "pause" and isinstance(self.detail.get("pause_s"), int | float):
            action = f"pause {self.detail['pause_s']:.1f}s"
        return f"{self._breach()} -> {action}"

    def _measured(self) -> tuple[str, str]:
        from .policy.format import format_value

        value = format_value(self.metric, self.value, self.stat)
        threshold = format_value(self.metric, self.threshold, self.stat)
        if self.stat == "next":
            return f"{self.metric} of the next call = {value}", threshold
        return f"{self.metric} {self.stat} over {self.window} = {value}", threshold

    def _breach(self) -> str:
        """``policy: measured > threshold (scope)``, shared by every Fired that reads the same.

        A budget pause still in force fires on every decide with a new wait and the same
        measurement; only the wait is formatted anew. Zeros are not shared (-0.0 reads "-0").
        """
        key = None
        if self.value and self.threshold:
            key = (
                self.policy,
                self.metric,
                self.stat,
                self.window,
                self.scope,
                self.above,
                self.value,
                self.threshold,
            )
            text = _BREACHES.get(key)
            if text is not None:
                return text
        measured, threshold = self._measured()
        text = f"{self.policy}: {measured} {'>' if self.above else '<'} {threshold} ({self.scope})"
        if key is not None:
            if len(_BREACHES) >= 4096:
                _BREACHES.clear()
            _BREACHES[key] = text
        return text


# (policy, metric, stat, window, scope, above, value, threshold) -> the breach text of a reason
_BREACHES: dict[tuple[Any, ...], str] = {}


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
