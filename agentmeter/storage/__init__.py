"""Where the flight recorder lives: the SQL dialect of each storage engine, chosen from ``db``.

Rules:

- A ``db`` string starting ``postgresql://`` or ``postgres://`` is a PostgreSQL recorder; anything
  else is SQLite (a path, ``":memory:"``, a connection). Choosing never imports a driver:
  psycopg is imported by ``agentmeter.storage.postgres`` only, when a PostgreSQL URL is opened.
- A ``Dialect`` holds what differs between engines for the meter's own reads: the parameter
  marker, the tag expression, and the queries that seed windows and fold in other writers' calls.
  The algorithms (windows, policies, the recorder's batching and failure handling) are shared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_DB", "SQLITE", "Dialect", "is_postgres_url", "resolve_db_path"]

DEFAULT_DB = "agentmeter.db"


def resolve_db_path(db: str | os.PathLike[str] | None) -> str:
    """``db`` if given, else ``$AGENTMETER_DB``, else ``./agentmeter.db``."""
    if db is not None:
        return os.fspath(db)
    return os.environ.get("AGENTMETER_DB") or DEFAULT_DB


_SEED_COLUMNS = (
    "id, ts, run_id, model, tags, cost_nano_usd, cost_status, input_tokens, output_tokens, "
    "cache_read_tokens, cache_write_tokens, reasoning_tokens, latency_ms, ttft_ms, status, "
    "prompt_hash, usage_status, model_version, itl_p90_ms, cache_hit"
)


def is_postgres_url(db: Any) -> bool:
    """True when ``db`` is a PostgreSQL connection URL (``postgresql://`` or ``postgres://``)."""
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


@dataclass(frozen=True, slots=True)
class Dialect:
    """The SQL that differs between storage engines for the meter's seed and sync reads.

    ``param`` is the driver's placeholder; ``tag_sql`` is an expression over ``tags`` (JSON text)
    with ``{name}`` for the tag name; ``sync_lag_ids`` is how far below the highest id seen the
    sync looks again, because an engine that assigns ids before commit (PostgreSQL) can commit a
    lower id after a higher one (SQLite assigns ids under its write lock: 0).
    """

    name: str
    param: str
    tag_sql: str
    sync_lag_ids: int

    @property
    def seed_columns(self) -> str:
        return _SEED_COLUMNS

    def window_sql(self) -> str:
        """Calls newer than a timestamp, oldest first."""
        return f"SELECT {_SEED_COLUMNS} FROM agentmeter_calls WHERE ts > {self.param} ORDER BY id"

    def last_n_sql(self, kind: str) -> str:
        """The last N calls of every scope value of ``kind`` (``all``, ``model``, ``tag:NAME``),
        among the calls above an id floor (parameters: floor, N)."""
        partition = {"all": "1", "model": "model"}.get(kind) or self.tag_sql.format(
            name=kind[4:].replace("'", "''")
        )
        return (
            f"SELECT {_SEED_COLUMNS} FROM (SELECT *, row_number() OVER "
            f"(PARTITION BY {partition} ORDER BY id DESC) AS rn FROM agentmeter_calls "
            f"WHERE id > {self.param}) AS recent WHERE rn <= {self.param} ORDER BY id"
        )

    def spend_filter(
        self, seconds: float | None, kind: str, key: Any, now: float
    ) -> tuple[str, list[Any]]:
        """The WHERE clause (and its parameters) picking a hard cap's calls: its window and scope."""
        where = f"ts > {self.param}"
        params: list[Any] = [now - (seconds or 0)]
        if kind == "model":
            where += f" AND model = {self.param}"
            params.append(key)
        elif kind.startswith("tag:"):
            # Parameters in the tag expression would differ per engine; the name is a policy's.
            expression = self.tag_sql.format(name=kind[4:].replace("'", "''"))
            where += f" AND CAST({expression} AS TEXT) = {self.param}"
            params.append(key)
        return where, params

    def sync_sql(self) -> str:
        """Calls in an id range (above, up to) that another writer recorded, oldest first."""
        return (
            f"SELECT {_SEED_COLUMNS} FROM agentmeter_calls WHERE id > {self.param} "
            f"AND id <= {self.param} AND (writer IS NULL OR writer <> {self.param}) ORDER BY id"
        )


SQLITE = Dialect(name="sqlite", param="?", tag_sql="json_extract(tags, '$.{name}')", sync_lag_ids=0)
