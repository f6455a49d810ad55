"""Grouped reports of the flight recorder: calls, errors, tokens, exact cost and exact latency
quantiles per model, provider, day, hour or tag (``agentmeter report``), and the per-model summary
the demo and the HTML post-mortem print. Conventions of the rows: see ``query``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from .clock import SYSTEM_CLOCK, Clock
from .errors import ConfigError
from .pricing import nano_to_usd
from .query import (
    _BUCKET_SUMS,
    _VALUES_FN,
    _cost_fields,
    _quantiles,
    _register,
    _tag_path,
    resolve_run_id,
)
from .usage import BUCKETS

__all__ = [
    "MODEL_SUMMARY_HEADERS",
    "REPORT_GROUPS",
    "REPORT_KEYS",
    "format_usd",
    "model_summary",
    "print_model_summary",
    "report",
    "report_extras",
    "report_total",
]

# The keys of a report group, in order: the CLI's --json output and its help text use these.
REPORT_KEYS = (
    "group",
    "calls",
    "errors",
    "error_rate",
    *BUCKETS,
    "cache_hit_ratio",
    "cost_nano_usd",
    "cost_usd",
    "unknown_cost_calls",
    "response_cache_hits",
    "saved_nano_usd",
    "saved_usd",
    "negative_feedback",
    "feedback",
    "p50_latency_ms",
    "p90_latency_ms",
    "p99_latency_ms",
    "p50_ttft_ms",
    "p90_ttft_ms",
    "p99_ttft_ms",
)
# ``report(by=...)``: the SQL expression each grouping evaluates (constants only; ``tag:NAME``
# adds ``json_extract(tags, ?)`` with the JSON path bound as a parameter).
REPORT_GROUPS = {
    "model": "model",
    "requested_model": "requested_model",
    "model_version": "coalesce(model_version, model)",
    "provider": "provider",
    "day": "CAST(ts / 86400 AS INTEGER)",
    "hour": "CAST(ts / 3600 AS INTEGER)",
}
# An unfiltered report over this many calls or more is read in parallel id ranges, on at most
# _MAX_READERS connections (``_grouped_rows``); below it, threads cost more than they save.
_SPLIT_FROM = 200_000
_MAX_READERS = 4


def model_summary(conn: sqlite3.Connection, *, run_id: str | None = None) -> list[dict[str, Any]]:
    """Per model, by name: ``report(by="model")``'s groups with the group as ``model``."""
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


# -- grouped report --------------------------------------------------------------------------------------
def _group_sql(by: str) -> tuple[str, list[Any]]:
    if by in REPORT_GROUPS:
        return REPORT_GROUPS[by], []
    if by.startswith("tag:"):
        return "json_extract(tags, ?)", [_tag_path(by[4:])]
    choices = ", ".join([*REPORT_GROUPS, "tag:NAME"])
    raise ConfigError(f"cannot group a report by {by!r}; choose one of {choices}")


def _group_label(by: str, key: Any) -> Any:
    if key is None:
        return None
    if by == "day":
        return datetime.fromtimestamp(key * 86400, timezone.utc).strftime("%Y-%m-%d")
    if by == "hour":
        return datetime.fromtimestamp(key * 3600, timezone.utc).strftime("%Y-%m-%dT%H:00Z")
    return key


