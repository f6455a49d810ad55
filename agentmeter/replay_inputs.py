"""What-if replay's inputs: the flight recorder it reads and the prices it reprices with.

Split out of ``replay.py`` (which re-exports ``open_db`` and ``load_pricing``) to keep it short.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, ReplayError, read_config_file
from .pricing import PriceTable

if TYPE_CHECKING:
    from .policy.spec import PolicySet

__all__ = ["load_pricing", "open_db", "price_table"]


def open_db(
    conn_or_path: sqlite3.Connection | str | os.PathLike[str],
) -> tuple[sqlite3.Connection, bool]:
    """``(connection, opened_here)``: a path is opened read-only; a connection is used as given."""
    if isinstance(conn_or_path, sqlite3.Connection):
        return conn_or_path, False
    path = os.fspath(conn_or_path)
    if not os.path.exists(path):
        raise ReplayError(f"no flight recorder at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        conn.execute("SELECT 1 FROM agentmeter_calls LIMIT 1")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ReplayError(f"{path} is not an agentmeter flight recorder ({exc})") from None
    return conn, True


def load_pricing(
    pricing: Mapping[str, Mapping[str, Any]] | str | os.PathLike[str],
) -> dict[str, Mapping[str, Any]]:
    """Price overrides (USD per million tokens) from a mapping or a YAML file's ``pricing:`` mapping."""
    if isinstance(pricing, Mapping):
        return dict(pricing)
    path = Path(pricing)
    text = read_config_file(path, "pricing file")
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    table = document.get("pricing") if isinstance(document, Mapping) else None
    if not isinstance(table, Mapping):
        raise ConfigError(
            f"{path}: a pricing file is a mapping with a 'pricing:' section, e.g. "
            'pricing: {gpt-4o: {input: "$2.50", output: "$10"}} (USD per million tokens)'
        )
    return dict(table)


def price_table(policy_set: PolicySet, pricing: Any) -> PriceTable:
    overrides: dict[str, Mapping[str, Any]] = dict(policy_set.pricing)
    if isinstance(pricing, PriceTable):
        return pricing.with_overrides(overrides) if overrides else pricing
    if pricing is not None:
        overrides.update(load_pricing(pricing))
    return PriceTable(overrides=overrides) if overrides else PriceTable.default()
