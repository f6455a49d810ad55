"""The cassette: opt-in capture of request and response bodies, redacted before they are stored.

Content is off by default. When a meter captures it, each call adds two rows to
``agentmeter_content`` (``kind`` ``request`` and ``response``, ``body`` JSON text) built by
``content_rows``: every string in the body goes through ``redact`` first, values under secret-named
keys (``api_key``, ``Authorization``...) are dropped, and credentials passed as call options are
never stored. What reaches SQLite is already redacted; nothing sensitive sits in the file to be
scrubbed later.

``replay_run`` turns a captured run into a drop-in for ``litellm.completion``: it serves the
recorded responses in order, so an agent can be re-run offline. ``prune`` deletes content older
than a given age and leaves the numeric telemetry alone.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .clock import SYSTEM_CLOCK, Clock
from .errors import ReplayError

__all__ = [
    "CONTENT_COLUMNS",
    "CONTENT_INSERT_SQL",
    "Cassette",
    "content_rows",
    "plain_bodies",
    "prune",
    "redact",
    "redact_value",
    "replay_run",
    "rows_from_bodies",
]

CONTENT_COLUMNS = ("run_id", "step", "ts", "kind", "body")
CONTENT_INSERT_SQL = (
    f"INSERT INTO agentmeter_content ({', '.join(CONTENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(CONTENT_COLUMNS))})"
)

Redactor = Callable[[str], str] | re.Pattern[str]

# -- redaction ---------------------------------------------------------------------------------
# Order matters: specific key formats before the generic "key = value" rule, cards before phones
# (a card's digit groups would otherwise read as a phone number).
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b"
)
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)(?=[A-Za-z0-9\-._~+/]*\d)[A-Za-z0-9\-._~+/]{16,}=*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}")
# (substrings that must be present, the key's format)
_API_KEYS = (
    (("sk-ant-",), re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{16,}")),  # Anthropic
    (("sk-",), re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}")),  # OpenAI (sk-, sk-proj-, sk-svcacct-...)
    (("AKIA", "ASIA"), re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),  # AWS access key ids
    (
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    ),  # GitHub
    (("github_pat_",), re.compile(r"\bgithub_pat_[A-Za-z0-9_]{30,}\b")),
    (("xox",), re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}")),  # Slack
    (("AIza",), re.compile(r"\bAIza[0-9A-Za-z_\-]{35}")),  # Google API keys
)
# A long hex or base64-like value (with a digit in it) right after a secret-sounding name:
# key=..., "token": "...", secret: ..., password is ...
_GENERIC_SECRET = re.compile(
    r"(?i)(?<![a-z])((?:api[_-]?key|access[_-]?key|private[_-]?key"
    r"|secret(?:[_-]?(?:access[_-]?)?key)?|token|key)[\"']?(?:\s*[:=]\s*|\s+(?:is\s+)?)[\"']?)"
    r"(?=[A-Za-z0-9+/_\-]*\d)(?=[A-Za-z0-9+/_\-]*[A-Za-z])[A-Za-z0-9+/_\-]{16,}={0,2}"
)
# A password is whatever follows the name, up to a space, quote or separator.
_PASSWORD = re.compile(
    r"(?i)(?<![a-z])((?:password|passwd|passphrase|pwd)[\"']?(?:\s*[:=]\s*|\s+is\s+)[\"']?)"
    r"[^\s\"',;]{5,}[^\s\"',;.!?:)]"
)
# Candidate runs of digits (with spaces, dashes, dots, parentheses, a leading +): one fast scan,
# then the card and phone rules run on each candidate only.
_NUMBER = re.compile(r"[+(\d][\d ().\-]{5,}\d")
_CARD = re.compile(r"(?<![\d\w])\d(?:[ -]?\d){12,18}(?![\d\w])")
_PHONES = (
    # +44 20 7946 0958, +1 (415) 555-0132, +49-30-1234567
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){2,5}(?!\w)"),
    # (415) 555-0132, 415-555-0132, 415.555.0132
    re.compile(r"(?<![\w.])\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}(?![\w.])"),
    # 020 7946 0958 (a trunk prefix, then groups)
    re.compile(r"(?<![\w.])0\d{2,4}[ -]\d{3,4}[ -]\d{3,4}(?![\w.])"),
)
# Keys whose values are dropped whatever they look like (compared lower-case, '-' read as '_').
_SECRET_KEYS = frozenset(
    {
        "api_key",
        "apikey",
        "authorization",
        "proxy_authorization",
        "x_api_key",
        "api_token",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "secret",
        "secret_key",
        "password",
        "aws_secret_access_key",
        "aws_session_token",
        "azure_ad_token",
        "vertex_credentials",
        "cookie",
        "set_cookie",
    }
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        return "[REDACTED:card]"
    return match.group(0)


def _phone(match: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in match.group(0))
    return "[REDACTED:phone]" if 7 <= digits <= 15 else match.group(0)


def redact(text: str, extra: Sequence[Redactor] | None = None) -> str:
    """``text`` with personal data and credentials replaced by ``[REDACTED:<kind>]``.

    Kinds: ``email``, ``bearer`` (the token after ``Bearer``, or a JWT), ``api_key`` (OpenAI, Anthropic, AWS,
    GitHub, Slack, Google formats), ``secret`` (a long hex or base64 value after a name such as
    key, token or secret; anything after password), ``card`` (13 to 19 digits, spaces or dashes allowed, that pass
    the Luhn check) and ``phone``. ``extra`` adds rules: a compiled regex (matches become
    ``[REDACTED:custom]``, or ``[REDACTED:<name>]`` with a ``(?P<name>...)`` group) or a callable
    ``str -> str`` applied after the built-in rules.
    """
    if not text:
        return text
    out = text
    lowered = text.lower()
    # Each rule runs only when its trigger is in the text: a substring test is far cheaper than a
    # regex scan, and most text has no key, token or e-mail address in it.
    if "bearer" in lowered:
        out = _BEARER.sub(r"\1\2[REDACTED:bearer]", out)
    if "eyJ" in out:
        out = _JWT.sub("[REDACTED:bearer]", out)
    for trigger, pattern in _API_KEYS:
        if any(t in out for t in trigger):
            out = pattern.sub("[REDACTED:api_key]", out)
    if "key" in lowered or "token" in lowered or "secret" in lowered:
        out = _GENERIC_SECRET.sub(r"\1[REDACTED:secret]", out)
    if "pass" in lowered or "pwd" in lowered:
        out = _PASSWORD.sub(r"\1[REDACTED:secret]", out)
    if "@" in out:
        out = _EMAIL.sub("[REDACTED:email]", out)
    out = _NUMBER.sub(_number, out)
    for rule in extra or ():
        out = _apply_extra(rule, out)
    return out


def _number(match: re.Match[str]) -> str:
    """A run of digits and separators: redact the cards and phone numbers in it."""
    text = match.string
    start, end = match.span()
    # One character of context on each side, so the rules' boundary checks see the real text.
    lo, hi = max(0, start - 1), min(len(text), end + 1)
    window = _CARD.sub(_card, text[lo:hi])
    for pattern in _PHONES:
        window = pattern.sub(_phone, window)
    prefix, suffix = text[lo:start], text[end:hi]
    if window.startswith(prefix) and window.endswith(suffix):
        return window[len(prefix) : len(window) - len(suffix)]
    return match.group(0)  # pragma: no cover (the context characters cannot start or end a match)


def _apply_extra(rule: Redactor, text: str) -> str:
    if isinstance(rule, re.Pattern):
        names = list(rule.groupindex)
        label = names[0] if names else "custom"
        return rule.sub(f"[REDACTED:{label}]", text)
    if callable(rule):
        result = rule(text)
        if not isinstance(result, str):
            raise TypeError(
                f"a redaction hook returns the redacted text (str), got {type(result).__name__}"
            )
        return result
    raise TypeError(f"a redaction rule is a compiled regex or a callable, got {rule!r}")


def redact_value(value: Any, extra: Sequence[Redactor] | None = None) -> Any:
    """A JSON-shaped value with every string redacted and secret-named keys' values dropped."""
    if isinstance(value, str):
        return redact(value, extra)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if name.lower().replace("-", "_") in _SECRET_KEYS and item is not None:
                out[name] = "[REDACTED:secret]"
            else:
                out[name] = redact_value(item, extra)
        return out
    if isinstance(value, list | tuple):
        return [redact_value(item, extra) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        # A card number sent as a JSON number.
        text = str(value)
        return "[REDACTED:card]" if 13 <= len(text) <= 19 and _luhn_ok(text) else value
    return redact(str(value), extra)


# -- capture ----------------------------------------------------------------------------------
# Call options that carry credentials, endpoints or live objects, never the conversation.
_DROPPED_OPTIONS = frozenset(
    {
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "headers",
        "extra_headers",
        "client",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_profile_name",
        "azure_ad_token",
        "azure_ad_token_provider",
        "vertex_credentials",
        "vertex_project",
        "callbacks",
        "success_callback",
        "failure_callback",
        "logger_fn",
        "mock_response",
    }
)


def _plain(value: Any) -> Any:
    """A provider object (litellm ``ModelResponse``, pydantic model, chunk list) as plain JSON data."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    for method in ("model_dump", "dict", "to_dict"):
        dump = getattr(value, method, None)
        if callable(dump):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # pydantic serializer warnings on odd fields
                    return _plain(dump())
            except Exception:
                continue
    return str(value)


def request_body(request_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The request as stored: the call's options minus credentials, endpoints and live objects."""
    body: dict[str, Any] = {}
    for key, value in request_kwargs.items():
        if key in _DROPPED_OPTIONS or callable(value):
            continue
        body[key] = _plain(value)
    return body


def response_body(response: Any) -> Any:
    """The response as stored: a completion as a dict, a stream's chunks as ``{"chunks": [...]}``."""
    if response is None:
        return None
    if isinstance(response, list | tuple):
        return {"object": "chunks", "chunks": [_plain(chunk) for chunk in response]}
    return _plain(response)


def content_rows(
    run_id: str,
    step: int | None,
    ts: float,
    request_kwargs: Mapping[str, Any] | None,
    response: Any,
    *,
    extra: Sequence[Redactor] | None = None,
) -> list[tuple[Any, ...]]:
    """Redacted ``agentmeter_content`` rows (``CONTENT_COLUMNS`` order) for one call.

    ``request_kwargs``: what was passed to ``completion`` (credentials are dropped). ``response``:
    the provider's response, a list of stream chunks, or None for a failed call (no response row).
    Queue each row as ``("content", row)``; the writer inserts them with ``CONTENT_INSERT_SQL``.

    Redaction costs about 1 ms per 50 KB of text. To keep it off the agent's thread, copy the
    bodies there with ``plain_bodies`` (microseconds) and build the rows on the writer's thread
    with ``rows_from_bodies``: this function is exactly those two steps.
    """
    request, body = plain_bodies(request_kwargs, response)
    return rows_from_bodies(run_id, step, ts, request, body, extra=extra)


def plain_bodies(request_kwargs: Mapping[str, Any] | None, response: Any) -> tuple[Any, Any]:
    """The request (credentials dropped) and the response as plain data, copied now, not redacted.

    A copy, so the agent may go on changing its message list after the call.
    """
    request = request_body(request_kwargs) if request_kwargs is not None else None
    return request, response_body(response)


def rows_from_bodies(
    run_id: str,
    step: int | None,
    ts: float,
    request: Any,
    response: Any,
    *,
    extra: Sequence[Redactor] | None = None,
) -> list[tuple[Any, ...]]:
    """Redact and serialize ``plain_bodies`` output into ``agentmeter_content`` rows."""
    rows: list[tuple[Any, ...]] = []
    for kind, body in (("request", request), ("response", response)):
        if body is not None:
            text = json.dumps(redact_value(body, extra), sort_keys=True, default=str)
            rows.append((run_id, step, ts, kind, text))
    return rows


# -- replay: the cassette ---------------------------------------------------------------------
class Cassette:
    """A drop-in for ``litellm.completion(**kwargs)`` that serves a run's recorded responses in order.

    Each call returns the next recorded response (a ``litellm.ModelResponse`` or, for a recorded
    stream, an iterator of ``ModelResponseStream`` chunks; plain dicts with ``as_dict=True`` or
    when litellm cannot build them). ``requests`` keeps what the agent asked, for assertions.
    Failed attempts recorded no response, so the agent gets each answer on its first try. Raises
    ``ReplayError`` once the recording runs out.
    """

    def __init__(self, run_id: str, bodies: list[Any], *, as_dict: bool = False) -> None:
        self.run_id = run_id
        self.bodies = bodies
        self.as_dict = as_dict
        self.served = 0
        self.requests: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.bodies)

    @property
    def remaining(self) -> int:
        """Recorded responses not served yet."""
        return len(self.bodies) - self.served

    def __call__(self, **kwargs: Any) -> Any:
        if self.served >= len(self.bodies):
            raise ReplayError(
                f"run {self.run_id} has no more recorded responses: all {len(self.bodies)} were "
                "served; the agent made more calls than it did when recorded"
            )
        body = self.bodies[self.served]
        self.served += 1
        self.requests.append(dict(kwargs))
        if isinstance(body, Mapping) and body.get("object") == "chunks":
            return self._stream(body.get("chunks") or [])
        return body if self.as_dict else _model_response(body)

    async def acompletion(self, **kwargs: Any) -> Any:
        """The async twin (a drop-in for ``litellm.acompletion``)."""
        result = self(**kwargs)
        if isinstance(result, Iterator):
            return _AsyncChunks(result)
        return result

    def _stream(self, chunks: list[Any]) -> Iterator[Any]:
        for chunk in chunks:
            yield chunk if self.as_dict else _model_response(chunk, stream=True)


