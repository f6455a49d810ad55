"""The flight recorder's schema, as ordered, named migrations applied when a meter opens.

Every table is prefixed ``agentmeter_`` so the recorder can share a file with the agent's own
memory tables. Migration names are recorded in ``_sqlite_migrations`` (sqlite-utils' table) under
the set ``agentmeter``; a database that has a migration this version does not know was written by
a newer agentmeter and is refused rather than guessed at.

PostgreSQL runs the same list of steps, each translated to its dialect, and records the names
in ``_agentmeter_migrations`` (see ``agentmeter.storage.postgres``): a step must stay plain SQL
through ``db.execute`` or get a PostgreSQL override there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import StorageError

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = ["MIGRATION_SET", "STEPS", "migrate", "schema_version"]

MIGRATION_SET = "agentmeter"
# Ordered, named migration functions. sqlite-utils (imported on first use: it pulls in numpy when
# installed, ~0.2 s) applies them and records their names in ``_sqlite_migrations``.
STEPS: list[Callable[[Database], None]] = []


def step(func: Callable[[Database], None]) -> Callable[[Database], None]:
    """Register ``func`` as the next migration (its name is what is recorded)."""
    STEPS.append(func)
    return func


@step
def m001_initial(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS agentmeter_runs (
            run_id TEXT PRIMARY KEY,
            name TEXT,
            started_at REAL NOT NULL,
            ended_at REAL,
            status TEXT NOT NULL DEFAULT 'running',
            tags TEXT NOT NULL DEFAULT '{}',
            policy_hash TEXT
        )"""
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS agentmeter_calls (
            id INTEGER PRIMARY KEY,
            run_id TEXT,
            step INTEGER,
            ts REAL NOT NULL,
            requested_model TEXT,
            model TEXT,
            provider TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cache_read_tokens INTEGER,
            cache_write_tokens INTEGER,
            reasoning_tokens INTEGER,
            cache_write_1h_tokens INTEGER,
            usage_status TEXT NOT NULL,
            cost_nano_usd INTEGER,
            cost_status TEXT NOT NULL,
            latency_ms REAL,
            ttft_ms REAL,
            pre_ms REAL,
            post_ms REAL,
            status TEXT NOT NULL,
            error_type TEXT,
            stream INTEGER NOT NULL DEFAULT 0,
            prompt_hash TEXT,
            max_tokens INTEGER,
            reserved_nano_usd INTEGER,
            decided_at REAL,
            decided_prompt_tokens INTEGER,
            tags TEXT NOT NULL DEFAULT '{}',
            writer TEXT
        )"""
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS agentmeter_decisions (
            id INTEGER PRIMARY KEY,
            run_id TEXT,
            step INTEGER,
            ts REAL NOT NULL,
            policy TEXT NOT NULL,
            metric TEXT,
            value REAL,
            threshold REAL,
            action TEXT NOT NULL,
            scope TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS agentmeter_calls_ts ON agentmeter_calls (ts)")
    db.execute("CREATE INDEX IF NOT EXISTS agentmeter_calls_run ON agentmeter_calls (run_id, id)")
    db.execute(
        "CREATE INDEX IF NOT EXISTS agentmeter_decisions_run ON agentmeter_decisions (run_id, id)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS agentmeter_runs_started ON agentmeter_runs (started_at)")


@step
def m002_content(db: Database) -> None:
    """Opt-in content capture (the cassette): redacted request and response bodies per call."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS agentmeter_content (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            step INTEGER,
            ts REAL NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('request', 'response')),
            body TEXT NOT NULL
        )"""
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS agentmeter_content_run ON agentmeter_content (run_id, step, id)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS agentmeter_content_ts ON agentmeter_content (ts)")


@step
def m003_reservations(db: Database) -> None:
    """Budget reservations of in-flight calls, shared by every process writing this file."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS agentmeter_reservations (
            id INTEGER PRIMARY KEY,
            ref TEXT NOT NULL,
            scope TEXT NOT NULL,
            nano_usd INTEGER NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            writer TEXT
        )"""
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS agentmeter_reservations_scope "
        "ON agentmeter_reservations (scope, expires_at)"
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS agentmeter_reservations_ref ON agentmeter_reservations (ref)"
    )
    db.execute("ALTER TABLE agentmeter_calls ADD COLUMN reservation_id TEXT")


@step
def m004_quality_streams_versions_cache(db: Database) -> None:
    """Quality feedback, stream smoothness, the model version that answered, a response cache."""
    for column, kind in (
        ("model_version", "TEXT"),
        ("system_fingerprint", "TEXT"),
        ("chunks", "INTEGER"),
        ("itl_mean_ms", "REAL"),
        ("itl_p90_ms", "REAL"),
        ("cache_hit", "INTEGER NOT NULL DEFAULT 0"),
        ("saved_nano_usd", "INTEGER"),
    ):
        db.execute(f"ALTER TABLE agentmeter_calls ADD COLUMN {column} {kind}")
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS agentmeter_feedback (
            id INTEGER PRIMARY KEY,
            run_id TEXT,
            step INTEGER,
            ts REAL NOT NULL,
            kind TEXT NOT NULL,
            score REAL,
            negative INTEGER NOT NULL,
            model TEXT,
            comment TEXT,
            tags TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS agentmeter_feedback_run ON agentmeter_feedback (run_id, step)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS agentmeter_feedback_ts ON agentmeter_feedback (ts)")
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS agentmeter_cache (
            key TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            request TEXT NOT NULL,
            response TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            cost_nano_usd INTEGER
        )"""
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS agentmeter_cache_model ON agentmeter_cache (model, created_at)"
    )


