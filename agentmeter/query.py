"""Read-side queries of the flight recorder: runs, one run's timeline, tail, export (grouped
reports: ``report``).

Every ``agentmeter`` inspection command is one call to a function here; Python users call the same
functions on any ``sqlite3.Connection`` to the recorder (read-only is enough). Every value a user
gives is bound as a parameter, never spliced into SQL.

Conventions of the rows returned: costs are exact, as ``cost_nano_usd`` (int) and ``cost_usd``
(``Decimal``); ``None`` means unknown, never zero. A group's cost sums its priced calls and counts
the successful calls that could not be priced apart (``unknown_cost_calls``); it is ``None`` only
when nothing in the group could be priced. Latency and TTFT quantiles are exact over the group's
successful calls, with the linear interpolation of ``windows.quantile_of_sorted``. Timestamps are
epoch seconds; ``day`` and ``hour`` groups are UTC.
"""

from __future__ import annotations

import csv
import heapq
import json
import re
import sqlite3
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import IO, Any, TypeVar

from .clock import SYSTEM_CLOCK, Clock
from .errors import AgentmeterError, ConfigError
from .pricing import nano_to_usd
from .usage import BUCKETS
from .windows import quantile_of_sorted

T = TypeVar("T")

__all__ = [
    "CALL_EVENT_KEYS",
    "DECISION_EVENT_KEYS",
    "EXPORT_TABLES",
    "RUN_KEYS",
    "RunNotFound",
    "exact_quantiles",
    "export",
    "jsonable",
    "list_runs",
    "resolve_run_id",
    "run_timeline",
    "tail",
]

# The keys of each kind of row, in order: the CLI's --json output and its help text use these.
RUN_KEYS = (
    "run_id",
    "name",
    "status",
    "started_at",
    "ended_at",
    "duration_s",
    "tags",
    "calls",
    "errors",
    *BUCKETS,
    "cost_nano_usd",
    "cost_usd",
    "unknown_cost_calls",
    "p90_latency_ms",
    "decisions",
)
CALL_EVENT_KEYS = (
    "kind",
    "id",
    "run_id",
    "ts",
    "step",
    "requested_model",
    "model",
    "provider",
    *BUCKETS,
    "cost_nano_usd",
    "cost_usd",
    "cost_status",
    "ttft_ms",
    "latency_ms",
    "status",
    "error_type",
)
DECISION_EVENT_KEYS = (
    "kind",
    "id",
    "run_id",
    "ts",
    "step",
    "policy",
    "metric",
    "action",
    "value",
    "threshold",
    "scope",
    "transition",
    "reason",
    "detail",
)

QUANTILES = (0.5, 0.9, 0.99)
EXPORT_TABLES = ("calls", "decisions", "runs")
EXPORT_FORMATS = ("jsonl", "csv")
_JSON_COLUMNS = ("tags", "detail")

_TAG_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")
_VALUES_FN = "agentmeter_values"
# Below this many samples a plain sort is cheaper than importing numpy for a partial sort.
_NUMPY_FROM = 20_000
_BUCKET_SUMS = ", ".join(f"coalesce(sum({b}), 0)" for b in BUCKETS)
_CALL_COLUMNS = (
    "id, run_id, ts, step, requested_model, model, provider, "
    + ", ".join(BUCKETS)
    + ", cost_nano_usd, cost_status, ttft_ms, latency_ms, status, error_type"
)
_DECISION_COLUMNS = "id, run_id, ts, step, policy, metric, action, value, threshold, scope, detail"


class RunNotFound(AgentmeterError, ValueError):
    """No recorded run matches the run id (or unique prefix) asked for, or several do."""


