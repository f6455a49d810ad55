"""An A/B experiment recorded for ``agentmeter compare``: 100 runs per arm, offline.

Arm ``control`` sends each tool result whole; arm ``trimmed`` keeps the first half of each one.
Both run gpt-4o on the simulated provider (no network, no key). Run it, then compare the arms:

    python examples/ab_experiment.py ab.db
    agentmeter compare --db ab.db --by tag:experiment_id --baseline control
"""

from __future__ import annotations

import random
import sys

from agentmeter import FakeClock, Meter
from agentmeter.simulate import SimulatedProvider, SimulatedProviderError, estimate_tokens


def main(db_path: str = "ab.db", runs_per_arm: int = 100) -> None:
    clock = FakeClock(1_800_000_000.0)
    provider = SimulatedProvider(clock, seed=7)
    rng = random.Random(7)
    meter = Meter(
        db=db_path,
        clock=clock,
        completion_fn=provider.completion,
        token_counter=lambda _model, messages: estimate_tokens(messages),
    )
    with meter:
        for i in range(2 * runs_per_arm):
            arm = ("control", "trimmed")[i % 2]  # alternate, so time affects both arms alike
            keep = 1.0 if arm == "control" else 0.5
            with meter.run("research", tags={"experiment_id": arm}) as run:
                messages = [
                    {"role": "system", "content": "You are a meticulous research agent. " * 20},
                    {"role": "user", "content": f"Report on topic {rng.randint(1, 999)}."},
                ]
                for step in range(rng.randint(4, 12)):
                    try:
                        run.completion(model="gpt-4o", messages=messages, max_tokens=1024)
                    except SimulatedProviderError:
                        pass  # failed after retries; the agent moves on
                    result = "result " * int(rng.randint(800, 3000) * keep)
                    messages.append({"role": "assistant", "content": f"Step {step}: reading."})
                    messages.append({"role": "tool", "content": result})
            clock.advance(rng.uniform(30, 300))  # time between tasks
    print(f"recorded {2 * runs_per_arm} runs to {db_path}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
