"""The policy engine: windows fed by observed calls, rules evaluated before each call.

Deciding is apart from doing: ``Engine.decide`` returns a ``Decision`` value and a reservation;
applying it is the run's job. Time always comes from the caller (``now``), so a replay on a fake
clock gives the same decisions as the live run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..decision import Compact, Decision, Fired
from ..windows import QUANTILES, Window, WindowSpec
from .format import format_value
from .metrics import METRICS

if TYPE_CHECKING:
    from .spec import PolicyRule, PolicySet, Threshold

__all__ = ["Engine", "Observation", "Reservation"]

# The per-call samples a window can read, in the order of ``Observation.samples``.
SAMPLE_NAMES = (
    "cost",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "prompt_tokens",
    "total_tokens",
    "latency_ms",
    "ttft_ms",
    "error",
    "cost_unknown",
    "prompt_hash",
    "itl_p90_ms",
    "model_version",
    "cache_hit",
    "negative",
)
_STATEFUL = ("downgrade", "upgrade", "no_stream", "alert")


@dataclass(slots=True)
class Observation:
    """One finished call as the engine sees it: where it belongs and what it measured."""

    ts: float
    run_id: str | None
    model: str | None
    tags: Mapping[str, Any]
    samples: dict[str, Any]


@dataclass(slots=True)
class Reservation:
    """Budget held by one in-flight call against hard caps; settled when the call is observed."""

    held: list[tuple[Window, int]] = field(default_factory=list)
    nano_usd: int = 0


@dataclass(slots=True)
class _RuleState:
    active: bool = False
    since: float = 0.0
    last_pause: float | None = None
    warned: bool = False


@dataclass(slots=True)
class _Measure:
    value: float | None  # display unit
    raw: float | None  # stored unit
    window: Window | None


# Samples that are keys (hashes, names), counted rather than summed.
KEYED_SAMPLES = frozenset({"prompt_hash", "model_version"})


def _features(stat: str, metric: str) -> str:
    if METRICS[metric].sample in KEYED_SAMPLES:
        return "counts"
    if stat in QUANTILES or stat == "anomaly":
        return "sorted"
    if stat in ("max", "min"):
        return "extremes"
    return ""


class Engine:
    """Rolling windows per scope plus the rules' state; thread-safe (one lock)."""

    def __init__(self, policies: PolicySet) -> None:
        self.policies = policies
        self.rules = policies.policies
        self.ladder = policies.ladder
        self._lock = threading.Lock()
        # scope kind -> {(sample, spec): set of features}
        self._layout: dict[str, dict[tuple[str, WindowSpec], set[str]]] = {}
        for rule in self.rules:
            for cond in rule.conditions:
                for sample in _samples_of(cond):
                    if cond.spec is None:
                        continue
                    wanted = self._layout.setdefault(cond.scope, {})
                    wanted.setdefault((sample, cond.spec), set()).add(
                        _features(cond.stat, cond.metric)
                    )
        # scope kind -> scope key -> [(sample, spec, Window)]
        self._windows: dict[str, dict[Any, dict[tuple[str, WindowSpec], Window]]] = {
            kind: {} for kind in self._layout
        }
        self._states: dict[tuple[int, Any], _RuleState] = {}
        # (scope kind, key) -> [(sample, the bound add of its window)]: what observe walks
        self._feeds: dict[tuple[str, Any], list[tuple[str, Callable[[float, Any], None]]]] = {}
        self._compiled = _compile_rules(self.rules)
        self.hard_caps = any(rule.is_hard_cap for rule in self.rules)
        self.needs_prompt_tokens = self.hard_caps or any(
            c.stat == "next" for rule in self.rules for c in rule.conditions
        )
        # Below this many prompt tokens no ``next`` condition can fire.
        self.next_threshold = min(
            (c.raw for rule in self.rules for c in rule.conditions if c.stat == "next" and c.above),
            default=float("inf"),
        )

    # -- feeding -------------------------------------------------------------------------------
    def _windows_for(self, kind: str, key: Any) -> dict[tuple[str, WindowSpec], Window]:
        per_key = self._windows[kind]
        windows = per_key.get(key)
        if windows is None:
            windows = {}
            for (sample, spec), features in self._layout[kind].items():
                windows[(sample, spec)] = Window(
                    spec,
                    keep_sorted="sorted" in features,
                    keep_extremes="extremes" in features,
                    keep_counts="counts" in features,
                )
            per_key[key] = windows
        return windows

    def observe(
        self,
        obs: Observation,
        reservation: Reservation | None = None,
        *,
        kinds: Iterable[str] | None = None,
    ) -> None:
        """Add one finished call to every window of its scopes; release its reservation."""
        with self._lock:
            if reservation is not None:
                for window, amount in reservation.held:
                    window.reserved -= amount
                reservation.held.clear()
            samples = obs.samples
            ts = obs.ts
            for kind in kinds if kinds is not None else self._windows:
                key = _scope_value(kind, obs.run_id, obs.model, obs.tags)
                if key is None:
                    continue
                feeds = self._feeds.get((kind, key))
                if feeds is None:
                    feeds = self._feeds[(kind, key)] = [
                        (sample, window.add_key if sample in KEYED_SAMPLES else window.add)
                        for (sample, _spec), window in self._windows_for(kind, key).items()
                    ]
                for sample, add in feeds:
                    value = samples.get(sample)
                    if value is not None:
                        add(ts, value)

    def release(self, reservation: Reservation | None) -> None:
        """Give back a reservation whose call was never made."""
        if reservation is None:
            return
        with self._lock:
            for window, amount in reservation.held:
                window.reserved -= amount
            reservation.held.clear()

    def end_run(self, run_id: str) -> None:
        """Forget a finished run's windows and rule states."""
        with self._lock:
            if "run" in self._windows:
                self._windows["run"].pop(run_id, None)
                self._feeds.pop(("run", run_id), None)
            for key in [k for k in self._states if k[1][-1] == run_id]:
                del self._states[key]

    @property
    def scope_kinds(self) -> tuple[str, ...]:
        return tuple(self._windows)

    def window_plan(self) -> dict[str, tuple[float | None, int | None]]:
        """Per scope kind, the longest time window (s) and the largest count window (calls)."""
        plan = {}
        for kind, wanted in self._layout.items():
            seconds = [spec.seconds for _, spec in wanted if spec.seconds is not None]
            counts = [spec.count for _, spec in wanted if spec.count is not None]
            plan[kind] = (max(seconds) if seconds else None, max(counts) if counts else None)
        return plan

    # -- deciding ------------------------------------------------------------------------------
    def decide(
        self,
        *,
        now: float,
        model: str,
        run_id: str | None,
        tags: Mapping[str, Any],
        prompt_tokens: int | None = None,
        worst_case: Callable[[str], int | None] | None = None,
        step: int | None = None,
    ) -> tuple[Decision, Reservation | None]:
        """Evaluate every rule for a call about to be made; reserve hard-cap budget if it proceeds."""
        fired: list[Fired] = []
        steps = 0
        no_stream = halt = upgrade = False
        pause_s = 0.0
        compact: Compact | None = None
        caps: list[tuple[_Rule, _Cond, _Measure, Any]] = []
        keys = {"run": run_id, "all": "", "model": model}
        states = self._states
        with self._lock:
            for r in self._compiled:
                outcome = self._evaluate(r, now, keys, tags, prompt_tokens)
                if outcome is None:
                    continue
                breached, recovered, lead, measure, key = outcome
                if r.hard_cap:
                    caps.append((r, lead, measure, key))
                state_key = (
                    r.index,
                    (lead.t.scope, key) if lead.t.scope == "run" else (lead.t.scope, key, run_id),
                )
                state = states.get(state_key)
                if state is None:
                    state = states[state_key] = _RuleState()
                transition = None
                if breached and not state.active:
                    state.active, state.since, transition = True, now, "fire"
                    state.warned = True
                elif (
                    state.active
                    and not breached
                    and (not r.stateful or (recovered and now - state.since >= r.rule.cooldown_s))
                ):
                    state.active, transition = False, "recover"
                    state.warned = False
                if (
                    state.active
                    and r.rule.recover_after_s is not None
                    and transition != "fire"
                    and now - state.since >= r.rule.recover_after_s
                ):
                    state.active, transition = False, "recover"
                    state.warned = False
                if transition == "recover":
                    if r.stateful:
                        fired.append(_fired(r, lead, measure, key, "recover", "recover"))
                    continue
                if not state.active:
                    if r.rule.warn_at is not None and measure.raw is not None:
                        level = lead.t.raw * r.rule.warn_at
                        near = measure.raw >= level if lead.t.above else measure.raw <= level
                        if near and not state.warned:
                            state.warned = True
                            fired.append(_fired(r, lead, measure, key, "warn", "warn"))
                        elif not near:
                            state.warned = False
                    continue
                label = transition or "active"
                for action in r.rule.actions:
                    kind = action.kind
                    if kind == "downgrade":
                        steps += action.steps
                    elif kind == "upgrade":
                        upgrade = True
                    elif kind == "no_stream":
                        no_stream = True
                    elif kind == "alert":
                        if transition != "fire":
                            continue
                    elif kind == "halt":
                        if not breached:
                            continue
                        halt = True
                    elif kind == "compact":
                        if not breached:
                            continue
                        target = action.target_tokens or 0
                        if compact is None or target < compact.target_tokens:
                            compact = Compact(target_tokens=target, prompt_tokens=prompt_tokens)
                    elif kind == "pause":
                        wait = self._pause_for(
                            action.pause_s, lead, measure, now, state, transition, r.rule
                        )
                        if wait is None:
                            continue
                        pause_s = max(pause_s, wait)
                        fired.append(_fired(r, lead, measure, key, kind, label, {"pause_s": wait}))
                        continue
                    fired.append(_fired(r, lead, measure, key, kind, label))

            # An active upgrade (say, users rating the cheaper model's answers down) lifts every
            # downgrade: quality before savings.
            chosen = model if upgrade else self.downgrade(model, steps)
            reservation: Reservation | None = None
            if caps and not halt:
                reserve = (worst_case(chosen) or 0) if worst_case is not None else 0
                held: list[tuple[Window, int]] = []
                for r, lead, measure, key in caps:
                    window = measure.window
                    if window is None or pause_s > 0:
                        continue
                    total = window.total + window.reserved + reserve
                    if total <= lead.t.raw:
                        held.append((window, reserve))
                        continue
                    wait = window.time_until_at_most(lead.t.raw - reserve, now)
                    kinds = r.kinds
                    if "pause" in kinds and wait is not None and (wait > 0 or window.reserved):
                        verdict, pause_s = "pause", max(pause_s, wait if wait > 0 else 1.0)
                    elif "halt" in kinds or wait is None:
                        verdict, halt = "halt", True
                    else:
                        verdict, pause_s = "pause", max(pause_s, wait)
                    fired.append(_cap_fired(r, lead, window, reserve, key, verdict, pause_s))
                if not halt and pause_s <= 0 and held and reserve:
                    for window, amount in held:
                        window.reserved += amount
                    reservation = Reservation(held=held, nano_usd=reserve)

        paused = pause_s > 0 and not halt
        decision = Decision(
            model=chosen,
            requested_model=model,
            compact=compact,
            pause_s=pause_s if paused else 0.0,
            resume_at=now + pause_s if paused else None,
            halt=halt,
            stream=False if no_stream else None,
            fired=tuple(fired),
            step=step,
            reserved_nano_usd=reservation.nano_usd if reservation else 0,
        )
        return decision, reservation

    def value(
        self,
        policy: str,
        *,
        now: float,
        run_id: str | None = None,
        model: str = "",
        tags: Mapping[str, Any] | None = None,
        prompt_tokens: int | None = None,
    ) -> float | None:
        """What ``policy``'s (first) condition measures now, in its display unit; no state changes."""
        r = next((r for r in self._compiled if r.rule.name == policy), None)
        if r is None:
            raise KeyError(f"no policy named {policy!r}")
        cond = r.conds[0]
        key = _key(cond.t.scope, {"run": run_id, "all": "", "model": model}, tags or {})
        if key is None:
            return None
        with self._lock:
            return self._measure(cond, key, now, prompt_tokens).value

    def cap_room(
        self, *, now: float, run_id: str | None, model: str, tags: Mapping[str, Any]
    ) -> float | None:
        """Nano-USD left under the tightest hard cap that applies (None: no cap applies). Read-only."""
        room: float | None = None
        keys = {"run": run_id, "all": "", "model": model}
        with self._lock:
            for r in self._compiled:
                if not r.hard_caps_conds:
                    continue
                for cond in r.hard_caps_conds:
                    key = _key(cond.t.scope, keys, tags)
                    if key is None:
                        continue
                    measure = self._measure(cond, key, now, None)
                    window = measure.window
                    if window is None:
                        continue
                    left = cond.t.raw - window.total - window.reserved
                    room = left if room is None else min(room, left)
        return room

    def downgrade(self, model: str, steps: int) -> str:
        """``model`` moved ``steps`` down its ladder (as far as the ladder goes)."""
        if steps <= 0:
            return model
        chain = self.ladder.get(model)
        if not chain:
            return model
        return chain[min(steps, len(chain)) - 1]

    def _pause_for(
        self,
        fixed_s: float | None,
        lead: _Cond,
        measure: _Measure,
        now: float,
        state: _RuleState,
        transition: str | None,
        rule: PolicyRule,
    ) -> float | None:
        if fixed_s is None:
            window = measure.window
            if window is not None and lead.t.stat == "sum" and lead.t.above:
                wait = window.time_until_at_most(lead.t.raw, now)
                if wait is not None:
                    return wait if wait > 0 else None
            fixed_s = rule.cooldown_s
        if transition == "fire" or (
            state.last_pause is not None and now - state.last_pause >= rule.cooldown_s
        ):
            state.last_pause = now
            return fixed_s
        return None

    def _evaluate(
        self,
        r: _Rule,
        now: float,
        keys: dict[str, Any],
        tags: Mapping[str, Any],
        prompt_tokens: int | None,
    ) -> tuple[bool, bool, _Cond, _Measure, Any] | None:
        if len(r.conds) == 1:  # the common case, without the list
            cond = r.conds[0]
            key = _key(cond.t.scope, keys, tags)
            if key is None:
                return None
            measure = self._measure(cond, key, now, prompt_tokens)
            breached, recovered = cond.judge(measure.raw)
            return breached, recovered, cond, measure, key
        results = []
        for cond in r.conds:
            key = _key(cond.t.scope, keys, tags)
            if key is None:
                continue
            measure = self._measure(cond, key, now, prompt_tokens)
            breached, recovered = cond.judge(measure.raw)
            results.append((breached, recovered, cond, measure, key))
        if not results:
            return None
        if r.rule.combine == "all":
            breached = all(x[0] for x in results)
            recovered = any(x[1] for x in results)
        else:
            breached = any(x[0] for x in results)
            recovered = all(x[1] for x in results)
        lead = next((x for x in results if x[0]), results[0])
        return breached, recovered, lead[2], lead[3], lead[4]

    def _measure(self, cond: _Cond, key: Any, now: float, prompt_tokens: int | None) -> _Measure:
        t = cond.t
        if t.stat == "next":
            raw = float(prompt_tokens) if prompt_tokens is not None else None
            return _Measure(raw, raw, None)
        if t.spec is None:
            return _Measure(None, None, None)
        windows = self._windows_for(t.scope, key)
        if cond.ratio:
            read = windows[("cache_read_tokens", t.spec)].stat("sum", now) or 0
            prompt = windows[("prompt_tokens", t.spec)].stat("sum", now) or 0
            ratio = read / prompt if prompt else None
            return _Measure(ratio, ratio, None)
        window = windows[cond.window_key]
        raw = window.stat(t.stat, now)
        return _Measure(raw * cond.scale if raw is not None else None, raw, window)


