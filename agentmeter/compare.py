"""A/B comparison of recorded calls: arms by experiment tag or model, with honest statistics.

The rules, in one place:

- An arm is every recorded call whose ``by`` value (``model``, ``requested_model``, ``provider``
  or ``tag:NAME``) is the arm's; calls without a value are left out (``excluded_calls``).
- The unit of resampling is the run: calls of one run are not independent, so every bootstrap
  resamples runs (a call recorded outside any run is a unit of its own). A run whose calls fall in
  two arms (``by=model`` after a downgrade) is a unit of each, with the calls of that arm.
- Costs are exact ``Decimal`` means of integer nano-USD sums (to 1e-12 USD). A failed call without
  a price costs nothing; a successful one without a price is unknown: it is left out of the cost
  per call, and its run is left out of the cost per run.
- Cost per run: bootstrap CI of the arm's mean, and of the relative change against the baseline
  (arms resampled independently, ``resamples`` times, seeded; expanded percentile intervals, which
  keep their coverage with few runs); p-value of a two-sided permutation test of the difference
  in means (run labels shuffled), which decides significance. At least 2 priced runs per arm, or
  the comparison says it cannot tell.
- Latency: exact p50/p90 of successful calls; two-sided Mann-Whitney U test between the arms.
- Error rate: two-sided Fisher's exact test on the 2x2 table of failed and successful calls.
- Each test is at level ``alpha`` on its own (no correction for the three tests per comparison).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from .clock import SYSTEM_CLOCK, Clock
from .errors import ConfigError
from .query import _tag_text, exact_quantiles, jsonable
from .report import _group_sql

__all__ = ["COMPARE_BY", "ArmStats", "CompareResult", "Comparison", "compare"]

COMPARE_BY = ("model", "requested_model", "provider", "tag:NAME")
# Bootstrap index matrices are built this many cells at a time (memory stays bounded).
_CHUNK_CELLS = 2_000_000


# -- values --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ArmStats:
    """One arm: counts, exact mean costs with bootstrap CIs, latency and TTFT quantiles, errors."""

    arm: str
    calls: int
    runs: int
    errors: int
    error_rate: float
    unknown_cost_calls: int
    priced_runs: int
    cost_per_call_usd: Decimal | None
    cost_per_call_ci_usd: tuple[Decimal, Decimal] | None
    cost_per_run_usd: Decimal | None
    cost_per_run_ci_usd: tuple[Decimal, Decimal] | None
    p50_latency_ms: float | None
    p90_latency_ms: float | None
    p50_ttft_ms: float | None
    p90_ttft_ms: float | None
    mean_output_tokens: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "calls": self.calls,
            "runs": self.runs,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "unknown_cost_calls": self.unknown_cost_calls,
            "priced_runs": self.priced_runs,
            "cost_per_call_usd": self.cost_per_call_usd,
            "cost_per_call_ci_usd": self.cost_per_call_ci_usd,
            "cost_per_run_usd": self.cost_per_run_usd,
            "cost_per_run_ci_usd": self.cost_per_run_ci_usd,
            "p50_latency_ms": self.p50_latency_ms,
            "p90_latency_ms": self.p90_latency_ms,
            "p50_ttft_ms": self.p50_ttft_ms,
            "p90_ttft_ms": self.p90_ttft_ms,
            "mean_output_tokens": self.mean_output_tokens,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """One arm against the baseline. Changes are relative: ``(arm - baseline) / baseline``."""

    arm: str
    baseline: str
    alpha: float
    cost_per_run_change: float | None
    cost_per_run_change_ci: tuple[float, float] | None
    cost_per_run_p: float | None
    cost_per_call_change: float | None
    cost_per_call_change_ci: tuple[float, float] | None
    p50_latency_change: float | None
    p50_latency_ms: tuple[float, float] | None  # (arm, baseline)
    latency_p: float | None
    error_rate: tuple[float, float]  # (arm, baseline)
    error_rate_p: float | None
    priced_runs: tuple[int, int]  # (arm, baseline)

    @property
    def cost_significant(self) -> bool:
        return self.cost_per_run_p is not None and self.cost_per_run_p < self.alpha

    @property
    def latency_significant(self) -> bool:
        return self.latency_p is not None and self.latency_p < self.alpha

    @property
    def error_rate_significant(self) -> bool:
        return self.error_rate_p is not None and self.error_rate_p < self.alpha

    def verdict(self) -> str:
        """One plain-language line: cost per run, then latency, then error rate, each with its p."""
        level = f"{1 - self.alpha:.0%}"
        parts = []
        change, ci = self.cost_per_run_change, self.cost_per_run_change_ci
        if change is None or ci is None or self.cost_per_run_p is None:
            parts.append(
                "cost per run: too few priced runs to compare "
                f"({self.priced_runs[0]} vs {self.priced_runs[1]}; at least 2 per arm)"
            )
        elif self.cost_significant:
            word = "cheaper" if change < 0 else "more expensive"
            sign = -1 if change < 0 else 1
            low, high = sorted((sign * ci[0], sign * ci[1]))
            parts.append(
                f"{abs(change):.0%} {word} per run ({level} CI {_range(low, high)}, "
                f"{_p(self.cost_per_run_p)})"
            )
        else:
            parts.append(
                f"cost per run difference not significant ({change:+.0%}, {level} CI "
                f"{ci[0]:+.0%} to {ci[1]:+.0%}, {_p(self.cost_per_run_p)})"
            )
        if self.latency_p is None or self.p50_latency_ms is None:
            parts.append("latency: no successful calls with a latency in one of the arms")
        elif self.latency_significant and self.p50_latency_change is not None:
            word = "faster" if self.p50_latency_change < 0 else "slower"
            arm_ms, base_ms = self.p50_latency_ms
            parts.append(
                f"{abs(self.p50_latency_change):.0%} {word} (p50 {_ms(arm_ms)} vs {_ms(base_ms)}, "
                f"{_p(self.latency_p)})"
            )
        else:
            parts.append(f"latency difference not significant ({_p(self.latency_p)})")
        arm_rate, base_rate = self.error_rate
        rates = f"error rate {arm_rate:.1%} vs {base_rate:.1%}"
        if self.error_rate_p is None:
            parts.append(rates)
        elif self.error_rate_significant:
            word = "higher" if arm_rate > base_rate else "lower"
            parts.append(f"{rates}, significantly {word} ({_p(self.error_rate_p)})")
        else:
            parts.append(f"{rates} ({_p(self.error_rate_p)})")
        return f"{self.arm} vs {self.baseline}: " + "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "baseline": self.baseline,
            "cost_per_run_change": self.cost_per_run_change,
            "cost_per_run_change_ci": self.cost_per_run_change_ci,
            "cost_per_run_p": self.cost_per_run_p,
            "cost_per_run_significant": self.cost_significant,
            "cost_per_call_change": self.cost_per_call_change,
            "cost_per_call_change_ci": self.cost_per_call_change_ci,
            "p50_latency_change": self.p50_latency_change,
            "latency_p": self.latency_p,
            "latency_significant": self.latency_significant,
            "error_rate": self.error_rate[0],
            "baseline_error_rate": self.error_rate[1],
            "error_rate_p": self.error_rate_p,
            "error_rate_significant": self.error_rate_significant,
            "verdict": self.verdict(),
        }


@dataclass(frozen=True, slots=True)
class CompareResult:
    """Every arm's statistics and every arm's comparison with the baseline."""

    by: str
    baseline: str | None
    alpha: float
    seed: int
    resamples: int
    since_s: float | None
    arms: tuple[ArmStats, ...]
    comparisons: tuple[Comparison, ...]
    excluded_calls: int = 0
    notes: tuple[str, ...] = field(default=())

    def verdicts(self) -> list[str]:
        """One line per comparison (or why there is none)."""
        if not self.arms:
            return ["no calls match: nothing to compare"]
        if not self.comparisons:
            return [f"only one arm ({self.arms[0].arm}): nothing to compare"]
        return [c.verdict() for c in self.comparisons]

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``: Decimals as exact strings."""
        return jsonable(
            {
                "by": self.by,
                "baseline": self.baseline,
                "alpha": self.alpha,
                "confidence": 1 - self.alpha,
                "seed": self.seed,
                "resamples": self.resamples,
                "since_s": self.since_s,
                "excluded_calls": self.excluded_calls,
                "arms": [a.as_dict() for a in self.arms],
                "comparisons": [c.as_dict() for c in self.comparisons],
                "verdicts": self.verdicts(),
                "notes": list(self.notes),
            }
        )


def _p(p: float | None) -> str:
    if p is None:
        return "p=n/a"
    if p < 0.001:
        return "p<0.001"
    return f"p={p:.3f}" if p < 0.01 else f"p={p:.2f}"


def _range(low: float, high: float) -> str:
    if low >= 0:
        return f"{low * 100:.0f}–{high:.0%}"
    return f"{low:.0%} to {high:.0%}"


def _ms(value: float) -> str:
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"


# -- the data ------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Arm:
    """One arm's raw samples: per-run sums and per-call values."""

    label: str
    calls: int = 0
    errors: int = 0
    unknown: int = 0
    output_tokens: int = 0
    usage_known: int = 0
    latency: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    # run -> [cost nano-USD of priced calls, priced calls, has an unknown-cost call]
    runs: dict[str, list[int]] = field(default_factory=dict)


def _load(
    conn: sqlite3.Connection, by: str, since_s: float | None, now: float
) -> tuple[dict[str, _Arm], int]:
    if by not in ("model", "requested_model", "provider") and not by.startswith("tag:"):
        raise ConfigError(f"cannot compare by {by!r}; choose one of {', '.join(COMPARE_BY)}")
    key_sql, params = _group_sql(by)
    sql = (
        f"SELECT {key_sql}, id, run_id, cost_nano_usd, status, latency_ms, ttft_ms, "
        "output_tokens, usage_status FROM agentmeter_calls"
    )
    if since_s is not None:
        sql += " WHERE ts >= ?"
        params.append(now - since_s)
    arms: dict[str, _Arm] = {}
    excluded = 0
    for key, call_id, run_id, cost, status, latency, ttft, out, usage in conn.execute(sql, params):
        if key is None:
            excluded += 1
            continue
        label = _tag_text(key)
        arm = arms.get(label)
        if arm is None:
            arm = arms[label] = _Arm(label)
        arm.calls += 1
        unit = arm.runs.setdefault(run_id if run_id is not None else f"#{call_id}", [0, 0, 0])
        ok = status == "ok"
        if not ok:
            arm.errors += 1
        if cost is None and ok:
            arm.unknown += 1
            unit[2] = 1
        else:
            unit[0] += cost or 0
            unit[1] += 1
        if ok and latency is not None:
            arm.latency.append(latency)
        if ok and ttft is not None:
            arm.ttft.append(ttft)
        if usage != "unknown" and out is not None:
            arm.output_tokens += out
            arm.usage_known += 1
    return arms, excluded


