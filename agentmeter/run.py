"""``Run`` (one agent task), ``Call`` (one timed LLM call) and ``CallRecord`` (what was recorded).

Everything here runs on the agent's thread, so it does no SQL and builds no pydantic model: a
recorded call is priced from a cached rate table, folded into in-memory windows and queued for the
background writer.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .call import (
    Call,
    CallRecord,
    _hash_of,
    _response_field,
    _response_model,
    prompt_hash,
    prompt_upper_bound,
)
from .decision import UNRECORDED_ACTIVE, Decision, Fired
from .deferred import Deferred
from .errors import BudgetExceeded, PauseRequested
from .ledger import reserve_shared
from .meter import samples
from .normalize import normalize_usage
from .policy.engine import Observation, Reservation
from .pricing import cost_nano_usd, nano_to_usd
from .stats import RunStats, RunTally
from .usage import Usage

if TYPE_CHECKING:
    from .meter import Meter

__all__ = ["Call", "CallRecord", "Run", "prompt_hash"]

# ``json.dumps(detail, sort_keys=True, default=str)`` without building an encoder per decision row.
_detail_json = json.JSONEncoder(sort_keys=True, default=str).encode


class Run:
    """One agent task: its calls, its decisions, its tags. A context manager; see ``Meter.run``."""

    def __init__(
        self,
        meter: Meter,
        *,
        name: str | None,
        tags: Mapping[str, Any],
        run_id: str | None = None,
    ) -> None:
        self.meter = meter
        self.run_id = run_id or uuid.uuid4().hex[:16]
        self.name = name
        self.tags = dict(tags)
        self._tags_json = json.dumps(self.tags, sort_keys=True, default=str)
        self.started_at = meter.clock.now()
        self.status = "running"
        self.step = 0
        # The most recent decisions in which a policy fired (the flight recorder keeps them all):
        # a run that keeps deciding under a breached cap must not grow without bound.
        self.decisions: deque[Decision] = deque(maxlen=1000)
        self._step_lock = threading.Lock()  # the step counter only: held for one addition
        self._local = threading.local()
        self._tally = RunTally()
        # Calls join the tally without waiting for its lock (``deferred.Deferred``): threads
        # recording into one run (parallel tool calls) would otherwise queue on it at every call.
        self._untallied: Deferred[tuple[Any, ...]] = Deferred(lambda call: self._tally.add(*call))
        self._tally_lock = self._untallied.lock
        self.ended_at: float | None = None
        self.last_record: CallRecord | None = None
        self._models: dict[int, str | None] = {}
        meter.put("run", self._run_row())

    def _run_row(self) -> tuple[Any, ...]:
        policy_hash = self.meter.policies.digest if self.meter.policies else None
        return (
            self.run_id,
            self.name,
            self.started_at,
            self.ended_at,
            self.status,
            self._tags_json,
            policy_hash,
        )

    # -- recording -------------------------------------------------------------------------------
    def call(
        self,
        model: str,
        *,
        tags: Mapping[str, Any] | None = None,
        provider: str | None = None,
        stream: bool = False,
        messages: Any = None,
        max_tokens: int | None = None,
        pre_ms: float | None = None,
        requested_model: str | None = None,
    ) -> Call:
        """Time one LLM call: ``with run.call("gpt-4o") as call: ...``. Errors are recorded, then re-raised."""
        return Call(
            self,
            model=model,
            tags=tags,
            provider=provider,
            stream=stream,
            prompt_hash=prompt_hash(messages),
            max_tokens=max_tokens,
            pre_ms=pre_ms,
            requested_model=requested_model,
        )

    def record(
        self,
        model: str | None = None,
        usage: Usage | None = None,
        *,
        response: Any = None,
        latency_ms: float | None = None,
        ttft_ms: float | None = None,
        pre_ms: float | None = None,
        post_ms: float | None = None,
        provider: str | None = None,
        status: str = "ok",
        error_type: str | None = None,
        tags: Mapping[str, Any] | None = None,
        requested_model: str | None = None,
        messages: Any = None,
        prompt_hash: str | None = None,
        stream: bool = False,
        max_tokens: int | None = None,
        ts: float | None = None,
        model_version: str | None = None,
        system_fingerprint: str | None = None,
        chunks: int | None = None,
        itl_mean_ms: float | None = None,
        itl_p90_ms: float | None = None,
        cache_hit: bool = False,
        saved_nano_usd: int | None = None,
    ) -> CallRecord | None:
        """Record one finished call. Never raises for telemetry problems: it counts and warns once.

        ``usage`` (a ``Usage``) or ``response`` (any provider payload ``normalize_usage`` reads);
        ``latency_ms`` total; optional ``ttft_ms``, ``pre_ms``, ``post_ms``; ``status`` ``ok`` or
        ``error`` with ``error_type``; ``tags`` merged over the run's. ``model_version`` and
        ``system_fingerprint`` say what answered (read from ``response`` when not given);
        ``chunks``, ``itl_mean_ms``, ``itl_p90_ms`` describe a stream; ``cache_hit`` marks a call
        served from the response cache (no cost; ``saved_nano_usd`` what it would have cost).
        """
        try:
            return self._record(
                model,
                usage,
                response,
                latency_ms,
                ttft_ms,
                pre_ms,
                post_ms,
                provider,
                status,
                error_type,
                tags,
                requested_model,
                prompt_hash if prompt_hash is not None else _hash_of(messages),
                stream,
                max_tokens,
                ts,
                (
                    model_version,
                    system_fingerprint,
                    chunks,
                    itl_mean_ms,
                    itl_p90_ms,
                    cache_hit,
                    saved_nano_usd,
                ),
            )
        except Exception as exc:  # telemetry must never break the agent
            self.meter.internal_errors += 1
            self.meter.warn_once(
                "record", f"agentmeter: could not record a call ({exc!r}); the agent continues"
            )
            return None

    def _record(
        self,
        model: str | None,
        usage: Usage | None,
        response: Any,
        latency_ms: float | None,
        ttft_ms: float | None,
        pre_ms: float | None,
        post_ms: float | None,
        provider: str | None,
        status: str,
        error_type: str | None,
        tags: Mapping[str, Any] | None,
        requested_model: str | None,
        phash: str | None,
        stream: bool,
        max_tokens: int | None,
        ts: float | None,
        more: tuple[Any, ...] = (None, None, None, None, None, False, None),
    ) -> CallRecord:
        meter = self.meter
        model_version, fingerprint, chunks, itl_mean, itl_p90, cache_hit, saved = more
        if response is not None:
            if usage is None:
                usage = normalize_usage(response)
            answered = _response_model(response)
            if model is None:
                model = answered
            if model_version is None:
                model_version = answered
            if fingerprint is None:
                fingerprint = _response_field(response, "system_fingerprint")
        if usage is not None and not isinstance(usage, Usage):
            usage = normalize_usage(usage)
        if cache_hit:
            usage = Usage()  # served by agentmeter's cache: the provider read and wrote nothing
        cost = (
            cost_nano_usd(model, usage, prices=meter.prices)
            if model and usage is not None
            else None
        )
        if cache_hit:
            cost, cost_status = 0, "cached"
        elif cost is not None:
            cost_status = "ok"
        elif usage is None:
            cost_status = "unknown_usage"
        else:
            cost_status = "unknown_model"
            meter.warn_once(
                f"price:{model}",
                f"agentmeter: no price known for model {model!r}; its calls are recorded with "
                "cost unknown (add it under `pricing:` in the policy file)",
            )
        if provider is None and model:
            rates = meter.prices.rates(model)
            provider = rates.provider if rates is not None else None
        if provider is None and usage is not None and usage.provider != "litellm":
            provider = usage.provider
        now = meter.clock.now() if ts is None else ts
        with self._step_lock:
            self.step += 1
            step = self.step
        if meter.capture_context is not None:
            meter.remember_context(self.run_id, step)
        self._untallied.add(
            (
                now,
                cost,
                latency_ms,
                status != "ok",
                None
                if usage is None
                else (
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cache_read_tokens,
                    usage.cache_write_tokens,
                    usage.reasoning_tokens,
                ),
            )
        )
        tags_json = (
            self._tags_json
            if not tags
            else json.dumps({**self.tags, **tags}, sort_keys=True, default=str)
        )
        local = self._local
        reservation: Reservation | None = getattr(local, "reservation", None)
        decided = getattr(local, "decided", None)
        shared_ref = getattr(local, "shared_ref", None)
        local.reservation = local.decided = local.shared_ref = None
        reserved = reservation.nano_usd if reservation is not None else None
        decided_at, decided_prompt = decided if decided is not None else (None, None)
        if usage is not None:
            inp, out, cr, cw, rs, cw1 = (
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens,
                usage.reasoning_tokens,
                usage.cache_write_1h_tokens,
            )
            usage_status = "estimated" if usage.estimated else "reported"
            prompt = inp + cr + cw
        else:
            inp = out = cr = cw = rs = cw1 = prompt = None  # type: ignore[assignment]
            usage_status = "unknown"
        meter.put(
            "call",
            (
                self.run_id,
                step,
                now,
                requested_model or model,
                model,
                provider,
                inp,
                out,
                cr,
                cw,
                rs,
                cw1,
                usage_status,
                cost,
                cost_status,
                latency_ms,
                ttft_ms,
                pre_ms,
                post_ms,
                status,
                error_type,
                1 if stream else 0,
                phash,
                max_tokens,
                reserved,
                decided_at,
                decided_prompt,
                tags_json,
                meter.writer_id,
                shared_ref,
                model_version,
                fingerprint,
                chunks,
                itl_mean,
                itl_p90,
                1 if cache_hit else 0,
                saved,
            ),
        )
        engine = meter.engine
        if engine is not None:
            engine.observe(
                Observation(
                    ts=now,
                    run_id=self.run_id,
                    model=model,
                    tags=self.tags if not tags else {**self.tags, **tags},
                    samples=samples(
                        cost_nano=cost,
                        input_tokens=inp,
                        output_tokens=out,
                        cache_read_tokens=cr,
                        cache_write_tokens=cw,
                        reasoning_tokens=rs,
                        prompt_tokens=prompt,
                        latency_ms=latency_ms,
                        ttft_ms=ttft_ms,
                        error=status != "ok",
                        prompt_hash=phash,
                        itl_p90_ms=itl_p90,
                        model_version=model_version,
                        cache_hit=bool(cache_hit),
                    ),
                ),
                reservation,
            )
        record = CallRecord.make(
            self.run_id,
            step,
            now,
            requested_model or model,
            model,
            provider,
            usage,
            cost,
            cost_status,
            latency_ms,
            ttft_ms,
            pre_ms,
            post_ms,
            status,
            error_type,
            stream,
            phash,
            model_version,
            bool(cache_hit),
            saved,
        )
        self.last_record = record
        models = self._models
        models[step] = model
        if len(models) > 8192:  # feedback by step looks back at least 4096 calls
            for old in list(itertools.islice(models, 4096)):
                models.pop(old, None)  # threads sharing the run may trim at the same time
        return record

    # -- deciding --------------------------------------------------------------------------------
    def decide(
        self,
        model: str,
        messages: Any = None,
        prompt_tokens: int | None = None,
        max_tokens: int | None = None,
        *,
        tags: Mapping[str, Any] | None = None,
    ) -> Decision:
        """What the policies ask for before calling ``model``: a ``Decision`` (nothing is applied).

        With hard caps loaded, the call's worst-case cost is reserved against them until the call
        is recorded on this thread (or the next ``decide`` on this thread releases it).
        """
        meter = self.meter
        engine = meter.engine
        if engine is None:
            return Decision(model=model, requested_model=model, step=self.step + 1)
        self._release_pending()
        prices = meter.prices
        if prompt_tokens is None and messages is not None and engine.needs_prompt_tokens:
            prompt_tokens = self._prompt_tokens(model, messages, max_tokens, tags)

        def worst_case(chosen: str) -> int | None:
            return prices.worst_case_nano_usd(chosen, prompt_tokens or 0, max_tokens)

        now = meter.clock.now()
        decision, reservation = engine.decide(
            now=now,
            model=model,
            run_id=self.run_id,
            tags=self.tags if not tags else {**self.tags, **tags},
            prompt_tokens=prompt_tokens,
            worst_case=worst_case,
            step=self.step + 1,
        )
        if meter.ledger is not None and decision.proceed:
            decision, reservation = reserve_shared(
                self, decision, reservation, model, tags, prompt_tokens, max_tokens, now
            )
        self._local.reservation = reservation
        self._local.decided = (now, prompt_tokens)
        if decision.fired:
            self._report(decision, now, prompt_tokens, max_tokens)
        return decision

    def _prompt_tokens(
        self, model: str, messages: Any, max_tokens: int | None, tags: Mapping[str, Any] | None
    ) -> int:
        """The prompt size decide() works with: a cheap upper bound when it cannot change a thing.

        Every token is at least one byte, so the UTF-8 size of the messages (plus a few tokens of
        framing each) bounds the prompt from above. Counting exactly with a tokenizer costs tens of
        microseconds and more under load, so it is done only when the bound could matter: when it
        passes a ``stat: next`` threshold, or its worst-case cost would not fit under a hard cap.
        """
        meter = self.meter
        engine = meter.engine
        assert engine is not None
        bound = prompt_upper_bound(messages)
        if bound is not None and bound <= engine.next_threshold:
            if not engine.hard_caps:
                return bound
            room = engine.cap_room(
                now=meter.clock.now(),
                run_id=self.run_id,
                model=model,
                tags=self.tags if not tags else {**self.tags, **tags},
            )
            worst = meter.prices.worst_case_nano_usd(model, bound, max_tokens)
            if room is None or (worst is not None and worst <= room):
                return bound
        return meter.count_tokens(model, messages)

    def _release_pending(self) -> None:
        local = self._local
        pending = getattr(local, "reservation", None)
        if pending is not None:
            self.meter.engine.release(pending)  # type: ignore[union-attr]
            local.reservation = None
        ref = getattr(local, "shared_ref", None)
        if ref is not None:
            self.meter.put("release", (ref,))
            local.shared_ref = None

    def _report(
        self,
        decision: Decision,
        now: float,
        prompt_tokens: int | None = None,
        max_tokens: int | None = None,
    ) -> None:
        meter = self.meter
        self.decisions.append(decision)
        put = meter.put
        for fired in decision.fired:
            transition = fired.transition
            if transition == "active" and fired.action in UNRECORDED_ACTIVE:
                continue  # the transition was recorded when it fired
            if transition != "recover":
                with self._tally_lock:
                    self._tally.fired[(fired.policy, fired.action)] += 1
            # The row (its reason text and JSON) is built on the writer's thread.
            put(
                "deferred",
                ("decision", self._decision_row, (fired, now, decision, prompt_tokens, max_tokens)),
            )
            if transition != "active":  # fire, warn, recover
                log_fired(fired)
        for callback in meter.on_decision:
            try:
                callback(decision)
            except Exception as exc:
                meter.warn_once(
                    "on_decision", f"agentmeter: an on_decision callback failed: {exc!r}"
                )

    def _decision_row(
        self,
        fired: Fired,
        now: float,
        decision: Decision,
        prompt_tokens: int | None = None,
        max_tokens: int | None = None,
    ) -> tuple[Any, ...]:
        detail: dict[str, Any] = {
            "transition": fired.transition,
            "reason": fired.reason,
            "stat": fired.stat,
            # what the decide saw, so a replay can re-decide exactly even when no call followed
            "requested_model": decision.requested_model,
            "prompt_tokens": prompt_tokens,
            "max_tokens": max_tokens,
        }
        if fired.action == "downgrade":
            detail["model"] = decision.model
        if fired.action == "pause":
            detail["pause_s"] = round(decision.pause_s, 6)
        if fired.action == "compact" and decision.compact is not None:
            detail["target_tokens"] = decision.compact.target_tokens
        detail.update(fired.detail)
        return (
            self.run_id,
            decision.step,
            now,
            fired.policy,
            fired.metric,
            fired.value,
            fired.threshold,
            fired.action,
            fired.scope,
            _detail_json(detail),
        )

    def apply(
        self, decision: Decision, messages: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]] | None:
        """Carry out a decision: raise on halt, wait (or raise) on pause, compact ``messages``.

        Returns the messages to send (compacted when asked).
        """
        if decision.halt:
            reasons = "; ".join(f.reason for f in decision.fired if f.action == "halt")
            self.status = "halted"
            raise BudgetExceeded(f"run {self.run_id} halted: {reasons}", decision=decision)
        if decision.pause_s > 0:
            if self.meter.pause_mode == "raise":
                raise PauseRequested(
                    f"pause {decision.pause_s:.1f}s: "
                    + "; ".join(f.reason for f in decision.fired if f.action == "pause"),
                    decision=decision,
                    resume_at=decision.resume_at or self.meter.clock.now() + decision.pause_s,
                    pause_s=decision.pause_s,
                )
            self.meter.clock.sleep(decision.pause_s)
        if decision.compact is not None and messages:
            messages = self.compact(
                messages, decision.compact.target_tokens, model=decision.model, step=decision.step
            )
        return messages

    def compact(
        self,
        messages: list[dict[str, Any]],
        target_tokens: int,
        *,
        model: str = "gpt-4o",
        step: int | None = None,
    ) -> list[dict[str, Any]]:
        """Compact ``messages`` to ``target_tokens`` with the meter's compactor; record before/after."""
        from .compaction import compact_messages

        count = self.meter.count_tokens
        before = count(model, messages)
        compactor = self.meter.compactor
        result = (
            compactor(messages, target_tokens)
            if compactor
            else compact_messages(messages, target_tokens, model=model, count=count)
        )
        after = count(model, result)
        detail = {
            "tokens_before": before,
            "tokens_after": after,
            "target_tokens": target_tokens,
            "messages_before": len(messages),
            "messages_after": len(result),
        }
        self.meter.put(
            "decision",
            (
                self.run_id,
                step,
                self.meter.clock.now(),
                "compaction",
                "prompt_tokens",
                float(before),
                float(target_tokens),
                "compacted",
                f"run {self.run_id}",
                json.dumps(detail, sort_keys=True),
            ),
        )
        return result

    def capture(
        self, request_kwargs: Mapping[str, Any] | None, response: Any, record: CallRecord | None
    ) -> None:
        """Store a call's request and response (redacted on the writer thread) when capture is on."""
        meter = self.meter
        if not meter.capture_content or record is None:
            return
        try:
            from .content import plain_bodies

            request, body = plain_bodies(request_kwargs, response)
            meter.put(
                "content_raw", (self.run_id, record.step, record.ts, request, body, meter.redactors)
            )
        except Exception as exc:  # capture is telemetry: never break the call
            meter.warn_once("capture", f"agentmeter: could not capture a call's content ({exc!r})")

    def feedback(
        self,
        score: Any = None,
        *,
        kind: str = "thumbs",
        call: CallRecord | int | None = None,
        comment: str | None = None,
    ) -> None:
        """Record a quality signal for one call (a ``CallRecord`` or its step) or the whole run.

        ``kind``: ``thumbs`` (True/False), ``rating`` (1-5), ``score`` (0-1), ``regenerate`` or
        ``correction`` (both negative). Negative signals feed the ``negative_feedback_rate``
        metric (scope ``model``: the model that answered that call). A malformed signal raises
        ``ValueError``: it is the caller's mistake, not a telemetry fault.
        """
        from .feedback import is_negative

        normalized, negative = is_negative(kind, score)
        step = call.step if isinstance(call, CallRecord) else call
        if step is not None and not isinstance(step, int):
            raise ValueError(f"call is a CallRecord or a step number, got {call!r}")
        model = (
            call.model if isinstance(call, CallRecord) else self._models.get(step) if step else None
        )
        meter = self.meter
        now = meter.clock.now()
        meter.put(
            "feedback",
            (
                self.run_id,
                step,
                now,
                kind,
                normalized,
                1 if negative else 0,
                model,
                comment,
                self._tags_json,
            ),
        )
        if meter.engine is not None:
            meter.engine.observe(
                Observation(
                    ts=now,
                    run_id=self.run_id,
                    model=model,
                    tags=self.tags,
                    samples={"negative": int(negative)},
                )
            )

    def cache_store(
        self, key: str, request_kwargs: Mapping[str, Any], response: Any, record: CallRecord | None
    ) -> None:
        """Keep a successful response in the response cache (redacted on the writer thread)."""
        meter = self.meter
        cache = meter.response_cache
        if cache is None or record is None or record.status != "ok":
            return
        try:
            from .content import plain_bodies

            request, body = plain_bodies(request_kwargs, response)
            now = meter.clock.now()
            meter.put(
                "cache_raw",
                (
                    key,
                    record.model or "",
                    request,
                    body,
                    now,
                    now + cache.ttl_s,
                    record.cost_nano_usd,
                    meter.redactors,
                ),
            )
        except Exception as exc:
            meter.warn_once("cache", f"agentmeter: could not cache a response ({exc!r})")

    # -- calling litellm -------------------------------------------------------------------------
    def completion(self, **kwargs: Any) -> Any:
        """``litellm.completion`` under the policies: decide, apply, call (with retries), record."""
        from .completion import run_completion

        return run_completion(self, kwargs)

    async def acompletion(self, **kwargs: Any) -> Any:
        """``litellm.acompletion`` under the policies (same steps as ``completion``)."""
        from .completion import run_acompletion

        return await run_acompletion(self, kwargs)

    # -- summary ---------------------------------------------------------------------------------
    @property
    def spent(self) -> Decimal:
        """Exact USD spent by this run's priced calls so far."""
        with self._tally_lock:
            self._untallied.flush()
            return nano_to_usd(self._tally.spent_nano)

    @property
    def unknown_cost_calls(self) -> int:
        """How many of this run's successful calls have an unknown cost (not in ``spent``)."""
        with self._tally_lock:
            self._untallied.flush()
            return self._tally.unknown_cost

    def stats(self) -> RunStats:
        """Spend so far and over the last 10 minutes and hour, latency, cache hits, what fired."""
        with self._tally_lock:
            self._untallied.flush()
            return self._tally.snapshot(self.meter.clock.now())

    def summary_for_prompt(self) -> str:
        """A short text about this run's own efficiency, for the agent's reflection step."""
        return self.stats().summary()

    # -- lifecycle -------------------------------------------------------------------------------
    def end(self, status: str | None = None) -> None:
        """Mark the run ended (``ok`` unless given, ``halted`` after a halt). Idempotent."""
        if self.ended_at is not None:
            return
        self._release_pending()
        self.ended_at = self.meter.clock.now()
        if status is not None:
            self.status = status
        elif self.status == "running":
            self.status = "ok"
        self.meter.put("run", self._run_row())
        if self.meter.engine is not None:
            self.meter.engine.end_run(self.run_id)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc_type is None:
            self.end()
        elif issubclass(exc_type, BudgetExceeded):
            self.end("halted")
        else:
            self.end("error")

    def __repr__(self) -> str:
        return f"<Run {self.run_id} {self.name!r} steps={self.step} spent=${self.spent}>"


def log_fired(fired: Fired) -> None:
    import logging

    level = logging.WARNING if fired.action in ("halt", "pause", "alert", "warn") else logging.INFO
    logging.getLogger("agentmeter").log(level, "agentmeter: %s", fired.reason)
