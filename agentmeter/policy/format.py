"""How policy measurements read in reasons, logs and tables."""

from __future__ import annotations

from .metrics import METRICS

__all__ = ["format_value"]


def format_value(metric: str, value: float | None, stat: str = "") -> str:
    """``$2.13``, ``8.95s``, ``103,555 tokens``, ``30%``, ``robust z 7.1``; ``n/a`` for None."""
    if value is None:
        return "n/a"
    if stat == "anomaly":
        return f"robust z {value:.1f}"
    unit = METRICS[metric].unit if metric in METRICS else ""
    if unit == "usd":
        return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"
    if unit == "ms":
        return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"
    if unit == "ratio":
        return f"{value:.0%}"
    if unit == "tokens":
        return f"{value:,.0f} tokens"
    return f"{value:g}"
