"""Grouped reports of the flight recorder: calls, errors, tokens, exact cost and exact latency
quantiles per model, provider, day, hour or tag (``agentmeter report``), and the per-model summary
the demo and the HTML post-mortem print. Conventions of the rows: see ``query``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from .clock import SYSTEM_CLOCK, Clock
from .errors import ConfigError
from .pricing import nano_to_usd
from .query import (
    _BUCKET_SUMS,
    _NUMPY_FROM,
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
# An unfiltered report over this many calls or more is read on two connections at once
# (``_read_parallel``); below it, threads cost more than they save.
_SPLIT_FROM = 200_000


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
    quantiles come from one pass of the same query (a large unfiltered table is read on two
    connections at once: see ``_read_parallel``). Time groups are in time order, the others by
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
    rows = None
    bounds = None if where else _parallel_bounds(conn)
    if bounds is not None:
        plan = _Plan(key_sql, tuple(params), has_cache=cache != "0, 0")
        rows = _read_parallel(conn, plan, *bounds)
    if rows is None:
        rows = grouped_rows(conn, select, where, params)
    out = []
    for key, calls, errors, *rest in rows:
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
    """The rows of ``select`` (a query of agentmeter_calls) filtered by ``where``, grouped by grp."""
    _register(conn)
    sql = select + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY grp"
    return conn.execute(sql, params).fetchall()


# -- the parallel read of a large unfiltered report -------------------------------------------------
# One GROUP BY over a million calls spends most of its time in SQLite's sorter, and the values
# the quantiles need reach Python one callback at a time, under the GIL: two connections each
# running it over half the ids mostly wait for each other's callbacks. So the work is cut in two
# kinds instead. The sums need no sort: an UPSERT into a temporary table keyed by the group adds
# each call to its group's row (pure C, the GIL released throughout). The values are read in
# small id blocks, each a GROUP BY whose sort stays in memory, by one worker only, so that no two
# threads compete for the GIL. Both kinds are queued; the sums worker takes sums first, the
# values worker values first, and once its own kind is done each takes the other's sums.
_SUMS_CHUNK = 65_536
_VALUES_BLOCK = 16_384
_SUMS_TABLE = "agentmeter_report_sums"


@dataclass(frozen=True, slots=True)
class _Plan:
    """The statements of a parallel read: its group key, and whether cache columns exist."""

    key_sql: str
    key_params: tuple[Any, ...]
    has_cache: bool

    def create_sums(self) -> str:
        columns = ", ".join(_SUM_COLUMNS)
        return (
            f"CREATE TEMP TABLE IF NOT EXISTS {_SUMS_TABLE} (key_is_null INTEGER NOT NULL, "
            f"grp NOT NULL, first_id INTEGER NOT NULL, {columns}, "
            "PRIMARY KEY (key_is_null, grp))"
        )

    def upsert_sums(self) -> str:
        """Each call of an id range added to its group's row of the temporary table."""
        hits, saved = ("cache_hit", "coalesce(saved_nano_usd, 0)") if self.has_cache else ("0", "0")
        values = [
            "1",
            "status != 'ok'",
            *(f"coalesce({bucket}, 0)" for bucket in BUCKETS),
            "coalesce(cost_nano_usd, 0)",
            "cost_nano_usd IS NOT NULL",
            "cost_nano_usd IS NULL AND status = 'ok'",
            hits,
            saved,
        ]
        updates = ", ".join(f"{c} = {c} + excluded.{c}" for c in _SUM_COLUMNS)
        # A NULL key never conflicts in a unique index: key_is_null and a 0 stand for it.
        # first_id: the group's first call in this table (its key labels the group, as
        # GROUP BY's does: 1 and 1.0 are one group). ``WHERE true``: an UPSERT's SELECT needs a
        # WHERE clause, else ON parses as a join's.
        key = self.key_sql
        return (
            f"INSERT INTO temp.{_SUMS_TABLE} SELECT ({key}) IS NULL, coalesce({key}, 0), id, "
            f"{', '.join(values)} FROM agentmeter_calls WHERE true AND id BETWEEN ? AND ? "
            f"ON CONFLICT DO UPDATE SET {updates}"
        )

    @property
    def params(self) -> list[Any]:
        """The parameters of ``upsert_sums`` before its id range."""
        return [*self.key_params, *self.key_params]

    def read_sums(self) -> str:
        return (
            f"SELECT first_id, CASE WHEN key_is_null THEN NULL ELSE grp END, "
            f"{', '.join(_SUM_COLUMNS)} FROM temp.{_SUMS_TABLE}"
        )

    def values(self) -> str:
        """The latency and TTFT values of an id range's successful calls, per group."""
        return (
            f"SELECT {self.key_sql} AS grp, "
            f"{_VALUES_FN}(latency_ms) FILTER (WHERE latency_ms IS NOT NULL), "
            f"{_VALUES_FN}(ttft_ms) FILTER (WHERE ttft_ms IS NOT NULL) FROM agentmeter_calls "
            "WHERE status = 'ok' AND id BETWEEN ? AND ? GROUP BY grp"
        )


_SUM_COLUMNS = ("calls", "errors", *BUCKETS, "cost", "priced", "unknown", "hits", "saved")


