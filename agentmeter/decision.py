"""What the policy engine hands the agent before a call: a value, not an act.

Applying a ``Decision`` (swap the model, compact the context, wait, stop) is a separate, thin step
(``Run.apply`` / ``Run.completion``); keeping the two apart is what makes replay exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
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
        if action == "pause" and isinstance(self.detail.get("pause_s"), _NUMBER):
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


# What a pause's wait must be to be shown (``int | float`` would build a union at every reason).
_NUMBER = (int, float)

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


# -- fast constructors for the engine's hot path ------------------------------------------------
#
# A frozen dataclass's generated ``__init__`` binds keyword arguments and then stores each field
# with ``object.__setattr__(self, "name", value)``: about 2 us for a ``Decision`` or a ``Fired``,
# more than the rest of a decide that fires nothing. The engine makes one ``Decision`` per decide
# and a new ``Fired`` whenever a firing rule's value or wait changes (a budget pause in force: on
# every decide), so it builds them here instead: the object is allocated and each slot is stored
# through its member descriptor, positionally, in field order. The result is the same object the
# dataclass would build (same fields, equality, hash, repr, immutability); ``slot_setters`` checks at
# import that the field lists below are the classes' own, so a new field cannot be missed.

_new = object.__new__


def slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Callable[[Any, Any], None], ...]:
    """Each named slot's setter; the names must be every field of ``cls``, in order."""
    declared = tuple(f.name for f in fields(cls))
    if names != declared:
        raise RuntimeError(
            f"{cls.__name__} fields are {declared}, the fast constructor has {names}"
        )
    return tuple(cls.__dict__[name].__set__ for name in names)


(
    _d_model,
    _d_requested_model,
    _d_compact,
    _d_pause_s,
    _d_resume_at,
    _d_halt,
    _d_stream,
    _d_fired,
    _d_step,
    _d_reserved,
) = slot_setters(
    Decision,
    (
        "model",
        "requested_model",
        "compact",
        "pause_s",
        "resume_at",
        "halt",
        "stream",
        "fired",
        "step",
        "reserved_nano_usd",
    ),
)


def new_decision(
    model: str,
    requested_model: str,
    compact: Compact | None,
    pause_s: float,
    resume_at: float | None,
    halt: bool,
    stream: bool | None,
    fired: tuple[Fired, ...],
    step: int | None,
    reserved_nano_usd: int,
) -> Decision:
    """``Decision(...)`` with every field given, built without the dataclass ``__init__``."""
    decision: Decision = _new(Decision)
    _d_model(decision, model)
    _d_requested_model(decision, requested_model)
    _d_compact(decision, compact)
    _d_pause_s(decision, pause_s)
    _d_resume_at(decision, resume_at)
    _d_halt(decision, halt)
    _d_stream(decision, stream)
    _d_fired(decision, fired)
    _d_step(decision, step)
    _d_reserved(decision, reserved_nano_usd)
    return decision


(
    _f_policy,
    _f_metric,
    _f_stat,
    _f_value,
    _f_threshold,
    _f_action,
    _f_scope,
    _f_transition,
    _f_window,
    _f_above,
    _f_note,
    _f_warn_at,
    _f_detail,
    _f_reason,
) = slot_setters(
    Fired,
    (
        "policy",
        "metric",
        "stat",
        "value",
        "threshold",
        "action",
        "scope",
        "transition",
        "window",
        "above",
        "note",
        "warn_at",
        "detail",
        "_reason",
    ),
)


def new_fired(
    policy: str,
    metric: str,
    stat: str,
    value: float | None,
    threshold: float,
    action: str,
    scope: str,
    transition: str,
    window: str,
    above: bool,
    note: str,
    warn_at: float | None,
    detail: dict[str, Any],
) -> Fired:
    """``Fired(...)`` with every field given, built without the dataclass ``__init__``."""
    fired: Fired = _new(Fired)
    _f_policy(fired, policy)
    _f_metric(fired, metric)
    _f_stat(fired, stat)
    _f_value(fired, value)
    _f_threshold(fired, threshold)
    _f_action(fired, action)
    _f_scope(fired, scope)
    _f_transition(fired, transition)
    _f_window(fired, window)
    _f_above(fired, above)
    _f_note(fired, note)
    _f_warn_at(fired, warn_at)
    _f_detail(fired, detail)
    _f_reason(fired, None)
    return fired
