"""``Run.completion``: decide, apply, call litellm (or a stand-in) with retries, record.

Each attempt is recorded as its own call (a failed attempt as ``status='error'`` with no cost), so
retries are visible and cost is never counted twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from .tokens import import_litellm
from .usage import Usage

if TYPE_CHECKING:
    from .call import Call
    from .decision import Decision
    from .run import Run

__all__ = ["is_transient", "run_acompletion", "run_completion"]

_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}
_TRANSIENT_NAMES = {
    "RateLimitError",
    "Timeout",
    "APITimeoutError",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
    "TimeoutError",
    "ConnectionError",
}


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: timeouts, connection errors, 429 and 5xx."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status in _TRANSIENT_STATUS:
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


def _prepare(run: Run, kwargs: dict[str, Any]) -> tuple[Decision, dict[str, Any]]:
    model = kwargs.get("model")
    if not isinstance(model, str):
        raise TypeError("completion() needs model='...'")
    messages = kwargs.get("messages")
    decision = run.decide(model=model, messages=messages, max_tokens=kwargs.get("max_tokens"))
    compacted = run.apply(decision, messages)
    if compacted is not messages and isinstance(messages, list) and compacted is not None:
        messages[:] = compacted  # the agent keeps the compacted context for its next steps
    call_kwargs = dict(kwargs)
    call_kwargs["model"] = decision.model
    if compacted is not None:
        call_kwargs["messages"] = compacted
    if decision.stream is False:
        call_kwargs["stream"] = False
    if call_kwargs.get("stream"):
        options = dict(call_kwargs.get("stream_options") or {})
        options.setdefault("include_usage", True)
        call_kwargs["stream_options"] = options
    return decision, call_kwargs


def _retrying(run: Run, cls: type[Any]) -> Any:
    clock = run.meter.clock
    sleep = clock.asleep if cls is AsyncRetrying else clock.sleep
    return cls(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(run.meter.max_retries + 1),
        wait=wait_random_exponential(multiplier=0.5, max=20),
        sleep=sleep,
        reraise=True,
    )


def _from_cache(
    run: Run, decision: Decision, call_kwargs: dict[str, Any], *, asynchronous: bool = False
) -> tuple[str | None, Any]:
    """(cache key, cached response or None) when the response cache is on.

    A streamed request is answered with the recorded chunks (an iterator, or an async iterator
    for ``acompletion``), a plain one with the recorded response.
    """
    cache = run.meter.response_cache
    if cache is None:
        return None, None
    stream = bool(call_kwargs.get("stream"))
    from .cache import request_key

    clock = run.meter.clock
    key = request_key(call_kwargs)
    start = clock.monotonic()
    try:
        hit = cache.lookup(
            key, {k: v for k, v in call_kwargs.items() if k != "api_key"}, clock.now()
        )
    except Exception as exc:  # a cache that cannot be read is a miss
        run.meter.warn_once("cache-read", f"agentmeter: response cache unavailable ({exc!r})")
        return key, None
    if hit is None:
        return key, None
    body, cost = hit
    from .content import _AsyncChunks, _model_response

    # Answer in the shape the live call would have: litellm's objects, or what the stand-in gave.
    as_litellm = (run.meter.acompletion_fn if asynchronous else run.meter.completion_fn) is None
    if stream:
        chunks = body.get("chunks") if isinstance(body, dict) else None
        if not isinstance(chunks, list):
            return key, None  # not a recorded stream: ask the provider
        answered = next((c.get("model") for c in chunks if isinstance(c, dict)), None)
        replayed = [_model_response(c, stream=True) if as_litellm else c for c in chunks]
        response: Any = _AsyncChunks(iter(replayed)) if asynchronous else iter(replayed)
    else:
        answered = body.get("model") if isinstance(body, dict) else None
        response = _model_response(body) if as_litellm else body
    run.record(
        model=decision.model,
        requested_model=decision.requested_model,
        latency_ms=(clock.monotonic() - start) * 1000.0,
        messages=call_kwargs.get("messages"),
        stream=stream,
        cache_hit=True,
        saved_nano_usd=cost,
        model_version=answered if isinstance(answered, str) else None,
    )
    return key, response


def run_completion(run: Run, kwargs: dict[str, Any]) -> Any:
    decision, call_kwargs = _prepare(run, kwargs)
    key, cached = _from_cache(run, decision, call_kwargs)
    if cached is not None:
        return cached
    fn = run.meter.completion_fn or import_litellm().completion
    stream = bool(call_kwargs.get("stream"))

    def attempt_once() -> Any:
        call = _start(run, decision, call_kwargs, stream)
        try:
            response = fn(**call_kwargs)
        except BaseException as exc:
            _failed(run, call, call_kwargs, exc)
            raise
        if stream:
            return _Stream(call, response, call_kwargs, key)
        return _succeeded(run, call, call_kwargs, response, key)

    # The first attempt runs outside tenacity: it usually succeeds, and tenacity's bookkeeping
    # costs ~8 us a call. A transient failure is handed to tenacity as its attempt 1.
    try:
        return attempt_once()
    except Exception as exc:
        if not _worth_retrying(run, exc):
            raise
        failed: BaseException | None = exc
    for attempt in _retrying(run, Retrying):
        with attempt:
            if failed is not None:
                first, failed = failed, None
                raise first
            return attempt_once()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


async def run_acompletion(run: Run, kwargs: dict[str, Any]) -> Any:
    decision, call_kwargs = _prepare(run, kwargs)
    key, cached = _from_cache(run, decision, call_kwargs, asynchronous=True)
    if cached is not None:
        return cached
    fn = run.meter.acompletion_fn or import_litellm().acompletion
    stream = bool(call_kwargs.get("stream"))

    async def attempt_once() -> Any:
        call = _start(run, decision, call_kwargs, stream)
        try:
            response = await fn(**call_kwargs)
        except BaseException as exc:
            _failed(run, call, call_kwargs, exc)
            raise
        if stream:
            return _AsyncStream(call, response, call_kwargs, key)
        return _succeeded(run, call, call_kwargs, response, key)

    try:  # the first attempt outside tenacity, as in run_completion
        return await attempt_once()
    except Exception as exc:
        if not _worth_retrying(run, exc):
            raise
        failed: BaseException | None = exc
    async for attempt in _retrying(run, AsyncRetrying):
        with attempt:
            if failed is not None:
                first, failed = failed, None
                raise first
            return await attempt_once()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


def _worth_retrying(run: Run, exc: BaseException) -> bool:
    return run.meter.max_retries > 0 and is_transient(exc)


def _start(run: Run, decision: Decision, kwargs: dict[str, Any], stream: bool) -> Call:
    """Open and start timing one attempt (the sync and async paths share every step but the await)."""
    call = _open_call(run, decision, kwargs, stream)
    call.__enter__()
    call.sent()
    return call


def _failed(run: Run, call: Call, kwargs: dict[str, Any], exc: BaseException) -> None:
    call.__exit__(type(exc), exc, None)
    run.capture(kwargs, None, call.record)


def _succeeded(run: Run, call: Call, kwargs: dict[str, Any], response: Any, key: str | None) -> Any:
    call.received()
    call.set_response(response)
    call.__exit__(None, None, None)
    run.capture(kwargs, response, call.record)
    if key is not None:
        run.cache_store(key, kwargs, response, call.record)
    return response


def _open_call(run: Run, decision: Decision, kwargs: dict[str, Any], stream: bool) -> Call:
    return run.call(
        decision.model,
        requested_model=decision.requested_model,
        stream=stream,
        messages=kwargs.get("messages"),
        max_tokens=kwargs.get("max_tokens"),
    )


class _StreamState:
    """What a stream wrapper collects: chunks for usage, text for an estimate when usage is absent."""

    def __init__(self, call: Call, kwargs: dict[str, Any], key: str | None = None) -> None:
        self.call = call
        self.kwargs = kwargs
        self.key = key  # the response-cache key: a stream read to its end is cached
        self.chunks: list[Any] = []
        self.text: list[str] = []
        self.model: str | None = None
        self.done = False

    def on_chunk(self, chunk: Any) -> None:
        self.call.chunk()
        self.chunks.append(chunk)
        try:
            choices = (
                chunk.get("choices") if isinstance(chunk, dict) else getattr(chunk, "choices", None)
            )
            if choices:
                delta = (
                    choices[0].get("delta")
                    if isinstance(choices[0], dict)
                    else getattr(choices[0], "delta", None)
                )
                content = (
                    delta.get("content")
                    if isinstance(delta, dict)
                    else getattr(delta, "content", None)
                )
                if isinstance(content, str):
                    self.text.append(content)
            model = chunk.get("model") if isinstance(chunk, dict) else getattr(chunk, "model", None)
            if isinstance(model, str):
                self.model = model  # the version that answered, as the provider names it
        except Exception:
            pass

    def finish(self, exc: BaseException | None, *, complete: bool = False) -> None:
        if self.done:
            return
        self.done = True
        from .call import normalize_usage_safely

        self.call.received()
        usage = normalize_usage_safely(self.chunks) if self.chunks else None
        if usage is None and exc is None:
            usage = self._estimate()
        self.call.set_usage(usage)
        if self.model is not None:
            self.call.model_version = self.model
        if exc is None:
            self.call.__exit__(None, None, None)
        else:
            self.call.__exit__(type(exc), exc, None)
        self.call.run.capture(self.kwargs, self.chunks if exc is None else None, self.call.record)
        if complete and self.key is not None:
            self.call.run.cache_store(self.key, self.kwargs, self.chunks, self.call.record)

    def _estimate(self) -> Usage:
        model = self.call.model
        count = self.call.run.meter.count_tokens
        prompt = count(model, self.kwargs.get("messages") or [])
        output = count(model, "".join(self.text)) if self.text else 0
        return Usage(input_tokens=prompt, output_tokens=output, estimated=True)


class _Stream:
    """Iterates a provider stream; records TTFT on the first chunk and usage at the end."""

    def __init__(
        self, call: Call, response: Any, kwargs: dict[str, Any], key: str | None = None
    ) -> None:
        self._state = _StreamState(call, kwargs, key)
        self._it: Iterator[Any] = iter(response)
        self.response = response

    def __iter__(self) -> _Stream:
        return self

    def __next__(self) -> Any:
        try:
            chunk = next(self._it)
        except StopIteration:
            self._state.finish(None, complete=True)
            raise
        except BaseException as exc:
            self._state.finish(exc)
            raise
        self._state.on_chunk(chunk)
        return chunk

    def close(self) -> None:
        """Stop early: the call is recorded with what arrived so far."""
        self._state.finish(None)
        close = getattr(self._it, "close", None)
        if close is not None:
            close()

    def __del__(self) -> None:
        if not self._state.done:
            try:
                self._state.finish(None)
            except Exception:
                pass


class _AsyncStream:
    """The async twin of ``_Stream`` (same state object, so the logic lives once)."""

    def __init__(
        self, call: Call, response: Any, kwargs: dict[str, Any], key: str | None = None
    ) -> None:
        self._state = _StreamState(call, kwargs, key)
        self._it: AsyncIterator[Any] = response.__aiter__()

    def __aiter__(self) -> _AsyncStream:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._it.__anext__()
        except StopAsyncIteration:
            self._state.finish(None, complete=True)
            raise
        except BaseException as exc:
            self._state.finish(exc)
            raise
        self._state.on_chunk(chunk)
        return chunk
