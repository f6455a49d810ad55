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
# Runs first so a reader never sees a call whose run row is missing.
_ORDER = ("run", "call", "decision", "content", "feedback", "cache")
_RESERVATION = CALL_COLUMNS.index("reservation_id")
_RELEASE_SQL = "DELETE FROM agentmeter_reservations WHERE ref = ?"

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
        waited = 0.0
        while self._queue.qsize() > self.max_queued // 2 and waited < self.max_wait_s:
            SYSTEM_CLOCK.sleep(0.001)
            waited += 0.001
        self.health.throttled_s += waited

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
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush and stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._threaded and self._thread is not None and self._thread.is_alive():
            self._queue.put(("stop", _STOP))
            self._thread.join(timeout_s)
        else:
            with self._lock:
                self._write_backlog()
        self._conn_reset()

    # -- writer side -------------------------------------------------------------------------
    def _run(self) -> None:
        get = self._queue.get
        monotonic = SYSTEM_CLOCK.monotonic
        last_idle = monotonic()
        while True:
            waiters: list[threading.Event] = []
            stop = False
            try:
                item = get(timeout=self.retry_s if self._backlog else self.idle_s)
            except queue.Empty:
                self._write_backlog()
                self._idle()
                last_idle = monotonic()
                continue
            batch = self._backlog
            count = 0
            # Linger a moment for more rows: one commit per handful of calls instead of one per
            # call keeps the writer's share of the GIL small while an agent is busy. A flush, a
            # stop or a full batch commits at once; a kill loses at most ``linger_s`` more.
            deadline = monotonic() + self.linger_s
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
                    item = self._queue.get_nowait()
                except queue.Empty:
                    left = deadline - monotonic()
                    if waiters or stop or left <= 0:
                        break
                    try:
                        item = get(timeout=left)
                    except queue.Empty:
                        break
            self._write_backlog()
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
        if any(kind in ("content_raw", "cache_raw") for kind, _ in backlog):
            self._redact_content(backlog)
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
    def _redact_content(backlog: deque[tuple[str, tuple[Any, ...]]]) -> None:
        """Turn captured bodies into redacted content rows here, off the agent's thread."""
        import json

        from .content import redact_value, rows_from_bodies

        items = list(backlog)
        backlog.clear()
        for kind, row in items:
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
    """Insert one batch in one ``BEGIN IMMEDIATE`` transaction."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        for kind in _ORDER:
            if kind in grouped:
                conn.executemany(_SQL[kind], grouped[kind])
        # A shared reservation ends in the transaction that commits its call's real cost, so
        # other processes never see the budget both released and not yet spent.
        released = [(r[_RESERVATION],) for r in grouped.get("call", ()) if r[_RESERVATION]]
        released += grouped.get("release", [])
        if released:
            conn.executemany(_RELEASE_SQL, released)
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise
