"""Self-tuning from the flight recorder: threshold proposals, a model routing mix, a replay check.

The rules, in one place:

- Latency alarms (``latency_ms`` / ``ttft_ms``, a quantile, max, mean or last, with ``above``):
  the ``quantile`` (p99) of each model's successful calls, for models with at least ``min_calls``
  calls; the threshold is the highest of those, times ``margin`` (1.2), so no model's normal tail
  trips it.
- Sums with ``above`` (a budget: ``cost_usd``; also token sums and ``errors``): the sum over the
  condition's window in the condition's scope, measured at each recorded call (that call
  included), as the engine sees it; the threshold is the ``quantile`` of those sums times
  ``margin``. At least ``min_calls`` measurements, or the threshold is kept.
- A zero threshold, a ``below`` threshold and any other metric or statistic (anomaly, rate,
  ratio, repeats) are kept as written.
- Proposals round up to 1 ms, $0.000001 or one token. A policy's explicit ``recover_below``
  keeps its ratio to the threshold. The proposed file is the current one with those values
  changed in place (comments kept); when that cannot be done exactly, it is the document re-dumped.
- The routing mix, per task (``by=tag:NAME``, or every call as one task): the share of calls per
  model minimizing the expected cost per call, subject to ``sum share_i * p90_i <= latency_p90_ms``
  and ``sum share_i * error_rate_i <= max_error_rate``, shares summing to 1, over models with at
  least ``min_calls`` calls (``scipy.optimize.linprog``, HiGHS). The weighted sum of p90s is a
  linear surrogate, not the mix's p90: it is exact when the models' latencies are alike and can
  be far off when they differ (a 50/50 mix of a steady 1 s model and a steady 10 s model has a
  p90 of 10 s, not 5.5 s), so check the real p90 after a rollout. The policy file has no routing
  section: the mix is reported, not written.
- The check replays the newest ``replay_runs`` runs through the current and the proposed policy
  sets (``agentmeter.replay``) and sums what each would have cost and decided.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sqlite3
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from .clock import SYSTEM_CLOCK, Clock
from .errors import ConfigError, ReplayError
from .policy.metrics import METRICS
from .policy.spec import PolicyRule, PolicySet, Threshold, load_policies, parse_policies
from .query import _tag_path, _tag_text, exact_quantiles, jsonable, list_runs

__all__ = [
    "ModelStats",
    "PolicyReplay",
    "ReplayCheck",
    "RoutingMix",
    "ThresholdProposal",
    "TuneResult",
    "tune",
]

_LATENCY = ("latency_ms", "ttft_ms")
_LATENCY_STATS = ("p50", "p90", "p95", "p99", "max", "mean", "last")  # values in ms
_SUMS = (
    "cost_usd", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "reasoning_tokens", "prompt_tokens", "total_tokens", "errors",
)  # fmt: skip
_KEYS = {"run": "run", "all": "scope", "model": "model"}
_STEP = {"usd": 1e-6, "ms": 1.0, "tokens": 1.0, "count": 1.0}
_COLUMNS = (
    "run_id, ts, model, cost_nano_usd, status, latency_ms, ttft_ms, input_tokens, output_tokens, "
    "cache_read_tokens, cache_write_tokens, reasoning_tokens, usage_status, tags"
)


# -- values --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ThresholdProposal:
    """A threshold of the current policy file and what history says it should be (and why)."""

    policy: str
    condition: int  # index among the policy's conditions
    metric: str
    stat: str
    window: str | None
    scope: str
    unit: str
    current: float
    proposed: float | None  # None: kept as written
    status: str  # "changed", "unchanged" or "kept"
    basis: str
    n: int = 0
    recover_below: tuple[float, float] | None = None  # (current, proposed), when scaled


@dataclass(frozen=True, slots=True)
class ModelStats:
    """One model's history within a task: what the routing mix is chosen from."""

    model: str
    calls: int
    priced_calls: int
    cost_per_call_usd: Decimal | None
    p90_latency_ms: float | None
    error_rate: float
    eligible: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingMix:
    """The cheapest share of calls per model for one task under the latency and error bounds."""

    task: str
    status: str  # "optimal", "infeasible", "no eligible models" or "error"
    message: str
    models: tuple[ModelStats, ...]
    shares: dict[str, float]
    current_shares: dict[str, float]
    expected_cost_per_call_usd: Decimal | None
    current_cost_per_call_usd: Decimal | None
    expected_p90_latency_ms: float | None  # the linear surrogate sum share_i * p90_i
    expected_error_rate: float | None
    latency_p90_target_ms: float | None
    max_error_rate: float | None