def report(
    conn: sqlite3.Connection,
    *,
    by: str = "model",
    since_s: float | None = None,
    run_id: str | None = None,
    now: float | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> list[dict[str, Any]]:
    """Calls grouped ``by`` model, requested_model, provider, day, hour (UTC) or ``tag:NAME``.

    Per group: calls, errors and error rate, tokens per bucket, cache-hit ratio (cache reads over
    the whole prompt: input + cache read + cache write), exact cost with unknown-cost calls
    counted apart, exact p50/p90/p99 latency and TTFT of successful calls. Sums are SQL's; the
    quantiles come from one pass of the same query (over a large unfiltered table, one pass per
    core: see ``grouped_rows``). Time groups are in time order, the others by
    cost (highest first). ``since_s``: calls that finished in the last ``since_s`` seconds;
    ``run_id``: one run (or unique prefix). Keys: ``REPORT_KEYS``.
    """
    key_sql, params = _group_sql(by)
    # A recorder from before m004, opened read-only (so not migrated), lacks its columns.
    columns = {row[1] for row in conn.execute("PRAGMA table_info(agentmeter_calls)")}
    if "model_version" not in columns and by == "model_version":
        key_sql = "model"
    cache = (
        "coalesce(sum(cache_hit), 0), coalesce(sum(saved_nano_usd), 0)"
        if {"cache_hit", "saved_nano_usd"} <= columns
        else "0, 0"
    )
    where: list[str] = []
    if since_s is not None:
        where.append("ts >= ?")
        params.append((clock.now() if now is None else now) - since_s)
    if run_id is not None:
        where.append("run_id = ?")
        params.append(resolve_run_id(conn, run_id))
    select = (
        f"SELECT {key_sql} AS grp, count(*), coalesce(sum(status != 'ok'), 0), {_BUCKET_SUMS}, "
        "sum(cost_nano_usd), count(cost_nano_usd), "
        "coalesce(sum(cost_nano_usd IS NULL AND status = 'ok'), 0), "
        f"{cache}, {_VALUES_FN}(latency_ms) FILTER (WHERE status = 'ok' AND latency_ms IS NOT NULL), "
        f"{_VALUES_FN}(ttft_ms) FILTER (WHERE status = 'ok' AND ttft_ms IS NOT NULL) "
        "FROM agentmeter_calls"
    )
    feedback = _feedback_by(conn, by, where, params)
    out = []
    for key, calls, errors, *rest in grouped_rows(conn, select, where, params):
        buckets = dict(zip(BUCKETS, rest[: len(BUCKETS)], strict=True))
        cost_sum, priced, unknown, hits, saved, lat, ttft = rest[len(BUCKETS) :]
        prompt = (
            buckets["input_tokens"] + buckets["cache_read_tokens"] + buckets["cache_write_tokens"]
        )
        p_lat, p_ttft = _quantiles(lat), _quantiles(ttft)
        out.append(
            {
                "group": _group_label(by, key),
                "calls": calls,
                "errors": errors,
                "error_rate": errors / calls,
                **buckets,
                "cache_hit_ratio": buckets["cache_read_tokens"] / prompt if prompt else None,
                **_cost_fields(cost_sum, priced, unknown),
                "response_cache_hits": hits,
                "saved_nano_usd": saved,
                "saved_usd": str(nano_to_usd(saved)),
                **feedback.get(key, {"negative_feedback": 0, "feedback": 0}),
                "p50_latency_ms": p_lat[0],
                "p90_latency_ms": p_lat[1],
                "p99_latency_ms": p_lat[2],
                "p50_ttft_ms": p_ttft[0],
                "p90_ttft_ms": p_ttft[1],
                "p99_ttft_ms": p_ttft[2],
            }
        )
    if by not in ("day", "hour"):
        out.sort(key=lambda g: (-(g["cost_nano_usd"] or 0), -g["calls"], str(g["group"])))
    return out


def grouped_rows(
    conn: sqlite3.Connection, select: str, where: list[str], params: list[Any]
) -> list[Sequence[Any]]:
    """The rows of ``select`` (a query of agentmeter_calls) filtered by ``where``, grouped by grp.

    A large unfiltered table is read as id ranges at once, one per core (``_read_ranges``), and
    each group's parts merged into the row one pass would have given (``_merge_groups``).
    """
    _register(conn)
    ranges = [] if where else _id_ranges(conn)
    if len(ranges) < 2:
        sql = select + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY grp"
        return conn.execute(sql, params).fetchall()
    sql = select + " WHERE id BETWEEN ? AND ? GROUP BY grp"
    return _merge_groups(_read_ranges(conn, sql, params, ranges))


def _read_ranges(
    conn: sqlite3.Connection, sql: str, params: list[Any], ranges: list[tuple[int, int]]
) -> list[list[Sequence[Any]]]:
    """``sql`` (its last two parameters: an id range) over each range, the ranges read at once.

    The first range is read on ``conn``, each other one in a thread on a read-only connection
    of its own: SQLite releases the GIL while it scans and sorts. Calls are only ever inserted,
    with growing ids, so every connection sees the same calls in ranges fixed on ``conn``. A
    range whose own connection fails (a file it may not open, say) is read on ``conn`` after.
    """
    file = _database_file(conn)
    parts: list[list[Sequence[Any]] | None] = [None] * len(ranges)

    def read(i: int) -> None:
        with contextlib.suppress(Exception):
            other = sqlite3.connect(f"{Path(file).as_uri()}?mode=ro", uri=True, timeout=5.0)
            try:
                _register(other)
                parts[i] = other.execute(sql, [*params, *ranges[i]]).fetchall()
            finally:
                other.close()

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(1, len(ranges))]
    for thread in threads:
        thread.start()
    try:
        parts[0] = conn.execute(sql, [*params, *ranges[0]]).fetchall()
    finally:
        for thread in threads:
            thread.join()
    return [
        conn.execute(sql, [*params, *bounds]).fetchall() if part is None else part
        for part, bounds in zip(parts, ranges, strict=True)
    ]


