"""The flight recorder's writer: rows go onto a queue on the agent's thread and into SQLite from one
background thread, in batches, in WAL mode (or into PostgreSQL: ``storage.postgres`` passes its
own batch commit; everything below holds for both).

Guarantees:

- ``put`` never blocks and never raises: it is a ``SimpleQueue.put`` (~0.1 us).
- The writer commits whatever is queued as soon as it can, so on a hard kill the calls lost are the
  ones recorded since the last commit: in practice the last few milliseconds (see the README's
  Reliability section for the measured loss window).
- ``database is locked`` (PostgreSQL: serialization failures, deadlocks, lost connections) is
  retried with backoff (tenacity) and never surfaced.
- Any other database failure (read-only file, missing directory, full disk) degrades the recorder:
  one warning, rows kept in a bounded in-memory buffer and retried every ``retry_s``; past
  ``max_buffered`` rows the oldest are dropped and counted. Recording resumes by itself when the
  database is writable again.
- ``flush()`` waits until everything queued so far is committed (or dropped); ``close()`` flushes
  and stops the thread. An ``atexit`` hook flushes meters that were not closed.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from .clock import SYSTEM_CLOCK

log = logging.getLogger("agentmeter")

CALL_COLUMNS = (
    "run_id",
    "step",
    "ts",
    "requested_model",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cache_write_1h_tokens",
    "usage_status",
    "cost_nano_usd",
    "cost_status",
    "latency_ms",
    "ttft_ms",
    "pre_ms",
    "post_ms",
    "status",
    "error_type",
    "stream",
    "prompt_hash",
    "max_tokens",
    "reserved_nano_usd",
    "decided_at",
    "decided_prompt_tokens",
    "tags",
    "writer",
    "reservation_id",
    "model_version",
    "system_fingerprint",
    "chunks",
    "itl_mean_ms",
    "itl_p90_ms",
    "cache_hit",
    "saved_nano_usd",
)
FEEDBACK_COLUMNS = ("run_id", "step", "ts", "kind", "score", "negative", "model", "comment", "tags")
CACHE_COLUMNS = ("key", "model", "request", "response", "created_at", "expires_at", "cost_nano_usd")
DECISION_COLUMNS = (
    "run_id",
    "step",
    "ts",
    "policy",
    "metric",
    "value",
    "threshold",
    "action",
    "scope",
    "detail",
)
RUN_COLUMNS = ("run_id", "name", "started_at", "ended_at", "status", "tags", "policy_hash")

_SQL = {
    "call": f"INSERT INTO agentmeter_calls ({', '.join(CALL_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(CALL_COLUMNS))})",
    "decision": f"INSERT INTO agentmeter_decisions ({', '.join(DECISION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(DECISION_COLUMNS))})",
    "feedback": f"INSERT INTO agentmeter_feedback ({', '.join(FEEDBACK_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(FEEDBACK_COLUMNS))})",
    "cache": f"INSERT OR REPLACE INTO agentmeter_cache ({', '.join(CACHE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(CACHE_COLUMNS))})",
    "content": "INSERT INTO agentmeter_content (run_id, step, ts, kind, body) VALUES (?, ?, ?, ?, ?)",
    "run": f"INSERT INTO agentmeter_runs ({', '.join(RUN_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(RUN_COLUMNS))}) "
    "ON CONFLICT(run_id) DO UPDATE SET ended_at = excluded.ended_at, status = excluded.status",
}
# Rows queued as work for the writer (see ``Recorder._materialize``).
_RAW_KINDS = frozenset({"deferred", "content_raw", "cache_raw"})
# Runs first so a reader never sees a call whose run row is missing.
_ORDER = ("run", "call", "decision", "content", "feedback", "cache")
_RESERVATION = CALL_COLUMNS.index("reservation_id")
_RELEASE_SQL = "DELETE FROM agentmeter_reservations WHERE ref = ?"
_SQLITE_LIMIT_VARIABLE_NUMBER = 9  # sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER (Python 3.11+)
_EXACT_ROWS = 16
_MAX_ROWS_PER_INSERT = 256  # a compiled 256-row statement holds ~1.6 MB

_STOP = object()


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


def connect(path: str, *, timeout_s: float = 5.0, wal: bool = True) -> sqlite3.Connection:
    """Open ``path`` for the recorder: WAL, synchronous=NORMAL, a busy timeout, owner-only if new."""
    created = path != ":memory:" and not os.path.exists(path)
    if created:
        # Create the file readable by its owner only: it holds what the agent spent and on what.
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
    conn = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False, isolation_level=None)
    if path != ":memory:" and wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


@dataclass
class RecorderHealth:
    """What the recorder did: rows committed, rows waiting, rows dropped, the last failure."""

    committed: int = 0
    dropped: int = 0
    buffered: int = 0
    degraded: bool = False
    last_error: str | None = None
    export_errors: int = 0
    throttled_s: float = 0.0  # time put() spent letting a lagging writer catch up
    warnings: list[str] = field(default_factory=list)


class Recorder:
    """One background thread that batches queued rows into SQLite."""

    def __init__(
        self,
        connect_fn: Callable[[], Any],
        *,
        max_batch: int = 5000,
        max_buffered: int = 200_000,
        retry_s: float = 1.0,
        idle_s: float = 1.0,
        on_idle: Callable[[Any], None] | None = None,
        threaded: bool = True,
        initial: Any = None,
        commit_fn: Callable[[Any, dict[str, list[tuple[Any, ...]]]], None] | None = None,
        transient: Callable[[BaseException], bool] = _is_locked,
        broken: Callable[[Any], bool] | None = None,
        retry_stop_s: float = 30.0,
    ) -> None:
        self._connect_fn = connect_fn
        self._conn: Any = initial
        # The storage seam: SQLite by default; PostgreSQL passes its own batch commit, what is
        # worth retrying and how to tell a dead connection (see ``storage.postgres``).
        self._commit_fn = commit_fn or _commit_sqlite
        self._broken = broken
        self._retrying = Retrying(
            retry=retry_if_exception(transient),
            wait=wait_random_exponential(multiplier=0.005, max=0.5),
            stop=stop_after_delay(retry_stop_s),
            before_sleep=self._before_retry,
            reraise=True,
        )
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._drained = threading.Event()  # set after each commit: wakes throttled recorders
        self._wake = threading.Event()  # ends the writer's linger (flush, close)
        self._backlog: deque[tuple[str, tuple[Any, ...]]] = deque()
        self.max_batch = max_batch
        self.max_queued = 20_000
        self.max_wait_s = 0.05
        self.linger_s = 0.005
        self.max_buffered = max_buffered
        self.retry_s = retry_s
        self.idle_s = idle_s
        self.on_idle = on_idle
        # Called after each commit with the committed call rows as dicts (OpenTelemetry export).
        self.exporters: list[Callable[[list[dict[str, Any]]], None]] = []
        # What an exporter captured on the agent's thread as a call was recorded (its current
        # OpenTelemetry context), by (run_id, step), until the call is exported as ``context``.
        self.contexts: dict[tuple[Any, Any], Any] = {}
        self.health = RecorderHealth()
        self._warned = False
        self._closed = False
        self._lock = threading.Lock()  # serializes inline writes (threaded=False)
        self._threaded = threaded
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(
                target=self._run, name="agentmeter-recorder", daemon=True
            )
            self._thread.start()

    # -- agent side --------------------------------------------------------------------------
    def put(self, kind: str, row: tuple[Any, ...]) -> None:
        """Queue one row (``call``, ``decision``, ``run``...). Never raises.

        It does not block either, unless ``max_queued`` rows are already waiting (the writer has
        fallen behind a loop recording flat out): then it yields to the writer for at most
        ``max_wait_s``, so memory stays bounded and the agent is slowed, not stopped.
        """
        if self._threaded:
            queue_ = self._queue
            queue_.put((kind, row))
            if queue_.qsize() > self.max_queued:
                self._yield_to_writer()
        else:
            with self._lock:
                self._backlog.append((kind, row))
                self._write_backlog()

    def _yield_to_writer(self) -> None:
        """Block (at most ``max_wait_s``) until the writer has drained the queue to half.

        Waiting on the writer's signal rather than spinning matters under the GIL: while every
        recording thread waits, the writer runs alone and commits at full speed, instead of
        waiting for the interpreter after each of its SQLite calls.
        """
        monotonic = SYSTEM_CLOCK.monotonic
        start = monotonic()
        deadline = start + self.max_wait_s
        drained = self._drained
        while self._queue.qsize() > self.max_queued // 2:
            left = deadline - monotonic()
            if left <= 0:
                break
            drained.clear()
            drained.wait(min(left, 0.005))
        self.health.throttled_s += monotonic() - start

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every row queued before this call is committed or dropped."""
        if not self._threaded:
            with self._lock:
                self._write_backlog()
            return True
        if self._thread is None or not self._thread.is_alive():
            return False
        done = threading.Event()
        self._queue.put(("flush", done))
        self._wake.set()
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush and stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._threaded and self._thread is not None and self._thread.is_alive():
            self._queue.put(("stop", _STOP))
            self._wake.set()
            self._thread.join(timeout_s)
        else:
            with self._lock:
                self._write_backlog()
        self._conn_reset()

    # -- writer side -------------------------------------------------------------------------
    def _run(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        monotonic = SYSTEM_CLOCK.monotonic
        last_idle = monotonic()
        while True:
            try:
                item = get(timeout=self.retry_s if self._backlog else self.idle_s)
            except queue.Empty:
                self._write_backlog()
                self._idle()
                last_idle = monotonic()
                continue
            # Linger a moment so the rows of the next few calls join this commit: one commit per
            # handful of calls keeps the writer's share of the GIL small while an agent is busy.
            # It sleeps on an event rather than in ``get``: ``put`` wakes a thread blocked in
            # ``get`` for every row, and each wake-up takes the GIL from the agent's thread.
            # ``flush()`` and ``close()`` set the event; a kill loses at most ``linger_s`` more.
            if item[0] not in ("flush", "stop") and self._queue.qsize() < self.max_batch:
                self._wake.wait(self.linger_s)
            self._wake.clear()
            waiters: list[threading.Event] = []
            stop = False
            batch = self._backlog
            count = 0
            while True:
                kind, payload = item
                if kind == "flush":
                    waiters.append(payload)
                elif kind == "stop":
                    stop = True
                else:
                    batch.append(item)
                    count += 1
                if count >= self.max_batch:
                    break
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
            self._write_backlog()
            self._drained.set()
            if monotonic() - last_idle >= self.idle_s:
                # Under constant load the queue never goes quiet: sync anyway, once per idle_s.
                self._idle()
                last_idle = monotonic()
            for waiter in waiters:
                waiter.set()
            if stop:
                return

    def _idle(self) -> None:
        if self.on_idle is None or self.health.degraded:
            return
        try:
            conn = self._connection()
            self.on_idle(conn)
        except Exception as exc:  # a failing sync must never kill the writer
            log.debug("agentmeter: idle sync failed: %s", exc)

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._connect_fn()
        return self._conn

    def _write_backlog(self) -> None:
        """Commit the backlog in one transaction; on failure keep it (bounded) for the next try."""
        backlog = self._backlog
        if not backlog:
            return
        if any(kind in _RAW_KINDS for kind, _ in backlog):
            self._materialize(backlog)
        rows = list(backlog)
        try:
            self._commit(rows)
        except Exception as exc:
            self._degrade(exc)
            overflow = len(backlog) - self.max_buffered
            for _ in range(max(0, overflow)):
                backlog.popleft()
                self.health.dropped += 1
            self.health.buffered = len(backlog)
            return
        backlog.clear()
        self.health.committed += len(rows)
        self.health.buffered = 0
        if self.exporters:
            self._export(rows)
        if self.health.degraded:
            self.health.degraded = False
            log.warning("agentmeter: the flight recorder is writable again; recording resumed")

    def _commit(self, rows: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Commit ``rows`` in one transaction, retrying transient failures (locked, serialization)."""
        grouped: dict[str, list[tuple[Any, ...]]] = {}
        for kind, row in rows:
            grouped.setdefault(kind, []).append(row)
        self._retrying(self._commit_once, grouped)

    def _commit_once(self, grouped: dict[str, list[tuple[Any, ...]]]) -> None:
        try:
            conn = self._connection()
        except Exception:
            self._conn = None
            raise
        self._commit_fn(conn, grouped)

    def _before_retry(self, state: Any) -> None:
        if self._broken is not None and self._conn is not None and self._broken(self._conn):
            self._conn_reset()  # a lost connection: the retry reconnects

    @staticmethod
    def _materialize(backlog: deque[tuple[str, tuple[Any, ...]]]) -> None:
        """Build here, off the agent's thread, the rows queued as work: ``deferred`` rows (a
        builder and its arguments) and captured bodies, which become redacted content rows."""
        import json

        from .content import redact_value, rows_from_bodies

        items = list(backlog)
        backlog.clear()
        for kind, row in items:
            if kind == "deferred":
                target, build, args = row
                try:
                    backlog.append((target, build(*args)))
                except Exception as exc:  # a row that cannot be built is dropped, not retried
                    log.warning("agentmeter: a %s row could not be built: %r", target, exc)
                continue
            try:
                if kind == "content_raw":
                    run_id, step, ts, request, response, extra = row
                    for content in rows_from_bodies(
                        run_id, step, ts, request, response, extra=extra
                    ):
                        backlog.append(("content", content))
                elif kind == "cache_raw":
                    key, model, request, response, created, expires, cost, extra = row
                    request_text, response_text = (
                        json.dumps(redact_value(body, extra), sort_keys=True, default=str)
                        for body in (request, response)
                    )
                    backlog.append(
                        ("cache", (key, model, request_text, response_text, created, expires, cost))
                    )
                else:
                    backlog.append((kind, row))
            except Exception as exc:  # never store what could not be redacted
                log.warning("agentmeter: captured content dropped, redaction failed: %r", exc)

    def _export(self, rows: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Hand committed call rows (as dicts) to each exporter, on this thread; failures are counted."""
        calls = [dict(zip(CALL_COLUMNS, row, strict=True)) for kind, row in rows if kind == "call"]
        if not calls:
            return
        contexts = self.contexts
        if contexts:
            for call in calls:
                context = contexts.pop((call["run_id"], call["step"]), None)
                if context is not None:
                    call["context"] = context
        for exporter in self.exporters:
            try:
                exporter(calls)
            except Exception as exc:  # an exporter must never stop the recorder
                self.health.export_errors += 1
                if self.health.export_errors == 1:
                    log.warning("agentmeter: an exporter failed (%r); recording continues", exc)

    def _degrade(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        self.health.last_error = message
        self.health.degraded = True
        self._conn_reset()  # the next try reconnects (a directory may be back, a file replaced)
        if not self._warned:
            self._warned = True
            text = (
                f"agentmeter: cannot write the flight recorder ({message}); the agent keeps "
                "running, budgets are enforced from memory, rows are buffered and retried"
            )
            self.health.warnings.append(text)
            log.warning(text)

    def _conn_reset(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None


def _commit_sqlite(conn: sqlite3.Connection, grouped: dict[str, list[tuple[Any, ...]]]) -> None:
    """Insert one batch in one transaction.

    The usual batch of a busy agent, a few call rows, is one ``INSERT`` statement, which SQLite
    commits as its own transaction: one SQLite call, so the writer takes the GIL back once.
    """
    calls = grouped.get("call", [])
    # A shared reservation ends in the transaction that commits its call's real cost, so
    # other processes never see the budget both released and not yet spent.
    released = [(r[_RESERVATION],) for r in calls if r[_RESERVATION]]
    released += grouped.get("release", [])
    one_statement = 0 < len(calls) <= min(_EXACT_ROWS, _rows_per_insert(conn))
    if one_statement and len(grouped) == 1 and not released and conn.isolation_level is None:
        insert_calls(conn, calls)
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        for kind in _ORDER:
            if kind == "call" and kind in grouped:
                insert_calls(conn, grouped[kind])
            elif kind in grouped:
                conn.executemany(_SQL[kind], grouped[kind])
        if released:
            conn.executemany(_RELEASE_SQL, released)
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise


def insert_calls(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert call rows in order, hundreds per ``INSERT ... VALUES (...), (...)`` statement.

    Two costs of ``executemany`` dominate the writer's share of the GIL, and this avoids both:
    ``sqlite3`` releases the GIL around every step, so while agent threads keep the interpreter
    busy the writer waits for it once per row (up to the 5 ms switch interval each time); and it
    binds ``None`` through its adapter lookup (~0.5 us each, a call row has a dozen). A statement of
    many rows steps once, and a column that is ``None`` in every row of a chunk is written as a
    literal ``NULL``. The values stored are exactly ``executemany``'s. Chunks are powers of two, so
    a connection compiles a handful of statements per row shape and keeps them cached (and every
    size up to ``_EXACT_ROWS``, so a batch that small is always one statement).
    """
    limit = _rows_per_insert(conn)
    start, total = 0, len(rows)
    while start < total:
        left = total - start
        size = left if left <= min(_EXACT_ROWS, limit) else min(limit, 1 << (left.bit_length() - 1))
        chunk = rows[start : start + size]
        # 1 for a column some row sets, 0 for one that is None in every row (a literal NULL).
        shape = bytes([column.count(None) != size for column in zip(*chunk, strict=True)])
        values = itertools.compress(itertools.chain.from_iterable(chunk), itertools.cycle(shape))
        conn.execute(_calls_sql(shape, size), list(values))
        start += size


@functools.lru_cache(maxsize=128)
def _calls_sql(shape: bytes, rows: int) -> str:
    """``INSERT`` of ``rows`` call rows binding the columns set in ``shape`` (NULL for the rest)."""
    row = f"({', '.join('?' if bound else 'NULL' for bound in shape)})"
    return f"{_SQL['call'].rsplit(' VALUES ', 1)[0]} VALUES {', '.join([row] * rows)}"


def _rows_per_insert(conn: sqlite3.Connection) -> int:
    """The largest power of two of call rows one statement may bind (SQLite's variable limit)."""
    getlimit = getattr(conn, "getlimit", None)  # Python 3.11+
    variables = getlimit(_SQLITE_LIMIT_VARIABLE_NUMBER) if getlimit else 999
    rows = max(1, min(_MAX_ROWS_PER_INSERT, variables // len(CALL_COLUMNS)))
    return 1 << (rows.bit_length() - 1)
