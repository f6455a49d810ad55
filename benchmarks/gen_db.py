"""Build a large, realistic agentmeter flight-recorder database, fast.

    python benchmarks/gen_db.py OUT.db --calls 1000000 [--days 30] [--seed 1]

What it writes, into the schema ``agentmeter.migrations.migrate`` creates and in the column order
of ``agentmeter.recorder.CALL_COLUMNS`` / ``DECISION_COLUMNS`` / ``RUN_COLUMNS`` (columns it does
not know, added to the schema since, are left NULL):

- runs (agent tasks) spread over the last ``--days`` days with a day/night rhythm, each tagged
  with a tenant (Zipf-distributed: a few big tenants, a long tail), a user of that tenant, a
  feature and sometimes an experiment; most runs are short, a few run for hundreds of steps;
- one primary model per run among OpenAI, Anthropic, Gemini and one unpriced self-hosted model,
  with a prompt that grows step by step (tool results pile up), provider-shaped prompt caching
  (OpenAI's 128-token cached prefixes, Anthropic's cache writes then reads, Gemini's implicit
  cache), reasoning tokens for o-series models, and costs from ``agentmeter.pricing.cost_nano_usd``;
- streaming calls (with time to first token), failed calls (rate limits, timeouts, 5xx: no usage,
  cost unknown), retries with the same prompt hash, self-reflection loops that repeat one prompt;
- decisions the default policies would take: burst-budget downgrades (and the calls that then use
  the cheaper model), runaway-loop pauses, context-bloat compactions, run-cap halts.

Rows go in with ``executemany`` in large transactions (journal off while building); the file is
switched to WAL at the end, as a meter would leave it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from agentmeter.migrations import migrate
from agentmeter.policy.spec import load_policies
from agentmeter.pricing import PriceTable, cost_nano_usd
from agentmeter.recorder import CALL_COLUMNS, DECISION_COLUMNS, RUN_COLUMNS
from agentmeter.usage import Usage

__all__ = [
    "GEN_COLUMNS",
    "GenStats",
    "column_defaults",
    "generate",
    "insert_sql",
    "to_call_columns",
]


# The call columns this generator fills, in the order it builds rows. ``to_call_columns`` turns
# such rows into ``CALL_COLUMNS`` order (columns added since are NULL), so the generator keeps
# working while the schema grows.
GEN_COLUMNS = (
    "run_id", "step", "ts", "requested_model", "model", "provider", "input_tokens",
    "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
    "cache_write_1h_tokens", "usage_status", "cost_nano_usd", "cost_status", "latency_ms",
    "ttft_ms", "pre_ms", "post_ms", "status", "error_type", "stream", "prompt_hash", "max_tokens",
    "reserved_nano_usd", "decided_at", "decided_prompt_tokens", "tags", "writer",
)  # fmt: skip


def insert_sql(table: str, columns: tuple[str, ...]) -> str:
    """The recorder's INSERT statement for ``table`` (same text as ``agentmeter.recorder``)."""
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def column_defaults(conn: sqlite3.Connection, table: str = "agentmeter_calls") -> dict[str, Any]:
    """Each column's declared default value (None when it has none), read from the schema."""
    defaults: dict[str, Any] = {}
    for _, name, _, _, default, _ in conn.execute(f"PRAGMA table_info({table})"):
        defaults[name] = (
            None if default is None else conn.execute(f"SELECT {default}").fetchone()[0]
        )
    return defaults