# -- shared pieces ---------------------------------------------------------------------------------
def exact_quantiles(values: Sequence[float], qs: Iterable[float] = QUANTILES) -> list[float | None]:
    """The exact quantiles ``qs`` of unsorted ``values`` (linear interpolation); None when empty.

    Only the order statistics the quantiles read are selected (numpy's partition, O(n)) for
    large inputs; the result equals ``quantile_of_sorted(sorted(values), q)`` bit for bit.
    """
    qs = tuple(qs)
    n = len(values)
    if n == 0:
        return [None] * len(qs)
    if n < _NUMPY_FROM:
        ordered: Any = sorted(values)
    else:
        import numpy as np

        ranks: set[int] = set()
        for q in qs:
            low = int(q * (n - 1))
            ranks.update((low, min(low + 1, n - 1)))
        ordered = np.partition(np.asarray(values, dtype=np.float64), sorted(ranks))
    return [_float(quantile_of_sorted(ordered, q)) for q in qs]


def fold_repeats(events: Iterable[T], key: Callable[[T], Any]) -> list[tuple[T, int, T]]:
    """Consecutive events of one key, each run as (its first, how many followed, its last).

    ``key`` is None for an event that never folds. The timeline views fold a policy's
    still-active decisions: an agent deciding again and again under a breached cap records one
    each time, and thousands of identical rows say less than one row and a count.
    """
    folded: list[list[Any]] = []
    last_key: Any = None
    for event in events:
        current = key(event)
        if current is not None and folded and current == last_key:
            folded[-1][1] += 1
            folded[-1][2] = event
        else:
            folded.append([event, 0, event])
        last_key = current
    return [(first, more, last) for first, more, last in folded]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class _Values:
    """SQLite aggregate ``agentmeter_values(x)``: every x, packed as native doubles (a BLOB).

    Packed values of one group read in parts (see ``report._read_parallel``) concatenate; their exact
    quantiles are ``_quantiles``'s.
    """

    def __init__(self) -> None:
        self.values = array("d")
        self.step = self.values.append  # the cheapest per-row callback sqlite3 can make

    def finalize(self) -> bytes:
        return self.values.tobytes()


def _register(conn: sqlite3.Connection) -> None:
    conn.create_aggregate(_VALUES_FN, 1, _Values)  # type: ignore[arg-type]


def _quantiles(packed: bytes | None) -> list[float | None]:
    """The exact p50/p90/p99 of ``agentmeter_values``'s packed doubles; None when there are none."""
    return exact_quantiles(array("d", packed or b""))


def _cost_fields(cost_sum: int | None, priced: int, unknown: int) -> dict[str, Any]:
    """Exact cost of a group: the priced calls' sum; None only when nothing could be priced."""
    cost = None if priced == 0 and unknown > 0 else (cost_sum or 0)
    return {
        "cost_nano_usd": cost,
        "cost_usd": None if cost is None else nano_to_usd(cost),
        "unknown_cost_calls": unknown,
    }


def _loads(text: str | None) -> Any:
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return {}


def _tag_path(name: str) -> str:
    """The JSON path of tag ``name`` (validated: letters, digits, ``_ . : -``; at most 64)."""
    if not isinstance(name, str) or not _TAG_NAME.match(name):
        raise ConfigError(
            f"tag name {name!r} is not valid: use letters, digits, '_', '.', ':' or '-' "
            "(at most 64 characters), for example tenant or feature"
        )
    return f'$."{name}"'