@dataclass(slots=True)
class _Cond:
    """A condition compiled for the hot path: its window key, scale and recovery level."""

    t: Threshold
    window_key: tuple[str, WindowSpec]
    scale: float
    ratio: bool
    recover_raw: float

    @classmethod
    def of(cls, t: Threshold, rule: PolicyRule) -> _Cond:
        metric = METRICS[t.metric]
        scale = 1.0 if t.stat == "anomaly" else metric.scale  # a z-score has no unit
        if rule.recover_level is not None:
            recover = rule.recover_level / scale
        elif t.above:
            recover = t.raw * (rule.recover_ratio or 1.0)
        else:
            recover = t.raw / (rule.recover_ratio or 1.0)
        key = (metric.sample, t.spec or WindowSpec(count=1))  # specless conditions read no window
        return cls(t, key, scale, t.metric == "cache_hit_ratio", recover)

    def judge(self, raw: float | None) -> tuple[bool, bool]:
        """(breached, recovered) for a measured value; an unknown value is neither."""
        if raw is None:
            return False, True
        if self.t.above:
            return raw > self.t.raw, raw <= self.recover_raw
        return raw < self.t.raw, raw >= self.recover_raw


@dataclass(slots=True)
class _Rule:
    """A rule compiled for the hot path."""

    index: int
    rule: PolicyRule
    conds: tuple[_Cond, ...]
    hard_cap: bool
    stateful: bool
    kinds: frozenset[str]
    hard_caps_conds: tuple[_Cond, ...] = ()