class _AsyncChunks:
    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> _AsyncChunks:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None


def _model_response(body: Any, *, stream: bool = False) -> Any:
    if not isinstance(body, Mapping):
        return body
    try:
        from .tokens import import_litellm

        litellm = import_litellm()
        cls = litellm.ModelResponseStream if stream else litellm.ModelResponse
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydantic schema warnings inside litellm's types
            return cls(**body)
    except Exception:
        return dict(body)


def replay_run(
    conn_or_path: sqlite3.Connection | str | os.PathLike[str],
    run_id: str,
    *,
    as_dict: bool = False,
) -> Cassette:
    """A ``Cassette`` serving run ``run_id``'s recorded responses; ``ReplayError`` if none were captured."""
    from .replay import open_db

    conn, opened = open_db(conn_or_path)
    try:
        if not _has_content_table(conn):
            raise ReplayError(
                f"run {run_id} has no captured content: this flight recorder predates content "
                "capture (turn it on for the runs you want to replay offline)"
            )
        rows = conn.execute(
            "SELECT body FROM agentmeter_content WHERE run_id = ? AND kind = 'response' ORDER BY id",
            (run_id,),
        ).fetchall()
    finally:
        if opened:
            conn.close()
    if not rows:
        raise ReplayError(
            f"run {run_id} has no captured content (content capture was off when it ran, or its "
            "content was pruned)"
        )
    bodies = []
    for (text,) in rows:
        try:
            bodies.append(json.loads(text))
        except ValueError as exc:
            raise ReplayError(
                f"run {run_id}: a recorded response is not valid JSON ({exc})"
            ) from None
    return Cassette(run_id, bodies, as_dict=as_dict)


