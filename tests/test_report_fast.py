"""A large unfiltered report is read on two connections (sums by UPSERT, values in id blocks);
what it gives must be what one GROUP BY pass gives, ties and odd keys included."""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmeter import report as reports
from agentmeter.migrations import migrate
from agentmeter.usage import BUCKETS

DAY = 86_400.0
# Keys that compare equal in SQLite (1, 1.0 and true; 0.0 and -0.0) make one group labelled by
# its first call; '1' is another group. Latencies tie across signs of zero.
TAGS = [None, "t1", 1, 1.0, True, "1", 0.0, -0.0, 7]
LATENCIES = [None, 0.0, -0.0, 0.5, 812.25, 812.25, 1e300, -3.0]
calls = st.fixed_dictionaries(
    {
        "model": st.sampled_from([None, "a", "b", "é-model"]),
        "tenant": st.sampled_from(TAGS),
        "ts": st.floats(1_800_000_000.0, 1_800_000_000.0 + 3 * DAY),
        "status": st.sampled_from(["ok", "ok", "ok", "error"]),
        "tokens": st.one_of(st.none(), st.integers(0, 10**9)),
        "cost_nano_usd": st.one_of(st.none(), st.integers(0, 10**12)),
        "latency_ms": st.one_of(st.sampled_from(LATENCIES), st.floats(0, 1e6)),
        "ttft_ms": st.sampled_from(LATENCIES),
        "cache_hit": st.integers(0, 1),
        "saved_nano_usd": st.one_of(st.none(), st.integers(0, 10**9)),
    }
)


def write_calls(path: Path, rows: list[dict]) -> None:
    conn = sqlite3.connect(path)
    migrate(conn)
    with conn:
        conn.executemany(
            "INSERT INTO agentmeter_calls (run_id, step, ts, model, usage_status, cost_status, "
            "status, tags, cost_nano_usd, latency_ms, ttft_ms, cache_hit, saved_nano_usd, "
            f"{', '.join(BUCKETS)}) VALUES ('r', 1, ?, ?, 'ok', 'ok', ?, ?, ?, ?, ?, ?, ?"
            f"{', ?' * len(BUCKETS)})",
            [
                (
                    r["ts"],
                    r["model"],
                    r["status"],
                    json.dumps({} if r["tenant"] is None else {"tenant": r["tenant"]}),
                    r["cost_nano_usd"],
                    r["latency_ms"],
                    r["ttft_ms"],
                    r["cache_hit"],
                    r["saved_nano_usd"],
                    *[
                        None if r["tokens"] is None else r["tokens"] + i
                        for i in range(len(BUCKETS))
                    ],
                )
                for r in rows
            ],
        )
    conn.close()


def report(path: Path, by: str, *, parallel: bool, sums_chunk: int = 3, block: int = 2) -> str:
    """``reports.report`` as JSON text (so -0.0 and 0.0 differ), in parallel or in one pass."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with (
            mock.patch.object(reports, "_SPLIT_FROM", 1 if parallel else 10**12),
            mock.patch.object(reports.os, "cpu_count", return_value=2),
            mock.patch.object(reports, "_SUMS_CHUNK", sums_chunk),
            mock.patch.object(reports, "_VALUES_BLOCK", block),
        ):
            groups = reports.report(conn, by=by)
    finally:
        conn.close()
    return json.dumps(groups, default=str)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(calls, min_size=1, max_size=40),
    sums_chunk=st.integers(1, 50),
    block=st.integers(1, 50),
)
@pytest.mark.parametrize("by", ["model", "day", "tag:tenant"])
def test_the_parallel_read_equals_one_pass(tmp_path_factory, by, rows, sums_chunk, block):
    path = tmp_path_factory.mktemp("db") / "recorder.db"
    write_calls(path, rows)
    one_pass = report(path, by, parallel=False)
    assert report(path, by, parallel=True, sums_chunk=sums_chunk, block=block) == one_pass


def test_a_group_is_labelled_by_its_first_call(tmp_path):
    base = {
        "model": "a",
        "ts": 1_800_000_000.0,
        "status": "ok",
        "tokens": 1,
        "cost_nano_usd": 1,
        "latency_ms": 1.0,
        "ttft_ms": None,
        "cache_hit": 0,
        "saved_nano_usd": None,
    }
    path = tmp_path / "recorder.db"
    write_calls(path, [{**base, "tenant": tenant} for tenant in (1.0, 1, True, 1, 1.0)])
    # The second worker's ids come first in its chunks (sums chunk 1, one values block).
    groups = json.loads(report(path, "tag:tenant", parallel=True, sums_chunk=1, block=10))
    assert [(g["group"], g["calls"]) for g in groups] == [(1.0, 5)]
    assert json.dumps(groups) == report(path, "tag:tenant", parallel=False)


def test_a_sum_past_sqlites_integers_fails_as_one_pass_does(tmp_path):
    base = {
        "model": "a",
        "tenant": None,
        "ts": 1_800_000_000.0,
        "status": "ok",
        "tokens": 1,
        "latency_ms": 1.0,
        "ttft_ms": None,
        "cache_hit": 0,
        "saved_nano_usd": None,
    }
    path = tmp_path / "recorder.db"
    write_calls(path, [{**base, "cost_nano_usd": 2**62} for _ in range(3)])
    with pytest.raises(sqlite3.OperationalError, match="integer overflow"):
        report(path, "model", parallel=False)
    with pytest.raises(sqlite3.OperationalError, match="integer overflow"):
        report(path, "model", parallel=True)


def test_a_worker_that_fails_leaves_the_report_to_one_pass(tmp_path):
    rows = [
        {
            "model": model,
            "tenant": None,
            "ts": 1_800_000_000.0 + i,
            "status": "ok",
            "tokens": i,
            "cost_nano_usd": i,
            "latency_ms": float(i),
            "ttft_ms": None,
            "cache_hit": 0,
            "saved_nano_usd": None,
        }
        for i, model in enumerate(["a", "b"] * 10)
    ]
    path = tmp_path / "recorder.db"
    write_calls(path, rows)
    one_pass = report(path, "model", parallel=False)
    with mock.patch.object(reports._Plan, "values", return_value="SELECT no_such_column"):
        assert report(path, "model", parallel=True) == one_pass


def test_each_worker_takes_its_own_kind_first_and_sums_in_id_order():
    tasks = deque([("sums", 1, 2), ("sums", 3, 4), ("values", 1, 2), ("values", 3, 4)])
    assert reports._next_task(tasks, values_first=True) == ("values", 3, 4)
    assert reports._next_task(tasks, values_first=False) == ("sums", 1, 2)
    assert reports._next_task(tasks, values_first=True) == ("values", 1, 2)
    # No values left: the values worker takes sums too, from the left (in id order).
    assert reports._next_task(tasks, values_first=True) == ("sums", 3, 4)
    assert reports._next_task(tasks, values_first=False) is None
    # The sums worker never takes values (their callbacks would contend for the GIL).
    assert reports._next_task(deque([("values", 1, 2)]), values_first=False) is None
