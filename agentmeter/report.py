"""Read-side summaries of the flight recorder (shared by the CLI, the demo and Python users)."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from decimal import Decimal
from typing import Any

from .pricing import nano_to_usd
from .windows import quantile_of_sorted

__all__ = ["model_summary", "print_model_summary"]


def model_summary(conn: sqlite3.Connection, *, run_id: str | None = None) -> list[dict[str, Any]]:
    """Per model: calls, errors, tokens per bucket, exact cost (unknown counted apart), p50/p90 latency."""
    where, params = ("WHERE run_id = ?", (run_id,)) if run_id else ("", ())
    groups: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "calls": 0,
            "errors": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "cost_nano_usd": 0,
            "unknown_cost_calls": 0,
            "latencies": [],
        }
    )
    for row in conn.execute(
        "SELECT model, status, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
        f"reasoning_tokens, cost_nano_usd, latency_ms FROM agentmeter_calls {where}",
        params,
    ):
        model, status, inp, out, cr, cw, rs, cost, latency = row
        g = groups[model or "?"]
        g["calls"] += 1
        g["errors"] += status != "ok"
        for key, value in zip(
            (
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "reasoning_tokens",
            ),
            (inp, out, cr, cw, rs),
            strict=True,
        ):
            g[key] += value or 0
        if cost is None:
            g["unknown_cost_calls"] += status == "ok"
        else:
            g["cost_nano_usd"] += cost
        if latency is not None and status == "ok":
            g["latencies"].append(latency)
    out = []
    for model, g in sorted(groups.items()):
        lat = sorted(g.pop("latencies"))
        g["model"] = model
        g["cost_usd"] = nano_to_usd(g["cost_nano_usd"])
        g["p50_latency_ms"] = quantile_of_sorted(lat, 0.5)
        g["p90_latency_ms"] = quantile_of_sorted(lat, 0.9)
        out.append(g)
    return out


def format_usd(value: Decimal | None, unknown_calls: int = 0) -> str:
    """``$1.2345`` with sensible precision; ``unknown`` when nothing could be priced."""
    if value is None:
        return "unknown"
    text = f"${value:,.4f}" if value < 100 else f"${value:,.2f}"
    return f"{text} (+{unknown_calls} unknown)" if unknown_calls else text


def print_model_summary(db_path: str, *, run_id: str | None = None) -> None:
    """Print the per-model summary of a run (or the whole DB) as a table."""
    from rich.console import Console
    from rich.table import Table

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = model_summary(conn, run_id=run_id)
    finally:
        conn.close()
    table = Table(title="per model", title_justify="left")
    for column in (
        "model",
        "calls",
        "errors",
        "input",
        "cache read",
        "cache write",
        "output",
        "reasoning",
        "cost",
        "p50",
        "p90",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in rows:
        table.add_row(
            r["model"],
            f"{r['calls']:,}",
            f"{r['errors']:,}",
            f"{r['input_tokens']:,}",
            f"{r['cache_read_tokens']:,}",
            f"{r['cache_write_tokens']:,}",
            f"{r['output_tokens']:,}",
            f"{r['reasoning_tokens']:,}",
            format_usd(r["cost_usd"], r["unknown_cost_calls"]),
            _seconds(r["p50_latency_ms"]),
            _seconds(r["p90_latency_ms"]),
        )
    Console(width=140).print(table)


def _seconds(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f}s"
