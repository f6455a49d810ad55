"""Rules compiled for the engine's hot path, and conditions bound to one scope's windows.

A ``Cond`` is a policy condition with everything a decide needs precomputed (threshold and
recovery level in the stored unit, scale, how its window reads in reasons). A ``Probe`` is a
condition bound to one scope key: the window it reads, its statistic resolved to a function of
``now``, and the ``Fired`` values it last built, reused while their inputs stay the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..decision import Fired, new_fired
from ..windows import Window, WindowSpec
from .format import format_value
from .metrics import METRICS

if TYPE_CHECKING:
    from .spec import PolicyRule, Threshold

__all__ = [
    "STATEFUL",
    "Cond",
    "Probe",
    "Rule",
    "RuleState",
    "cap_fired",
    "compile_rules",
    "fired_for",
    "read_probe",
    "scope_text",
    "window_text",
]

# Actions that stay in force until the rule recovers (a fixed pause is stateful too).
STATEFUL = ("downgrade", "upgrade", "no_stream", "alert")


@dataclass(slots=True)
class RuleState:
    """What a rule remembers between decides in one scope: in force since when, last pause, warned."""

    active: bool = False
    since: float = 0.0
    last_pause: float | None = None
    warned: bool = False


@dataclass(slots=True)
class Probe:
    """A condition resolved for one scope key: the window it reads and its bound statistic.

    ``read(now)`` gives the condition's value in the stored unit; it is None for ``stat: next``
    (the caller's prompt size) and for a condition with no window. ``window`` is the window a
    budget is held against (None for ratios, ``next`` and windowless conditions). Fired values
    built from the probe are kept in ``fired`` and reused while they are equal.
    """

    cond: Cond
    key: Any
    window: Window | None
    read: Callable[[float], float | None] | None
    scope: str  # how the scope reads in reasons: "run 1f3a", "all calls", "tenant=acme"
    fired: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)


@dataclass(slots=True)
class Cond:
    """A condition compiled for the hot path: its window key, scale and recovery level."""

    t: Threshold
    window_key: tuple[str, WindowSpec]
    scale: float
    ratio: bool
    recover_raw: float
    next: bool  # ``stat: next``: the prompt of the call being decided
    above: bool
    limit: float  # the threshold in the stored unit
    window_text: str  # how the window reads in reasons: "10m", "last 20 calls", "the next call"
    sum_above: bool = False  # ``stat: sum`` with ``above``: a budget (a pause can wait it out)
    slot: int = -1  # numbers the engine's conditions (probes are cached per slot and scope key)

    @classmethod
    def of(cls, t: Threshold, rule: PolicyRule) -> Cond:
        metric = METRICS[t.metric]
        scale = 1.0 if t.stat == "anomaly" else metric.scale  # a z-score has no unit
        if rule.recover_level is not None:
            recover = rule.recover_level / scale
        elif t.above:
            recover = t.raw * (rule.recover_ratio or 1.0)
        else:
            recover = t.raw / (rule.recover_ratio or 1.0)
        key = (metric.sample, t.spec or WindowSpec(count=1))  # specless conditions read no window
        ratio = t.metric == "cache_hit_ratio"
        nxt = t.stat == "next"
        sum_above = t.stat == "sum" and t.above
        return cls(t, key, scale, ratio, recover, nxt, t.above, t.raw, window_text(t), sum_above)

    def judge(self, raw: float | None) -> tuple[bool, bool]:
        """(breached, recovered) for a measured value; an unknown value is neither."""
        if raw is None:
            return False, True
        if self.above:
            return raw > self.limit, raw <= self.recover_raw
        return raw < self.limit, raw >= self.recover_raw

    def display(self, raw: float | None) -> float | None:
        """A measured value in the metric's display unit (ratios and ``next`` are as measured)."""
        if raw is None or self.ratio or self.next:
            return raw
        return raw * self.scale


@dataclass(slots=True)
class Rule:
    """A rule compiled for the hot path."""

    index: int
    rule: PolicyRule
    conds: tuple[Cond, ...]
    hard_cap: bool
    stateful: bool
    kinds: frozenset[str]
    hard_caps_conds: tuple[Cond, ...] = ()


def compile_rules(rules: tuple[PolicyRule, ...]) -> tuple[Rule, ...]:
    compiled = tuple(
        Rule(
            index=i,
            rule=rule,
            conds=tuple(Cond.of(c, rule) for c in rule.conditions),
            hard_cap=rule.is_hard_cap,
            stateful=any(
                a.kind in STATEFUL or (a.kind == "pause" and a.pause_s is not None)
                for a in rule.actions
            ),
            kinds=frozenset(a.kind for a in rule.actions),
            hard_caps_conds=tuple(
                Cond.of(c, rule)
                for c in rule.conditions
                if rule.is_hard_cap and c.metric == "cost_usd" and c.stat == "sum" and c.above
            ),
        )
        for i, rule in enumerate(rules)
    )
    for slot, cond in enumerate(c for r in compiled for c in r.conds):
        cond.slot = slot
    return compiled


def read_probe(probe: Probe, now: float, prompt_tokens: int | None) -> float | None:
    """A probe's condition measured now, in the stored unit."""
    if probe.read is not None:
        return probe.read(now)
    if probe.cond.next and prompt_tokens is not None:
        return float(prompt_tokens)
    return None


def fired_for(
    r: Rule,
    probe: Probe,
    raw: float | None,
    action: str,
    transition: str,
    pause_s: float | None = None,
) -> Fired:
    """What a rule did; the probe's last one is reused while its value and pause are the same.

    Rules in force fire on every decide, mostly with the value they had (a cap's spend between two
    calls), so the cache is checked on the stored value before anything is converted or built.
    """
    key = (action, transition)
    last = probe.fired.get(key)
    cond = probe.cond
    # ``_same`` inlined (this runs for every rule in force on every decide).
    if last is not None and (
        last[0] == raw and type(last[0]) is type(raw) and (raw or str(raw) == str(last[0]))
    ):
        last_pause = last[1]
        if pause_s is None:
            if last_pause is None:
                return last[2]  # type: ignore[no-any-return]
        elif (
            last_pause == pause_s
            and type(last_pause) is type(pause_s)
            and (pause_s or str(pause_s) == str(last_pause))
        ):
            return last[2]  # type: ignore[no-any-return]
        value = last[2].value  # the same stored value shows the same: only the wait moved
    else:
        value = cond.display(raw)
    t = cond.t
    fired = new_fired(
        r.rule.name,
        t.metric,
        t.stat,
        value,
        t.threshold,
        action,
        probe.scope,
        transition,
        cond.window_text,
        t.above,
        "",
        r.rule.warn_at,
        {} if pause_s is None else {"pause_s": pause_s},
    )
    probe.fired[key] = (raw, pause_s, fired)
    return fired


def cap_fired(
    r: Rule, probe: Probe, window: Window, reserve: int, action: str, pause_s: float
) -> Fired:
    """A hard cap's refusal: spent, in flight and asked for; reused while all are the same."""
    cond = probe.cond
    t = cond.t
    spent, reserved = window.total, window.reserved
    inputs = (spent, reserved, reserve, pause_s if action == "pause" else None)
    last = probe.fired.get(("cap", action))
    if last is not None and all(map(_same, last[:4], inputs)):
        return last[4]
    note = (
        f"{r.rule.name}: spent {format_value(t.metric, spent * 1e-9)} + in flight "
        f"{format_value(t.metric, reserved * 1e-9)} + this call's worst case "
        f"{format_value(t.metric, reserve * 1e-9)} would exceed {format_value(t.metric, t.threshold)} "
        f"({probe.scope}, {cond.window_text})"
    )
    detail: dict[str, Any] = {"reserved_nano_usd": reserved, "worst_case_nano_usd": reserve}
    if action == "pause":
        note += f" -> pause {pause_s:.1f}s"
        detail["pause_s"] = pause_s
    fired = new_fired(
        r.rule.name,
        t.metric,
        t.stat,
        (spent + reserved + reserve) * cond.scale,
        t.threshold,
        action,
        probe.scope,
        "fire",
        cond.window_text,
        True,
        note,
        None,
        detail,
    )
    probe.fired[("cap", action)] = (*inputs, fired)
    return fired


def _same(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` would show the same: equal, of one type, zeros of one sign."""
    return bool(a == b and type(a) is type(b) and (a or str(a) == str(b)))


def scope_text(kind: str, key: Any) -> str:
    if kind == "run":
        return f"run {key}"
    if kind == "all":
        return "all calls"
    if kind == "model":
        return f"model {key}"
    return f"{kind[4:]}={key}"


def window_text(cond: Threshold) -> str:
    if cond.stat == "next":
        return "the next call"
    return cond.spec.describe() if cond.spec is not None else "the last call"
