"""The opt-in response cache: identical requests within a TTL are answered from the flight recorder.

A request's key hashes the model, the messages and every parameter that shapes the answer (not
streaming flags or credentials). A similarity hook (``Meter(similarity=...)``) may accept a
near-duplicate of a recent request for the same model; nothing is downloaded for it. Cached
bodies are redacted like captured content and pruned with it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ResponseCache", "request_key"]

# Parameters that do not change the answer (or must never be stored). ``stream`` stays in the
# key: a streamed request is answered with recorded chunks, a plain one with a whole response.
_IGNORED = frozenset(
    {
        "stream_options",
        "metadata",
        "api_key",
        "api_base",
        "base_url",
        "headers",
        "extra_headers",
        "timeout",
        "num_retries",
        "mock_response",
        "user",
        "cache",
    }
)
_SIMILAR_CANDIDATES = 100


def request_key(kwargs: Mapping[str, Any]) -> str:
    """A stable hash of what determines the answer: model, messages and parameters."""
    shaping = {k: v for k, v in kwargs.items() if k not in _IGNORED}
    text = json.dumps(shaping, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


class ResponseCache:
    """Lookups against ``agentmeter_cache`` on a read connection of their own."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        ttl_s: float,
        similarity: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None,
        threshold: float = 0.95,
    ) -> None:
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.ttl_s = ttl_s
        self.similarity = similarity
        self.threshold = threshold

    def lookup(
        self, key: str, request: dict[str, Any], now: float
    ) -> tuple[Any, int | None] | None:
        """The cached response and its original cost for this request, or None."""
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            row = conn.execute(
                "SELECT response, cost_nano_usd FROM agentmeter_cache WHERE key = ? AND expires_at > ?",
                (key, now),
            ).fetchone()
            if row is None and self.similarity is not None:
                row = self._similar(conn, request, now)
        if row is None:
            return None
        return json.loads(row[0]), row[1]

    def _similar(
        self, conn: sqlite3.Connection, request: dict[str, Any], now: float
    ) -> tuple[str, int | None] | None:
        assert self.similarity is not None
        for stored, response, cost in conn.execute(
            "SELECT request, response, cost_nano_usd FROM agentmeter_cache "
            "WHERE model = ? AND expires_at > ? ORDER BY created_at DESC LIMIT ?",
            (request.get("model"), now, _SIMILAR_CANDIDATES),
        ):
            verdict = self.similarity(request, json.loads(stored))
            if verdict is True or (
                not isinstance(verdict, bool)
                and isinstance(verdict, int | float)
                and verdict >= self.threshold
            ):
                return response, cost
        return None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
