"""The metrics a policy can watch: what each call contributes, in which unit, with which statistics."""

from __future__ import annotations

from dataclasses import dataclass

from ..windows import QUANTILES

__all__ = ["ANOMALIES", "METRICS", "Metric"]

_NUMERIC_STATS = ("sum", "count", "rate", "mean", "max", "min", "last", *QUANTILES, "anomaly")

# ``when: {anomaly: NAME}`` is shorthand for ``{metric: METRIC, stat: anomaly}``.
ANOMALIES = {
    "cost_per_call": "cost_usd",
    "latency": "latency_ms",
    "ttft": "ttft_ms",
    "tokens_per_call": "total_tokens",
    "prompt_tokens": "prompt_tokens",
    "output_tokens": "output_tokens",
}


@dataclass(frozen=True, slots=True)
class Metric:
    """A policy metric: the per-call ``sample`` it reads, its ``unit`` and the statistics it allows.

    ``unit`` is one of ``usd``, ``tokens``, ``ms``, ``ratio``, ``count``. ``scale`` converts the
    stored sample to the display unit (cost samples are nano-USD integers).
    """

    name: str
    sample: str
    unit: str
    default_stat: str
    stats: tuple[str, ...]
    description: str
    scale: float = 1.0


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "cost_usd",
            "cost",
            "usd",
            "sum",
            _NUMERIC_STATS,
            "cost of each call in USD (calls with an unknown price are not counted; see `cost_unknown`)",
            scale=1e-9,
        ),
        Metric(
            "input_tokens",
            "input_tokens",
            "tokens",
            "sum",
            _NUMERIC_STATS,
            "plain-rate input tokens",
        ),
        Metric("output_tokens", "output_tokens", "tokens", "sum", _NUMERIC_STATS, "output tokens"),
        Metric(
            "cache_read_tokens",
            "cache_read_tokens",
            "tokens",
            "sum",
            _NUMERIC_STATS,
            "prompt tokens read from the provider's cache",
        ),
        Metric(
            "cache_write_tokens",
            "cache_write_tokens",
            "tokens",
            "sum",
            _NUMERIC_STATS,
            "prompt tokens written to the provider's cache",
        ),
        Metric(
            "reasoning_tokens",
            "reasoning_tokens",
            "tokens",
            "sum",
            _NUMERIC_STATS,
            "reasoning part of the output tokens",
        ),
        Metric(
            "prompt_tokens",
            "prompt_tokens",
            "tokens",
            "last",
            (*_NUMERIC_STATS, "next"),
            "prompt size (input + cache read + cache write); `stat: next` is the call about to be made",
        ),
        Metric(
            "total_tokens",
            "total_tokens",
            "tokens",
            "sum",
            _NUMERIC_STATS,
            "prompt + output tokens",
        ),
        Metric("latency_ms", "latency_ms", "ms", "p90", _NUMERIC_STATS, "total call latency"),
        Metric("ttft_ms", "ttft_ms", "ms", "p90", _NUMERIC_STATS, "time to first token (streams)"),
        Metric("errors", "error", "count", "sum", _NUMERIC_STATS, "failed calls (1 per error)"),
        Metric("error_rate", "error", "ratio", "mean", ("mean",), "share of calls that failed"),
        Metric("calls", "error", "count", "count", ("count", "rate"), "number of calls"),
        Metric(
            "cache_hit_ratio",
            "cache_hit",
            "ratio",
            "ratio",
            ("ratio",),
            "cache-read tokens / prompt tokens over the window (a ratio of sums)",
        ),
        Metric(
            "repeated_prompt",
            "prompt_hash",
            "count",
            "repeats",
            ("repeats",),
            "how often the most repeated prompt occurs in the window (loop detection)",
        ),
        Metric(
            "itl_ms",
            "itl_p90_ms",
            "ms",
            "p90",
            _NUMERIC_STATS,
            "inter-chunk latency of streamed calls (each call's p90 gap): a stuttering stream",
        ),
        Metric(
            "negative_feedback_rate",
            "negative",
            "ratio",
            "mean",
            ("mean", "sum", "count"),
            "share of feedback that was negative (thumbs down, low rating, regenerate, correction)",
        ),
        Metric(
            "model_versions",
            "model_version",
            "count",
            "distinct",
            ("distinct",),
            "how many different model versions answered in the window (a silent provider update)",
        ),
        Metric(
            "response_cache_hit_rate",
            "cache_hit",
            "ratio",
            "mean",
            ("mean", "sum"),
            "share of calls served from agentmeter's response cache",
        ),
        Metric(
            "cost_unknown",
            "cost_unknown",
            "count",
            "sum",
            ("sum", "count", "mean"),
            "calls whose cost is unknown (unpriced model or missing usage)",
        ),
    )
}
