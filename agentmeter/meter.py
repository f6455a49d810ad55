"""``Meter``: the flight recorder and policy engine of one agent process, in one SQLite file (or in
a PostgreSQL database a fleet shares: ``storage.postgres``)."""

from __future__ import annotations

import atexit
import json
import logging
import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clock import SYSTEM_CLOCK, Clock
from .errors import ConfigError, StorageError
from .migrations import migrate
from .policy.engine import Engine, Observation
from .pricing import PriceTable
from .recorder import Recorder, connect
from .storage import DEFAULT_DB, SQLITE, Dialect, is_postgres_url, resolve_db_path

if TYPE_CHECKING:
    from sqlite_utils import Database

    from .decision import Decision
    from .policy.spec import PolicySet
    from .run import Run

__all__ = ["DEFAULT_DB", "Meter", "resolve_db_path"]

log = logging.getLogger("agentmeter")


Compactor = Callable[[list[dict[str, Any]], int], list[dict[str, Any]]]

_OPEN_METERS: weakref.WeakSet[Meter] = weakref.WeakSet()
SEED_LOOKBACK = 200
_MAX_CONTEXTS = 100_000  # captured contexts of calls not yet exported (see remember_context)


def observation_from_row(row: tuple[Any, ...]) -> Observation:
    """An engine observation from a ``Dialect.seed_columns`` row of ``agentmeter_calls``."""
    (
        _id,
        ts,
        run_id,
        model,
        tags,
        cost,
        _cost_status,
        inp,
        out,
        cread,
        cwrite,
        reason,
        latency,
        ttft,
        status,
        phash,
        usage_status,
        model_version,
        itl_p90,
        cache_hit,
    ) = row
    known = usage_status != "unknown"
    prompt = (inp or 0) + (cread or 0) + (cwrite or 0) if known else None
    return Observation(
        ts=ts,
        run_id=run_id,
        model=model,
        tags=_loads(tags),
        samples=samples(
            cost_nano=cost,
            input_tokens=inp if known else None,
            output_tokens=out if known else None,
            cache_read_tokens=cread if known else None,
            cache_write_tokens=cwrite if known else None,
            reasoning_tokens=reason if known else None,
            prompt_tokens=prompt,
            latency_ms=latency,
            ttft_ms=ttft,
            error=status != "ok",
            prompt_hash=phash,
            itl_p90_ms=itl_p90,
            model_version=model_version,
            cache_hit=bool(cache_hit),
        ),
    )


def samples(
    *,
    cost_nano: int | None,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_tokens: int | None,
    cache_write_tokens: int | None,
    reasoning_tokens: int | None,
    prompt_tokens: int | None,
    latency_ms: float | None,
    ttft_ms: float | None,
    error: bool,
    prompt_hash: str | None,
    itl_p90_ms: float | None = None,
    model_version: str | None = None,
    cache_hit: bool = False,
) -> dict[str, Any]:
    """The per-call samples windows read (see ``policy.engine.SAMPLE_NAMES``)."""
    return {
        "cost": cost_nano,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read_tokens,
        "cache_write_tokens": cache_write_tokens,
        "reasoning_tokens": reasoning_tokens,
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + output_tokens
        if prompt_tokens is not None and output_tokens is not None
        else None,
        "latency_ms": latency_ms,
        "ttft_ms": ttft_ms,
        "error": 1 if error else 0,
        "cost_unknown": 1 if cost_nano is None else 0,
        "prompt_hash": prompt_hash,
        "itl_p90_ms": itl_p90_ms,
        "model_version": model_version,
        "cache_hit": 1 if cache_hit else 0,
    }


