"""What a run knows about itself: spend, latency, cache hits, what fired (``Run.stats``).

Kept incrementally on each recorded call (a few hundred nanoseconds), so an agent can ask at every
step and put the answer into its own reflection (``Run.summary_for_prompt``).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .pricing import nano_to_usd
from .windows import quantile_of_sorted

__all__ = ["LATENCY_CALLS", "RunStats", "RunTally"]

_RECENT_S = 3600.0
# p50/p90 latency are over a run's latest successful calls: a run that records for days must not
# keep a float per call (a 1M-call run held 1M of them), and the recent calls are what an agent
# reflecting on its own speed wants to hear about.
LATENCY_CALLS = 1000


@dataclass(frozen=True, slots=True)
class RunStats:
    """A snapshot of one run: exact spend overall and per window, latency, cache hits, decisions.

    ``p50_latency_ms`` / ``p90_latency_ms``: over the run's latest ``LATENCY_CALLS`` (1,000)
    successful calls.
    """

    calls: int
    errors: int
    spent_usd: Decimal
    spent_last_10m_usd: Decimal
    spent_last_1h_usd: Decimal
    unknown_cost_calls: int
    p50_latency_ms: float | None
    p90_latency_ms: float | None
    cache_hit_ratio: float | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    fired: dict[str, int] = field(default_factory=dict)  # "policy -> action": times fired

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    def as_dict(self) -> dict[str, Any]:
        """Plain data (Decimals as strings) for logs and JSON."""
        out = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        for key, value in out.items():
            if isinstance(value, Decimal):
                out[key] = str(value)
        out["error_rate"] = self.error_rate
        return out

    def summary(self) -> str:
        """A few plain sentences an agent can read about its own efficiency."""
        if not self.calls:
            return "No LLM calls yet in this run."
        parts = [
            f"So far this run made {self.calls} LLM call{'s' * (self.calls != 1)} costing "
            f"${self.spent_usd:.4f} (${self.spent_last_10m_usd:.4f} in the last 10 minutes)"
            + (
                f", plus {self.unknown_cost_calls} of unknown cost"
                if self.unknown_cost_calls
                else ""
            )
            + "."
        ]
        if self.p50_latency_ms is not None and self.p90_latency_ms is not None:
            parts.append(
                f"Latency p50 {self.p50_latency_ms / 1000:.1f}s, p90 {self.p90_latency_ms / 1000:.1f}s."
            )
        if self.cache_hit_ratio is not None:
            parts.append(f"{self.cache_hit_ratio:.0%} of prompt tokens were served from cache.")
        if self.errors:
            parts.append(f"{self.errors} call{'s' * (self.errors != 1)} failed.")
        if self.fired:
            listed = ", ".join(
                f"{name} ({count}x)" if count > 1 else name for name, count in self.fired.items()
            )
            parts.append(f"Policies acted: {listed}.")
        return " ".join(parts)


class RunTally:
    """The running totals behind ``RunStats`` (updated under the run's lock)."""

    __slots__ = (
        "cache_read",
        "cache_write",
        "calls",
        "errors",
        "fired",
        "input",
        "latencies",
        "output",
        "reasoning",
        "recent",
        "spent_nano",
        "unknown_cost",
    )

    def __init__(self) -> None:
        self.calls = self.errors = self.spent_nano = self.unknown_cost = 0
        self.input = self.output = self.cache_read = self.cache_write = self.reasoning = 0
        self.latencies: deque[float] = deque(maxlen=LATENCY_CALLS)
        self.recent: deque[tuple[float, int]] = deque()
        self.fired: Counter[tuple[str, str]] = Counter()  # (policy, action): formatted when read

    def add(
        self,
        ts: float,
        cost_nano: int | None,
        latency_ms: float | None,
        error: bool,
        buckets: tuple[int, int, int, int, int] | None,
    ) -> None:
        self.calls += 1
        self.errors += error
        if cost_nano is None:
            self.unknown_cost += not error
        else:
            self.spent_nano += cost_nano
            recent = self.recent
            recent.append((ts, cost_nano))
            if recent[0][0] <= ts - _RECENT_S:  # keep an hour: a long run must not grow it
                while recent and recent[0][0] <= ts - _RECENT_S:
                    recent.popleft()
        if latency_ms is not None and not error:
            self.latencies.append(latency_ms)  # sorted when asked: appending is all a call pays
        if buckets is not None:
            inp, out, cread, cwrite, reasoning = buckets
            self.input += inp
            self.output += out
            self.cache_read += cread
            self.cache_write += cwrite
            self.reasoning += reasoning

    def snapshot(self, now: float) -> RunStats:
        recent = self.recent
        while recent and recent[0][0] <= now - _RECENT_S:
            recent.popleft()
        last_10m = sum(c for ts, c in recent if ts > now - 600)
        prompt = self.input + self.cache_read + self.cache_write
        latencies = sorted(self.latencies)
        return RunStats(
            calls=self.calls,
            errors=self.errors,
            spent_usd=nano_to_usd(self.spent_nano),
            spent_last_10m_usd=nano_to_usd(last_10m),
            spent_last_1h_usd=nano_to_usd(sum(c for _, c in recent)),
            unknown_cost_calls=self.unknown_cost,
            p50_latency_ms=quantile_of_sorted(latencies, 0.5),
            p90_latency_ms=quantile_of_sorted(latencies, 0.9),
            cache_hit_ratio=self.cache_read / prompt if prompt else None,
            input_tokens=self.input,
            output_tokens=self.output,
            cache_read_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
            reasoning_tokens=self.reasoning,
            fired={f"{policy} -> {action}": n for (policy, action), n in self.fired.items()},
        )
