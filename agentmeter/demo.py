"""``agentmeter demo``: a simulated agent, a simulated provider, a real flight recorder, policies acting.

The agent researches a task step by step: every step adds a tool result to its context (so the
prompt grows), a stretch of steps hits a degraded provider (slow), and near the end it falls into a
self-reflection loop that repeats one prompt. The same scenario runs twice on the same seed: once
under ``policies/default.yaml`` (recorded to the DB) and once without policies (in memory), so the
summary can say what the policies saved.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from .clock import FakeClock
from .decision import Decision
from .errors import BudgetExceeded
from .meter import Meter
from .pricing import nano_to_usd
from .simulate import SimulatedProvider, SimulatedProviderError, estimate_tokens
from .windows import quantile_of_sorted

__all__ = ["DemoResult", "run_demo"]

REFLECTION = "Reflect on your last answer. Is it complete? If not, improve it."
LOOKUP = [
    {"role": "system", "content": "Answer in one sentence."},
    {"role": "user", "content": "Define 'prompt caching' for the report's glossary."},
]


@dataclass
class DemoResult:
    """What a demo run did."""

    db_path: str | None
    run_id: str
    steps: int
    cost: Decimal
    baseline_cost: Decimal
    decisions: list[str]
    halted: bool


def _scenario(
    meter: Meter,
    provider: SimulatedProvider,
    *,
    steps: int,
    emit: Callable[[str], None],
    verbose: bool,
) -> tuple[str, int, bool, Decimal]:
    """Run the simulated agent; return the run id, steps done, whether it halted, what it spent."""
    clock = provider.clock
    recent: deque[tuple[float, int, float]] = deque()
    halted = False
    with meter.run("demo-research", tags={"tenant": "demo", "feature": "research"}) as run:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a meticulous research agent. " * 20},
            {
                "role": "user",
                "content": "Survey the literature on agent cost control and write a report.",
            },
        ]
        done = 0
        for step in range(1, steps + 1):
            if step == 22:
                provider.degrade("gpt-4o", slow_factor=4.0)
                if verbose:
                    emit("         ~ the provider degrades: gpt-4o is now 4x slower")
            if step == 36:
                provider.degrade("gpt-4o", slow_factor=1.0)
                if verbose:
                    emit("         ~ the provider recovers")
            looping = 48 <= step < 56
            outgoing = (
                messages
                if not looping
                else [*messages[:1], {"role": "user", "content": REFLECTION}]
            )
            stream = step % 3 == 0
            try:
                response = run.completion(
                    model="gpt-4o", messages=outgoing, stream=stream, max_tokens=1024
                )
                if stream:
                    for _ in response:
                        pass
            except BudgetExceeded as exc:
                emit(f"  HALT  {exc}")
                halted = True
                break
            except SimulatedProviderError as exc:
                if verbose:
                    emit(f"step {step:>3}  provider error after retries: {exc}")
            done = step
            main = _last_ok(run)
            used = run.last_record.model if run.last_record is not None else None
            # The simulated user rates each answer; the cheaper model's answers on the hard middle
            # part of the task disappoint.
            unhappy = used == "gpt-4o-mini" and 40 <= step <= 46
            run.feedback(not unhappy, call=run.last_record)
            if verbose and unhappy:
                emit("         ~ the user rates this answer down")
            if step in (12, 30):  # the agent looks up the same glossary entry twice
                run.completion(model="gpt-4o-mini", messages=LOOKUP, max_tokens=200)
                lookup = run.last_record
                if verbose and lookup is not None and lookup.status == "ok":
                    note = (
                        f"served from the response cache, saved ${nano_to_usd(lookup.saved_nano_usd or 0):.6f}"
                        if lookup.cost_status == "cached"
                        else f"asked the provider, ${lookup.cost:.6f}"
                    )
                    emit(f"         ~ glossary lookup: {note}")
                meter.flush()
            if not looping:
                messages.append(
                    {"role": "assistant", "content": f"Step {step}: searching and reading." * 10}
                )
                messages.append({"role": "tool", "content": "result " * (2200 + 150 * (step % 7))})
            rec = main
            if rec is not None:
                recent.append((rec[0], rec[1], rec[2]))
            while recent and recent[0][0] <= clock.now() - 600:
                recent.popleft()
            if verbose and rec is not None:
                spend = nano_to_usd(sum(c for _, c, _ in recent))
                lat = sorted(x for _, _, x in list(recent)[-10:])
                p90 = quantile_of_sorted(lat, 0.9) or 0.0
                emit(
                    f"step {step:>3}  {rec[3]:<12} prompt {rec[4]:>7,} tok  call ${nano_to_usd(rec[1]):.4f}"
                    f"  | 10m spend ${spend:.2f}  p90(last 10) {p90 / 1000:5.1f}s"
                )
            clock.advance(2.0)  # the agent thinks between calls
    return run.run_id, done, halted, run.spent


def _last_ok(run: Any) -> tuple[float, int, float, str, int] | None:
    rec = getattr(run, "last_record", None)
    if rec is None or rec.status != "ok" or rec.cost_nano_usd is None or rec.usage is None:
        return None
    return (
        rec.ts,
        rec.cost_nano_usd,
        rec.latency_ms or 0.0,
        rec.model or "?",
        rec.usage.prompt_tokens,
    )


def run_demo(
    db_path: str | Path | None = "agentmeter-demo.db",
    *,
    steps: int = 64,
    seed: int = 7,
    emit: Callable[[str], None] = print,
    verbose: bool = True,
    policies: str = "default",
) -> DemoResult:
    """Run the demo scenario; record it to ``db_path`` and compare it with a policy-free run."""
    start = time.time()
    decisions: list[str] = []

    def show(decision: Decision) -> None:
        for fired in decision.fired:
            if fired.transition == "active":
                continue
            line = f"    -> {fired.action.upper():<9} {fired.reason}"
            decisions.append(line)
            if verbose:
                emit(line)

    clock = FakeClock(start)
    provider = SimulatedProvider(clock, seed=seed)
    counter = lambda _model, messages: estimate_tokens(messages)  # noqa: E731
    meter = Meter(
        db=str(db_path) if db_path is not None else ":memory:",
        policies=policies,
        clock=clock,
        completion_fn=provider.completion,
        token_counter=counter,
        on_decision=show,
        pause="sleep",
        cache_ttl="1h",
    )
    with meter:
        run_id, done, halted, cost = _scenario(
            meter, provider, steps=steps, emit=emit, verbose=verbose
        )

    base_clock = FakeClock(start)
    base_provider = SimulatedProvider(base_clock, seed=seed)
    with Meter(
        db=":memory:",
        clock=base_clock,
        completion_fn=base_provider.completion,
        token_counter=counter,
    ) as base:
        _, _, _, baseline = _scenario(
            base, base_provider, steps=steps, emit=lambda _: None, verbose=False
        )
    return DemoResult(
        db_path=str(db_path) if db_path is not None else None,
        run_id=run_id,
        steps=done,
        cost=cost,
        baseline_cost=baseline,
        decisions=decisions,
        halted=halted,
    )
