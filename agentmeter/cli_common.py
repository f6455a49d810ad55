"""What every CLI command shares: where the database is, and opening it read-only."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .storage import is_postgres_url, resolve_db_path

F = TypeVar("F", bound=Callable[..., Any])


def db_option(func: F) -> F:
    """``--db PATH``: the flight recorder (default: $AGENTMETER_DB, else ./agentmeter.db)."""
    return click.option(
        "--db",
        "db_path",
        default=None,
        metavar="PATH",
        help="Flight-recorder database (default: $AGENTMETER_DB, else ./agentmeter.db).",
    )(func)


def open_readonly(db_path: str | None) -> sqlite3.Connection:
    """Open the flight recorder read-only; a clear ``ClickException`` if it is missing or not ours.

    A ``postgresql://`` URL gives an in-memory SQLite snapshot of its runs, calls, decisions and
    feedback, so every read command runs the same queries (``storage.postgres.snapshot``).
    """
    path = resolve_db_path(db_path)
    if is_postgres_url(path):
        try:
            from .storage.postgres import snapshot
        except ImportError:
            raise click.ClickException(
                "reading PostgreSQL needs psycopg 3: pip install 'agentmeter[postgres]'"
            ) from None
        return snapshot(path)
    if not os.path.exists(path):
        raise click.ClickException(f"no flight recorder at {path} (pass --db or set AGENTMETER_DB)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        conn.execute("SELECT 1 FROM agentmeter_calls LIMIT 1")
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"{path} is not an agentmeter flight recorder ({exc})") from None
    return conn
