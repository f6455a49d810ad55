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
)
_STATEFUL = ("downgrade", "no_stream", "alert")


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


def _features(stat: str, metric: str) -> str:
    if metric == "repeated_prompt":
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
        self.hard_caps = any(rule.is_hard_cap for rule in self.rules)
        self.needs_prompt_tokens = self.hard_caps or any(
            c.stat == "next" for rule in self.rules for c in rule.conditions
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
            for kind in kinds if kinds is not None else self._windows:
                key = _scope_value(kind, obs.run_id, obs.model, obs.tags)
                if key is None:
                    continue
                for (sample, _spec), window in self._windows_for(kind, key).items():
                    value = samples.get(sample)
                    if value is None:
                        continue
                    if sample == "prompt_hash":
                        window.add_key(obs.ts, value)
                    else:
                        window.add(obs.ts, value)

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
        no_stream = False
        halt = False
        pause_s = 0.0
        compact: Compact | None = None
        caps: list[tuple[PolicyRule, Threshold, _Measure, str]] = []
        with self._lock:
            for index, rule in enumerate(self.rules):
                outcome = self._evaluate(rule, now, model, run_id, tags, prompt_tokens)
                if outcome is None:
                    continue
                breached, recovered, lead, measure, scope_text = outcome
                if rule.is_hard_cap:
                    caps.append((rule, lead, measure, scope_text))
                state_key = (index, _state_scope(lead.scope, run_id, model, tags))
                state = self._states.get(state_key)
                if state is None:
                    state = self._states[state_key] = _RuleState()
                stateful = any(
                    a.kind in _STATEFUL or (a.kind == "pause" and a.pause_s is not None)
                    for a in rule.actions
                )
                transition = None
                if breached and not state.active:
                    state.active, state.since, transition = True, now, "fire"
                    state.warned = True
                elif state.active and not breached:
                    cooled = now - state.since >= rule.cooldown_s
                    if (recovered and cooled) or not stateful:
                        state.active, transition = False, "recover"
                        state.warned = False
                if (
                    state.active
                    and rule.recover_after_s is not None
                    and now - state.since >= rule.recover_after_s
                    and transition != "fire"
                ):
                    state.active, transition = False, "recover"
                    state.warned = False
                if transition == "recover":
                    if stateful:
                        fired.append(
                            self._fired(rule, lead, measure, scope_text, "recover", "recover")
                        )
                    continue
                if not state.active:
                    if rule.warn_at is not None and measure.raw is not None:
                        level = lead.raw * rule.warn_at
                        near = measure.raw >= level if lead.above else measure.raw <= level
                        if near and not state.warned:
                            state.warned = True
                            fired.append(
                                self._fired(rule, lead, measure, scope_text, "warn", "warn")
                            )
                        elif not near:
                            state.warned = False
                    continue
                label = transition or "active"
                for action in rule.actions:
                    kind = action.kind
                    if kind == "downgrade":
                        steps += action.steps
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
                            action.pause_s, lead, measure, now, state, transition, rule
                        )
                        if wait is None:
                            continue
                        pause_s = max(pause_s, wait)
                    fired.append(self._fired(rule, lead, measure, scope_text, kind, label))

            chosen = self.downgrade(model, steps)
            reservation: Reservation | None = None
            reserve = 0
            if caps and not halt and worst_case is not None:
                reserve = worst_case(chosen) or 0
            if caps and not halt:
                held: list[tuple[Window, int]] = []
                for rule, lead, measure, scope_text in caps:
                    window = measure.window
                    if window is None or pause_s > 0:
                        continue
                    total = window.total + window.reserved + reserve
                    if total > lead.raw:
                        wait = window.time_until_at_most(lead.raw - reserve, now)
                        will = Fired(
                            policy=rule.name,
                            metric=lead.metric,
                            stat=lead.stat,
                            value=total * METRICS[lead.metric].scale,
                            threshold=lead.threshold,
                            action="halt",
                            scope=scope_text,
                            transition="fire",
                            reason=(
                                f"{rule.name}: spent {_fmt(lead.metric, window.total * 1e-9)} + "
                                f"in flight {_fmt(lead.metric, window.reserved * 1e-9)} + this call's "
                                f"worst case {_fmt(lead.metric, reserve * 1e-9)} would exceed "
                                f"{_fmt(lead.metric, lead.threshold)} ({scope_text}, {_window_text(lead)})"
                            ),
                            detail={
                                "reserved_nano_usd": window.reserved,
                                "worst_case_nano_usd": reserve,
                            },
                        )
                        kinds = {a.kind for a in rule.actions}
                        if "pause" in kinds and wait is not None and (wait > 0 or window.reserved):
                            pause_s = max(pause_s, wait if wait > 0 else 1.0)
                            fired.append(_replace_action(will, "pause", pause_s))
                        elif "halt" in kinds or wait is None:
                            halt = True
                            fired.append(will)
                        else:
                            pause_s = max(pause_s, wait)
                            fired.append(_replace_action(will, "pause", pause_s))
                    else:
                        held.append((window, reserve))
                if not halt and pause_s <= 0 and held and reserve:
                    for window, amount in held:
                        window.reserved += amount
                    reservation = Reservation(held=held, nano_usd=reserve)

        decision = Decision(
            model=chosen,
            requested_model=model,
            compact=compact,
            pause_s=pause_s if not halt else 0.0,
            resume_at=now + pause_s if pause_s > 0 and not halt else None,
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
        rule = next((r for r in self.rules if r.name == policy), None)
        if rule is None:
            raise KeyError(f"no policy named {policy!r}")
        cond = rule.conditions[0]
        key = _scope_value(cond.scope, run_id, model, tags or {})
        if key is None:
            return None
        with self._lock:
            return self._measure(cond, key, now, prompt_tokens).value

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
        lead: Threshold,
        measure: _Measure,
        now: float,
        state: _RuleState,
        transition: str | None,
        rule: PolicyRule,
    ) -> float | None:
        if fixed_s is None:
            window = measure.window
            if window is not None and lead.stat == "sum" and lead.above:
                wait = window.time_until_at_most(lead.raw, now)
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
        rule: PolicyRule,
        now: float,
        model: str,
        run_id: str | None,
        tags: Mapping[str, Any],
        prompt_tokens: int | None,
    ) -> tuple[bool, bool, Threshold, _Measure, str] | None:
        results = []
        for cond in rule.conditions:
            key = _scope_value(cond.scope, run_id, model, tags)
            if key is None:
                continue
            measure = self._measure(cond, key, now, prompt_tokens)
            breached = recovered = False
            if measure.raw is not None:
                if cond.above:
                    breached = measure.raw > cond.raw
                    level = (
                        rule.recover_level / METRICS[cond.metric].scale
                        if rule.recover_level is not None
                        else cond.raw * (rule.recover_ratio or 1.0)
                    )
                    recovered = measure.raw <= level
                else:
                    breached = measure.raw < cond.raw
                    level = (
                        rule.recover_level / METRICS[cond.metric].scale
                        if rule.recover_level is not None
                        else cond.raw / (rule.recover_ratio or 1.0)
                    )
                    recovered = measure.raw >= level
            else:
                recovered = True
            results.append((breached, recovered, cond, measure, _scope_text(cond.scope, key)))
        if not results:
            return None
        if rule.combine == "all":
            breached = all(r[0] for r in results)
            recovered = any(r[1] for r in results)
        else:
            breached = any(r[0] for r in results)
            recovered = all(r[1] for r in results)
        lead = next((r for r in results if r[0]), results[0])
        return breached, recovered, lead[2], lead[3], lead[4]

    def _measure(
        self, cond: Threshold, key: Any, now: float, prompt_tokens: int | None
    ) -> _Measure:
        metric = METRICS[cond.metric]
        if cond.stat == "next":
            raw = float(prompt_tokens) if prompt_tokens is not None else None
            return _Measure(raw, raw, None)
        if cond.spec is None:
            return _Measure(None, None, None)
        windows = self._windows_for(cond.scope, key)
        if cond.metric == "cache_hit_ratio":
            read = windows[("cache_read_tokens", cond.spec)].stat("sum", now) or 0
            prompt = windows[("prompt_tokens", cond.spec)].stat("sum", now) or 0
            ratio = read / prompt if prompt else None
            return _Measure(ratio, ratio, None)
        window = windows[(metric.sample, cond.spec)]
        raw = window.stat(cond.stat, now)
        scale = 1.0 if cond.stat == "anomaly" else metric.scale  # a z-score has no unit
        value = raw * scale if raw is not None else None
        return _Measure(value, raw, window)

    def _fired(
        self,
        rule: PolicyRule,
        cond: Threshold,
        measure: _Measure,
        scope_text: str,
        action: str,
        transition: str,
    ) -> Fired:
        op = ">" if cond.above else "<"
        if transition == "recover":
            op = "<=" if cond.above else ">="
            limit = "recovered"
        elif transition == "warn":
            limit = f"warn at {rule.warn_at:.0%} of"
            op = ">=" if cond.above else "<="
        else:
            limit = ""
        value_text = _fmt(cond.metric, measure.value, cond.stat)
        threshold_text = _fmt(cond.metric, cond.threshold, cond.stat)
        reason = (
            f"{rule.name}: {cond.metric} {cond.stat} over {_window_text(cond)} = {value_text} "
            f"{op} {(limit + ' ') if limit and transition == 'warn' else ''}{threshold_text} "
            f"({scope_text}) -> {action}"
        )
        if transition == "recover":
            reason = (
                f"{rule.name}: recovered, {cond.metric} {cond.stat} over {_window_text(cond)} = "
                f"{value_text} (threshold {threshold_text}, {scope_text})"
            )
        return Fired(
            policy=rule.name,
            metric=cond.metric,
            stat=cond.stat,
            value=measure.value,
            threshold=cond.threshold,
            action=action,
            scope=scope_text,
            transition=transition,
            reason=reason,
        )


