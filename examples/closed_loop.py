"""The loop closing: an agent on the simulated provider under the shipped default policies.

No network, no key; time runs on a fake clock, so an hour of agent work takes a second. Run it
with ``python examples/closed_loop.py`` and read the decisions it prints.
"""

from __future__ import annotations

import sys

import agentmeter
from agentmeter.simulate import SimulatedProvider, estimate_tokens


def main(db_path: str = "closed-loop.db") -> None:
    clock = agentmeter.FakeClock()
    provider = SimulatedProvider(clock, seed=11)

    def show(decision: agentmeter.Decision) -> None:
        for fired in decision.fired:
            if fired.transition != "active":
                print(f"  step {decision.step}: {fired.action}: {fired.reason}")

    meter = agentmeter.Meter(
        db=db_path,
        policies="default",  # the shipped policies/default.yaml
        clock=clock,
        completion_fn=provider.completion,  # instead of litellm.completion
        token_counter=lambda model, messages: estimate_tokens(messages),
        on_decision=show,
    )
    messages = [{"role": "system", "content": "You are a research agent."}]
    with meter, meter.run("closed-loop", tags={"tenant": "acme"}) as run:
        for _ in range(40):
            messages.append(
                {"role": "user", "content": "Read the next source and take notes. " * 400}
            )
            try:
                response = run.completion(model="gpt-4o", messages=messages, max_tokens=800)
            except agentmeter.BudgetExceeded as stop:
                print(f"halted: {stop}")
                break
            messages.append(
                {"role": "assistant", "content": response["choices"][0]["message"]["content"]}
            )
            clock.advance(5)
        print(f"{run.step} calls, spent ${run.spent:.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
