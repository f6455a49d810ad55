"""Read-side summaries of the flight recorder (shared by the CLI, the demo and Python users)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from typing import Any

__all__ = ["MODEL_SUMMARY_HEADERS", "format_usd", "model_summary", "print_model_summary"]


def model_summary(conn: sqlite3.Connection, *, run_id: str | None = None) -> list[dict[str, Any]]:
    """Per model, by name: ``query.report(by="model")``'s groups with the group as ``model``."""
    from .query import report

    groups = report(conn, by="model", run_id=run_id)
    return sorted(({**g, "model": g["group"] or "?"} for g in groups), key=lambda g: g["model"])


# The columns of the per-model table (the demo's and the HTML post-mortem's).
MODEL_SUMMARY_HEADERS = (
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
)


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
    for column in MODEL_SUMMARY_HEADERS:
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
