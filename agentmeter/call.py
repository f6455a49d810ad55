"""One LLM call: the ``Call`` that times it, the ``CallRecord`` it becomes, and what reads a prompt.

Everything here runs on the agent's thread for every call: no SQL, no pydantic.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .normalize import normalize_usage
from .pricing import nano_to_usd
from .usage import Usage
from .windows import quantile_of_sorted

if TYPE_CHECKING:
    from .run import Run

__all__ = ["Call", "CallRecord", "normalize_usage_safely", "prompt_hash", "prompt_upper_bound"]


def prompt_hash(messages: Any) -> str | None:
    """A short, stable hash of a prompt (messages or text), for loop detection. Content is not stored."""
    if messages is None:
        return None
    try:
        text = (
            messages
            if isinstance(messages, str)
            else json.dumps(messages, sort_keys=True, default=str)
        )
    except (TypeError, ValueError):
        text = repr(messages)
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).hexdigest()


@dataclass(frozen=True)
class CallRecord:
    """One recorded call. ``cost`` is exact USD (``Decimal``) or ``None`` when unknown.

    Not slotted: ``make`` fills the instance dict in one step, a fraction of what a frozen
    dataclass's ``__init__`` costs (one ``object.__setattr__`` per field) on every recorded call.
    """

    run_id: str
    step: int
    ts: float
    requested_model: str | None
    model: str | None
    provider: str | None
    usage: Usage | None
    cost_nano_usd: int | None
    cost_status: str
    latency_ms: float | None
    ttft_ms: float | None
    pre_ms: float | None
    post_ms: float | None
    status: str
    error_type: str | None
    stream: bool
    prompt_hash: str | None
    model_version: str | None = None
    cache_hit: bool = False
    saved_nano_usd: int | None = None

    @property
    def cost(self) -> Decimal | None:
        """Exact cost in USD, or None when the price or the usage is unknown."""
        return nano_to_usd(self.cost_nano_usd) if self.cost_nano_usd is not None else None

    @classmethod
    def make(cls, *values: Any) -> CallRecord:
        """A record from every field's value in declaration order (the recorder's fast path; it
        passes every field, so the zip is not checked: checking costs a third of the call)."""
        record = object.__new__(cls)
        object.__setattr__(record, "__dict__", dict(zip(_RECORD_FIELDS, values, strict=False)))
        return record


_RECORD_FIELDS = tuple(f.name for f in fields(CallRecord))


class Call:
    """Times one call and records it on exit (see ``Run.call``).

    Marks: ``sent()`` when the request leaves (the time before is ``pre_ms``), ``first_token()``
    on the first streamed chunk (``ttft_ms``, idempotent), ``received()`` when the response is
    complete (the time after is ``post_ms``).
    """

    __slots__ = (
        "_received",
        "_sent",
        "_t0",
        "chunk_times",
        "max_tokens",
        "model",
        "model_version",
        "pre_ms",
        "prompt_hash",
        "provider",
        "record",
        "requested_model",
        "response",
        "run",
        "stream",
        "tags",
        "ttft_ms",
        "usage",
    )

    def __init__(
        self,
        run: Run,
        *,
        model: str,
        tags: Mapping[str, Any] | None,
        provider: str | None,
        stream: bool,
        prompt_hash: str | None,
        max_tokens: int | None,
        pre_ms: float | None,
        requested_model: str | None,
    ) -> None:
        self.run = run
        self.model = model
        self.requested_model = requested_model
        self.tags = tags
        self.provider = provider
        self.stream = stream
        self.prompt_hash = prompt_hash
        self.max_tokens = max_tokens
        self.pre_ms = pre_ms
        self.ttft_ms: float | None = None
        self.usage: Usage | None = None
        self.response: Any = None
        self.record: CallRecord | None = None
        self.chunk_times: list[float] | None = None
        self.model_version: str | None = None
        self._sent: float | None = None
        self._received: float | None = None
        self._t0 = 0.0

    def __enter__(self) -> Call:
        self._t0 = self.run.meter.clock.monotonic()
        return self

    def sent(self) -> None:
        """Mark the request as sent: the time since entering is ``pre_ms``."""
        if self._sent is None:
            self._sent = self.run.meter.clock.monotonic()
            self.pre_ms = (self._sent - self._t0) * 1000.0

    def first_token(self) -> None:
        """Mark the first token (idempotent): ``ttft_ms`` counts from ``sent()`` or from entering."""
        if self.ttft_ms is None:
            start = self._sent if self._sent is not None else self._t0
            self.ttft_ms = (self.run.meter.clock.monotonic() - start) * 1000.0

    def chunk(self) -> None:
        """Mark one streamed chunk: the first is the first token; the gaps give inter-chunk latency."""
        now = self.run.meter.clock.monotonic()
        if self.chunk_times is None:
            self.chunk_times = []
            if self.ttft_ms is None:
                start = self._sent if self._sent is not None else self._t0
                self.ttft_ms = (now - start) * 1000.0
        self.chunk_times.append(now)

    def received(self) -> None:
        """Mark the response complete: the time until leaving the block is ``post_ms``."""
        self._received = self.run.meter.clock.monotonic()

    def set_usage(self, usage: Usage | Any) -> None:
        """Set the call's usage: a ``Usage``, or any payload ``normalize_usage`` reads."""
        self.usage = usage if usage is None or isinstance(usage, Usage) else normalize_usage(usage)

    def set_response(self, response: Any) -> None:
        """Set the provider response (usage and answering model are read from it)."""
        self.response = response

    def set_model(self, model: str) -> None:
        """The model that actually answered, when it differs from the one named at entry."""
        self.model = model

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        end = self.run.meter.clock.monotonic()
        latency_ms = (end - self._t0) * 1000.0
        post_ms = (end - self._received) * 1000.0 if self._received is not None else None
        model = self.model
        chunks = itl_mean = itl_p90 = None
        if self.chunk_times:
            times = self.chunk_times
            gaps = sorted((b - a) * 1000.0 for a, b in itertools.pairwise(times))
            chunks = len(times)
            if gaps:
                itl_mean = sum(gaps) / len(gaps)
                itl_p90 = quantile_of_sorted(gaps, 0.9)
        self.record = self.run.record(
            model=model,
            usage=self.usage,
            response=self.response if self.usage is None else None,
            model_version=self.model_version,
            chunks=chunks,
            itl_mean_ms=itl_mean,
            itl_p90_ms=itl_p90,
            latency_ms=latency_ms,
            ttft_ms=self.ttft_ms,
            pre_ms=self.pre_ms,
            post_ms=post_ms,
            provider=self.provider,
            status="ok" if exc_type is None else "error",
            error_type=None if exc_type is None else exc_type.__name__,
            tags=self.tags,
            requested_model=self.requested_model,
            prompt_hash=self.prompt_hash,
            stream=self.stream,
            max_tokens=self.max_tokens,
        )


