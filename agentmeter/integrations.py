"""Record calls made straight through litellm, with a litellm callback.

    litellm.callbacks = [agentmeter.litellm_callback(run)]

A callback runs after the call, so it records but cannot enforce anything: for budgets, model
downgrades and pauses use ``run.decide()`` (or ``run.completion``) before each call.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .tokens import import_litellm

if TYPE_CHECKING:
    from .run import Run

__all__ = ["litellm_callback"]


def _ms(start: Any, end: Any) -> float | None:
    if isinstance(start, datetime) and isinstance(end, datetime):
        return max(0.0, (end - start).total_seconds() * 1000.0)
    if isinstance(start, int | float) and isinstance(end, int | float):
        return max(0.0, (end - start) * 1000.0)
    return None


def litellm_callback(run: Run) -> Any:
    """A litellm ``CustomLogger`` that records every successful and failed call into ``run``."""
    from litellm.integrations.custom_logger import CustomLogger

    import_litellm()

    class AgentmeterLogger(CustomLogger):  # type: ignore[misc]
        """Records litellm calls into an agentmeter run (success and failure, sync and async)."""

        def _record(
            self, kwargs: dict[str, Any], response: Any, start: Any, end: Any, ok: bool
        ) -> None:
            stream = bool(kwargs.get("stream"))
            first = kwargs.get("completion_start_time")
            exc = kwargs.get("exception")
            run.record(
                model=(getattr(response, "model", None) if ok else None) or kwargs.get("model"),
                requested_model=kwargs.get("model"),
                response=response if ok else None,
                latency_ms=_ms(start, end),
                ttft_ms=_ms(start, first) if stream and first is not None else None,
                status="ok" if ok else "error",
                error_type=None if ok else type(exc).__name__ if exc is not None else "Error",
                messages=kwargs.get("messages"),
                stream=stream,
                max_tokens=(kwargs.get("optional_params") or {}).get("max_tokens"),
            )

        def log_success_event(
            self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            self._record(kwargs, response_obj, start_time, end_time, True)

        def log_failure_event(
            self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            self._record(kwargs, response_obj, start_time, end_time, False)

        async def async_log_success_event(
            self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            self._record(kwargs, response_obj, start_time, end_time, True)

        async def async_log_failure_event(
            self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            self._record(kwargs, response_obj, start_time, end_time, False)

    return AgentmeterLogger()
