"""agentmeter's benchmark suite: every figure of the performance targets, measured side by side.

    python benchmarks/run.py            # full run (a few minutes on a 2-core machine)
    python benchmarks/run.py --quick    # smaller N, same figures (the big DB has 200k calls)
    python benchmarks/run.py --only record,decide --profile

Prints one markdown table (figure, target, measured, PASS/MISS), the reference figures measured on
the same machine in the same run, and the detail tables behind the headline figures. Medians are
over many timed batches; rival measurements (agentmeter vs OpenTelemetry, vs litellm, vs raw
sqlite3) are interleaved round by round so machine noise hits both sides alike. ``--profile``
adds cProfile's top entries for every figure that missed its target.

Log output of the ``agentmeter`` logger is silenced (level CRITICAL): policies that fire on every
call would otherwise print a line per call. The call to the logger still happens.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import logging
import os
import platform
import pstats
import queue
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices mid-benchmark

import gen_db  # benchmarks/ is on sys.path when this file runs

BUILTIN_SETS = ("default", "strict-budget", "latency-slo", "multi-tenant", "loop-guard")
SECTIONS = (
    "import",
    "cli",
    "record",
    "throughput",
    "decide",
    "completion",
    "replay",
    "report",
    "memory",
)
GPT4O_USAGE = dict(input_tokens=1200, output_tokens=300, cache_read_tokens=800)
BENCH_TAGS = {"tenant": "tenant-000", "user": "tenant-000-u0001", "feature": "support-chat"}


# ------------------------------------------------------------------------------------------------
# Configuration and results


@dataclass(frozen=True)
class Config:
    """Sizes of one benchmark pass: the full pass by default, ``QUICK`` shrinks them."""

    workdir: Path
    quick: bool = False
    big_db: Path | None = None  # reuse this database instead of generating one
    subprocess_runs: int = 8  # timed runs of each CLI/import command
    record_rounds: int = 400  # rounds x batch record calls (and as many OTel spans)
    record_batch: int = 50
    throughput_rows: int = 300_000
    throughput_threads: int = 4
    big_calls: int = 1_000_000  # the "1M" database
    small_calls: int = 1_000
    decide_rounds: int = 150
    decide_batch: int = 20
    completion_rounds: int = 100
    completion_batch: int = 5
    replay_budget_s: float = 15.0  # time box of the engine-loop stand-in
    replay_calls: int = 50_000  # calls of the replayed run actually replayed
    memory_calls: int = 1_000_000
    memory_checkpoints: tuple[int, int, int] = (100_000, 500_000, 1_000_000)


QUICK: dict[str, Any] = dict(
    subprocess_runs=4,
    record_rounds=100,
    throughput_rows=100_000,
    big_calls=200_000,
    decide_rounds=60,
    completion_rounds=40,
    replay_budget_s=4.0,
    replay_calls=20_000,
    memory_calls=200_000,
    memory_checkpoints=(20_000, 100_000, 200_000),
)


@dataclass
class Figure:
    """One row of the headline table."""

    name: str
    target: str
    measured: str
    passed: bool | None  # None: not measured (not available, skipped)
    profile: Callable[[], str] | None = None  # what to profile if it missed


@dataclass
class Results:
    """Everything a pass measured: headline rows, reference figures, detail sections."""

    figures: list[Figure] = field(default_factory=list)
    references: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # name, measured, design.md
    details: list[str] = field(default_factory=list)  # markdown blocks

    def ref(self, name: str, measured: str, design: str = "") -> None:
        """Add a reference figure (and design.md's figure for it, if any)."""
        self.references.append((name, measured, design))


# ------------------------------------------------------------------------------------------------
# Timing helpers


def interleaved_us(
    fns: dict[str, Callable[[], object]],
    *,
    rounds: int,
    batch: int,
    between: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """Per-call microseconds of each function, one sample per batch, rivals alternating each round.

    Each sample is the mean of ``batch`` back-to-back calls (so the timer's own cost is spread),
    and the median of the samples is the figure: GIL hand-offs and GC pauses land in a few
    batches and do not move it.
    """
    samples: dict[str, list[float]] = {name: [] for name in fns}
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = clock()
            for _ in range(batch):
                fn()
            samples[name].append((clock() - t0) / batch / 1000.0)
        if between is not None:
            between()
    return samples


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def wall_s(
    cmd: list[str], runs: int, *, env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Median wall time of ``runs`` runs of ``cmd`` (after one untimed warm-up) and the last result."""
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t0)
    return median(times), result


def profile_top(
    fn: Callable[[], object], *, limit: int = 14, sort: str = "tottime", only: str | None = None
) -> str:
    """cProfile's top ``limit`` entries of ``fn()`` (sorted by own time), as text.

    ``only``: a regular expression on the full ``path:line(function)`` of the entries to keep.
    """
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    if only is None:
        stats.strip_dirs().sort_stats(sort).print_stats(limit)
    else:
        stats.sort_stats(sort).print_stats(only, limit)
    text = out.getvalue()
    if only is not None:  # shorten the paths kept
        text = text.replace(str(Path(__file__).resolve().parent.parent) + "/", "")
        text = text.replace(str(Path(os.__file__).parent) + "/", "")
        site = next((p for p in sys.path if p.endswith("site-packages")), None)
        text = text.replace(site + "/", "") if site else text
    start = text.find("   ncalls")
    head = [line for line in text[:start].splitlines() if "function calls" in line]
    return "\n".join([*head, text[start:].rstrip()])


def rss_mb() -> float:
    """Current resident set size of this process, in MB (from /proc, else the peak from resource)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fmt_rate(rows_per_s: float) -> str:
    """``123,456 rows/s``."""
    return f"{rows_per_s:,.0f} rows/s"


def verdict(passed: bool | None) -> str:
    """PASS, **MISS** or n/a (not measured)."""
    return {True: "PASS", False: "**MISS**", None: "n/a"}[passed]


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Silence the ``agentmeter`` logger (a breached cap logs on every decide) for the block."""
    logger = logging.getLogger("agentmeter")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def agentmeter_cli() -> list[str]:
    """The installed ``agentmeter`` console script (beside this interpreter), else ``-m``."""
    script = Path(sys.executable).with_name("agentmeter")
    return [str(script)] if script.exists() else [sys.executable, "-m", "agentmeter.cli"]


def bytecode_env(cfg: Config) -> dict[str, str]:
    """The environment with bytecode caching on (into the temp dir), as an installed package runs.

    This machine sets ``PYTHONDONTWRITEBYTECODE=1``, so an editable install compiles agentmeter's
    modules from source at every start; users' installs have their ``.pyc`` files.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cfg.workdir / "pycache")
    return env


def fresh_db(cfg: Config, name: str) -> str:
    """A path in the work directory with no database (nor WAL/SHM files) at it."""
    path = cfg.workdir / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return str(path)


def warm_up() -> float:
    """Import litellm and read its price map once (what the first pricing lookup does); seconds."""
    from agentmeter.pricing import PriceTable

    t0 = time.perf_counter()
    PriceTable.default().rates("gpt-4o")
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------
# import agentmeter, agentmeter --help


def bench_import(cfg: Config, res: Results) -> None:
    """Wall time of ``python -c "import agentmeter"`` and which heavy modules it pulled in."""
    py = sys.executable
    env = bytecode_env(cfg)
    import_s, _ = wall_s([py, "-c", "import agentmeter"], cfg.subprocess_runs, env=env)
    pass_s, _ = wall_s([py, "-c", "pass"], cfg.subprocess_runs, env=env)
    as_is_s, _ = wall_s([py, "-c", "import agentmeter"], cfg.subprocess_runs)
    probe = (
        "import agentmeter, sys; "
        "print(','.join(m for m in ('litellm', 'scipy', 'numpy', 'pydantic', 'yaml', 'sqlite_utils', 'tenacity') if m in sys.modules))"
    )
    loaded = (
        subprocess.run([py, "-c", probe], capture_output=True, text=True).stdout.strip().split(",")
    )
    heavy = [m for m in ("litellm", "scipy", "numpy") if m in loaded]
    ok = import_s <= 0.100 and not heavy
    res.figures.append(
        Figure(
            '`python -c "import agentmeter"`',
            "<= 100 ms; litellm, scipy, numpy not imported",
            f"{import_s * 1000:.0f} ms (bare `python -c pass`: {pass_s * 1000:.0f} ms); "
            f"heavy modules loaded: {', '.join(heavy) or 'none'}",
            ok,
            profile=lambda: import_top(cfg, "import agentmeter"),
        )
    )
    res.details.append(
        "Modules `import agentmeter` loads (of the dependencies): "
        + (", ".join(m for m in loaded if m) or "none")
    )
    res.ref("`python -c pass`", f"{pass_s * 1000:.0f} ms")
    res.ref(
        '`python -c "import agentmeter"` as this machine runs it (PYTHONDONTWRITEBYTECODE=1: '
        "agentmeter's modules compiled at every start)",
        f"{as_is_s * 1000:.0f} ms",
    )


def import_top(cfg: Config, statement: str, limit: int = 12) -> str:
    """The modules that cost most (cumulative time) when running ``statement``, from ``-X importtime``."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        env=bytecode_env(cfg),
    ).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.split(":", 1)[1].split("|")
        rows.append((int(self_us), int(cumulative_us), name.rstrip()))
    total = sum(r[0] for r in rows)
    top = sorted(rows, key=lambda r: r[1], reverse=True)[:limit]
    lines = [f"-X importtime, {statement!r}: {total / 1000:.1f} ms of module execution in all"]
    lines += [f"  self {s / 1000:7.2f} ms  cumulative {c / 1000:7.2f} ms  {n}" for s, c, n in top]
    return "\n".join(lines)


def bench_cli(cfg: Config, res: Results) -> None:
    """Wall time of ``agentmeter --help`` against a bare interpreter start."""
    cmd = agentmeter_cli()
    env = bytecode_env(cfg)
    help_s, result = wall_s([*cmd, "--help"], cfg.subprocess_runs, env=env)
    pass_s, _ = wall_s([sys.executable, "-c", "pass"], cfg.subprocess_runs, env=env)
    as_is_s, _ = wall_s([*cmd, "--help"], cfg.subprocess_runs)
    res.ref(
        "`agentmeter --help` as this machine runs it (PYTHONDONTWRITEBYTECODE=1)",
        f"{as_is_s:.3f} s",
    )
    ratio = help_s / pass_s
    ok = result.returncode == 0 and help_s <= 0.3 and ratio <= 4.0
    res.figures.append(
        Figure(
            "`agentmeter --help` wall time",
            "<= 0.3 s and <= 4x `python -c pass`",
            f"{help_s:.3f} s = {ratio:.1f}x `python -c pass` ({pass_s * 1000:.0f} ms)"
            + ("" if result.returncode == 0 else f"; exit code {result.returncode}"),
            ok,
            profile=lambda: import_top(cfg, "from agentmeter.cli import main"),
        )
    )


# ------------------------------------------------------------------------------------------------
# run.record vs an OpenTelemetry span


def otel_tracer() -> tuple[Any, Any, Any]:
    """A TracerProvider with a BatchSpanProcessor into an InMemorySpanExporter, and its tracer."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, exporter, provider.get_tracer("agentmeter-bench")


SPAN_ATTRIBUTES: dict[str, Any] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.request.max_tokens": 512,
    "gen_ai.usage.input_tokens": 2000,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read_input_tokens": 800,
    "gen_ai.response.finish_reasons": ("stop",),
    "tenant": "acme",
}


def bench_record(cfg: Config, res: Results) -> None:
    """Agent-thread cost of ``run.record`` (default policies, file DB) vs a 10-attribute OTel span."""
    import agentmeter

    meter = agentmeter.Meter(db=fresh_db(cfg, "record.db"), policies="default")
    run = meter.run("bench-record", tags={"tenant": "acme"})
    usage = agentmeter.Usage(**GPT4O_USAGE)
    record = run.record

    def record_call() -> object:
        return record(model="gpt-4o", usage=usage, latency_ms=812.0, ttft_ms=300.0)

    provider, exporter, tracer = otel_tracer()
    start_span = tracer.start_as_current_span
    attributes = SPAN_ATTRIBUTES

    def otel_span() -> None:
        with start_span("chat gpt-4o", attributes=attributes):
            pass

    for _ in range(500):  # warm both paths (first price lookup, window creation, OTel setup)
        record_call()
        otel_span()
    samples = interleaved_us(
        {"record": record_call, "otel": otel_span},
        rounds=cfg.record_rounds,
        batch=cfg.record_batch,
        between=exporter.clear,  # the exporter keeps every span: keep its memory flat
    )
    rec, span = median(samples["record"]), median(samples["otel"])
    meter.close()
    provider.shutdown()
    ratio = rec / span
    res.figures.append(
        Figure(
            "`run.record(...)` on the agent's thread (cost computation included)",
            "median <= 15 us and <= 0.5x an OTel SDK span with 10 attributes",
            f"{rec:.1f} us = {ratio:.2f}x an OTel span ({span:.1f} us, measured alongside)",
            rec <= 15.0 and ratio <= 0.5,
            profile=lambda: profile_record(cfg),
        )
    )
    res.ref(
        "OpenTelemetry SDK span, 10 attributes, BatchSpanProcessor + InMemorySpanExporter",
        f"{span:.1f} us",
        "20-30 us",
    )
    p90 = statistics.quantiles(samples["record"], n=10)[-1]
    res.details.append(
        f"`run.record`: median {rec:.2f} us, p90 of batch means {p90:.2f} us over "
        f"{cfg.record_rounds * cfg.record_batch:,} calls (batches of {cfg.record_batch}); "
        f"OTel span median {span:.2f} us over as many spans."
    )

    # Reference figures of the same machine.
    import litellm

    def cost_per_token() -> object:
        return litellm.cost_per_token(
            model="gpt-4o", prompt_tokens=2000, completion_tokens=300, cache_read_input_tokens=800
        )

    from agentmeter.pricing import cost_nano_usd

    sq: queue.SimpleQueue[object] = queue.SimpleQueue()
    put = sq.put
    item = ("call", (1, 2, 3))
    ref = interleaved_us(
        {
            "cost_per_token": cost_per_token,
            "cost_nano_usd": lambda: cost_nano_usd("gpt-4o", usage),
        },
        rounds=40,
        batch=50,
    )
    res.ref(
        "`litellm.cost_per_token` (gpt-4o, with cache reads)",
        f"{median(ref['cost_per_token']):.1f} us",
        "80-150 us",
    )
    res.ref(
        "`agentmeter.pricing.cost_nano_usd` (same call)", f"{median(ref['cost_nano_usd']):.2f} us"
    )
    put_samples = []
    for _ in range(20):
        t0 = time.perf_counter_ns()
        for _ in range(10_000):
            put(item)
        put_samples.append((time.perf_counter_ns() - t0) / 10_000 / 1000)
        while not sq.empty():
            sq.get_nowait()
    res.ref("`queue.SimpleQueue.put` (loop included)", f"{median(put_samples):.3f} us", "0.06 us")


def profile_record(cfg: Config, calls: int = 20_000, limit: int = 14) -> str:
    """cProfile of ``calls`` ``run.record`` calls (default policies, file DB)."""
    import agentmeter

    meter = agentmeter.Meter(db=fresh_db(cfg, f"profile-record-{calls}.db"), policies="default")
    run = meter.run("profile-record", tags={"tenant": "acme"})
    usage = agentmeter.Usage(**GPT4O_USAGE)

    def loop() -> None:
        for _ in range(calls):
            run.record(model="gpt-4o", usage=usage, latency_ms=812.0, ttft_ms=300.0)

    text = profile_top(loop, limit=limit)
    meter.close()
    return text


# ------------------------------------------------------------------------------------------------
# Durable recording throughput


def template_row(run_id: str, step: int, ts: float, tags_json: str) -> tuple[Any, ...]:
    """A call row as the recorder writes it for the benchmark's gpt-4o call (``GEN_COLUMNS`` order)."""
    return (
        run_id, step, ts, "gpt-4o", "gpt-4o", "openai", 1200, 300, 800, 0, 0, 0, "reported",
        6_000_000, "ok", 812.0, 300.0, None, None, "ok", None, 0, None, None, None, None, None,
        tags_json, "0123456789ab",
    )  # fmt: skip


def meter_throughput(
    cfg: Config, policies: str | None, name: str, *, threads: int | None = None
) -> tuple[float, int, float]:
    """Rows/s committed by a meter fed by several recording threads, until ``flush()`` returns.

    Returns (rows per second, rows found in the table afterwards, seconds spent in flush).
    """
    import agentmeter

    path = fresh_db(cfg, name)
    meter = agentmeter.Meter(db=path, policies=policies)
    threads = threads or cfg.throughput_threads
    per_thread = cfg.throughput_rows // threads
    usage = agentmeter.Usage(**GPT4O_USAGE)
    runs = [meter.run(f"writer-{i}", tags={"tenant": f"tenant-{i}"}) for i in range(threads)]
    meter.flush()
    barrier = threading.Barrier(threads + 1)

    def work(run: Any) -> None:
        record = run.record
        barrier.wait()
        for _ in range(per_thread):
            record(model="gpt-4o", usage=usage, latency_ms=812.0, ttft_ms=300.0)

    workers = [threading.Thread(target=work, args=(run,)) for run in runs]
    for worker in workers:
        worker.start()
    barrier.wait()
    t0 = time.perf_counter()
    for worker in workers:
        worker.join()
    t1 = time.perf_counter()
    flushed = meter.flush(timeout_s=120)
    t2 = time.perf_counter()
    meter.close()
    if not flushed:
        raise RuntimeError("meter.flush() timed out")
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT count(*) FROM agentmeter_calls").fetchone()[0]
    conn.close()
    total = per_thread * threads
    return total / (t2 - t0), rows, t2 - t1


def raw_sqlite_throughput(cfg: Config, name: str, *, batch: int = 1000) -> float:
    """Rows/s of raw ``executemany`` batches into the agentmeter schema (WAL, synchronous=NORMAL)."""
    from agentmeter.migrations import migrate
    from agentmeter.recorder import CALL_COLUMNS

    path = fresh_db(cfg, name)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    migrate(conn)
    sql = gen_db.insert_sql("agentmeter_calls", CALL_COLUMNS)
    n = cfg.throughput_rows
    threads = cfg.throughput_threads
    now = time.time()
    tags = json.dumps({"tenant": "tenant-0"})
    # The same interleaving of run ids a multi-threaded meter produces.
    rows = gen_db.to_call_columns(
        [template_row(f"run-{i % threads}", i // threads, now + i * 1e-6, tags) for i in range(n)],
        gen_db.column_defaults(conn),
    )
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        conn.execute("BEGIN")
        conn.executemany(sql, rows[i : i + batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return n / elapsed


def bench_throughput(cfg: Config, res: Results) -> None:
    """Durable rows/s of the meter (default policies, then none) vs raw sqlite3 executemany."""
    raw_1 = raw_sqlite_throughput(cfg, "raw-1.db")
    with_policies, rows, flush_s = meter_throughput(cfg, "default", "tp-default.db")
    no_policies, rows_np, _ = meter_throughput(cfg, None, "tp-none.db")
    one_thread, _, one_flush_s = meter_throughput(cfg, "default", "tp-one.db", threads=1)
    raw_2 = raw_sqlite_throughput(cfg, "raw-2.db")
    raw = (raw_1 + raw_2) / 2
    share = with_policies / raw
    expected = cfg.throughput_rows // cfg.throughput_threads * cfg.throughput_threads
    complete = rows == expected and rows_np == expected  # every recorded call is durable
    res.figures.append(
        Figure(
            f"durable recording throughput ({cfg.throughput_threads} recording threads, "
            f"{cfg.throughput_rows:,} calls, WAL file, until `flush()` returns; default policies)",
            ">= 100,000 rows/s and >= 65% of raw sqlite3 executemany",
            f"{fmt_rate(with_policies)} = {share:.0%} of raw sqlite3 ({fmt_rate(raw)})"
            + ("" if complete else f"; ROWS MISSING: {rows:,}/{expected:,}"),
            with_policies >= 100_000 and share >= 0.65 and complete,
            profile=lambda: profile_throughput(cfg),
        )
    )
    res.ref(
        "raw sqlite3 `executemany`, batches of 1,000 agentmeter call rows (WAL, NORMAL, same indexes)",
        fmt_rate(raw),
        "150,000 rows/s (20 columns)",
    )
    res.details.append(
        "| recording throughput | rows/s | share of raw sqlite3 |\n| --- | --- | --- |\n"
        f"| meter, default policies | {with_policies:,.0f} | {with_policies / raw:.0%} |\n"
        f"| meter, no policies | {no_policies:,.0f} | {no_policies / raw:.0%} |\n"
        f"| meter, default policies, 1 recording thread | {one_thread:,.0f} | {one_thread / raw:.0%} |\n"
        f"| raw sqlite3 executemany x1,000 (before / after) | {raw_1:,.0f} / {raw_2:,.0f} | 100% |\n\n"
        f"The writer still had {flush_s:.2f} s of rows to commit when the recording threads finished "
        f"(default policies; {one_flush_s:.2f} s with one recording thread)."
    )


def profile_throughput(cfg: Config) -> str:
    """Profile of the recording threads' side (cProfile sees the calling thread only) and of the writer's."""
    from agentmeter.recorder import Recorder

    agent_side = profile_record(cfg, calls=50_000, limit=10)
    # The writer's side: the recorder's commit of the same rows, on this thread.
    from agentmeter.migrations import migrate
    from agentmeter.recorder import connect

    conn = connect(fresh_db(cfg, "profile-writer.db"))
    migrate(conn)
    recorder = Recorder(lambda: conn, threaded=False)
    tags = json.dumps({"tenant": "acme"})
    calls = gen_db.to_call_columns(
        [template_row("run-0", i, time.time(), tags) for i in range(100_000)],
        gen_db.column_defaults(conn),
    )
    rows = [("call", row) for row in calls]

    def commit() -> None:
        for i in range(0, len(rows), 5000):
            recorder._commit(rows[i : i + 5000])

    writer_side = profile_top(commit, limit=8)
    recorder.close()
    return (
        f"recording thread (50,000 calls):\n{agent_side}\n\nwriter (100,000 rows):\n{writer_side}"
    )


# ------------------------------------------------------------------------------------------------
# run.decide on a small and a large recorder


def merged_policies(*, halt_as_pause: bool = False) -> Any:
    """Every shipped policy set in one: each rule renamed ``set/rule``, ladders merged.

    ``halt_as_pause`` turns every ``halt`` into a ``pause``, so a replay never stops early and
    every call goes through the engine (a hard cap stays a hard cap: it pauses instead).
    """
    import yaml

    from agentmeter.policy.spec import BUILTIN_DIR, parse_policies

    ladder: dict[str, list[str]] = {}
    policies: list[dict[str, Any]] = []
    for name in BUILTIN_SETS:
        doc = yaml.safe_load((BUILTIN_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
        for model, chain in (doc.get("ladder") or {}).items():
            ladder.setdefault(model, chain)
        for rule in doc.get("policies") or []:
            then = rule.get("then")
            if halt_as_pause and isinstance(then, list):
                then = ["pause" if action == "halt" else action for action in then]
            policies.append({**rule, "name": f"{name}/{rule['name']}", "then": then})
    text = yaml.safe_dump({"version": 1, "ladder": ladder, "policies": policies}, sort_keys=False)
    source = "<all shipped sets, halt as pause>" if halt_as_pause else "<all shipped policy sets>"
    return parse_policies(text, source=source)


@dataclass
class DecideResult:
    """``run.decide`` on one DB with one policy set."""

    median_us: float
    open_s: float
    fired: str


class DBClock:
    """The system clock, set back so that a DB's newest call is a moment old.

    A reused ``--db`` ages: an hour after it was generated its windows no longer hold the same
    calls, and what fires (so the decide figures) would depend on when the benchmark ran.
    """

    def __init__(self, db: str) -> None:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        (newest,) = conn.execute("SELECT max(ts) FROM agentmeter_calls").fetchone()
        conn.close()
        self.offset = (newest or time.time()) + 1.0 - time.time()

    def now(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def decide_pair(cfg: Config, dbs: tuple[str, ...], policies: Any) -> list[DecideResult]:
    """``run.decide`` on each of ``dbs``, timed side by side (batches alternate between them).

    On each DB: open a meter (windows seeded from it), start a run, record 20 calls (every policy
    under its threshold), then time ``decide(model="gpt-4o", prompt_tokens=2000, max_tokens=512)``.
    """
    import agentmeter

    usage = agentmeter.Usage(**GPT4O_USAGE)
    meters, runs, opened = [], [], []
    for db in dbs:
        t0 = time.perf_counter()
        meter = agentmeter.Meter(db=db, policies=policies, clock=DBClock(db))
        opened.append(time.perf_counter() - t0)
        run = meter.run("bench-decide", tags=BENCH_TAGS)
        for i in range(20):
            run.record(
                model="gpt-4o",
                usage=usage,
                latency_ms=812.0,
                ttft_ms=300.0,
                prompt_hash=f"{i:016x}",
            )
        meters.append(meter)
        runs.append(run)

    def decider(run: Any) -> Callable[[], Any]:
        decide = run.decide
        return lambda: decide(model="gpt-4o", prompt_tokens=2000, max_tokens=512)

    fns = {db: decider(run) for db, run in zip(dbs, runs, strict=True)}
    for fn in fns.values():
        for _ in range(200):
            fn()
    samples = interleaved_us(fns, rounds=cfg.decide_rounds, batch=cfg.decide_batch)
    results = []
    for db, meter, run, open_s in zip(dbs, meters, runs, opened, strict=True):
        decision = fns[db]()
        fired = ", ".join(sorted({f"{f.policy}: {f.action}" for f in decision.fired})) or "nothing"
        run.end()
        meter.close()
        results.append(DecideResult(median(samples[db]), open_s, fired))
    return results


def bench_decide(cfg: Config, res: Results, small: str, big: str, big_calls: int) -> None:
    """``run.decide`` median per shipped policy set (and all merged), on a 1k- and a big-call DB.

    Two big DBs: *history*, the 1k-call DB's calls with the big DB's all moved back before them
    (the same windows' contents, a thousand times the history: what the target is about), and
    the big DB itself, whose 30 days are a thousand times denser (its caps are breached, so
    decide takes the firing path: state, not history, differs).
    """
    from agentmeter.policy.spec import load_policies

    history = str(cfg.workdir / "history.db")
    history_calls = make_history_db(small, big, history)
    sets: list[tuple[str, Any]] = [(name, load_policies(name)) for name in BUILTIN_SETS]
    sets.append(("all five merged", merged_policies()))
    lines = [
        f"| policy set | 1k-call DB | history: 1k + {big_calls:,} older calls | ratio | "
        f"dense: {big_calls:,} calls over the same 30 days | ratio | fired on the 1k DB and "
        "history | fired on the dense DB | meter open (history / dense) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    worst_us: tuple[float, str, str] = (0.0, "", "")
    worst_ratio, worst_dense, slowest_open = (0.0, ""), (0.0, ""), (0.0, "")
    for name, policy_set in sets:
        small_r, history_r, big_r = decide_pair(cfg, (small, history, big), policy_set)
        ratio = history_r.median_us / small_r.median_us
        dense = big_r.median_us / small_r.median_us
        fired = (
            small_r.fired
            if small_r.fired == history_r.fired
            else (f"{small_r.fired} / {history_r.fired}")
        )
        lines.append(
            f"| {name} | {small_r.median_us:.1f} us | {history_r.median_us:.1f} us | "
            f"{ratio:.2f}x | {big_r.median_us:.1f} us | {dense:.2f}x | {fired} | {big_r.fired} | "
            f"{history_r.open_s:.2f} s / {big_r.open_s:.2f} s |"
        )
        for db, r in ((small, small_r), (history, history_r), (big, big_r)):
            worst_us = max(worst_us, (r.median_us, name, db))
        worst_ratio = max(worst_ratio, (ratio, name))
        worst_dense = max(worst_dense, (dense, name))
        slowest_open = max(slowest_open, (big_r.open_s, name))
    res.details.append(
        '`run.decide(model="gpt-4o", prompt_tokens=2000, max_tokens=512)` in a run of 20 recorded '
        f"calls tagged {BENCH_TAGS}, median of {cfg.decide_rounds * cfg.decide_batch:,} calls, "
        f"batches alternating between three DBs: the 1k-call DB; *history* ({history_calls:,} "
        "calls): the 1k-call DB's calls after the big DB's, all moved 31 days before them, so a "
        "meter's windows hold the same calls as on the 1k-call DB and only the history is bigger; "
        "*dense*: the big DB, whose 30 days hold a thousand times the calls (caps breached: "
        "decide takes the firing path). A meter opened on a DB seeds its shared-scope windows "
        "from it.\n\n" + "\n".join(lines)
    )
    by_name = dict(sets)

    def profiles() -> str:
        _, name, db = worst_us
        label = {small: "1k-call", history: "history", big: "dense"}[db]
        parts = [profile_decide(db, by_name[name], f"{name}, {label} DB")]
        if worst_dense[1] != name:
            parts.append(
                profile_decide(big, by_name[worst_dense[1]], f"{worst_dense[1]}, dense DB")
            )
        parts.append(profile_open(big, by_name[slowest_open[1]], slowest_open[1]))
        return "\n\n".join(parts)

    res.figures.append(
        Figure(
            "`run.decide()`, each shipped policy set and all merged, on a 1k-call DB and on "
            f"{history_calls:,} calls (the same 1k plus older history)",
            "median <= 25 us, and big DB within 1.3x of the 1k DB",
            f"slowest: {worst_us[0]:.1f} us ({worst_us[1]}); largest ratio history/1k: "
            f"{worst_ratio[0]:.2f}x ({worst_ratio[1]}). Where the big DB's own 30 days are "
            f"{big_calls:,} calls and its caps breached: largest ratio {worst_dense[0]:.2f}x "
            f"({worst_dense[1]}); see the decide table",
            worst_us[0] <= 25.0 and worst_ratio[0] <= 1.3,
            profile=profiles,
        )
    )
    res.ref(
        f"opening a `Meter` on the {big_calls:,}-call DB (seeding windows), slowest policy set",
        f"{slowest_open[0]:.2f} s ({slowest_open[1]})",
    )


def profile_decide(db: str, policies: Any, label: str) -> str:
    """cProfile of 2,000 ``run.decide`` calls, set up as ``decide_pair`` does."""
    import agentmeter

    meter = agentmeter.Meter(db=db, policies=policies, clock=DBClock(db))  # as decide_pair
    run = meter.run("profile-decide", tags=BENCH_TAGS)
    usage = agentmeter.Usage(**GPT4O_USAGE)
    for i in range(20):
        run.record(
            model="gpt-4o", usage=usage, latency_ms=812.0, ttft_ms=300.0, prompt_hash=f"{i:016x}"
        )

    def loop() -> None:
        for _ in range(2000):
            run.decide(model="gpt-4o", prompt_tokens=2000, max_tokens=512)

    text = profile_top(loop, limit=14)
    meter.close()
    return f"2,000 decides ({label}):\n{text}"


def profile_open(db: str, policies: Any, name: str) -> str:
    """cProfile of opening (and closing) a meter on ``db``: the seeding of its windows."""
    import agentmeter

    text = profile_top(
        lambda: agentmeter.Meter(db=db, policies=policies).close(), limit=10, sort="cumtime"
    )
    return f"opening a Meter on the big DB, policy set {name!r}:\n{text}"


# ------------------------------------------------------------------------------------------------
# run.completion vs litellm.completion


def distinct_prompts(count: int) -> list[list[dict[str, str]]]:
    """``count`` short chat prompts, all different."""
    return [
        [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": f"Say hi to visitor number {i}."},
        ]
        for i in range(count)
    ]


def completion_pair(
    cfg: Config, name: str, *, policies: str | None, writer_idle: bool = False, **meter_options: Any
) -> tuple[float, float]:
    """Median microseconds of ``run.completion`` and of bare ``litellm.completion``, same prompts.

    Back to back (``writer_idle`` false): batches of calls alternate between the two, so the
    recorder's writer commits while the next metered calls run, as in an agent loop that never
    waits. ``writer_idle``: each call is timed alone after ``meter.flush()``, as when the agent
    waits on a real provider (where the writer commits during the network wait).
    """
    import litellm

    import agentmeter

    meter = agentmeter.Meter(db=fresh_db(cfg, name), policies=policies, **meter_options)
    run = meter.run("bench-completion", tags={"tenant": "acme"})
    # A new prompt per call, as an agent sends: one repeated prompt would (rightly) trip the
    # default runaway-loop policy, which pauses the run for 30 s.
    prompts = distinct_prompts(40 + cfg.completion_rounds * cfg.completion_batch)
    ours_next, theirs_next = iter(prompts).__next__, iter(prompts).__next__

    def metered() -> object:
        return run.completion(model="gpt-4o", messages=ours_next(), mock_response="hi")

    def bare() -> object:
        return litellm.completion(model="gpt-4o", messages=theirs_next(), mock_response="hi")

    for _ in range(20):
        metered()
        bare()
    if writer_idle:
        ours_us, theirs_us = [], []
        clock = time.perf_counter_ns
        for _ in range(cfg.completion_rounds * cfg.completion_batch // 2):
            meter.flush()
            t0 = clock()
            metered()
            ours_us.append((clock() - t0) / 1000)
            meter.flush()
            t0 = clock()
            bare()
            theirs_us.append((clock() - t0) / 1000)
        samples = {"agentmeter": ours_us, "litellm": theirs_us}
    else:
        samples = interleaved_us(
            {"agentmeter": metered, "litellm": bare},
            rounds=cfg.completion_rounds,
            batch=cfg.completion_batch,
        )
    meter.close()
    return median(samples["agentmeter"]), median(samples["litellm"])


def bench_completion(cfg: Config, res: Results) -> None:
    """``run.completion(..., mock_response=...)`` against bare ``litellm.completion`` (same call)."""
    ours, theirs = completion_pair(cfg, "completion.db", policies="default")
    ratio = ours / theirs
    res.figures.append(
        Figure(
            "`run.completion(..., mock_response=...)` vs bare `litellm.completion` "
            "(default policies, back to back)",
            "<= 1.10x",
            f"{ratio:.3f}x ({ours / 1000:.2f} ms vs {theirs / 1000:.2f} ms; "
            f"+{ours - theirs:.0f} us)",
            ratio <= 1.10,
            profile=lambda: profile_completion(cfg),
        )
    )
    res.ref("`litellm.completion(..., mock_response=...)`", f"{theirs / 1000:.2f} ms", "1.5-1.9 ms")
    lines = [
        "`run.completion` vs bare `litellm.completion` (mock response, a new short prompt per call):",
        "",
        "| variant | run.completion | litellm.completion | ratio | added |",
        "| --- | --- | --- | --- | --- |",
        f"| default policies, back to back | {ours / 1000:.2f} ms | {theirs / 1000:.2f} ms | "
        f"{ratio:.2f}x | {ours - theirs:+.0f} us |",
    ]
    variants: list[tuple[str, dict[str, Any]]] = [
        (
            "default policies, writer idle before each call",
            {"policies": "default", "writer_idle": True},
        ),
        (
            "default policies, prompt tokens from a stub counter (no tokenizer), back to back",
            {"policies": "default", "token_counter": lambda model, messages: 50},
        ),
        ("no policies, back to back", {"policies": None}),
    ]
    for index, (label, options) in enumerate(variants):
        a, b = completion_pair(cfg, f"completion-{index}.db", **options)
        lines.append(
            f"| {label} | {a / 1000:.2f} ms | {b / 1000:.2f} ms | {a / b:.2f}x | {a - b:+.0f} us |"
        )
    res.details.append("\n".join(lines))


def profile_completion(cfg: Config) -> str:
    """cProfile of 300 ``run.completion`` calls, all functions and agentmeter's only."""
    import agentmeter

    meter = agentmeter.Meter(db=fresh_db(cfg, "profile-completion.db"), policies="default")
    run = meter.run("profile-completion", tags={"tenant": "acme"})
    prompts = distinct_prompts(300)

    def loop() -> None:
        for messages in prompts:
            run.completion(model="gpt-4o", messages=messages, mock_response="hi")

    text = profile_top(loop, limit=14, sort="cumtime")
    own = profile_top(
        loop, limit=16, sort="cumtime", only=r"/agentmeter/|token_counter\.py|tiktoken"
    )
    meter.close()
    return f"{text}\n\nthe same, agentmeter's functions (and the tokenizer) only:\n{own}"


# ------------------------------------------------------------------------------------------------
# What-if replay


def replay_fn() -> Callable[..., Any] | None:
    """``agentmeter.replay.replay(db, run_id, *, policies)`` if the module exists and has it."""
    try:
        from agentmeter.replay import replay
    except ImportError:
        return None
    return replay if callable(replay) else None


REPLAY_RUN = "replay-run"


def make_replay_db(big: str, out: str, calls: int) -> None:
    """A DB holding the big DB's first ``calls`` calls as one run (``REPLAY_RUN``), steps = ids."""
    from agentmeter.migrations import migrate

    conn = sqlite3.connect(out, isolation_level=None)
    migrate(conn)
    conn.execute("ATTACH DATABASE ? AS src", (big,))
    ours = [row[1] for row in conn.execute("PRAGMA main.table_info(agentmeter_calls)")]
    theirs = {row[1] for row in conn.execute("PRAGMA src.table_info(agentmeter_calls)")}
    columns = [c for c in ours if c in theirs and c != "id"]
    source = {"run_id": f"'{REPLAY_RUN}'", "step": "id"}
    select = ", ".join(source.get(c, c) for c in columns)
    conn.execute("BEGIN")
    conn.execute(
        f"INSERT INTO agentmeter_calls ({', '.join(columns)}) SELECT {select} "
        "FROM src.agentmeter_calls WHERE id <= ? ORDER BY id",
        (calls,),
    )
    conn.execute(
        "INSERT INTO agentmeter_runs (run_id, name, started_at, ended_at, status, tags) "
        f"SELECT '{REPLAY_RUN}', 'replay', min(ts), max(ts), 'ok', '{{}}' FROM agentmeter_calls"
    )
    conn.execute("COMMIT")
    conn.execute("DETACH DATABASE src")
    conn.close()


def engine_replay(db: str, policies: Any, budget_s: float) -> tuple[int, float]:
    """Stand-in for ``agentmeter.replay``: the DB's calls in id order through ``decide`` + ``observe``.

    On a fake clock (each call's ``ts``), with each call's requested model, recorded prompt size
    and max_tokens, the worst case priced like ``Run.decide``; stops after ``budget_s`` seconds.
    Returns (calls, seconds).
    """
    from agentmeter.meter import observation_from_row
    from agentmeter.policy.engine import Engine
    from agentmeter.pricing import PriceTable
    from agentmeter.storage import SQLITE

    engine = Engine(policies)
    worst = PriceTable.default().worst_case_nano_usd
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    columns = SQLITE.seed_columns  # what observation_from_row reads, in its order
    seeded = columns.count(",") + 1
    cursor = conn.execute(
        f"SELECT {columns}, requested_model, decided_prompt_tokens, max_tokens "
        "FROM agentmeter_calls ORDER BY id"
    )
    done = 0
    t0 = time.perf_counter()
    deadline = t0 + budget_s
    while rows := cursor.fetchmany(1000):
        for row in rows:
            obs = observation_from_row(row[:seeded])
            requested, prompt, max_tokens = row[seeded], row[seeded + 1], row[seeded + 2]
            prompt = prompt if prompt is not None else obs.samples["prompt_tokens"]
            _, reservation = engine.decide(
                now=obs.ts,
                model=requested or obs.model or "?",
                run_id=obs.run_id,
                tags=obs.tags,
                prompt_tokens=prompt,
                worst_case=lambda m, p=prompt or 0, mt=max_tokens: worst(m, p, mt),
                step=done + 1,
            )
            engine.observe(obs, reservation)
        done += len(rows)
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - t0
    conn.close()
    return done, elapsed


def bench_replay(cfg: Config, res: Results, big: str, big_calls: int) -> None:
    """What-if replay throughput: the big DB's calls as one run, through the shipped policies.

    Measured on the run's first ``replay_calls`` calls (a full 1M-call replay at the engine's
    speed would take minutes); the 1M time is projected from the rate.
    """
    from agentmeter.policy.spec import load_policies

    replay = replay_fn()
    every_call = merged_policies(halt_as_pause=True)
    prefix = min(cfg.replay_calls, big_calls)
    name = (
        f"what-if replay of a {big_calls:,}-call run through all shipped policy sets merged "
        f"(halt as pause, so every call is decided); first {prefix:,} calls"
    )
    if replay is None:
        calls, elapsed = engine_replay(big, every_call, cfg.replay_budget_s)
        rate = calls / elapsed
        res.figures.append(
            Figure(
                name + " (**engine loop**: `agentmeter.replay` not available)",
                ">= 200,000 calls/s",
                f"{rate:,.0f} calls/s ({calls:,} calls in {elapsed:.1f} s, time-boxed)",
                rate >= 200_000,
                profile=lambda: profile_top(lambda: engine_replay(big, every_call, 3.0)),
            )
        )
        return
    db = str(cfg.workdir / "replay.db")
    make_replay_db(big, db, prefix)

    def timed(policies: Any) -> tuple[float, Any]:
        t0 = time.perf_counter()
        result = replay(db, REPLAY_RUN, policies=policies)
        return time.perf_counter() - t0, result

    elapsed, result = timed(every_call)
    rate = result.calls / elapsed
    res.figures.append(
        Figure(
            name + " (`agentmeter.replay.replay`)",
            ">= 200,000 calls/s",
            f"{rate:,.0f} calls/s ({result.calls:,} calls in {elapsed:.1f} s; "
            f"{big_calls:,} calls projected: {big_calls / rate:.0f} s)",
            rate >= 200_000,
            profile=lambda: profile_top(
                lambda: replay(db, REPLAY_RUN, policies=every_call), limit=16
            ),
        )
    )
    lines = [
        f"What-if replay of the first {prefix:,} calls of the big DB as one run "
        "(`agentmeter.replay.replay`), each policy set as shipped: a halt stops the run, and the "
        "calls after it are only counted.",
        "",
        "| policy set | halted at call | calls decided | seconds | calls/s (all calls) |",
        "| --- | --- | --- | --- | --- |",
    ]
    sets: list[tuple[str, Any]] = [(n, load_policies(n)) for n in BUILTIN_SETS]
    sets += [("all five merged", merged_policies()), ("all five merged, halt as pause", every_call)]
    for label, policies in sets:
        if policies is every_call:
            seconds, r = elapsed, result
        else:
            seconds, r = timed(policies)
        halted = "-" if r.halted_at_step is None else f"{r.halted_at_step:,}"
        decided = r.halted_at_step or r.calls
        lines.append(
            f"| {label} | {halted} | {decided:,} | {seconds:.2f} | {r.calls / seconds:,.0f} |"
        )
    res.details.append("\n".join(lines))


# ------------------------------------------------------------------------------------------------
# agentmeter report


def bench_report(cfg: Config, res: Results, big: str, big_calls: int) -> None:
    """Wall time of ``agentmeter report`` over the big DB (a subprocess), if the command exists."""
    cmd = agentmeter_cli()
    check = subprocess.run([*cmd, "report", "--help"], capture_output=True, text=True)
    name = f"`agentmeter report` over a {big_calls:,}-call DB (subprocess wall time)"
    if check.returncode != 0:
        res.figures.append(
            Figure(name, "<= 1 s", "not available (`agentmeter report --help` fails)", None)
        )
        return
    env = {**bytecode_env(cfg), "AGENTMETER_DB": big}
    seconds, result = wall_s(
        [*cmd, "report", "--db", big], max(3, cfg.subprocess_runs // 2), env=env
    )
    if result.returncode != 0:
        first = (result.stderr or result.stdout).strip().splitlines()[:1]
        res.figures.append(
            Figure(name, "<= 1 s", f"failed (exit {result.returncode}): {' '.join(first)}", False)
        )
        return
    res.figures.append(
        Figure(
            name,
            "<= 1 s",
            f"{seconds:.2f} s",
            seconds <= 1.0,
            profile=lambda: profile_report(cfg, big),
        )
    )


def profile_report(cfg: Config, big: str) -> str:
    """cProfile of ``agentmeter report`` over the big DB (``python -m cProfile``, a subprocess)."""
    cmd = [
        sys.executable,
        "-m",
        "cProfile",
        "-s",
        "tottime",
        "-m",
        "agentmeter.cli",
        "report",
        "--db",
        big,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=bytecode_env(cfg)).stdout
    start = out.find("   ncalls")
    return "\n".join(out[start:].splitlines()[:16]) if start >= 0 else out[-2000:]


# ------------------------------------------------------------------------------------------------
# Memory while recording


def memory_child(calls: int, checkpoints: list[int], mode: str, workdir: str) -> None:
    """(Child process) record ``calls`` calls with the default policies; print RSS at checkpoints.

    ``mode`` ``runs``: runs of 100 calls over 50 tenants, each run ended (an agent service), as
    fast as the agent thread can record; ``paced``: one run of all the calls a second apart on the
    meter's clock (an agent that runs for days), with a ``flush()`` every 10,000 calls so the
    writer keeps up (what stays is state, not backlog).
    """
    import agentmeter
    from agentmeter.clock import FakeClock

    logging.getLogger("agentmeter").setLevel(logging.CRITICAL)
    warm_up()
    path = os.path.join(workdir, f"memory-{mode}.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    # One long run lives on a clock that moves a second per call (11.6 days for 1M calls), so
    # its windows (up to 24 hours) fill and then roll: what grows after that is not state.
    clock = FakeClock() if mode == "paced" else None
    meter = agentmeter.Meter(db=path, policies="default", clock=clock)
    usage = agentmeter.Usage(**GPT4O_USAGE)
    gc.collect()

    pending = getattr(getattr(meter, "_recorder", None), "_queue", None)  # the writer's queue

    def emit(done: int) -> None:
        queued = pending.qsize() if pending is not None else -1
        blocks = sys.getallocatedblocks()  # live Python objects (pymalloc blocks), leak or backlog
        print(
            json.dumps({"calls": done, "rss_mb": rss_mb(), "queued": queued, "blocks": blocks}),
            flush=True,
        )

    emit(0)
    marks = set(checkpoints)
    run = meter.run("memory", tags={"tenant": "tenant-0"})
    t0 = time.perf_counter()
    for i in range(1, calls + 1):
        run.record(
            model="gpt-4o",
            usage=usage,
            latency_ms=812.0,
            ttft_ms=300.0,
            prompt_hash=f"{i % 5000:016x}",
        )
        if mode == "runs" and i % 100 == 0:
            run.end()
            run = meter.run(
                "memory", tags={"tenant": f"tenant-{i // 100 % 50}", "user": f"u{i // 100 % 997}"}
            )
        if clock is not None:
            clock.advance(1.0)
        if mode == "paced" and i % 10_000 == 0:
            meter.flush()
        if i in marks:
            emit(i)
    run.end()
    elapsed = time.perf_counter() - t0
    meter.flush(timeout_s=300)
    gc.collect()
    print(
        json.dumps(
            {
                "calls": calls,
                "rss_mb": rss_mb(),
                "queued": 0,
                "blocks": sys.getallocatedblocks(),
                "flushed": True,
                "seconds": elapsed,
            }
        ),
        flush=True,
    )
    meter.close()


def bench_memory(cfg: Config, res: Results) -> None:
    """RSS after 100k / 500k / 1M recorded calls (child processes), runs ended as they finish."""
    modes = ["runs", "paced"]
    table = [
        "| calls recorded | "
        + " | ".join(f"RSS ({m}) | writer backlog ({m}) | live blocks ({m})" for m in modes)
        + " |"
    ]
    table.append("| --- |" + " --- | --- | --- |" * len(modes))
    series: dict[str, list[dict[str, Any]]] = {}
    for mode in modes:
        out = subprocess.run(
            [
                sys.executable, __file__, "--child-memory", str(cfg.memory_calls),
                "--checkpoints", ",".join(map(str, cfg.memory_checkpoints)),
                "--mode", mode, "--workdir", str(cfg.workdir),
            ],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        series[mode] = [
            json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")
        ]
    for index, point in enumerate(series["runs"]):
        label = f"{point['calls']:,}" + (" (after flush)" if point.get("flushed") else "")
        cells = []
        for mode in modes:
            p = series[mode][index]
            cells.append(f"{p['rss_mb']:.0f} MB | {p['queued']:,} | {p['blocks'] / 1e6:.2f} M")
        table.append(f"| {label} | " + " | ".join(cells) + " |")

    def rss_at(mode: str) -> dict[int, float]:
        return {p["calls"]: p["rss_mb"] for p in series[mode] if not p.get("flushed")}

    first, mid, last = cfg.memory_checkpoints
    tight, paced = rss_at("runs"), rss_at("paced")
    per_call = (tight[last] - tight[mid]) * 1024 * 1024 / (last - mid)
    paced_per_call = (paced[last] - paced[mid]) * 1024 * 1024 / (last - mid)
    res.figures.append(
        Figure(
            f"memory while recording {last:,} calls (default policies; runs of 100 calls, ended, "
            "as fast as the agent thread records; and one run of them all)",
            f"RSS bounded: growth {mid:,} -> {last:,} calls <= 50 B/call",
            f"{tight[0]:.0f} MB before; +{tight[first] - tight[0]:.0f} MB at {first:,}, "
            f"+{tight[mid] - tight[0]:.0f} MB at {mid:,}, +{tight[last] - tight[0]:.0f} MB at {last:,} "
            f"({per_call:.0f} B/call over the last {last - mid:,}; writer backlog "
            f"{series['runs'][-2]['queued']:,} rows). One run of {last:,} calls a second apart, writer kept up "
            f"(flush every 10k): +{paced[last] - paced[0]:.0f} MB at {last:,} "
            f"({paced_per_call:.0f} B/call)",
            # no per-call state or backlog kept, in many short runs or one long one
            per_call <= 50 and paced_per_call <= 50,
        )
    )
    note = (
        "RSS of a child process that warmed up litellm, opened a meter (default policies) and recorded "
        "gpt-4o calls; *runs*: runs of 100 calls over 50 tenants, each ended, recorded as fast as the "
        "thread can; *paced*: one run of all the calls, a second apart on the meter's clock (its 24-hour "
        "windows fill by 86,400 calls, then roll), with `meter.flush()` every 10,000 calls, so the "
        "writer keeps up. Writer backlog: rows queued but not yet committed (recording threads "
        "wait for the writer past 20,000). Live blocks: "
        "`sys.getallocatedblocks()`, the Python objects alive (the backlog's rows included)."
    )
    res.details.append(note + "\n\n" + "\n".join(table))


# ------------------------------------------------------------------------------------------------
# Orchestration


def environment() -> str:
    """One paragraph on the machine, the interpreter and the versions measured."""
    import litellm  # noqa: F401  (version below)

    try:
        from importlib.metadata import version

        versions = {pkg: version(pkg) for pkg in ("litellm", "opentelemetry-sdk", "agentmeter")}
    except Exception:
        versions = {}
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; load average at start {load[0]:.2f}"
    )


def prepare_dbs(cfg: Config, res: Results, log: Callable[[str], None]) -> tuple[str, str, int]:
    """The big DB (generated, or copied from ``--db``) and the 1k-call one: (big, small, big calls)."""
    small = str(cfg.workdir / "small.db")
    gen_db.generate(small, cfg.small_calls)
    big = str(cfg.workdir / "big.db")
    if cfg.big_db is not None:
        shutil.copyfile(cfg.big_db, big)
        with sqlite3.connect(big) as conn:
            big_calls = conn.execute("SELECT count(*) FROM agentmeter_calls").fetchone()[0]
        log(f"big DB: copied {cfg.big_db} ({big_calls:,} calls)")
        return big, small, big_calls
    log(f"generating a {cfg.big_calls:,}-call DB")
    stats = gen_db.generate(big, cfg.big_calls)
    res.ref(
        f"`gen_db.py` {cfg.big_calls:,} calls",
        f"{stats.seconds:.1f} s ({stats.describe().split(' in ')[0]})",
    )
    return big, small, stats.calls


def make_history_db(small: str, big: str, out: str) -> int:
    """The 1k-call DB's rows plus all of the big DB's, moved back before them: calls in ``out``.

    Every big-DB timestamp moves to 31 days before the small DB's oldest call, out of every window
    a shipped policy has (the longest is 24 hours); the small DB's rows follow (run ids prefixed,
    so no run is in both). The windows of a meter opened on it hold what they hold on the 1k-call
    DB: only the size of the history differs, which is what the decide target is about.
    """
    with sqlite3.connect(big) as source, sqlite3.connect(out) as target:
        source.backup(target)
    conn = sqlite3.connect(out, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("ATTACH DATABASE ? AS small", (small,))
    (small_oldest,) = conn.execute("SELECT min(ts) FROM small.agentmeter_calls").fetchone()
    (big_newest,) = conn.execute("SELECT max(ts) FROM main.agentmeter_calls").fetchone()
    shift = big_newest - small_oldest + 31 * 86_400
    tables = [
        name
        for (name,) in conn.execute(
            "SELECT name FROM small.sqlite_master WHERE type = 'table' AND name LIKE 'agentmeter_%'"
        )
    ]
    conn.execute("BEGIN")
    for table in tables:
        columns = [row[1] for row in conn.execute(f"PRAGMA main.table_info({table})")]
        times = [c for c in columns if c == "ts" or c.endswith("_at")]
        if times:
            moved = ", ".join(f"{c} = {c} - {shift!r}" for c in times)
            conn.execute(f"UPDATE main.{table} SET {moved}")
        theirs = {row[1] for row in conn.execute(f"PRAGMA small.table_info({table})")}
        copied = [c for c in columns if c in theirs and c != "id"]
        select = ", ".join("'small-' || run_id" if c == "run_id" else c for c in copied)
        conn.execute(
            f"INSERT OR IGNORE INTO main.{table} ({', '.join(copied)}) "
            f"SELECT {select} FROM small.{table}"
        )
    conn.execute("COMMIT")
    (calls,) = conn.execute("SELECT count(*) FROM main.agentmeter_calls").fetchone()
    conn.close()
    return int(calls)


def render(cfg: Config, res: Results, env: str, elapsed: float, profiles: bool) -> str:
    """The markdown report; with ``profiles``, cProfile of every figure that missed (run now)."""
    out = [
        f"## agentmeter benchmarks ({'quick' if cfg.quick else 'full'} pass)",
        "",
        env,
        "",
        "| figure | target | measured | result |",
        "| --- | --- | --- | --- |",
    ]
    out += [f"| {f.name} | {f.target} | {f.measured} | {verdict(f.passed)} |" for f in res.figures]
    out += [
        "",
        "### Reference figures (same machine, same run)",
        "",
        "| operation | measured | design.md |",
        "| --- | --- | --- |",
    ]
    out += [f"| {name} | {measured} | {design} |" for name, measured, design in res.references]
    out += ["", "### Details", ""]
    for block in res.details:
        out += [block, ""]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    out.append(f"Whole pass: {elapsed:.0f} s; load average at the end {load[0]:.2f}.")
    if profiles:
        missed = [f for f in res.figures if f.passed is False and f.profile is not None]
        for figure in missed:
            try:
                with quiet_logs():
                    text = figure.profile()  # type: ignore[misc]
            except Exception as exc:  # a broken profile must not lose the measured table
                text = f"profiling failed: {exc!r}"
            out += ["", f"### Profile: {figure.name}", "", "```", text, "```"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/run.py [--quick] [--only a,b] [--profile] [--db BIG.db] [--keep]``."""
    parser = argparse.ArgumentParser(description="agentmeter benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller N (a 200k-call big DB)")
    parser.add_argument(
        "--only", default="", help=f"comma-separated sections: {', '.join(SECTIONS)}"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile every figure that missed")
    parser.add_argument("--db", type=Path, default=None, help="reuse this big DB (from gen_db.py)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--child-memory", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoints", default="", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="runs", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_memory:
        memory_child(
            args.child_memory,
            [int(c) for c in args.checkpoints.split(",")],
            args.mode,
            args.workdir,
        )
        return 0
    only = {s.strip() for s in args.only.split(",") if s.strip()} or set(SECTIONS)
    unknown = only - set(SECTIONS)
    if unknown:
        parser.error(
            f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}"
        )

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="agentmeter-bench-"))
    cfg = Config(workdir, quick=args.quick, big_db=args.db, **(QUICK if args.quick else {}))
    res = Results()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    def section(key: str, title: str, bench: Callable[..., None], *args: Any) -> None:
        """Run one section; a failure (agentmeter is edited under us) is a row, not a crash."""
        if key not in only:
            return
        log(title)
        gc.collect()  # the garbage of one section must not be collected inside the next one's timing
        try:
            bench(cfg, res, *args)
        except Exception as exc:
            traceback.print_exc()
            res.figures.append(Figure(title, "", f"**failed**: {exc!r}", None))

    try:
        section("import", "import agentmeter", bench_import)
        section("cli", "agentmeter --help", bench_cli)
        log("warm-up: litellm and its price map")
        res.ref("first price lookup (imports litellm, reads its map)", f"{warm_up():.2f} s")
        env = environment()
        with quiet_logs():
            section("record", "run.record vs OpenTelemetry span", bench_record)
            section("throughput", "durable recording throughput", bench_throughput)
            section("completion", "run.completion vs litellm.completion", bench_completion)
            big, small, big_calls = "", "", cfg.big_calls
            if only & {"decide", "replay", "report"}:
                big, small, big_calls = prepare_dbs(cfg, res, log)
            section("report", "agentmeter report", bench_report, big, big_calls)
            section("replay", "what-if replay", bench_replay, big, big_calls)
            section(
                "decide", "run.decide on small and big DBs", bench_decide, small, big, big_calls
            )
            section("memory", "memory while recording", bench_memory)
        log("profiling misses" if args.profile else "done")
        print(render(cfg, res, env, time.perf_counter() - started, args.profile))
    finally:
        if args.keep:
            print(f"\n(temporary files kept in {workdir})", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