def _loads(tags: str | None) -> dict[str, Any]:
    if not tags:
        return {}
    try:
        value = json.loads(tags)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Meter:
    """Records every LLM call of an agent and decides, before each call, what policies ask for.

    ``db``: a path (default ``$AGENTMETER_DB`` or ``./agentmeter.db``), a PostgreSQL URL
    (``postgresql://user@host:5432/dbname``; needs ``agentmeter[postgres]``), ``":memory:"``, an open
    ``sqlite3.Connection`` or a ``sqlite_utils.Database`` (the agent's own memory file is fine: only
    ``agentmeter_*`` tables are touched). ``policies``: a path, a built-in name, YAML text or a
    ``PolicySet``. ``tags`` apply to every run. ``pricing`` adds or overrides per-million-token
    prices (merged over the policy file's ``pricing:``), or is a whole ``PriceTable`` (for
    example ``PriceTable(overrides, model_cost={})`` to price from your own table only, without
    loading litellm's map). ``compactor(messages, target_tokens)``
    replaces the built-in compaction. ``pause``: ``"sleep"`` (wait on the clock) or ``"raise"``
    (``PauseRequested``). ``on_decision`` callbacks get every decision that fired something.
    ``completion_fn`` replaces ``litellm.completion`` (the simulated provider uses it);
    ``token_counter(model, messages)`` replaces litellm's tokenizer for prompts not yet sent.
    ``capture_content=True`` (off by default) stores each call's request and response in
    ``agentmeter_content``, redacted on the writer thread before it touches disk (e-mails, phone
    and card numbers, API keys, bearer tokens; ``redactors`` adds regexes or callables).
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | sqlite3.Connection | Database | None = None,
        *,
        policies: str | os.PathLike[str] | PolicySet | None = None,
        tags: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        pricing: Mapping[str, Mapping[str, Any]] | PriceTable | None = None,
        compactor: Compactor | None = None,
        pause: str = "sleep",
        on_decision: Callable[[Decision], None] | list[Callable[[Decision], None]] | None = None,
        completion_fn: Callable[..., Any] | None = None,
        acompletion_fn: Callable[..., Any] | None = None,
        max_retries: int = 2,
        sync_s: float = 1.0,
        token_counter: Callable[[str, Any], int] | None = None,
        capture_content: bool = False,
        redactors: list[Any] | None = None,
        cache_ttl: str | float | None = None,
        similarity: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None,
    ) -> None:
        if pause not in ("sleep", "raise"):
            raise ConfigError(f"pause must be 'sleep' or 'raise', got {pause!r}")
        self.clock: Clock = clock or SYSTEM_CLOCK
        # An exporter's capture() (see add_exporter): called on the agent's thread per call.
        self.capture_context: Callable[[], Any] | None = None
        self.policies: PolicySet | None = None
        if policies is not None:
            from .policy.spec import load_policies  # pydantic and YAML load only when needed

            self.policies = load_policies(policies)
        overrides: dict[str, Mapping[str, Any]] = {}
        if self.policies is not None:
            overrides.update(self.policies.pricing)
        if isinstance(pricing, PriceTable):
            self.prices = pricing.with_overrides(overrides) if overrides else pricing
        else:
            overrides.update(pricing or {})
            self.prices = PriceTable(overrides=overrides) if overrides else PriceTable.default()
        self.engine = Engine(self.policies) if self.policies is not None else None
        self.tags = dict(tags or {})
        self.compactor = compactor
        self.pause_mode = pause
        callbacks = (
            on_decision if isinstance(on_decision, list) else [on_decision] if on_decision else []
        )
        self.on_decision: list[Callable[[Decision], None]] = callbacks
        self.completion_fn = completion_fn
        self.acompletion_fn = acompletion_fn
        self.max_retries = max_retries
        self.token_counter = token_counter
        self.capture_content = capture_content
        self.redactors = [_redactor(rule) for rule in redactors or []]
        self.writer_id = uuid.uuid4().hex[:12]
        self.internal_errors = 0
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._sync_s = sync_s
        self._last_seen_id = 0
        self._seen_ids: set[int] = set()
        self._sync_floor = 0  # ids up to here were there when the windows were seeded
        self.dialect: Dialect = SQLITE
        self.path: str | None
        url = resolve_db_path(None) if db is None else db  # $AGENTMETER_DB may be a URL too
        if isinstance(url, str) and is_postgres_url(url):
            self.path, self._recorder = self._open_postgres(url)
        else:
            self.path, self._recorder = self._open(db)
        self.response_cache = None
        if cache_ttl is not None:
            from .cache import ResponseCache
            from .units import parse_duration_s

            try:
                ttl_s = parse_duration_s(cache_ttl)
            except ValueError as exc:
                raise ConfigError(f"cache_ttl: {exc}") from None
            self.response_cache = ResponseCache(self._reader, ttl_s=ttl_s, similarity=similarity)
        self.ledger: Any = None
        if self.engine is not None and self.path and any(r.shared for r in self.engine.rules):
            if self.dialect is SQLITE:
                from .ledger import Ledger

                self.ledger = Ledger(self.path, writer=self.writer_id)
            else:
                from .storage.postgres import PostgresLedger

                self.ledger = PostgresLedger(self.path, writer=self.writer_id)
        _OPEN_METERS.add(self)

    # -- storage -------------------------------------------------------------------------------
    def _open(self, db: Any) -> tuple[str | None, Recorder]:
        conn: sqlite3.Connection | None = None
        if db is not None and not isinstance(db, str | os.PathLike | sqlite3.Connection):
            conn = getattr(db, "conn", None)  # sqlite_utils.Database
            if not isinstance(conn, sqlite3.Connection):
                raise ConfigError(
                    f"db must be a path, ':memory:', a sqlite3.Connection or a "
                    f"sqlite_utils.Database, got {type(db).__name__}"
                )
        elif isinstance(db, sqlite3.Connection):
            conn = db
        path: str | None
        if conn is not None:
            path = _file_of(conn)
            if path is None:
                # An in-memory database the caller owns: write inline, on the caller's thread.
                self._prepare(conn)
                return None, Recorder(lambda: conn, threaded=False)
        else:
            path = resolve_db_path(db)
        if path == ":memory:":
            memory = connect(":memory:")
            self._prepare(memory)
            return None, Recorder(lambda: memory, threaded=False)

        def connect_and_migrate() -> sqlite3.Connection:
            c = connect(path, wal=False)
            try:
                migrate(c)  # refuses a newer schema before anything is changed
                c.execute("PRAGMA journal_mode=WAL")
            except BaseException:
                c.close()
                raise
            return c

        return path, self._start_recorder(connect_and_migrate, path, (sqlite3.Error, OSError))

    def _start_recorder(
        self,
        connect_and_migrate: Callable[[], Any],
        shown: str,
        failures: tuple[type[BaseException], ...],
        **recorder_options: Any,
    ) -> Recorder:
        """Open the first connection (or degrade: warn once, buffer, retry), seed, start the writer."""
        try:
            first = connect_and_migrate()
        except StorageError:
            raise
        except failures as exc:
            self.warn_once(
                "open",
                f"agentmeter: cannot open the flight recorder at {shown} ({exc}); the agent keeps "
                "running, budgets are enforced from memory, rows are buffered and retried",
            )
            first = None
        if first is not None:
            self._seed(first)
        return Recorder(
            connect_and_migrate,
            initial=first,
            on_idle=self._sync_foreign if self.engine is not None else None,
            idle_s=self._sync_s,
            **recorder_options,
        )

    def _open_postgres(self, url: str) -> tuple[str, Recorder]:
        """Record into PostgreSQL (psycopg 3, imported only now): migrate, seed, start the writer."""
        try:
            from .storage import postgres
        except ImportError as exc:
            raise ConfigError(
                f"db={url.split('://')[0]}://... needs psycopg 3: pip install 'agentmeter[postgres]'"
            ) from exc
        self.dialect = postgres.POSTGRES
        shown = postgres.redact_url(url)

        def connect_and_migrate() -> Any:
            c = postgres.connect(url)
            try:
                postgres.migrate(c)  # refuses a newer schema before anything is changed
            except BaseException:
                c.close()
                raise
            return c

        recorder = self._start_recorder(
            connect_and_migrate,
            shown,
            (postgres.psycopg.Error,),
            commit_fn=postgres.commit,
            transient=postgres.transient,
            broken=postgres.broken,
            retry_stop_s=10.0,
        )
        return url, recorder

    @property
    def shown_path(self) -> str | None:
        """``path`` as it may be shown or logged: a PostgreSQL URL without its password."""
        if self.path is not None and self.dialect is not SQLITE:
            from .storage.postgres import redact_url

            return redact_url(self.path)
        return self.path

    def _reader(self) -> Any:
        """A connection for reads on the agent's thread (the response cache)."""
        if self.path is None:
            return self._recorder._connection()  # in memory: the one connection there is
        if self.dialect is not SQLITE:
            from .storage.postgres import QmarkConnection

            return QmarkConnection(self.path)
        return sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        migrate(conn)
        self._seed(conn)

    def _seed(self, conn: Any) -> None:
        """Fill the windows of shared scopes from recorded calls, so budgets survive a restart."""
        dialect = self.dialect
        row = conn.execute("SELECT max(id) FROM agentmeter_calls").fetchone()
        self._last_seen_id = self._sync_floor = row[0] or 0
        if self.engine is None:
            return
        now = self.clock.now()
        for kind, (seconds, count) in self.engine.window_plan().items():
            if kind == "run":
                continue  # a new run starts empty
            ids: set[int] = set()
            rows: list[tuple[Any, ...]] = []
            if seconds is not None:
                for r in conn.execute(dialect.window_sql(), (now - seconds,)):
                    ids.add(r[0])
                    rows.append(r)
            if count is not None:
                # Count windows look back over the newest SEED_LOOKBACK x N calls, not the whole
                # history: a scope value (a tenant, a model) silent for longer starts empty.
                floor = self._last_seen_id - count * SEED_LOOKBACK
                for r in conn.execute(dialect.last_n_sql(kind), (floor, count)):
                    if r[0] not in ids:
                        rows.append(r)
                rows.sort(key=lambda r: r[0])
            for r in rows:
                self.engine.observe(observation_from_row(r), kinds=(kind,))

    def _sync_foreign(self, conn: Any) -> None:
        """Feed calls that other processes recorded into the shared scopes' windows.

        On SQLite ids grow in commit order, so reading above the highest id seen is exact. On
        PostgreSQL a lower id can commit after a higher one: the sync looks ``sync_lag_ids`` below
        and skips the ids it already saw (a call committed later than that is not folded in).
        """
        assert self.engine is not None
        kinds = tuple(k for k in self.engine.scope_kinds if k != "run")
        lag = self.dialect.sync_lag_ids
        floor = max(self._sync_floor, self._last_seen_id - lag)
        # The top id first, then the rows up to it: on SQLite ids grow in commit order, so a row
        # committed in between lies above the top and is read next time. This process's own rows
        # are skipped in SQL (under load they are nearly all of them, and the engine saw them).
        top = conn.execute("SELECT max(id) FROM agentmeter_calls").fetchone()[0]
        if top is None or top <= floor:
            return
        rows = conn.execute(self.dialect.sync_sql(), (floor, top, self.writer_id)).fetchall()
        seen = self._seen_ids
        for r in rows:
            if lag:
                if r[0] in seen:
                    continue
                seen.add(r[0])
            if kinds:
                self.engine.observe(observation_from_row(r), kinds=kinds)
        self._last_seen_id = max(self._last_seen_id, top)
        if lag and len(seen) > 2 * lag:
            self._seen_ids = {i for i in seen if i > self._last_seen_id - lag}

    # -- runs ----------------------------------------------------------------------------------
    def run(
        self,
        name: str | None = None,
        *,
        tags: Mapping[str, Any] | None = None,
        run_id: str | None = None,
    ) -> Run:
        """Start a run (an agent task): a context manager whose exit marks it ended."""
        from .run import Run

        return Run(self, name=name, tags={**self.tags, **(tags or {})}, run_id=run_id)

    def count_tokens(self, model: str, messages: Any) -> int:
        """Prompt tokens of ``messages`` by the meter's ``token_counter`` or litellm's tokenizer."""
        if self.token_counter is not None:
            return int(self.token_counter(model, messages))
        from .tokens import count_tokens

        return count_tokens(model, messages)

    def put(self, kind: str, row: tuple[Any, ...]) -> None:
        self._recorder.put(kind, row)

    def add_exporter(self, exporter: Callable[[list[dict[str, Any]]], None]) -> None:
        """Call ``exporter(rows)`` on the writer thread after each commit, with the committed calls.

        Each row is a dict of ``agentmeter_calls`` columns. An exporter that raises is counted in
        ``health()["export_errors"]`` and never stops recording. An exporter with a ``capture()``
        method has it called on the agent's thread as each call is recorded; what it returns (not
        None) reaches the exporter as the row's ``context`` (the OpenTelemetry exporter captures
        the current span, so a call's span is its child). The latest such exporter is the one
        asked.
        """
        self._recorder.exporters.append(exporter)
        capture = getattr(exporter, "capture", None)
        if callable(capture):
            self.capture_context = capture

    def remember_context(self, run_id: str, step: int) -> None:
        """(Agent's thread) keep what ``capture_context()`` returns for the call ``run_id``/``step``."""
        capture = self.capture_context
        if capture is None:
            return
        try:
            context = capture()
        except Exception as exc:  # a tracing fault must not cost the call its record
            self.warn_once("capture", f"agentmeter: an exporter's capture() failed ({exc!r})")
            return
        if context is not None:
            contexts = self._recorder.contexts
            if len(contexts) >= _MAX_CONTEXTS:  # the writer is not exporting: do not grow
                contexts.clear()
            contexts[(run_id, step)] = context

    # -- health --------------------------------------------------------------------------------
    def warn_once(self, key: str, message: str) -> None:
        """Log ``message`` once per meter and key."""
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning(message)

    def health(self) -> dict[str, Any]:
        """What the recorder did: committed rows, buffered rows, dropped rows, the last failure."""
        h = self._recorder.health
        return {
            "path": self.shown_path,
            "committed": h.committed,
            "buffered": h.buffered,
            "dropped": h.dropped,
            "degraded": h.degraded,
            "last_error": h.last_error,
            "internal_errors": self.internal_errors,
            "export_errors": h.export_errors,
            "throttled_s": round(h.throttled_s, 3),
            "warnings": list(self._warned_messages()),
        }

    def _warned_messages(self) -> list[str]:
        return list(self._recorder.health.warnings)

    # -- lifecycle -----------------------------------------------------------------------------
    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every recorded row so far is committed (or buffered after a failure)."""
        return self._recorder.flush(timeout_s)

    def close(self) -> None:
        """Flush everything and stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._recorder.close()
        if self.ledger is not None:
            self.ledger.close()
        if self.response_cache is not None and self.path is not None:
            self.response_cache.close()
        _OPEN_METERS.discard(self)

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Meter db={self.shown_path or ':memory:'} policies={self.policies.source if self.policies else None}>"


def _redactor(rule: Any) -> Any:
    """A redaction rule: a regex (text or compiled) or a callable ``str -> str``."""
    import re

    if isinstance(rule, str):
        try:
            return re.compile(rule)
        except re.error as exc:
            raise ConfigError(f"redactors: {rule!r} is not a valid regex ({exc})") from None
    if isinstance(rule, re.Pattern) or callable(rule):
        return rule
    raise ConfigError(f"redactors: expected a regex or a callable, got {rule!r}")


def _file_of(conn: sqlite3.Connection) -> str | None:
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return file or None
    return None


@atexit.register
def _close_open_meters() -> None:
    for meter in list(_OPEN_METERS):
        try:
            meter.close()
        except Exception:  # never let agentmeter fail an interpreter exit
            pass


def default_policies_path() -> Path:
    """The shipped ``default.yaml``."""
    return Path(__file__).resolve().parent / "policies" / "default.yaml"