def _compile_rules(rules: tuple[PolicyRule, ...]) -> tuple[_Rule, ...]:
    return tuple(
        _Rule(
            index=i,
            rule=rule,
            conds=tuple(_Cond.of(c, rule) for c in rule.conditions),
            hard_cap=rule.is_hard_cap,
            stateful=any(
                a.kind in _STATEFUL or (a.kind == "pause" and a.pause_s is not None)
                for a in rule.actions
            ),
            kinds=frozenset(a.kind for a in rule.actions),
            hard_caps_conds=tuple(
                _Cond.of(c, rule)
                for c in rule.conditions
                if rule.is_hard_cap and c.metric == "cost_usd" and c.stat == "sum" and c.above
            ),
        )
        for i, rule in enumerate(rules)
    )


def _key(kind: str, keys: dict[str, Any], tags: Mapping[str, Any]) -> Any:
    if kind in keys:
        return keys[kind]
    value = tags.get(kind[4:])
    return None if value is None else str(value)


def _fired(
    r: _Rule,
    cond: _Cond,
    measure: _Measure,
    key: Any,
    action: str,
    transition: str,
    detail: dict[str, Any] | None = None,
) -> Fired:
    t = cond.t
    return Fired(
        policy=r.rule.name,
        metric=t.metric,
        stat=t.stat,
        value=measure.value,
        threshold=t.threshold,
        action=action,
        scope=_scope_text(t.scope, key),
        transition=transition,
        window=_window_text(t),
        above=t.above,
        warn_at=r.rule.warn_at,
        detail=detail or {},
    )