def _read_parallel(
    conn: sqlite3.Connection, plan: _Plan, low: int, high: int
) -> list[Sequence[Any]] | None:
    """The report's grouped rows over ids ``low..high``, read on two connections at once.

    The rows are those ``grouped_rows`` gives, in the same order. None when the work could not be
    done so (a connection that cannot be opened, a sum past SQLite's integers): the caller then
    reads it in one pass, which gives the same rows or raises the same error.
    """
    file = _database_file(conn)
    tasks: deque[tuple[str, int, int]] = deque(
        [("sums", lo, hi) for lo, hi in _chunks(low, high, _SUMS_CHUNK)]
        + [("values", lo, hi) for lo, hi in _chunks(low, high, _VALUES_BLOCK)]
    )
    sums: list[list[Sequence[Any]]] = []
    values: list[tuple[int, list[Sequence[Any]]]] = []
    failed: list[BaseException] = []

    def work(values_first: bool) -> None:
        try:
            other = sqlite3.connect(
                f"{Path(file).as_uri()}?mode=ro", uri=True, timeout=5.0, isolation_level=None
            )
        except Exception as exc:
            failed.append(exc)
            return
        try:
            _register(other)
            other.execute(plan.create_sums())
            mine: list[tuple[int, list[Sequence[Any]]]] = []
            while (task := _next_task(tasks, values_first)) is not None:
                kind, lo, hi = task
                if kind == "values":
                    rows = other.execute(plan.values(), [*plan.key_params, lo, hi]).fetchall()
                    mine.append((lo, rows))
                else:
                    other.execute(plan.upsert_sums(), [*plan.params, lo, hi])
            sums.append(other.execute(plan.read_sums()).fetchall())
            values.extend(mine)
        except Exception as exc:
            failed.append(exc)
        finally:
            other.close()

    threads = [
        threading.Thread(target=work, args=(values_first,), daemon=True)
        for values_first in (False, True)
    ]
    for thread in threads:
        thread.start()
    if high - low + 1 >= _NUMPY_FROM:
        with contextlib.suppress(ImportError):
            import numpy  # noqa: F401  # the quantiles will need it: import it meanwhile
    for thread in threads:
        thread.join()
    if failed or tasks:
        return None
    return _assemble(sums, values)


def _next_task(
    tasks: deque[tuple[str, int, int]], values_first: bool
) -> tuple[str, int, int] | None:
    """A worker's next task from ``tasks`` (sums chunks, then values blocks); None when done.

    The values worker pops values from the right end, then sums from the left; the sums worker
    pops sums from the left and leaves the values to the other (its GIL-bound callbacks would
    stall both). So each worker adds its sums in id order (see ``_Plan.upsert_sums``). Only one
    worker pops from each end until one kind is done, so a peeked task is the one popped.
    """
    try:
        if values_first and tasks[-1][0] == "values":
            return tasks.pop()
        if not values_first and tasks[0][0] == "values":
            return None
        return tasks.popleft()
    except IndexError:  # the other worker took the last task
        return None


def _assemble(
    sums: Iterable[Iterable[Sequence[Any]]], values: Iterable[tuple[int, Iterable[Sequence[Any]]]]
) -> list[Sequence[Any]] | None:
    """Rows as ``grouped_rows`` gives them, from the sums' and the values' (by first id) parts.

    A group's values are packed in id order, as one GROUP BY packs them (its sort keeps the
    scan's order within a group), so that ties (0.0 and -0.0) resolve alike.

    Python's equality of keys is SQLite's (1 == 1.0, '1' != 1), so a dict merges what GROUP BY
    would; each group keeps the key of its first call, as GROUP BY does.
    """
    totals: dict[Any, list[Any]] = {}
    first: dict[Any, tuple[int, Any]] = {}  # per group: the id and key of its first call
    for rows in sums:
        for first_id, label, *counts in rows:
            have = totals.get(label)
            if have is None:
                totals[label], first[label] = counts, (first_id, label)
                continue
            totals[label] = [a + b for a, b in zip(have, counts, strict=True)]
            if first_id < first[label][0]:
                first[label] = (first_id, label)
    packed: dict[Any, tuple[list[bytes], list[bytes]]] = {}
    for _, rows in sorted(values, key=lambda part: part[0]):
        for key, lat, ttft in rows:
            parts = packed.setdefault(key, ([], []))
            parts[0].append(lat or b"")  # NULL: no value passed the filter
            parts[1].append(ttft or b"")
    out: list[Sequence[Any]] = []
    for group in sorted(totals, key=_sqlite_order):
        counts = totals[group]
        if not all(type(n) is int for n in counts):
            # A float: an integer sum overflowed (one pass raises it); None: a NULL cache_hit.
            return None
        calls, errors, *buckets, cost, priced, unknown, hits, saved = counts
        lat, ttft = packed.get(group, ([], []))
        row = (calls, errors, *buckets, cost if priced else None, priced, unknown, hits, saved)
        out.append((first[group][1], *row, b"".join(lat), b"".join(ttft)))
    return out


def _chunks(low: int, high: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size - 1, high)) for start in range(low, high + 1, size)]


def _parallel_bounds(conn: sqlite3.Connection) -> tuple[int, int] | None:
    """The calls' id bounds when a report over all of them is worth reading in parallel."""
    if (os.cpu_count() or 1) < 2 or conn.in_transaction or not _database_file(conn):
        return None
    # Apart, min() and max() each read one end of the table; together they read all of it.
    low, high = conn.execute(
        "SELECT (SELECT min(id) FROM agentmeter_calls), (SELECT max(id) FROM agentmeter_calls)"
    ).fetchone()
    if low is None or high - low + 1 < _SPLIT_FROM:
        return None
    return low, high


def _database_file(conn: sqlite3.Connection) -> str:
    """The file of ``conn``'s main database; empty for an in-memory or temporary one."""
    return next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")


def _sqlite_order(key: Any) -> tuple[int, Any]:
    """GROUP BY's order of keys: NULL, then numbers, text, blobs."""
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