def _tag_text(value: Any) -> str:
    """A tag value as the text ``CAST(json_extract(...) AS TEXT)`` gives (bools are 1/0)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def jsonable(value: Any) -> Any:
    """``value`` with every ``Decimal`` as its exact decimal string (``"0.004450000"``), for JSON."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def resolve_run_id(conn: sqlite3.Connection, run_id: str) -> str:
    """The full id of the recorded run ``run_id`` names: its id, a unique prefix, or ``last``."""
    prefix = (run_id or "").strip()
    if not prefix:
        raise RunNotFound("a run id (or a unique prefix of one) is required")
    if prefix in ("last", "latest"):
        newest = conn.execute(
            "SELECT run_id FROM agentmeter_runs ORDER BY started_at DESC, run_id LIMIT 1"
        ).fetchone()
        if newest is None:
            raise RunNotFound("the flight recorder has no runs yet")
        return str(newest[0])
    exact = conn.execute(
        "SELECT run_id FROM agentmeter_runs WHERE run_id = ?", (prefix,)
    ).fetchone()
    if exact:
        return str(exact[0])
    matches = [
        r[0]
        for r in conn.execute(
            "SELECT run_id FROM agentmeter_runs WHERE substr(run_id, 1, ?) = ? "
            "ORDER BY started_at DESC LIMIT 6",
            (len(prefix), prefix),
        )
    ]
    if not matches:
        raise RunNotFound(
            f"no recorded run has an id starting with {prefix!r} (see `agentmeter runs`)"
        )
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise RunNotFound(
            f"run id prefix {prefix!r} is ambiguous: it matches {shown}; give more characters"
        )
    return str(matches[0])