def _cap_fired(
    r: _Rule, cond: _Cond, window: Window, reserve: int, key: Any, action: str, pause_s: float
) -> Fired:
    t = cond.t
    total = window.total + window.reserved + reserve
    scope = _scope_text(t.scope, key)
    note = (
        f"{r.rule.name}: spent {format_value(t.metric, window.total * 1e-9)} + in flight "
        f"{format_value(t.metric, window.reserved * 1e-9)} + this call's worst case "
        f"{format_value(t.metric, reserve * 1e-9)} would exceed {format_value(t.metric, t.threshold)} "
        f"({scope}, {_window_text(t)})"
    )
    detail: dict[str, Any] = {"reserved_nano_usd": window.reserved, "worst_case_nano_usd": reserve}
    if action == "pause":
        note += f" -> pause {pause_s:.1f}s"
        detail["pause_s"] = pause_s
    return Fired(
        policy=r.rule.name,
        metric=t.metric,
        stat=t.stat,
        value=total * cond.scale,
        threshold=t.threshold,
        action=action,
        scope=scope,
        transition="fire",
        window=_window_text(t),
        note=note,
        detail=detail,
    )


def _samples_of(cond: Threshold) -> tuple[str, ...]:
    if cond.metric == "cache_hit_ratio":
        return ("cache_read_tokens", "prompt_tokens")
    return (METRICS[cond.metric].sample,)


def _scope_value(kind: str, run_id: str | None, model: str | None, tags: Mapping[str, Any]) -> Any:
    if kind == "run":
        return run_id
    if kind == "all":
        return ""
    if kind == "model":
        return model
    value = tags.get(kind[4:])
    return None if value is None else str(value)


def _scope_text(kind: str, key: Any) -> str:
    if kind == "run":
        return f"run {key}"
    if kind == "all":
        return "all calls"
    if kind == "model":
        return f"model {key}"
    return f"{kind[4:]}={key}"


def _window_text(cond: Threshold) -> str:
    if cond.stat == "next":
        return "the next call"
    return cond.spec.describe() if cond.spec is not None else "the last call"