def to_call_columns(
    rows: list[tuple[Any, ...]], defaults: dict[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """``GEN_COLUMNS`` rows in ``CALL_COLUMNS`` order (the same list if the orders agree).

    A column the generator does not fill gets its default from ``defaults`` (see
    ``column_defaults``; a ``NOT NULL DEFAULT 0`` column must not get NULL), else NULL.
    """
    if tuple(CALL_COLUMNS) == GEN_COLUMNS:
        return rows
    extra = [c for c in CALL_COLUMNS if c not in GEN_COLUMNS]
    fill = tuple((defaults or {}).get(c) for c in extra)
    index = {c: i for i, c in enumerate((*GEN_COLUMNS, *extra))}
    pick = itemgetter(*(index[c] for c in CALL_COLUMNS))
    return [pick((*row, *fill)) for row in rows]


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """How one model behaves: share of runs, cache style, speed, output size, reasoning."""

    name: str
    weight: float
    cache: str  # openai | anthropic | gemini | none
    ttft_ms: float  # median time to first token
    tokens_per_s: float
    output_median: float
    reasoning: bool = False


MODELS = (
    ModelProfile("gpt-4o", 0.18, "openai", 480, 75, 260),
    ModelProfile("gpt-4o-mini", 0.22, "openai", 330, 95, 220),
    ModelProfile("gpt-4.1", 0.09, "openai", 520, 70, 300),
    ModelProfile("gpt-4.1-mini", 0.09, "openai", 380, 90, 240),
    ModelProfile("o4-mini", 0.06, "openai", 2200, 120, 900, reasoning=True),
    ModelProfile("o3", 0.02, "openai", 4500, 80, 1400, reasoning=True),
    ModelProfile("claude-sonnet-4-5", 0.15, "anthropic", 900, 60, 380),
    ModelProfile("claude-haiku-4-5", 0.08, "anthropic", 520, 110, 260),
    ModelProfile("gemini/gemini-2.5-pro", 0.04, "gemini", 1600, 85, 420, reasoning=True),
    ModelProfile("gemini/gemini-2.5-flash", 0.06, "gemini", 420, 180, 260),
    ModelProfile("my-finetune", 0.01, "none", 250, 60, 200),  # self-hosted: no price known
)
PROFILES = {m.name: m for m in MODELS}
# default.yaml's ladder, plus the cheaper OpenAI/Gemini steps.
LADDER = {
    "gpt-4o": "gpt-4o-mini",
    "gpt-4.1": "gpt-4.1-mini",
    "gpt-4.1-mini": "gpt-4.1-nano",
    "o3": "o4-mini",
    "o4-mini": "gpt-4o-mini",
    "claude-sonnet-4-5": "claude-haiku-4-5",
    "gemini/gemini-2.5-pro": "gemini/gemini-2.5-flash",
}
FEATURES = (
    ("support-chat", "answer-ticket", 0.30),
    ("research", "deep-research", 0.15),
    ("code-review", "review-pr", 0.12),
    ("summarize", "summarize-doc", 0.14),
    ("extract", "extract-invoice", 0.10),
    ("planner", "plan-trip", 0.07),
    ("triage", "triage-alerts", 0.07),
    ("report", "weekly-report", 0.05),
)
ERRORS = (
    ("RateLimitError", 0.50),
    ("APITimeoutError", 0.20),
    ("InternalServerError", 0.15),
    ("APIConnectionError", 0.10),
    ("BadRequestError", 0.05),
)
RUN_CAP_NANO = 20 * 10**9  # default.yaml run-cap: $20 per run
BURST_NANO = 2 * 10**9  # default.yaml burst-budget: $2 in 10 minutes
BURST_WINDOW_S = 600.0
COMPACT_ABOVE, COMPACT_TO = 100_000, 40_000
ERROR_SHARE = 0.025
STREAM_SHARE = 0.45


@dataclass
class GenStats:
    """What ``generate`` wrote and how long it took."""

    path: str
    calls: int
    runs: int
    decisions: int
    tenants: int
    seconds: float
    first_ts: float
    last_ts: float

    def describe(self) -> str:
        """One line: what was written, over how long, in how much time, where."""
        return (
            f"{self.calls:,} calls, {self.runs:,} runs, {self.decisions:,} decisions, "
            f"{self.tenants} tenants over {(self.last_ts - self.first_ts) / 86400:.1f} days "
            f"in {self.seconds:.1f} s -> {self.path}"
        )


class _World:
    """Tenants, users and the cumulative weights the generator samples from."""

    def __init__(self, rng: random.Random, tenants: int) -> None:
        self.tenants = [f"tenant-{i:03d}" for i in range(tenants)]
        self.tenant_weights = _cumulative([1.0 / (i + 1) ** 1.1 for i in range(tenants)])
        self.users = {
            t: [f"{t}-u{j:04d}" for j in range(max(3, int(400 / (i + 1) ** 0.7)))]
            for i, t in enumerate(self.tenants)
        }
        self.models = [m.name for m in MODELS]
        self.model_weights = _cumulative([m.weight for m in MODELS])
        self.features = FEATURES
        self.feature_weights = _cumulative([f[2] for f in FEATURES])
        self.errors = [e[0] for e in ERRORS]
        self.error_weights = _cumulative([e[1] for e in ERRORS])
        self.writers = [f"{rng.getrandbits(48):012x}" for _ in range(6)]


def _cumulative(weights: list[float]) -> list[float]:
    """Running sums of ``weights`` (``random.choices``' ``cum_weights``)."""
    total = 0.0
    out = []
    for w in weights:
        total += w
        out.append(total)
    return out


def _run_length(rng: random.Random) -> int:
    """Steps of one run: mostly short (geometric, mean ~16), 3% long agent sessions."""
    if rng.random() < 0.03:
        return rng.randint(100, 400)
    return 1 + int(-math.log(1.0 - rng.random()) * 15)


def _start_times(rng: random.Random, count: int, first: float, last: float) -> list[float]:
    """``count`` sorted run start times in ``[first, last]`` with a day/night rhythm (UTC)."""
    out = []
    span = last - first
    while len(out) < count:
        t = first + rng.random() * span
        hour = (t % 86400) / 3600
        # Busy from 08:00 to 20:00, a quieter night (a quarter of the daytime rate).
        level = (
            0.25 + 0.75 * max(0.0, math.sin(math.pi * (hour - 6) / 16)) if 6 <= hour <= 22 else 0.25
        )
        if rng.random() < level:
            out.append(t)
    out.sort()
    return out


def _split_prompt(
    rng: random.Random,
    cache: str,
    prompt: int,
    previous: int,
    system: int,
    step: int,
    long_ttl: bool,
) -> tuple[int, int, int, int]:
    """Split a prompt into (input, cache read, cache write, cache write 1h) the way the provider bills it."""
    if cache == "openai":
        if step > 1 and prompt >= 1024 and rng.random() < 0.85:
            cached = int(min(previous, prompt) * rng.uniform(0.6, 1.0)) // 128 * 128
            return prompt - cached, cached, 0, 0
        return prompt, 0, 0, 0
    if cache == "anthropic":
        if step == 1 or previous == 0 or rng.random() < 0.08:  # first call or a cache miss
            write = min(system, prompt)
        else:
            read = min(previous, prompt)
            tail = prompt - read
            fresh = min(tail, rng.randint(20, 300))
            write = tail - fresh
            return fresh, read, write, write if long_ttl else 0
        return prompt - write, 0, write, write if long_ttl else 0
    if cache == "gemini":
        if step > 1 and prompt >= 2048 and rng.random() < 0.5:
            cached = int(prompt * rng.uniform(0.3, 0.8))
            return prompt - cached, cached, 0, 0
        return prompt, 0, 0, 0
    return prompt, 0, 0, 0


def _decision(
    run_id: str,
    step: int,
    ts: float,
    *,
    policy: str,
    metric: str,
    value: float,
    threshold: float,
    action: str,
    stat: str,
    reason: str,
    **extra: Any,
) -> tuple[Any, ...]:
    """A row of ``agentmeter_decisions`` shaped like ``Run._decision_row`` (a transition to fire)."""
    detail = {"transition": "fire", "reason": reason, "stat": stat, **extra}
    scope = f"run {run_id}"
    return (
        run_id,
        step,
        ts,
        policy,
        metric,
        value,
        threshold,
        action,
        scope,
        json.dumps(detail, sort_keys=True),
    )


def _runs(
    rng: random.Random,
    world: _World,
    calls: int,
    first: float,
    last: float,
    prices: PriceTable,
    digests: list[str | None],
) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Yield (run row, its call rows, its decision rows) until exactly ``calls`` calls are made."""
    made = 0
    while made < calls:  # halted runs stop early: plan again for what is missing
        # Run lengths first, so the start times cover the whole span whatever the run count.
        lengths: list[int] = []
        planned = made
        while planned < calls:
            lengths.append(min(_run_length(rng), calls - planned))
            planned += lengths[-1]
        starts = _start_times(rng, len(lengths), first, last)
        for started, steps in zip(starts, lengths, strict=True):
            run = _one_run(rng, world, started, steps, last, prices, digests)
            made += len(run[1])
            yield run


def _one_run(
    rng: random.Random,
    world: _World,
    started: float,
    steps: int,
    last: float,
    prices: PriceTable,
    digests: list[str | None],
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """One run of at most ``steps`` calls (fewer if the run-cap halts it)."""
    rand, uniform, randint, choices = rng.random, rng.uniform, rng.randint, rng.choices
    lognorm = rng.lognormvariate
    run_id = f"{rng.getrandbits(64):016x}"
    tenant = choices(world.tenants, cum_weights=world.tenant_weights)[0]
    user = rng.choice(world.users[tenant])
    feature, task, _ = choices(world.features, cum_weights=world.feature_weights)[0]
    tags: dict[str, Any] = {"tenant": tenant, "user": user, "feature": feature}
    if rand() < 0.2:
        tags["experiment"] = rng.choice(("prompt-v2", "prompt-v3", "retrieval-k8"))
    tags_json = json.dumps(tags, sort_keys=True)
    requested = choices(world.models, cum_weights=world.model_weights)[0]
    profile = PROFILES[requested]
    writer = rng.choice(world.writers)
    decides = rand() < 0.7  # runs driven through run.completion / run.decide
    system = randint(600, 4000)
    long_ttl = profile.cache == "anthropic" and rand() < 0.05
    loop_at = randint(2, max(2, steps)) if rand() < 0.015 else None
    loop_hash = f"{rng.getrandbits(64):016x}"
    context = system
    previous_prompt = 0
    ts = started
    spent = 0
    burst: deque[tuple[float, int]] = deque()
    burst_total = 0
    downgraded = False
    status = "ok"
    call_rows: list[tuple[Any, ...]] = []
    decision_rows: list[tuple[Any, ...]] = []
    retry_hash: str | None = None
    repeats = 0
    for step in range(1, steps + 1):
        model = LADDER.get(requested, requested) if downgraded else requested
        active = PROFILES.get(model, profile)
        if context > COMPACT_ABOVE:
            decision_rows.append(
                _decision(
                    run_id, step, ts, policy="context-bloat", metric="prompt_tokens",
                    value=float(context), threshold=100000.0, action="compact", stat="next",
                    reason=f"context-bloat: prompt_tokens next over the next call = {context:,} "
                    f"tokens > 100,000 tokens (run {run_id}) -> compact",
                    target_tokens=COMPACT_TO,
                )
            )  # fmt: skip
            context = COMPACT_TO
        prompt = context
        if retry_hash is not None:
            phash = retry_hash
        elif loop_at is not None and step >= loop_at:
            phash = loop_hash
            repeats += 1
            if repeats == 4:
                decision_rows.append(
                    _decision(
                        run_id, step, ts, policy="runaway-loop", metric="repeated_prompt",
                        value=4.0, threshold=3.0, action="pause", stat="repeats",
                        reason=f"runaway-loop: repeated_prompt repeats over last 20 calls = 4 > 3 "
                        f"(run {run_id}) -> pause",
                        pause_s=30.0,
                    )
                )  # fmt: skip
                ts += 30.0
        else:
            phash = f"{rng.getrandbits(64):016x}"
        stream = rand() < STREAM_SHARE
        pre_ms = uniform(0.3, 3.0)
        post_ms = uniform(0.1, 1.5)
        max_tokens = choices((None, 1024, 4096, 8192), cum_weights=(0.4, 0.7, 0.9, 1.0))[0]
        decided_at = decided_prompt = reserved = None
        if decides:
            decided_at = ts + 0.0001
            decided_prompt = prompt
            reserved = prices.worst_case_nano_usd(model, prompt, max_tokens)
        if rand() < ERROR_SHARE:
            error_type = choices(world.errors, cum_weights=world.error_weights)[0]
            latency = uniform(30000, 60000) if error_type == "APITimeoutError" else uniform(40, 400)
            ts += latency / 1000.0
            # GEN_COLUMNS order; a failed attempt has no usage and no cost
            call_rows.append((
                run_id, step, ts, requested, model, None,
                None, None, None, None, None, None, "unknown",
                None, "unknown_usage",
                latency, None, pre_ms, None, "error", error_type,
                1 if stream else 0, phash, max_tokens, reserved, decided_at, decided_prompt,
                tags_json, writer,
            ))  # fmt: skip
            retry_hash = phash if error_type != "BadRequestError" else None
            if step == steps:
                status = "error"
            continue
        retry_hash = None
        out = min(int(lognorm(math.log(active.output_median), 0.8)) + 1, max_tokens or 16384)
        reasoning = int(out * uniform(0.3, 0.8)) if active.reasoning else 0
        inp, cread, cwrite, cwrite_1h = _split_prompt(
            rng, active.cache, prompt, previous_prompt, system, step, long_ttl
        )
        usage = Usage(
            input_tokens=inp,
            output_tokens=out,
            cache_read_tokens=cread,
            cache_write_tokens=cwrite,
            reasoning_tokens=reasoning,
            cache_write_1h_tokens=cwrite_1h,
        )
        cost = cost_nano_usd(model, usage, prices=prices)
        estimated = stream and rand() < 0.03  # a stream without a usage chunk
        ttft = lognorm(math.log(active.ttft_ms + prompt / 100.0), 0.35)
        latency = pre_ms + ttft + out / active.tokens_per_s * 1000.0 * uniform(0.8, 1.3) + post_ms
        ts += latency / 1000.0
        rates = prices.rates(model)
        call_rows.append((  # GEN_COLUMNS order
            run_id, step, ts, requested, model, rates.provider if rates is not None else "hosted_vllm",
            inp, out, cread, cwrite, reasoning, cwrite_1h, "estimated" if estimated else "reported",
            cost, "ok" if cost is not None else "unknown_model",
            latency, ttft if stream else None, pre_ms, post_ms, "ok", None,
            1 if stream else 0, phash, max_tokens, reserved, decided_at, decided_prompt,
            tags_json, writer,
        ))  # fmt: skip
        previous_prompt = prompt
        context = prompt + out + randint(100, 2500)  # the answer and a tool result join the context
        if cost is not None:
            spent += cost
            burst.append((ts, cost))
            burst_total += cost
            while burst and burst[0][0] <= ts - BURST_WINDOW_S:
                burst_total -= burst.popleft()[1]
            if not downgraded and burst_total > BURST_NANO and requested in LADDER:
                downgraded = True
                decision_rows.append(
                    _decision(
                        run_id, step + 1, ts, policy="burst-budget", metric="cost_usd",
                        value=burst_total / 1e9, threshold=2.0, action="downgrade", stat="sum",
                        reason=f"burst-budget: cost_usd sum over 10m = ${burst_total / 1e9:,.2f} > "
                        f"$2.00 (run {run_id}) -> downgrade",
                        requested_model=requested, model=LADDER[requested],
                    )
                )  # fmt: skip
            if spent > RUN_CAP_NANO:
                decision_rows.append(
                    _decision(
                        run_id, step + 1, ts, policy="run-cap", metric="cost_usd",
                        value=spent / 1e9, threshold=20.0, action="halt", stat="sum",
                        reason=f"run-cap: cost_usd sum over 24h = ${spent / 1e9:,.2f} > $20.00 "
                        f"(run {run_id}) -> halt",
                    )
                )  # fmt: skip
                status = "halted"
                break
        ts += uniform(0.05, 3.0)  # the agent thinks, calls tools
    if ts > last:  # a run near the end would reach into the future: start it earlier
        shift = last - ts - uniform(0.0, 300.0)
        started += shift
        ts += shift
        call_rows = [
            (*r[:2], r[2] + shift, *r[3:25], None if r[25] is None else r[25] + shift, *r[26:])
            for r in call_rows
        ]
        decision_rows = [(*r[:2], r[2] + shift, *r[3:]) for r in decision_rows]
    ended = None if ts > last - 120 else ts + 0.01  # the newest runs are still running
    run_row = (
        run_id,
        task,
        started,
        ended,
        "running" if ended is None else status,
        tags_json,
        rng.choice(digests),
    )
    return run_row, call_rows, decision_rows


def generate(
    path: str | os.PathLike[str],
    calls: int,
    *,
    days: float = 30.0,
    seed: int = 1,
    tenants: int = 40,
    end: float | None = None,
    progress: bool = False,
) -> GenStats:
    """Write a flight-recorder DB with ``calls`` calls over the ``days`` before ``end`` (default now)."""
    t0 = time.perf_counter()
    path = os.fspath(path)
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)
    rng = random.Random(seed)
    world = _World(rng, tenants)
    prices = PriceTable.default()
    digests: list[str | None] = []
    for name, share in (("default", 7), ("strict-budget", 2)):
        policy_set = load_policies(name)
        digests += [policy_set.digest if policy_set else None] * share
    digests.append(None)
    last = time.time() if end is None else end
    first = last - days * 86400

    runs: list[tuple[Any, ...]] = []
    call_rows: list[tuple[Any, ...]] = []
    decision_rows: list[tuple[Any, ...]] = []
    for run_row, run_calls, run_decisions in _runs(rng, world, calls, first, last, prices, digests):
        runs.append(run_row)
        call_rows.extend(run_calls)
        decision_rows.extend(run_decisions)
        if progress and len(runs) % 5000 == 0:
            print(f"  {len(call_rows):,} calls generated", file=sys.stderr)
    if progress:
        print(f"  generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    by_ts = itemgetter(2)
    call_rows.sort(key=by_ts)  # ids grow with time, as a live recorder writes them
    decision_rows.sort(key=by_ts)

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    migrate(conn)
    conn.execute("BEGIN")
    conn.executemany(insert_sql("agentmeter_runs", RUN_COLUMNS), runs)
    sql = insert_sql("agentmeter_calls", CALL_COLUMNS)
    defaults = column_defaults(conn)
    chunk = 100_000
    for i in range(0, len(call_rows), chunk):
        conn.executemany(sql, to_call_columns(call_rows[i : i + chunk], defaults))
    conn.executemany(insert_sql("agentmeter_decisions", DECISION_COLUMNS), decision_rows)
    conn.execute("COMMIT")
    if progress:
        print(f"  inserted by {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return GenStats(
        path=path,
        calls=len(call_rows),
        runs=len(runs),
        decisions=len(decision_rows),
        tenants=tenants,
        seconds=time.perf_counter() - t0,
        first_ts=call_rows[0][2] if call_rows else first,
        last_ts=call_rows[-1][2] if call_rows else last,
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: ``gen_db.py OUT.db --calls N [--days D] [--seed S] [--tenants T]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="database file to create (replaced if it exists)")
    parser.add_argument(
        "--calls", type=int, default=1_000_000, help="calls to write (default 1,000,000)"
    )
    parser.add_argument(
        "--days", type=float, default=30.0, help="time span ending now (default 30)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--tenants", type=int, default=40, help="number of tenants (default 40)")
    args = parser.parse_args(argv)
    stats = generate(
        args.out, args.calls, days=args.days, seed=args.seed, tenants=args.tenants, progress=True
    )
    print(stats.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