def _replace_action(fired: Fired, action: str, pause_s: float) -> Fired:
    return Fired(
        policy=fired.policy,
        metric=fired.metric,
        stat=fired.stat,
        value=fired.value,
        threshold=fired.threshold,
        action=action,
        scope=fired.scope,
        transition=fired.transition,
        reason=fired.reason.replace("would exceed", "would exceed") + f" -> pause {pause_s:.1f}s",
        detail={**fired.detail, "pause_s": pause_s},
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


def _state_scope(kind: str, run_id: str | None, model: str, tags: Mapping[str, Any]) -> Any:
    # Rule state is per run as well, so one run's recovery never lifts another run's downgrade.
    return (
        (kind, _scope_value(kind, run_id, model, tags))
        if kind == "run"
        else (
            kind,
            _scope_value(kind, run_id, model, tags),
            run_id,
        )
    )


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


def _fmt(metric: str, value: float | None, stat: str = "") -> str:
    if value is None:
        return "n/a"
    if stat == "anomaly":
        return f"robust z {value:.1f}"
    unit = METRICS[metric].unit
    if unit == "usd":
        return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"
    if unit == "ms":
        return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"
    if unit == "ratio":
        return f"{value:.0%}"
    if unit == "tokens":
        return f"{value:,.0f} tokens"
    return f"{value:g}"