def schema_version() -> int:
    """How many migrations this version knows."""
    return len(STEPS)


def _migrations() -> Any:
    from sqlite_utils.migrations import Migrations

    migrations = Migrations(MIGRATION_SET)
    for func in STEPS:
        migrations()(func)
    return migrations


def migrate(conn: sqlite3.Connection) -> None:
    """Bring ``conn``'s database to this version's schema; refuse one from a newer agentmeter."""
    known = {func.__name__ for func in STEPS}
    applied = _applied(conn)
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise StorageError(
            f"this database was written by a newer agentmeter (it has migration(s) "
            f"{', '.join(unknown)} that this version does not know); upgrade agentmeter "
            f"(pip install -U agentmeter) to open it"
        )
    if len(set(applied) & known) < len(known):
        from sqlite_utils import Database

        # Take the write lock first, then look again: processes opening a new file at once must
        # not both apply a step (ALTER TABLE is not idempotent). Steps nest as savepoints.
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN IMMEDIATE")
        try:
            if len(set(_applied(conn)) & known) < len(known):
                _migrations().apply(Database(conn))
            if own:
                conn.execute("COMMIT")
        except BaseException:
            if own and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _applied(conn: sqlite3.Connection) -> list[str]:
    """Names of the agentmeter migrations already applied (no sqlite-utils needed to read them)."""
    try:
        rows = conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY rowid",
            (MIGRATION_SET,),
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    return [row[0] for row in rows]


def schema_sql(conn: sqlite3.Connection | None = None) -> str:
    """The flight recorder's tables and indexes as SQL (what the README shows)."""
    if conn is None:
        conn = sqlite3.connect(":memory:")
        migrate(conn)
    rows = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name LIKE 'agentmeter_%' AND sql IS NOT NULL "
        "ORDER BY type = 'index', rowid"
    ).fetchall()
    return ";\n".join(_dedent_sql(sql) for (sql,) in rows) + ";"


def _dedent_sql(sql: str) -> str:
    lines = [line.rstrip() for line in sql.strip().splitlines()]
    return "\n".join(line[8:] if line.startswith("        ") else line for line in lines)