@dataclass(frozen=True, slots=True)
class PolicyReplay:
    """What one policy set would have done over the replayed runs."""

    cost_usd: Decimal
    decisions: int
    by_policy: dict[str, int]
    halted_runs: int
    calls_not_made: int


@dataclass(frozen=True, slots=True)
class ReplayCheck:
    """Recorded runs replayed through the current and the proposed policies: costs and decisions."""

    runs: int
    recorded_cost_usd: Decimal
    current: PolicyReplay
    proposed: PolicyReplay
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: the recorded cost, then each policy set's cost, decisions and halts."""
        cur, new = self.current, self.proposed
        return (
            f"replayed {self.runs} run(s) (recorded ${self.recorded_cost_usd:.4f}): current "
            f"policies ${cur.cost_usd:.4f} with {cur.decisions} decision(s), {cur.halted_runs} "
            f"halted; proposed ${new.cost_usd:.4f} with {new.decisions} decision(s), "
            f"{new.halted_runs} halted"
        )


@dataclass(frozen=True, slots=True)
class TuneResult:
    """Proposals, routing mixes, the proposed policy YAML, its diff and the replay check."""

    policies: str
    proposals: tuple[ThresholdProposal, ...]
    mixes: tuple[RoutingMix, ...]
    proposed_yaml: str
    diff: str
    replay: ReplayCheck | None
    settings: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> int:
        return sum(p.status == "changed" for p in self.proposals)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``: Decimals as exact strings."""
        return jsonable(
            {
                "policies": self.policies,
                **self.settings,
                "changed": self.changed,
                "proposals": [asdict(p) for p in self.proposals],
                "routing": [asdict(m) for m in self.mixes],
                "diff": self.diff,
                "proposed_yaml": self.proposed_yaml,
                "replay": None if self.replay is None else asdict(self.replay),
                "notes": list(self.notes),
            }
        )


# -- history ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Call:
    run_id: str | None
    ts: float
    model: str | None
    cost: int | None
    ok: bool
    latency_ms: float | None
    ttft_ms: float | None
    tokens: dict[str, int] | None  # None: usage unknown
    tags: dict[str, Any]


def _load_calls(conn: sqlite3.Connection, since_s: float | None, now: float) -> list[_Call]:
    sql = f"SELECT {_COLUMNS} FROM agentmeter_calls"
    params: list[Any] = []
    if since_s is not None:
        sql += " WHERE ts >= ?"
        params.append(now - since_s)
    tag_cache: dict[str, dict[str, Any]] = {}
    calls = []
    for row in conn.execute(sql + " ORDER BY ts, id", params):
        run_id, ts, model, cost, status, lat, ttft, inp, out, cr, cw, rs, usage, tags = row
        parsed = tag_cache.get(tags)
        if parsed is None:
            try:
                value = json.loads(tags or "{}")
            except ValueError:
                value = {}
            parsed = tag_cache[tags] = value if isinstance(value, dict) else {}
        tokens = None
        if usage != "unknown":
            inp, out, cr, cw = inp or 0, out or 0, cr or 0, cw or 0
            prompt = inp + cr + cw
            tokens = {
                "input_tokens": inp, "output_tokens": out, "cache_read_tokens": cr,
                "cache_write_tokens": cw, "reasoning_tokens": rs or 0,
                "prompt_tokens": prompt, "total_tokens": prompt + out,
            }  # fmt: skip
        calls.append(_Call(run_id, ts, model, cost, status == "ok", lat, ttft, tokens, parsed))
    return calls


def _sample(call: _Call, metric: str) -> float:
    """What one call adds to a sum of ``metric`` (display unit; unknown counts as nothing)."""
    if metric == "cost_usd":
        return (call.cost or 0) * 1e-9
    if metric == "errors":
        return 0.0 if call.ok else 1.0
    return float(call.tokens[metric]) if call.tokens is not None else 0.0


def _scope_key(call: _Call, scope: str) -> Any:
    if scope == "run":
        return call.run_id
    if scope == "all":
        return ""
    if scope == "model":
        return call.model
    value = call.tags.get(scope[4:])
    return None if value is None else str(value)


def _window_sums(calls: Iterable[_Call], cond: Threshold) -> tuple[list[float], int]:
    """The sum of ``cond``'s metric over its window in its scope, at each call (that call included).

    Also returns how many scope keys (runs, models, tag values) the sums come from.
    """
    series: dict[Any, list[_Call]] = {}
    for call in calls:
        key = _scope_key(call, cond.scope)
        if key is not None:
            series.setdefault(key, []).append(call)
    sums: list[float] = []
    spec = cond.spec
    if spec is None:
        raise ValueError("a windowed sum needs a window")
    for items in series.values():
        window: deque[tuple[float, float]] = deque()
        total = 0.0
        for call in items:
            value = _sample(call, cond.metric)
            window.append((call.ts, value))
            total += value
            while window and (
                (spec.seconds is not None and window[0][0] + spec.seconds <= call.ts)
                or (spec.count is not None and len(window) > spec.count)
            ):
                total -= window.popleft()[1]
            sums.append(total)
    return sums, len(series)


# -- threshold proposals -------------------------------------------------------------------------
def _round_up(value: float, unit: str) -> float:
    step = _STEP.get(unit, 1e-6)
    return round(math.ceil(value / step - 1e-6) * step, 9)


def _fmt(value: float, unit: str) -> str:
    if unit == "usd":
        return f"${value:,.6f}".rstrip("0").rstrip(".") if value < 1 else f"${value:,.2f}"
    if unit == "ms":
        return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"
    return f"{value:g}"


def _latency_tail(
    cond: Threshold, calls: list[_Call], q: float, min_calls: int
) -> tuple[float, int, str] | str:
    """The highest per-model quantile of the latency (with n and basis), or why there is none."""
    per_model: dict[str, list[float]] = {}
    for call in calls:
        value = getattr(call, cond.metric)
        if call.ok and value is not None and call.model is not None:
            per_model.setdefault(call.model, []).append(value)
    tails = [
        (exact_quantiles(values, (q,))[0] or 0.0, len(values), model)
        for model, values in per_model.items()
        if len(values) >= min_calls
    ]
    if not tails:
        return f"kept: no model has {min_calls} successful calls with a {cond.metric}"
    tail, n, model = max(tails)
    return (
        tail,
        n,
        (
            f"p{q * 100:g} of {n:,} successful calls on {model} ({_fmt(tail, 'ms')}, the highest of "
            f"{len(tails)} model(s) with >= {min_calls} calls)"
        ),
    )


def _sum_tail(
    cond: Threshold, calls: list[_Call], q: float, min_calls: int
) -> tuple[float, int, str] | str:
    """The quantile of the windowed sum (with n and basis), or why there is none."""
    sums, keys = _window_sums(calls, cond)
    if len(sums) < min_calls:
        return f"kept: {len(sums)} measurement(s) of the window, fewer than {min_calls}"
    tail = exact_quantiles(sums, (q,))[0] or 0.0
    window = cond.spec.describe() if cond.spec is not None else ""
    return (
        tail,
        len(sums),
        (
            f"p{q * 100:g} of the {window} {cond.metric} sum per {cond.scope}, measured at each of "
            f"{len(sums):,} calls of {keys:,} {_KEYS.get(cond.scope, 'tag value')}(s) "
            f"({_fmt(tail, METRICS[cond.metric].unit)})"
        ),
    )


def _propose(
    rule: PolicyRule, index: int, cond: Threshold, calls: list[_Call], q: float, margin: float,
    min_calls: int,
) -> ThresholdProposal:  # fmt: skip
    unit = METRICS[cond.metric].unit
    kept = ThresholdProposal(
        policy=rule.name,
        condition=index,
        metric=cond.metric,
        stat=cond.stat,
        window=None if cond.spec is None else cond.spec.describe(),
        scope=cond.scope,
        unit=unit,
        current=cond.threshold,
        proposed=None,
        status="kept",
        basis="",
    )
    found: tuple[float, int, str] | str
    if not cond.above:
        found = "kept: a 'below' threshold is not tuned"
    elif cond.threshold == 0:
        found = "kept: a zero threshold is a rule, not a statistic"
    elif cond.metric in _LATENCY and cond.stat in _LATENCY_STATS:
        found = _latency_tail(cond, calls, q, min_calls)
    elif cond.stat == "sum" and cond.metric in _SUMS and cond.spec is not None:
        found = _sum_tail(cond, calls, q, min_calls)
    else:
        found = f"kept: {cond.metric} {cond.stat} is not tuned from history"
    if isinstance(found, str):
        return replace(kept, basis=found)
    tail, n, basis = found
    proposed = _round_up(tail * margin, unit)
    if proposed <= 0:
        return replace(kept, basis=f"kept: the observed value is zero ({basis})", n=n)
    recover = None
    if index == 0 and rule.recover_level is not None and proposed != cond.threshold:
        ratio = rule.recover_level / cond.threshold
        recover = (rule.recover_level, _round_up(proposed * ratio, unit))
    return replace(
        kept,
        proposed=proposed,
        status="unchanged" if proposed == cond.threshold else "changed",
        basis=f"{basis} x {margin:g}",
        n=n,
        recover_below=recover,
    )


# -- the proposed file ---------------------------------------------------------------------------
def _yaml_value(value: float, unit: str) -> Any:
    if unit == "usd":
        return f"${Decimal(str(value)).normalize():f}"
    if unit == "ms":
        return f"{value:.0f}ms"
    return int(value) if float(value).is_integer() else value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _edits(
    policy_set: PolicySet, proposals: Iterable[ThresholdProposal]
) -> list[tuple[tuple[Any, ...], str, Any]]:
    """``(path of a mapping in the YAML document, key, new value)`` per changed threshold."""
    items = policy_set.document.get("policies") or []
    index = {p.get("name"): i for i, p in enumerate(items) if isinstance(p, dict)}
    edits: list[tuple[tuple[Any, ...], str, Any]] = []
    for p in proposals:
        if p.status != "changed" or p.proposed is None:
            continue
        item = ("policies", index[p.policy])
        when = items[index[p.policy]]["when"]
        combined = [k for k in ("any", "all") if k in when]
        form = (combined[0], p.condition) if combined else ()
        edits.append(((*item, "when", *form), "above", _yaml_value(p.proposed, p.unit)))
        if p.recover_below is not None:
            edits.append((item, "recover_below", _yaml_value(p.recover_below[1], p.unit)))
    return edits


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


_SCALAR = r"(\b{key}\s*:\s*)(\"[^\"\n]*\"|'[^'\n]*'|[^,}}\]\s#]+)"


def _edit_text(
    text: str, document: Any, edits: list[tuple[tuple[Any, ...], str, Any]]
) -> str | None:
    """The file with each value replaced on its own line (comments kept); None if ambiguous."""
    lines = text.splitlines(keepends=True)
    for path, key, value in edits:
        line = getattr(_at(document, path), "key_lines", {}).get(key)
        if line is None or line > len(lines):
            return None
        found = list(re.finditer(_SCALAR.format(key=re.escape(key)), lines[line - 1]))
        if len(found) != 1:
            return None
        literal = json.dumps(value) if isinstance(value, str) else str(value)
        old, (start, end) = lines[line - 1], found[0].span(2)
        lines[line - 1] = old[:start] + literal + old[end:]
    return "".join(lines)


def _source_text(policies: Any, policy_set: PolicySet) -> str | None:
    if isinstance(policies, str) and "\n" in policies:
        return policies
    path = Path(policy_set.source)
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _proposed_yaml(policies: Any, policy_set: PolicySet, proposals: list[ThresholdProposal]) -> str:
    """The proposed policy file: the current text edited in place, else the document re-dumped."""
    import yaml

    edits = _edits(policy_set, proposals)
    text = _source_text(policies, policy_set)
    if not edits and text is not None:
        return text
    document = _plain(policy_set.document)
    for path, key, value in edits:
        _at(document, path)[key] = value
    dumped = yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=True)
    edited = _edit_text(text, policy_set.document, edits) if text is not None else None
    if edited is not None and _normalized(parse_policies(edited)) == _normalized(
        parse_policies(dumped)
    ):
        return edited
    return dumped


def _normalized(policy_set: PolicySet) -> str:
    import yaml

    return yaml.safe_dump(policy_set.normalized(), sort_keys=False, width=100)


# -- routing mix ---------------------------------------------------------------------------------
def _mix(
    task: str, calls: list[_Call], latency_p90_ms: float | None, max_error_rate: float | None,
    min_calls: int,
) -> RoutingMix:  # fmt: skip
    groups: dict[str, list[_Call]] = {}
    for call in calls:
        if call.model is not None:
            groups.setdefault(call.model, []).append(call)
    models, eligible = [], []
    costs: dict[str, tuple[int, int]] = {}
    for model, items in sorted(groups.items()):
        priced = [c.cost or 0 for c in items if c.cost is not None or not c.ok]
        costs[model] = (sum(priced), len(priced))
        p90 = exact_quantiles(
            [c.latency_ms for c in items if c.ok and c.latency_ms is not None], (0.9,)
        )[0]
        reason = None
        if len(items) < min_calls:
            reason = f"{len(items)} calls, fewer than {min_calls}"
        elif not priced:
            reason = "no priced calls"
        elif latency_p90_ms is not None and p90 is None:
            reason = "no successful call with a latency"
        stats = ModelStats(
            model=model,
            calls=len(items),
            priced_calls=len(priced),
            cost_per_call_usd=_mean_usd(*costs[model]),
            p90_latency_ms=p90,
            error_rate=sum(not c.ok for c in items) / len(items),
            eligible=reason is None,
            reason=reason,
        )
        models.append(stats)
        if reason is None:
            eligible.append(stats)
    total = sum(len(v) for v in groups.values()) or 1
    mix = RoutingMix(
        task=task,
        status="no eligible models",
        message=f"no model has {min_calls} calls with a known cost in this task",
        models=tuple(models),
        shares={},
        current_shares={m: len(v) / total for m, v in sorted(groups.items())},
        expected_cost_per_call_usd=None,
        current_cost_per_call_usd=_mean_usd(
            sum(c[0] for c in costs.values()), sum(c[1] for c in costs.values())
        ),
        expected_p90_latency_ms=None,
        expected_error_rate=None,
        latency_p90_target_ms=latency_p90_ms,
        max_error_rate=max_error_rate,
    )
    if not eligible:
        return mix
    from scipy.optimize import linprog

    c = [costs[m.model][0] / costs[m.model][1] for m in eligible]
    rows, bounds = [], []
    if latency_p90_ms is not None:
        rows.append([m.p90_latency_ms or 0.0 for m in eligible])
        bounds.append(latency_p90_ms)
    if max_error_rate is not None:
        rows.append([m.error_rate for m in eligible])
        bounds.append(max_error_rate)
    solution = linprog(
        c, A_ub=rows or None, b_ub=bounds or None, A_eq=[[1.0] * len(eligible)], b_eq=[1.0],
        bounds=[(0.0, 1.0)] * len(eligible), method="highs",
    )  # fmt: skip
    if solution.status == 2:
        return replace(
            mix, status="infeasible", message=_infeasible(eligible, latency_p90_ms, max_error_rate)
        )
    if solution.status != 0:
        return replace(mix, status="error", message=f"the solver stopped: {solution.message}")
    x = [0.0 if v < 1e-9 else float(v) for v in solution.x]
    shares = {m.model: v / sum(x) for m, v in zip(eligible, x, strict=True)}
    p90s = [m.p90_latency_ms for m in eligible]
    return replace(
        mix,
        status="optimal",
        message="route " + ", ".join(f"{m} {s:.0%}" for m, s in shares.items() if s > 0),
        shares=shares,
        expected_cost_per_call_usd=_mean_usd(
            round(sum(s * cost for s, cost in zip(shares.values(), c, strict=True)) * 1000), 1000
        ),
        expected_p90_latency_ms=None
        if None in p90s
        else sum(s * (p or 0.0) for s, p in zip(shares.values(), p90s, strict=True)),
        expected_error_rate=sum(shares[m.model] * m.error_rate for m in eligible),
    )


def _infeasible(
    eligible: list[ModelStats], latency_ms: float | None, error_rate: float | None
) -> str:
    """Which bound no eligible model meets (with the best one), or that they clash."""
    parts, bounds = [], []
    if latency_ms is not None:
        fast = min(eligible, key=lambda m: m.p90_latency_ms or 0.0)
        bound = f"p90 <= {_fmt(latency_ms, 'ms')}"
        bounds.append(bound)
        if (fast.p90_latency_ms or 0.0) > latency_ms:
            best = _fmt(fast.p90_latency_ms or 0.0, "ms")
            parts.append(f"{bound} is out of reach (the fastest model, {fast.model}, has {best})")
    if error_rate is not None:
        low = min(eligible, key=lambda m: m.error_rate)
        bound = f"error rate <= {error_rate:.1%}"
        bounds.append(bound)
        if low.error_rate > error_rate:
            parts.append(
                f"{bound} is out of reach (the most reliable model, {low.model}, has "
                f"{low.error_rate:.1%})"
            )
    if parts:
        return "infeasible: " + "; ".join(parts)
    return f"infeasible: no mix of the eligible models meets {' and '.join(bounds)} together"


def _mean_usd(total_nano: int, n: int) -> Decimal | None:
    from .compare import _mean_usd as mean

    return mean(total_nano, n) if n else None


# -- replay check --------------------------------------------------------------------------------
def _replay_check(
    conn: sqlite3.Connection, run_ids: list[str], current: PolicySet, proposed: PolicySet
) -> ReplayCheck:
    from .replay import replay

    recorded, done, notes = Decimal(0), 0, []
    totals: list[list[Any]] = [[Decimal(0), 0, Counter(), 0, 0] for _ in range(2)]
    for run_id in run_ids:
        try:
            results = [replay(conn, run_id, policies=ps) for ps in (current, proposed)]
        except ReplayError as exc:
            notes.append(f"run {run_id} not replayed: {exc}")
            continue
        done += 1
        recorded += results[0].recorded_cost
        for total, r in zip(totals, results, strict=True):
            total[0] += r.counterfactual_cost
            total[1] += len(r.decisions)
            total[2].update(d.policy for d in r.decisions)
            total[3] += r.halted_at_step is not None
            total[4] += r.calls_not_made
    sides = [PolicyReplay(t[0], t[1], dict(sorted(t[2].items())), t[3], t[4]) for t in totals]
    return ReplayCheck(done, recorded, sides[0], sides[1], tuple(notes))


# -- tune ------------------------------------------------------------------------------------------
def tune(
    conn: sqlite3.Connection,
    *,
    policies: str | Path | PolicySet,
    since_s: float | None = None,
    latency_p90_ms: float | None = None,
    max_error_rate: float | None = None,
    by: str | None = None,
    margin: float = 1.2,
    quantile: float = 0.99,
    min_calls: int = 30,
    replay_runs: int = 20,
    now: float | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> TuneResult:
    """Propose thresholds for ``policies`` and a routing mix from the recorded calls; replay-check them.

    ``since_s``: only calls that finished in the last ``since_s`` seconds (and runs in that window
    for the replay). ``by``: ``tag:NAME`` splits the routing mix per task. The rules are in the
    module docstring.
    """
    if margin <= 0 or not 0 < quantile <= 1 or min_calls < 1 or replay_runs < 0:
        raise ConfigError(
            "tune needs margin > 0 (like 1.2), 0 < quantile <= 1 (like 0.99), min_calls >= 1 and "
            f"replay_runs >= 0; got margin={margin}, quantile={quantile}, min_calls={min_calls}, "
            f"replay_runs={replay_runs}"
        )
    if max_error_rate is not None and not 0 <= max_error_rate <= 1:
        raise ConfigError(f"max_error_rate is a share like 5% (0.05), got {max_error_rate}")
    if by is not None and not by.startswith("tag:"):
        raise ConfigError(f"the routing mix splits tasks by tag:NAME (like tag:task), got {by!r}")
    tag = None
    if by is not None:
        _tag_path(by[4:])  # validates the tag name
        tag = by[4:]
    policy_set = load_policies(policies)
    if policy_set is None:
        raise ConfigError("tune needs a policy set: a file path, a built-in name or YAML text")
    at = clock.now() if now is None else now
    calls = _load_calls(conn, since_s, at)
    proposals = [
        _propose(rule, i, cond, calls, quantile, margin, min_calls)
        for rule in policy_set.policies
        for i, cond in enumerate(rule.conditions)
    ]
    proposed_yaml = _proposed_yaml(policies, policy_set, proposals)
    proposed_set = parse_policies(proposed_yaml, source="<proposed>")
    diff = "".join(
        difflib.unified_diff(
            _normalized(policy_set).splitlines(keepends=True),
            _normalized(proposed_set).splitlines(keepends=True),
            fromfile=f"{policy_set.source} (current, normalized)",
            tofile="proposed (normalized)",
        )
    )
    tasks: dict[str, list[_Call]] = {}
    untagged = 0
    for call in calls:
        value = "all" if tag is None else call.tags.get(tag)
        if value is None:
            untagged += 1
        else:
            tasks.setdefault(_tag_text(value), []).append(call)
    mixes = tuple(
        _mix(task, items, latency_p90_ms, max_error_rate, min_calls)
        for task, items in sorted(tasks.items())
    )
    notes = [f"{untagged:,} call(s) without a {by} tag are in no task"] if untagged else []
    check = None
    if replay_runs:
        run_ids = [r["run_id"] for r in list_runs(conn, since_s=since_s, limit=replay_runs, now=at)]
        check = _replay_check(conn, run_ids, policy_set, proposed_set)
    return TuneResult(
        policies=policy_set.source,
        proposals=tuple(proposals),
        mixes=mixes,
        proposed_yaml=proposed_yaml,
        diff=diff,
        replay=check,
        settings={
            "since_s": since_s,
            "margin": margin,
            "quantile": quantile,
            "min_calls": min_calls,
            "latency_p90_target_ms": latency_p90_ms,
            "max_error_rate": max_error_rate,
            "by": by,
            "calls": len(calls),
        },
        notes=tuple(notes),
    )