def _merge_groups(parts: Iterable[Iterable[Sequence[Any]]]) -> list[Sequence[Any]]:
    """Grouped rows of disjoint ranges as one row per group, in SQLite's order of the keys.

    Sums add (a NULL sum adds nothing), packed values concatenate, and the groups come in the
    order GROUP BY gives them: NULL, then numbers, text, blobs.
    """
    merged: dict[Any, list[Any]] = {}
    for rows in parts:
        for key, *values in rows:
            have = merged.get(key)
            merged[key] = values if have is None else list(map(_combine, have, values))
    return [(key, *merged[key]) for key in sorted(merged, key=_sqlite_order)]


def _id_ranges(conn: sqlite3.Connection) -> list[tuple[int, int]]:
    """The calls' ids cut into one range per core, when there are enough calls to be worth it."""
    readers = min(os.cpu_count() or 1, _MAX_READERS)
    if readers < 2 or conn.in_transaction or not _database_file(conn):
        return []
    low, high = conn.execute("SELECT min(id), max(id) FROM agentmeter_calls").fetchone()
    if low is None or high - low + 1 < _SPLIT_FROM:
        return []
    step = (high - low) // readers + 1
    return [(start, min(start + step - 1, high)) for start in range(low, high + 1, step)]


def _database_file(conn: sqlite3.Connection) -> str:
    """The file of ``conn``'s main database; empty for an in-memory or temporary one."""
    return next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")


def _combine(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else a + b


def _sqlite_order(key: Any) -> tuple[int, Any]:
    if key is None:
        return (0, 0)
    if isinstance(key, int | float):
        return (1, key)
    return (2, key) if isinstance(key, str) else (3, key)


def _feedback_by(
    conn: sqlite3.Connection, by: str, where: list[str], params: list[Any]
) -> dict[Any, dict[str, int]]:
    """Quality signals per report group: feedback rows joined to the calls they rate."""
    key_sql, _ = _group_sql(by)
    try:
        # Without feedback the join below would still read every call (the calls drive it).
        if conn.execute("SELECT 1 FROM agentmeter_feedback LIMIT 1").fetchone() is None:
            return {}
        rows = conn.execute(
            f"WITH c AS (SELECT run_id, step, {key_sql} AS grp FROM agentmeter_calls"
            + (" WHERE " + " AND ".join(where) if where else "")
            + ") SELECT c.grp, count(*), coalesce(sum(f.negative), 0) FROM agentmeter_feedback f "
            "JOIN c ON c.run_id = f.run_id AND c.step = f.step GROUP BY c.grp",
            params,
        ).fetchall()
    except sqlite3.OperationalError:  # a database from before feedback existed
        return {}
    return {
        key: {"negative_feedback": negative, "feedback": total} for key, total, negative in rows
    }


def report_extras(groups: Sequence[Mapping[str, Any]]) -> str:
    """One line on the response cache (hit rate, money saved) and quality signals, if any."""
    calls = sum(g["calls"] for g in groups)
    hits = sum(g["response_cache_hits"] for g in groups)
    saved = sum(g["saved_nano_usd"] for g in groups)
    signals = sum(g["feedback"] for g in groups)
    negative = sum(g["negative_feedback"] for g in groups)
    parts = []
    if hits:
        parts.append(
            f"response cache: {hits} of {calls} calls ({hits / calls:.0%}), saved ${nano_to_usd(saved):,.4f}"
        )
    if signals:
        parts.append(f"feedback: {signals} signals, {negative} negative ({negative / signals:.0%})")
    return "; ".join(parts)


def report_total(groups: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The additive totals of report groups: calls, errors, tokens, exact cost (no quantiles)."""
    total: dict[str, Any] = {"calls": 0, "errors": 0, **dict.fromkeys(BUCKETS, 0)}
    cost, unknown, any_priced = 0, 0, False
    for g in groups:
        for key in ("calls", "errors", *BUCKETS):
            total[key] += g[key]
        unknown += g["unknown_cost_calls"]
        if g["cost_nano_usd"] is not None:
            cost += g["cost_nano_usd"]
            any_priced = True
    total["error_rate"] = total["errors"] / total["calls"] if total["calls"] else None
    total.update(_cost_fields(cost, 1 if any_priced or not unknown else 0, unknown))
    return total
