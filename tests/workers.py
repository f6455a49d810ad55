"""Worker processes for the reliability tests (run as ``python tests/workers.py MODE ...``)."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time

import agentmeter
from agentmeter import Usage

# Our own price table only: a worker never imports litellm (3 s each, times dozens of processes).
PRICES = agentmeter.PriceTable({"w-model": {"input": "$1", "output": "$4"}}, model_cost={})


def record_load(db: str, threads: int, calls: int) -> None:
    """Record ``calls`` per thread; print what was recorded (count and exact nano-USD)."""
    meter = agentmeter.Meter(db=db, pricing=PRICES, tags={"pid": os.getpid()})
    totals = []
    errors = []

    def work(t: int) -> None:
        count = nano = 0
        try:
            with meter.run(f"p{os.getpid()}-t{t}") as run:
                for i in range(calls):
                    rec = run.record(
                        model="w-model",
                        usage=Usage(input_tokens=100 + i % 17, output_tokens=10 + t),
                        latency_ms=5.0,
                    )
                    count += 1
                    nano += rec.cost_nano_usd
        except Exception as exc:  # pragma: no cover - reported to the parent
            errors.append(repr(exc))
        totals.append((count, nano))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    meter.close()
    print(
        json.dumps(
            {
                "count": sum(c for c, _ in totals),
                "nano": sum(n for _, n in totals),
                "errors": errors,
                "health": {k: v for k, v in meter.health().items() if k != "warnings"},
            }
        )
    )


def shared_cap(db: str, threads: int, cap: str) -> None:
    """Threads spend until the shared cap halts them; print what this process spent."""
    policy = (
        "version: 1\npolicies:\n  - name: fleet-cap\n"
        f'    when: {{metric: cost_usd, stat: sum, window: 1h, scope: all, above: "{cap}"}}\n'
        "    shared: true\n    then: [halt]\n"
    )
    meter = agentmeter.Meter(db=db, policies=policy, pricing=PRICES)
    spent = []
    halted = []
    errors = []

    def work(t: int) -> None:
        nano = 0
        run = meter.run(f"cap-{os.getpid()}-{t}")
        try:
            for _ in range(10_000):
                decision = run.decide(model="w-model", prompt_tokens=1000, max_tokens=200)
                run.apply(decision)
                rec = run.record(
                    model="w-model",
                    usage=Usage(input_tokens=1000, output_tokens=150),
                    latency_ms=1.0,
                )
                nano += rec.cost_nano_usd
        except agentmeter.BudgetExceeded:
            halted.append(t)
        except Exception as exc:  # pragma: no cover - reported to the parent
            errors.append(repr(exc))
        spent.append(nano)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    meter.close()
    print(json.dumps({"nano": sum(spent), "halted": len(halted), "errors": errors}))


def record_until_killed(db: str, pause_s: float) -> None:
    """Record forever, ``pause_s`` apart; after each record print its number and time (we get killed)."""
    meter = agentmeter.Meter(db=db, pricing=PRICES)
    run = meter.run("victim")
    out = sys.stdout
    for i in range(1, 10**9):
        run.record(
            model="w-model",
            usage=Usage(input_tokens=i % 1000, output_tokens=1),
            latency_ms=float(i),
            ttft_ms=1.0,
        )
        out.write(f"{i} {time.time()}\n")
        out.flush()
        if pause_s:
            time.sleep(pause_s)


def agent_memory(db: str, seconds: float) -> None:
    """The agent's own memory writes, on its own connection, while agentmeter records in the file."""
    conn = sqlite3.connect(db, timeout=5.0)
    conn.execute("create table if not exists memory (id integer primary key, text text)")
    conn.commit()
    meter = agentmeter.Meter(db=db, pricing=PRICES)
    run = meter.run("agent")
    writes = worst_ms = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        conn.execute("insert into memory (text) values (?)", ("remember this",))
        conn.commit()
        worst_ms = max(worst_ms, (time.perf_counter() - start) * 1000)
        writes += 1
        for _ in range(20):
            run.record(
                model="w-model", usage=Usage(input_tokens=10, output_tokens=1), latency_ms=1.0
            )
    meter.close()
    print(json.dumps({"writes": writes, "worst_ms": worst_ms, "calls": run.step}))


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {
        "load": lambda: record_load(args[0], int(args[1]), int(args[2])),
        "cap": lambda: shared_cap(args[0], int(args[1]), args[2]),
        "victim": lambda: record_until_killed(args[0], float(args[1])),
        "memory": lambda: agent_memory(args[0], float(args[1])),
    }[mode]()