# -- runs ----------------------------------------------------------------------------------------
def list_runs(
    conn: sqlite3.Connection,
    *,
    since_s: float | None = None,
    tags: Mapping[str, Any] | None = None,
    status: str | Iterable[str] | None = None,
    run_id: str | None = None,
    limit: int | None = None,
    now: float | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> list[dict[str, Any]]:
    """Recorded runs, newest first, each with its calls, errors, tokens, exact cost, p90 latency, decisions.

    ``since_s``: runs that started or ended in the last ``since_s`` seconds (before ``now``,
    default the clock's). ``tags``: every ``name: value`` must match the run's tags (values
    compare as text). ``status``: one status or several. ``run_id``: one run (or unique prefix).
    Keys: ``RUN_KEYS``.
    """
    where: list[str] = []
    params: list[Any] = []
    if run_id is not None:
        where.append("run_id = ?")
        params.append(resolve_run_id(conn, run_id))
    if since_s is not None:
        cutoff = (clock.now() if now is None else now) - since_s
        where.append("(started_at >= ? OR ended_at >= ?)")
        params += [cutoff, cutoff]
    for name, value in (tags or {}).items():
        where.append("CAST(json_extract(tags, ?) AS TEXT) = ?")
        params += [_tag_path(name), _tag_text(value)]
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        where.append("status IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(statuses))
    sql = "SELECT run_id, name, status, started_at, ended_at, tags FROM agentmeter_runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_at DESC, run_id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    runs = conn.execute(sql, params).fetchall()
    if not runs:
        return []
    ids = json.dumps([r[0] for r in runs])
    _register(conn)
    calls = {
        row[0]: row[1:]
        for row in conn.execute(
            f"SELECT run_id, count(*), coalesce(sum(status != 'ok'), 0), {_BUCKET_SUMS}, "
            "sum(cost_nano_usd), count(cost_nano_usd), "
            "coalesce(sum(cost_nano_usd IS NULL AND status = 'ok'), 0), "
            f"{_VALUES_FN}(latency_ms) FILTER (WHERE status = 'ok' AND latency_ms IS NOT NULL) "
            "FROM agentmeter_calls WHERE run_id IN (SELECT value FROM json_each(?)) GROUP BY run_id",
            (ids,),
        )
    }
    decisions = dict(
        conn.execute(
            "SELECT run_id, count(*) FROM agentmeter_decisions "
            "WHERE run_id IN (SELECT value FROM json_each(?)) GROUP BY run_id",
            (ids,),
        ).fetchall()
    )
    out = []
    for rid, name, run_status, started, ended, tags_json in runs:
        count, errors, *rest = calls.get(rid) or (0, 0, *[0] * len(BUCKETS), None, 0, 0, None)
        buckets, (cost_sum, priced, unknown, lat) = rest[: len(BUCKETS)], rest[len(BUCKETS) :]
        out.append(
            {
                "run_id": rid,
                "name": name,
                "status": run_status,
                "started_at": started,
                "ended_at": ended,
                "duration_s": None if ended is None else ended - started,
                "tags": _loads(tags_json),
                "calls": count,
                "errors": errors,
                **dict(zip(BUCKETS, buckets, strict=True)),
                **_cost_fields(cost_sum, priced, unknown),
                "p90_latency_ms": _quantiles(lat)[1],
                "decisions": decisions.get(rid, 0),
            }
        )
    return out


# -- one run -------------------------------------------------------------------------------------
def _call_event(row: Sequence[Any]) -> dict[str, Any]:
    rid, run_id, ts, step, requested, model, provider, *rest = row
    buckets, (cost, cost_status, ttft, latency, status, error_type) = (
        rest[: len(BUCKETS)],
        rest[len(BUCKETS) :],
    )
    return {
        "kind": "call",
        "id": rid,
        "run_id": run_id,
        "ts": ts,
        "step": step,
        "requested_model": requested,
        "model": model,
        "provider": provider,
        **dict(zip(BUCKETS, buckets, strict=True)),
        "cost_nano_usd": cost,
        "cost_usd": None if cost is None else nano_to_usd(cost),
        "cost_status": cost_status,
        "ttft_ms": ttft,
        "latency_ms": latency,
        "status": status,
        "error_type": error_type,
    }


def _decision_event(row: Sequence[Any]) -> dict[str, Any]:
    rid, run_id, ts, step, policy, metric, action, value, threshold, scope, detail_json = row
    detail = _loads(detail_json)
    detail = detail if isinstance(detail, dict) else {}
    return {
        "kind": "decision",
        "id": rid,
        "run_id": run_id,
        "ts": ts,
        "step": step,
        "policy": policy,
        "metric": metric,
        "action": action,
        "value": value,
        "threshold": threshold,
        "scope": scope,
        "transition": detail.get("transition"),
        "reason": detail.get("reason"),
        "detail": detail,
    }


def _event_order(event: Mapping[str, Any]) -> tuple[float, int, int, int]:
    # A decision is taken before the call of its step: at equal times it comes first.
    return (event["ts"], event["step"] or 0, event["kind"] == "call", event["id"])


def run_timeline(conn: sqlite3.Connection, run_id: str) -> list[dict[str, Any]]:
    """The run's calls and policy decisions interleaved in time order.

    ``run_id`` may be a unique prefix; an unknown or ambiguous one raises ``RunNotFound``.
    Calls have ``CALL_EVENT_KEYS``, decisions ``DECISION_EVENT_KEYS`` (``kind`` tells which).
    """
    full = resolve_run_id(conn, run_id)
    calls = map(
        _call_event,
        conn.execute(
            f"SELECT {_CALL_COLUMNS} FROM agentmeter_calls WHERE run_id = ? ORDER BY ts, id",
            (full,),
        ),
    )
    decisions = map(
        _decision_event,
        conn.execute(
            f"SELECT {_DECISION_COLUMNS} FROM agentmeter_decisions WHERE run_id = ? ORDER BY ts, id",
            (full,),
        ),
    )
    return list(heapq.merge(calls, decisions, key=_event_order))


# -- tail ----------------------------------------------------------------------------------------
def _new_events(
    conn: sqlite3.Connection, after: tuple[int, int]
) -> tuple[list[dict[str, Any]], tuple[int, int]]:
    calls = [
        _call_event(r)
        for r in conn.execute(
            f"SELECT {_CALL_COLUMNS} FROM agentmeter_calls WHERE id > ? ORDER BY id", (after[0],)
        )
    ]
    decisions = [
        _decision_event(r)
        for r in conn.execute(
            f"SELECT {_DECISION_COLUMNS} FROM agentmeter_decisions WHERE id > ? ORDER BY id",
            (after[1],),
        )
    ]
    cursor = (
        calls[-1]["id"] if calls else after[0],
        decisions[-1]["id"] if decisions else after[1],
    )
    return sorted([*calls, *decisions], key=_event_order), cursor


def _last_events(
    conn: sqlite3.Connection, count: int
) -> tuple[list[dict[str, Any]], tuple[int, int]]:
    (max_call,), (max_decision,) = (
        conn.execute("SELECT coalesce(max(id), 0) FROM agentmeter_calls").fetchone(),
        conn.execute("SELECT coalesce(max(id), 0) FROM agentmeter_decisions").fetchone(),
    )
    if count <= 0:
        return [], (max_call, max_decision)
    calls = [
        _call_event(r)
        for r in conn.execute(
            f"SELECT {_CALL_COLUMNS} FROM agentmeter_calls WHERE id <= ? ORDER BY id DESC LIMIT ?",
            (max_call, count),
        )
    ]
    decisions = [
        _decision_event(r)
        for r in conn.execute(
            f"SELECT {_DECISION_COLUMNS} FROM agentmeter_decisions WHERE id <= ? "
            "ORDER BY id DESC LIMIT ?",
            (max_decision, count),
        )
    ]
    return sorted([*calls, *decisions], key=_event_order)[-count:], (max_call, max_decision)


def tail(
    conn_factory: Callable[[], sqlite3.Connection],
    *,
    since_id: tuple[int, int] | None = None,
    last: int = 0,
    poll_s: float = 0.5,
    stop: Callable[[], bool] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    refresh: Callable[[sqlite3.Connection], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Calls and decisions as other processes record them, in time order within each poll.

    ``since_id``: the ``(call id, decision id)`` already seen; None starts at the current end,
    after yielding the ``last`` most recent events. Polls every ``poll_s`` seconds on ``clock``;
    ``stop()`` is asked after each poll and ends the iteration when true (``lambda: True`` reads
    once). A locked or busy database is retried at the next poll. Events have the keys of
    ``run_timeline``'s. ``refresh(conn)`` runs before each poll (a PostgreSQL recorder is read
    through a SQLite mirror that it brings up to date).
    """
    conn = conn_factory()
    try:
        if since_id is None:
            events, cursor = _last_events(conn, last)
            yield from events
        else:
            cursor = (int(since_id[0]), int(since_id[1]))
        while True:
            try:
                if refresh is not None:
                    refresh(conn)
                events, cursor = _new_events(conn, cursor)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                events = []
            yield from events
            if stop is not None and stop():
                return
            clock.sleep(poll_s)
    finally:
        conn.close()


# -- export --------------------------------------------------------------------------------------
def export(
    conn: sqlite3.Connection,
    out: IO[str],
    *,
    fmt: str = "jsonl",
    table: str = "calls",
    run_id: str | None = None,
) -> int:
    """Write every row of ``table`` (calls, decisions or runs) to ``out``; return how many.

    ``jsonl``: one JSON object per row with the table's columns (``tags`` and ``detail`` decoded
    into objects). ``csv``: a header, then the columns as stored (NULL as an empty field). Rows
    stream from the cursor in id order (runs by start time): memory stays constant.
    """
    if table not in EXPORT_TABLES:
        raise ConfigError(
            f"cannot export table {table!r}; choose one of {', '.join(EXPORT_TABLES)}"
        )
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"cannot export as {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    order = "started_at, run_id" if table == "runs" else "id"
    sql = f"SELECT * FROM agentmeter_{table}"
    params: tuple[Any, ...] = ()
    if run_id is not None:
        sql += " WHERE run_id = ?"
        params = (resolve_run_id(conn, run_id),)
    cursor = conn.execute(f"{sql} ORDER BY {order}", params)
    columns = [d[0] for d in cursor.description]
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in cursor:
            writer.writerow(row)
            count += 1
        return count
    decode = [i for i, c in enumerate(columns) if c in _JSON_COLUMNS]
    for row in cursor:
        record = dict(zip(columns, row, strict=True))
        for i in decode:
            record[columns[i]] = _loads(row[i])
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count
