"""A large report is read as id ranges at once; what it prints must be what one pass gives."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmeter import report as reports
from agentmeter.migrations import migrate
from agentmeter.usage import BUCKETS
from agentmeter.windows import quantile_of_sorted

DAY = 86_400.0
# Few distinct values, so that groups and quantiles see ties; None is a NULL column.
latencies = st.one_of(st.none(), st.sampled_from([0.5, 812.25, 812.25, 1e4]), st.floats(0, 1e6))
calls = st.fixed_dictionaries(
    {
        "model": st.sampled_from([None, "a", "b", "é-model"]),
        "tenant": st.sampled_from([None, "t1", 7, True, "7"]),
        "ts": st.floats(1_800_000_000.0, 1_800_000_000.0 + 3 * DAY),
        "status": st.sampled_from(["ok", "ok", "ok", "error"]),
        "tokens": st.integers(0, 10**9),
        "cost_nano_usd": st.one_of(st.none(), st.integers(0, 10**12)),
        "latency_ms": latencies,
        "ttft_ms": latencies,
        "cache_hit": st.integers(0, 1),
    }
)


def write_calls(path: Path, rows: list[dict]) -> None:
    conn = sqlite3.connect(path)
    migrate(conn)
    with conn:
        conn.executemany(
            "INSERT INTO agentmeter_calls (run_id, step, ts, model, usage_status, cost_status, "
            f"status, tags, cost_nano_usd, latency_ms, ttft_ms, cache_hit, {', '.join(BUCKETS)}) "
            f"VALUES ('r', 1, ?, ?, 'ok', 'ok', ?, ?, ?, ?, ?, ?{', ?' * len(BUCKETS)})",
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
                    *[r["tokens"] + i for i in range(len(BUCKETS))],
                )
                for r in rows
            ],
        )
    conn.close()


def report(path: Path, by: str, *, readers: int) -> list[dict]:
    """``reports.report`` on a read-only connection, read in ``readers`` ranges (1: one pass)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with (
            mock.patch.object(reports, "_SPLIT_FROM", 1 if readers > 1 else 10**12),
            mock.patch.object(reports.os, "cpu_count", return_value=readers),
        ):
            return reports.report(conn, by=by)
    finally:
        conn.close()


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(calls, min_size=1, max_size=40), readers=st.integers(2, 4))
@pytest.mark.parametrize("by", ["model", "day", "hour", "tag:tenant"])
def test_a_report_read_in_ranges_equals_one_pass(by, rows, readers):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recorder.db"
        write_calls(path, rows)
        assert report(path, by, readers=readers) == report(path, by, readers=1)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(calls, min_size=1, max_size=40))
def test_report_quantiles_are_exact_over_successful_calls(rows):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recorder.db"
        write_calls(path, rows)
        groups = {g["group"]: g for g in report(path, "model", readers=2)}
    for model, group in groups.items():
        ok = [r for r in rows if r["model"] == model and r["status"] == "ok"]
        for metric in ("latency_ms", "ttft_ms"):
            values = sorted(r[metric] for r in ok if r[metric] is not None)
            expected = [quantile_of_sorted(values, q) for q in (0.5, 0.9, 0.99)]
            name = metric.removesuffix("_ms")
            assert [group[f"p{p}_{name}_ms"] for p in (50, 90, 99)] == expected


def test_a_range_whose_connection_fails_is_read_on_the_callers(tmp_path):
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
        }
        for i, model in enumerate(["a", "b"] * 10)
    ]
    path = tmp_path / "recorder.db"
    write_calls(path, rows)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with (
            mock.patch.object(reports, "_SPLIT_FROM", 1),
            mock.patch.object(reports.os, "cpu_count", return_value=2),
            mock.patch.object(reports.sqlite3, "connect", side_effect=sqlite3.OperationalError),
        ):
            ranged = reports.report(conn, by="model")
    finally:
        conn.close()
    assert ranged == report(path, "model", readers=1)
    assert [g["calls"] for g in ranged] == [10, 10]