def prompt_upper_bound(messages: Any) -> int | None:
    """An upper bound on a prompt's tokens: its UTF-8 bytes plus 8 per message (None: unknown shape)."""
    try:
        if isinstance(messages, str):
            return len(messages.encode("utf-8")) + 8
        total = 8
        for message in messages:
            content = message.get("content") if isinstance(message, Mapping) else message
            if isinstance(content, str):
                total += len(content.encode("utf-8")) + 8
            else:
                total += len(json.dumps(content, default=str).encode("utf-8")) + 8
            name = message.get("name") if isinstance(message, Mapping) else None
            if isinstance(name, str):
                total += len(name.encode("utf-8"))
            tools = message.get("tool_calls") if isinstance(message, Mapping) else None
            if tools:
                total += len(json.dumps(tools, default=str).encode("utf-8"))
        return total
    except Exception:
        return None


def normalize_usage_safely(payload: Any) -> Usage | None:
    """``normalize_usage`` that never raises."""
    try:
        return normalize_usage(payload)
    except Exception:
        return None


def _hash_of(messages: Any) -> str | None:
    return prompt_hash(messages) if messages is not None else None


def _response_field(response: Any, name: str) -> str | None:
    value = response.get(name) if isinstance(response, Mapping) else getattr(response, name, None)
    return value if isinstance(value, str) else None


def _response_model(response: Any) -> str | None:
    model = (
        response.get("model") if isinstance(response, Mapping) else getattr(response, "model", None)
    )
    return model if isinstance(model, str) else None