def _has_content_table(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agentmeter_content'"
        ).fetchone()
        is not None
    )


# -- retention --------------------------------------------------------------------------------
def prune(conn: sqlite3.Connection, before_s: float, *, clock: Clock = SYSTEM_CLOCK) -> int:
    """Delete captured content and cached responses older than ``before_s`` seconds (and expired
    cache entries); return how many rows went.

    Calls, decisions and runs are untouched. Deleted bodies are overwritten in the file
    (``secure_delete``) and the write-ahead log is truncated, so they do not linger on disk.
    """
    if before_s < 0:
        raise ValueError(f"before_s must be >= 0 seconds, got {before_s}")
    if not _has_content_table(conn):
        return 0
    cutoff = clock.now() - before_s
    conn.execute("PRAGMA secure_delete = ON")
    in_transaction = conn.in_transaction
    cursor = conn.execute("DELETE FROM agentmeter_content WHERE ts < ?", (cutoff,))
    deleted = cursor.rowcount
    try:  # cached responses are content too: same redaction, same pruning
        cursor = conn.execute(
            "DELETE FROM agentmeter_cache WHERE created_at < ? OR expires_at < ?",
            (cutoff, clock.now()),
        )
        deleted += cursor.rowcount
    except sqlite3.OperationalError:  # a database from before the response cache
        pass
    if not in_transaction and conn.in_transaction:
        conn.commit()
    if not conn.in_transaction:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return deleted
