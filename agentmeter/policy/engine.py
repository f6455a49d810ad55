"""The policy engine: windows fed by observed calls, rules evaluated before each call.

Deciding is apart from doing: ``Engine.decide`` returns a ``Decision`` value and a reservation;
applying it is the run's job. Time always comes from the caller (``now``), so a replay on a fake
clock gives the same decisions as the live run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..decision import Compact, Decision, Fired, new_decision
from ..deferred import Deferred
from ..windows import QUANTILES, Window, WindowSpec
from .compiled import (
    Cond,
    Probe,
    Rule,
    RuleState,
    cap_fired,
    compile_rules,
    fired_for,
    read_probe,
    scope_text,
)
from .metrics import METRICS

if TYPE_CHECKING:
    from .spec import PolicyRule, PolicySet, Threshold

__all__ = ["Engine", "Observation", "Reservation"]

# Bound plans kept per run, one per (model, tag values) it decides for; past this many, start over.
_PLANS_PER_RUN = 4096

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
class _Bound:
    """A rule resolved for one decide context (run, model, tag values): what ``decide`` walks.

    A single-condition rule has its probe and its state; a rule of several conditions has a probe
    per condition that applies (its state depends on which condition leads, so it is looked up).
    ``quiet``: nothing to do while the rule is neither breached nor active (no warn level, not a
    hard cap).
    """

    r: Rule
    probe: Probe | None
    state: RuleState | None
    probes: tuple[Probe, ...]
    quiet: bool
    # The single condition's reader and levels, copied here so that a rule with nothing to do
    # costs ``decide`` one read and one comparison (most rules, on most decides).
    read: Callable[[float], float | None] | None = None
    next: bool = False
    above: bool = True
    limit: float = 0.0
    recover_raw: float = 0.0


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
        # Observations are fed to the windows under the engine's lock by whoever holds it
        # (see ``observe``); ``_lock`` is that lock, taken by decide and every reader.
        self._pending: Deferred[tuple[Observation, Reservation | None, Iterable[str] | None]] = (
            Deferred(self._feed)
        )
        self._lock = self._pending.lock
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
        self._states: dict[tuple[int, Any], RuleState] = {}
        # (scope kind, key) -> [(sample, the bound add of its window)]: what observe walks
        self._feeds: dict[tuple[str, Any], list[tuple[str, Callable[[float, Any], None]]]] = {}
        self._compiled = compile_rules(self.rules)
        # (condition slot, scope key) -> the condition bound to that scope's windows
        self._probes: dict[tuple[int, Any], Probe] = {}
        self._run_conds = tuple(c for r in self._compiled for c in r.conds if c.t.scope == "run")
        # run id -> (model, tag values...) -> the rules bound to those scope keys
        self._plans: dict[str | None, dict[tuple[Any, ...], list[_Bound]]] = {}
        # run id -> (model, tag values...) -> every window an observation there feeds
        self._observers: dict[
            str | None, dict[tuple[Any, ...], list[tuple[str, Callable[[float, Any], None]]]]
        ] = {}
        self._tag_kinds = tuple(
            sorted(
                {c.scope for r in self.rules for c in r.conditions if c.scope.startswith("tag:")}
            )
        )
        self._tag_names = tuple(kind[4:] for kind in self._tag_kinds)
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
        """Add one finished call to every window of its scopes; release its reservation.

        Never waits for the engine's lock (``deferred.Deferred``): the observation is queued and
        fed by whoever holds the lock; ``decide`` and every reader feed the queue first.
        """
        self._pending.add((obs, reservation, kinds))

    def _feed(self, item: tuple[Observation, Reservation | None, Iterable[str] | None]) -> None:
        obs, reservation, kinds = item
        if reservation is not None:
            for window, amount in reservation.held:
                window.reserved -= amount
            reservation.held.clear()
        samples = obs.samples
        ts = obs.ts
        if kinds is None:
            feeds = self._all_feeds(obs)
        else:
            feeds = []
            for kind in kinds:
                key = _scope_value(kind, obs.run_id, obs.model, obs.tags)
                if key is not None:
                    feeds += self._feeds_for(kind, key)
        for sample, add in feeds:
            value = samples.get(sample)
            if value is not None:
                add(ts, value)

    def _feeds_for(self, kind: str, key: Any) -> list[tuple[str, Callable[[float, Any], None]]]:
        feeds = self._feeds.get((kind, key))
        if feeds is None:
            feeds = self._feeds[(kind, key)] = [
                (sample, window.add_key if sample in KEYED_SAMPLES else window.add)
                for (sample, _spec), window in self._windows_for(kind, key).items()
            ]
        return feeds

    def _all_feeds(self, obs: Observation) -> list[tuple[str, Callable[[float, Any], None]]]:
        """What an observation feeds in every scope, kept per (run, model, tag values) like plans."""
        tags = obs.tags
        names = self._tag_names
        context = (obs.model, *[_tag_key(tags, name) for name in names]) if names else (obs.model,)
        per_run = self._observers.get(obs.run_id)
        if per_run is None:
            per_run = self._observers[obs.run_id] = {}
        feeds = per_run.get(context)
        if feeds is None:
            if len(per_run) >= _PLANS_PER_RUN:
                per_run.clear()
            feeds = per_run[context] = []
            for kind in self._windows:
                key = _scope_value(kind, obs.run_id, obs.model, tags)
                if key is not None:
                    feeds += self._feeds_for(kind, key)
        return feeds

    def release(self, reservation: Reservation | None) -> None:
        """Give back a reservation whose call was never made."""
        if reservation is None:
            return
        with self._lock:
            self._pending.flush()
            for window, amount in reservation.held:
                window.reserved -= amount
            reservation.held.clear()

    def end_run(self, run_id: str) -> None:
        """Forget a finished run's windows and rule states."""
        with self._lock:
            self._pending.flush()
            if "run" in self._windows:
                self._windows["run"].pop(run_id, None)
                self._feeds.pop(("run", run_id), None)
            for key in [k for k in self._states if k[1][-1] == run_id]:
                del self._states[key]
            self._plans.pop(run_id, None)
            self._observers.pop(run_id, None)
            for cond in self._run_conds:
                self._probes.pop((cond.slot, run_id), None)

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
        caps: list[tuple[Rule, Probe]] = []
        with self._lock:
            self._pending.flush()
            for b in self._plan(run_id, model, tags):
                probe = b.probe
                if probe is not None:
                    # One condition (the common case): Cond.judge inlined, no tuple per rule, and
                    # a quiet rule neither breached nor active left before anything else is read.
                    read = b.read
                    if read is not None:
                        raw = read(now)
                    elif b.next and prompt_tokens is not None:
                        raw = float(prompt_tokens)
                    else:
                        raw = None
                    state = b.state
                    assert state is not None
                    if raw is None:
                        if b.quiet and not state.active:
                            continue
                        breached, recovered = False, True
                    elif b.above:
                        breached = raw > b.limit
                        if not breached and b.quiet and not state.active:
                            continue
                        recovered = raw <= b.recover_raw
                    else:
                        breached = raw < b.limit
                        if not breached and b.quiet and not state.active:
                            continue
                        recovered = raw >= b.recover_raw
                    cond = probe.cond
                else:
                    outcome = self._evaluate(b, now, prompt_tokens, run_id)
                    if outcome is None:
                        continue
                    breached, recovered, probe, raw, state = outcome
                    cond = probe.cond
                r = b.r
                if r.hard_cap:
                    caps.append((r, probe))
                rule = r.rule
                transition = None
                if breached and not state.active:
                    state.active, state.since, transition = True, now, "fire"
                    state.warned = True
                elif (
                    state.active
                    and not breached
                    and (not r.stateful or (recovered and now - state.since >= rule.cooldown_s))
                ):
                    state.active, transition = False, "recover"
                    state.warned = False
                if (
                    state.active
                    and rule.recover_after_s is not None
                    and transition != "fire"
                    and now - state.since >= rule.recover_after_s
                ):
                    state.active, transition = False, "recover"
                    state.warned = False
                if transition == "recover":
                    if r.stateful:
                        fired.append(fired_for(r, probe, raw, "recover", "recover"))
                    continue
                if not state.active:
                    if rule.warn_at is not None and raw is not None:
                        level = cond.limit * rule.warn_at
                        near = raw >= level if cond.above else raw <= level
                        if near and not state.warned:
                            state.warned = True
                            fired.append(fired_for(r, probe, raw, "warn", "warn"))
                        elif not near:
                            state.warned = False
                    continue
                label = transition or "active"
                for action in rule.actions:
                    kind = action.kind
                    # Most frequent first (the kinds exclude each other: the order is only speed).
                    if kind == "downgrade":
                        steps += action.steps
                    elif kind == "pause":
                        window = probe.window
                        if action.pause_s is None and cond.sum_above and window is not None:
                            # A budget pause (``_pause_for``'s first case, inlined: it fires on
                            # every decide while the budget is spent): until the sum is back.
                            wait = window.time_until_at_most(cond.limit, now)
                            if wait is None:
                                wait = self._pause_for(None, probe, now, state, transition, rule)
                            elif wait <= 0:
                                continue
                        else:
                            wait = self._pause_for(
                                action.pause_s, probe, now, state, transition, rule
                            )
                        if wait is None:
                            continue
                        if wait > pause_s:  # max(pause_s, wait), without the call
                            pause_s = wait
                        fired.append(fired_for(r, probe, raw, kind, label, wait))
                        continue
                    elif kind == "halt":
                        if not breached:
                            continue
                        halt = True
                    elif kind == "upgrade":
                        upgrade = True
                    elif kind == "no_stream":
                        no_stream = True
                    elif kind == "alert":
                        if transition != "fire":
                            continue
                    elif kind == "compact":
                        if not breached:
                            continue
                        target = action.target_tokens or 0
                        if compact is None or target < compact.target_tokens:
                            compact = Compact(target_tokens=target, prompt_tokens=prompt_tokens)
                    # ``fired_for``'s reuse test, inlined: a rule in force hands out the Fired it
                    # built last while its value stays the same (most decides under a breached cap).
                    last = probe.fired.get((kind, label))
                    if (
                        last is not None
                        and last[1] is None
                        and last[0] == raw
                        and type(last[0]) is type(raw)
                        and (raw or str(raw) == str(last[0]))
                    ):
                        fired.append(last[2])
                    else:
                        fired.append(fired_for(r, probe, raw, kind, label))

            # An active upgrade (say, users rating the cheaper model's answers down) lifts every
            # downgrade: quality before savings.
            chosen = model if upgrade else self.downgrade(model, steps)
            reservation: Reservation | None = None
            if caps and not halt:
                reserve = (worst_case(chosen) or 0) if worst_case is not None else 0
                held: list[tuple[Window, int]] = []
                for r, probe in caps:
                    window = probe.window
                    if window is None or pause_s > 0:
                        continue
                    limit = probe.cond.limit
                    total = window.total + window.reserved + reserve
                    if total <= limit:
                        held.append((window, reserve))
                        continue
                    wait = window.time_until_at_most(limit - reserve, now)
                    kinds = r.kinds
                    if "pause" in kinds and wait is not None and (wait > 0 or window.reserved):
                        verdict, pause_s = "pause", max(pause_s, wait if wait > 0 else 1.0)
                    elif "halt" in kinds or wait is None:
                        verdict, halt = "halt", True
                    else:
                        verdict, pause_s = "pause", max(pause_s, wait)
                    fired.append(cap_fired(r, probe, window, reserve, verdict, pause_s))
                if not halt and pause_s <= 0 and held and reserve:
                    for window, amount in held:
                        window.reserved += amount
                    reservation = Reservation(held=held, nano_usd=reserve)

        paused = pause_s > 0 and not halt
        decision = new_decision(
            chosen,
            model,
            compact,
            pause_s if paused else 0.0,
            now + pause_s if paused else None,
            halt,
            False if no_stream else None,
            tuple(fired),
            step,
            reservation.nano_usd if reservation else 0,
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
            self._pending.flush()
            return cond.display(read_probe(self._probe(cond, key), now, prompt_tokens))

    def cap_room(
        self, *, now: float, run_id: str | None, model: str, tags: Mapping[str, Any]
    ) -> float | None:
        """Nano-USD left under the tightest hard cap that applies (None: no cap applies). Read-only."""
        room: float | None = None
        keys = {"run": run_id, "all": "", "model": model}
        with self._lock:
            self._pending.flush()
            for r in self._compiled:
                for cond in r.hard_caps_conds:
                    key = _key(cond.t.scope, keys, tags)
                    if key is None:
                        continue
                    window = self._window_of(cond, key)
                    if window is None:
                        continue
                    window.expire(now)
                    left = cond.limit - window.total - window.reserved
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

    def _plan(self, run_id: str | None, model: str, tags: Mapping[str, Any]) -> list[_Bound]:
        """The rules bound to this decide's scope keys, built once per (run, model, tag values).

        Binding resolves each condition's window and statistic and each rule's state once, so a
        decide does no key building, no window lookup and no string dispatch per rule. Plans of a
        run go when the run ends (its windows and states go then too).
        """
        names = self._tag_names
        if names:
            get = tags.get  # ``_tag_key`` inlined: this runs on every decide
            context = (model, *[None if (v := get(name)) is None else str(v) for name in names])
        else:
            context = (model,)
        plans = self._plans.get(run_id)
        if plans is None:
            plans = self._plans[run_id] = {}
        plan = plans.get(context)
        if plan is None:
            if len(plans) >= _PLANS_PER_RUN:
                plans.clear()  # a run that decides for ever new models or tag values
            keys: dict[str, Any] = {"run": run_id, "all": "", "model": model}
            keys.update(zip(self._tag_kinds, context[1:], strict=True))
            plan = plans[context] = self._bind(keys, run_id)
        return plan

    def _bind(self, keys: dict[str, Any], run_id: str | None) -> list[_Bound]:
        plan = []
        for r in self._compiled:
            if len(r.conds) > 1:
                probes = tuple(
                    self._probe(c, keys[c.t.scope]) for c in r.conds if keys[c.t.scope] is not None
                )
                if probes:
                    plan.append(_Bound(r, None, None, probes, quiet=False))
                continue
            cond = r.conds[0]
            key = keys[cond.t.scope]
            if key is None:
                continue
            probe = self._probe(cond, key)
            quiet = not r.hard_cap and r.rule.warn_at is None
            plan.append(
                _Bound(
                    r,
                    probe,
                    self._state(r, probe, run_id),
                    (),
                    quiet,
                    probe.read,
                    cond.next,
                    cond.above,
                    cond.limit,
                    cond.recover_raw,
                )
            )
        return plan

    def _probe(self, cond: Cond, key: Any) -> Probe:
        probe = self._probes.get((cond.slot, key))
        if probe is None:
            probe = self._probes[(cond.slot, key)] = self._new_probe(cond, key)
        return probe

    def _new_probe(self, cond: Cond, key: Any) -> Probe:
        t = cond.t
        scope = scope_text(t.scope, key)
        if cond.ratio and t.spec is not None:
            windows = self._windows_for(t.scope, key)
            read_sum = windows[("cache_read_tokens", t.spec)].reader("sum")
            prompt_sum = windows[("prompt_tokens", t.spec)].reader("sum")

            def ratio(now: float) -> float | None:
                read = read_sum(now) or 0
                prompt = prompt_sum(now) or 0
                return read / prompt if prompt else None

            return Probe(cond, key, None, ratio, scope)
        window = self._window_of(cond, key)
        if window is None:
            return Probe(cond, key, None, None, scope)
        return Probe(cond, key, window, window.reader(t.stat), scope)

    def _window_of(self, cond: Cond, key: Any) -> Window | None:
        """The window a condition reads in one scope (None: ``next``, a ratio, no window)."""
        t = cond.t
        if cond.next or cond.ratio or t.spec is None:
            return None
        return self._windows_for(t.scope, key)[cond.window_key]

    def _state(self, r: Rule, probe: Probe, run_id: str | None) -> RuleState:
        scope = probe.cond.t.scope
        where = (scope, probe.key) if scope == "run" else (scope, probe.key, run_id)
        state = self._states.get((r.index, where))
        if state is None:
            state = self._states[(r.index, where)] = RuleState()
        return state

    def _pause_for(
        self,
        fixed_s: float | None,
        probe: Probe,
        now: float,
        state: RuleState,
        transition: str | None,
        rule: PolicyRule,
    ) -> float | None:
        if fixed_s is None:
            window = probe.window
            t = probe.cond.t
            if window is not None and t.stat == "sum" and t.above:
                wait = window.time_until_at_most(t.raw, now)
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
        self, b: _Bound, now: float, prompt_tokens: int | None, run_id: str | None
    ) -> tuple[bool, bool, Probe, float | None, RuleState]:
        """A rule of several conditions: combined, with the condition that leads (and its state)."""
        results = []
        for probe in b.probes:
            raw = read_probe(probe, now, prompt_tokens)
            breached, recovered = probe.cond.judge(raw)
            results.append((breached, recovered, probe, raw))
        if b.r.rule.combine == "all":
            breached = all(x[0] for x in results)
            recovered = any(x[1] for x in results)
        else:
            breached = any(x[0] for x in results)
            recovered = all(x[1] for x in results)
        lead = next((x for x in results if x[0]), results[0])
        return breached, recovered, lead[2], lead[3], self._state(b.r, lead[2], run_id)


def _key(kind: str, keys: dict[str, Any], tags: Mapping[str, Any]) -> Any:
    if kind in keys:
        return keys[kind]
    return _tag_key(tags, kind[4:])


def _tag_key(tags: Mapping[str, Any], name: str) -> str | None:
    value = tags.get(name)
    return None if value is None else str(value)


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