# -- statistics ----------------------------------------------------------------------------------
def _mean_usd(total_nano: float | int, n: float | int) -> Decimal:
    """Exact mean of integer nano-USD as USD, to 1e-12 USD (a float bootstrap bound is rounded)."""
    with localcontext() as ctx:
        ctx.prec = 50
        mean_nano = (Decimal(total_nano) / Decimal(n)).quantize(Decimal("0.001"))
        return mean_nano.scaleb(-9)


def _float_usd(nano: float) -> Decimal:
    return _mean_usd(round(nano * 1000), 1000)


@dataclass(slots=True)
class _Boot:
    """An arm's bootstrap distributions (nano-USD): mean cost per run and per call."""

    per_run: Any  # numpy arrays of length resamples (nan where a resample had no priced run)
    per_call: Any


def _bootstrap(arm: _Arm, resamples: int, rng: Any) -> _Boot:
    """Resample the arm's runs with replacement; per-run and per-call means of each resample."""
    import numpy as np

    units = list(arm.runs.values())
    cost = np.array([u[0] for u in units], dtype=np.float64)
    priced = np.array([u[1] for u in units], dtype=np.float64)
    full = np.array([0.0 if u[2] else 1.0 for u in units])
    n = len(units)
    per_run, per_call = [], []
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        for start in range(0, resamples, chunk):
            idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
            per_run.append((cost * full)[idx].sum(axis=1) / full[idx].sum(axis=1))
            per_call.append(cost[idx].sum(axis=1) / priced[idx].sum(axis=1))
    return _Boot(np.concatenate(per_run), np.concatenate(per_call))


