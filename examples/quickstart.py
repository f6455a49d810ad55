"""The embedding API in one file: record calls, decide before each one, inspect the result.

Runs offline: litellm answers from ``mock_response``. Run it with ``python examples/quickstart.py``.
"""

from __future__ import annotations

import sqlite3
import sys

import agentmeter

POLICIES = """
version: 1
ladder:
  gpt-4o: [gpt-4o-mini]
policies:
  - name: burst-budget
    when: {metric: cost_usd, stat: sum, window: 10m, scope: run, above: "$0.0005"}
    then: [downgrade, alert]
  - name: run-cap
    when: {metric: cost_usd, stat: sum, window: 24h, scope: run, above: "$0.05"}
    then: [halt]
"""


def main(db_path: str = "quickstart.db") -> None:
    meter = agentmeter.Meter(db=db_path, policies=POLICIES, tags={"service": "docs"})
    messages = [{"role": "user", "content": "Summarize the plot of Hamlet in one line."}]
    with meter, meter.run("quickstart", tags={"tenant": "acme", "user": "u42"}) as run:
        # 1. The managed form: decide, apply, call litellm (with retries), record.
        for step in range(3):
            response = run.completion(
                model="gpt-4o", messages=messages, max_tokens=100, mock_response=f"Answer {step}."
            )
            print(f"step {step}: answered by {response.model}, spent so far ${run.spent}")

        # 2. The manual form: you call the provider, agentmeter times and records it.
        decision = run.decide(model="gpt-4o", messages=messages, max_tokens=200)
        with run.call(decision.model) as call:
            call.sent()
            call.first_token()
            call.set_usage(
                agentmeter.Usage(input_tokens=1200, output_tokens=180, cache_read_tokens=800)
            )
        print(
            f"decision before the manual call: {decision.model} ({'; '.join(decision.reasons()) or 'nothing fired'})"
        )

        # 3. The direct form: you already have the numbers.
        run.record(
            model="claude-sonnet-4-5",
            usage=agentmeter.Usage(input_tokens=900, output_tokens=120),
            latency_ms=812.0,
        )

    conn = sqlite3.connect(db_path)
    for model, calls, cost in conn.execute(
        "select model, count(*), sum(cost_nano_usd) from agentmeter_calls group by model order by model"
    ):
        print(f"{model:<20} {calls} calls  ${cost / 1e9:.6f}")
    for policy, action in conn.execute("select policy, action from agentmeter_decisions"):
        print(f"decision: {policy} -> {action}")


if __name__ == "__main__":
    main(*sys.argv[1:])