def _interval(samples: Any, alpha: float, n: int) -> tuple[float, float] | None:
    """The expanded percentile interval of bootstrap ``samples`` drawn from ``n`` units.

    Plain percentiles are too narrow for few runs (a 95% interval covers ~89% at 10 runs); the
    expanded percentile interval (Hesterberg 2015) widens the tails to Student's t with the
    ``n / (n - 1)`` variance correction, and is the plain one as ``n`` grows.
    """
    import numpy as np
    from scipy import stats

    finite = samples[np.isfinite(samples)]
    if finite.size == 0 or n < 2:
        return None
    z = math.sqrt(n / (n - 1)) * float(stats.t.ppf(1 - alpha / 2, n - 1))
    tail = float(stats.norm.cdf(-z))
    low, high = np.percentile(finite, [100 * tail, 100 * (1 - tail)])
    return float(low), float(high)


def _permutation_p(a: Sequence[float], b: Sequence[float], resamples: int, rng: Any) -> float:
    """Two-sided permutation p-value of the difference in means (labels shuffled), +1 smoothed."""
    import numpy as np

    pooled = np.asarray([*a, *b], dtype=np.float64)
    na = len(a)
    observed = abs(float(np.mean(a)) - float(np.mean(b)))
    tolerance = 1e-9 * max(1.0, float(np.abs(pooled).max()))
    hits = 0
    chunk = max(1, _CHUNK_CELLS // len(pooled))
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        perm = rng.permuted(np.broadcast_to(pooled, (rows, len(pooled))), axis=1)
        diff = np.abs(perm[:, :na].mean(axis=1) - perm[:, na:].mean(axis=1))
        hits += int(np.count_nonzero(diff >= observed - tolerance))
    return (hits + 1) / (resamples + 1)


def _arm_stats(arm: _Arm, boot: _Boot, alpha: float) -> ArmStats:
    cost_sum = sum(u[0] for u in arm.runs.values())
    priced_calls = sum(u[1] for u in arm.runs.values())
    full = [u[0] for u in arm.runs.values() if not u[2]]
    # A resample of one unit is that unit again: no interval from a single run.
    ci_call = _interval(boot.per_call, alpha, len(arm.runs))
    ci_run = _interval(boot.per_run, alpha, len(full))
    lat = exact_quantiles(arm.latency, (0.5, 0.9))
    ttft = exact_quantiles(arm.ttft, (0.5, 0.9))
    return ArmStats(
        arm=arm.label,
        calls=arm.calls,
        runs=len(arm.runs),
        errors=arm.errors,
        error_rate=arm.errors / arm.calls,
        unknown_cost_calls=arm.unknown,
        priced_runs=len(full),
        cost_per_call_usd=_mean_usd(cost_sum, priced_calls) if priced_calls else None,
        cost_per_call_ci_usd=None if ci_call is None else _usd_pair(ci_call),
        cost_per_run_usd=_mean_usd(sum(full), len(full)) if full else None,
        cost_per_run_ci_usd=None if ci_run is None else _usd_pair(ci_run),
        p50_latency_ms=lat[0],
        p90_latency_ms=lat[1],
        p50_ttft_ms=ttft[0],
        p90_ttft_ms=ttft[1],
        mean_output_tokens=arm.output_tokens / arm.usage_known if arm.usage_known else None,
    )


def _usd_pair(pair: tuple[float, float]) -> tuple[Decimal, Decimal]:
    return _float_usd(pair[0]), _float_usd(pair[1])


def _change(arm: float | None, base: float | None) -> float | None:
    if arm is None or base is None or base == 0:
        return None
    return arm / base - 1


def _change_ci(arm: Any, base: Any, alpha: float, n: int) -> tuple[float, float] | None:
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        return _interval(arm / base - 1, alpha, n)


def _compare_pair(
    arm: _Arm, base: _Arm, boots: dict[str, _Boot], alpha: float, resamples: int, rng: Any
) -> Comparison:
    from scipy import stats

    runs_arm = [u[0] for u in arm.runs.values() if not u[2]]
    runs_base = [u[0] for u in base.runs.values() if not u[2]]
    enough = len(runs_arm) >= 2 and len(runs_base) >= 2
    run_change = call_change = None
    run_ci = call_ci = None
    run_p = None
    if enough:
        run_change = _change(sum(runs_arm) / len(runs_arm), sum(runs_base) / len(runs_base))
        run_ci = _change_ci(
            boots[arm.label].per_run,
            boots[base.label].per_run,
            alpha,
            min(len(runs_arm), len(runs_base)),
        )
        run_p = _permutation_p(runs_arm, runs_base, resamples, rng)
    priced_arm = sum(u[1] for u in arm.runs.values())
    priced_base = sum(u[1] for u in base.runs.values())
    if priced_arm and priced_base:
        call_change = _change(
            sum(u[0] for u in arm.runs.values()) / priced_arm,
            sum(u[0] for u in base.runs.values()) / priced_base,
        )
        call_ci = _change_ci(
            boots[arm.label].per_call,
            boots[base.label].per_call,
            alpha,
            min(len(arm.runs), len(base.runs)),
        )
    latency_p = medians = latency_change = None
    if arm.latency and base.latency:
        latency_p = _finite_p(
            stats.mannwhitneyu(arm.latency, base.latency, alternative="two-sided").pvalue
        )
        (m_arm,), (m_base,) = (
            exact_quantiles(arm.latency, (0.5,)),
            exact_quantiles(base.latency, (0.5,)),
        )
        if m_arm is not None and m_base is not None:
            medians = (m_arm, m_base)
            latency_change = _change(m_arm, m_base)
    table = [[arm.errors, arm.calls - arm.errors], [base.errors, base.calls - base.errors]]
    error_p = _finite_p(stats.fisher_exact(table, alternative="two-sided").pvalue)
    return Comparison(
        arm=arm.label,
        baseline=base.label,
        alpha=alpha,
        cost_per_run_change=run_change,
        cost_per_run_change_ci=run_ci,
        cost_per_run_p=run_p,
        cost_per_call_change=call_change,
        cost_per_call_change_ci=call_ci,
        p50_latency_change=latency_change,
        p50_latency_ms=medians,
        latency_p=latency_p,
        error_rate=(arm.errors / arm.calls, base.errors / base.calls),
        error_rate_p=error_p,
        priced_runs=(len(runs_arm), len(runs_base)),
    )


def _finite_p(value: Any) -> float:
    p = float(value)
    return 1.0 if math.isnan(p) else min(1.0, p)


# -- the comparison --------------------------------------------------------------------------------
def compare(
    conn: sqlite3.Connection,
    *,
    by: str,
    since_s: float | None = None,
    baseline: str | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    resamples: int = 2000,
    now: float | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> CompareResult:
    """Compare the arms of ``by`` (``tag:NAME``, ``model``, ...) with the baseline arm.

    ``baseline``: an arm's value; default the arm with the most calls (ties: the first by name).
    ``since_s``: only calls that finished in the last ``since_s`` seconds. ``resamples``:
    bootstrap and permutation resamples, drawn from ``numpy.random.default_rng(seed)`` so the same
    data and seed give the same result. The rules are in the module docstring.
    """
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha is a significance level between 0 and 1 (like 0.05), got {alpha}")
    if resamples < 100:
        raise ConfigError(f"resamples must be at least 100, got {resamples}")
    import numpy as np

    arms, excluded = _load(conn, by, since_s, clock.now() if now is None else now)
    order = sorted(arms.values(), key=lambda a: (-a.calls, a.label))
    if baseline is not None and str(baseline) not in arms:
        known = ", ".join(a.label for a in order) or "none"
        raise ConfigError(f"no arm {baseline!r} when comparing by {by}; the arms are: {known}")
    base = arms[str(baseline)] if baseline is not None else (order[0] if order else None)
    order.sort(key=lambda a: a is not base)  # the baseline first, the others by calls
    rng = np.random.default_rng(seed)
    boots = {arm.label: _bootstrap(arm, resamples, rng) for arm in order}
    comparisons = []
    if base is not None:
        for arm in order:
            if arm is not base:
                comparisons.append(_compare_pair(arm, base, boots, alpha, resamples, rng))
    notes = []
    if excluded:
        notes.append(f"{excluded:,} call(s) without a {by} value were left out")
    return CompareResult(
        by=by,
        baseline=None if base is None else base.label,
        alpha=alpha,
        seed=seed,
        resamples=resamples,
        since_s=since_s,
        arms=tuple(_arm_stats(arm, boots[arm.label], alpha) for arm in order),
        comparisons=tuple(comparisons),
        excluded_calls=excluded,
        notes=tuple(notes),
    )
