"""The inspection commands (runs, show, report, tail, export) and the queries behind them."""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
import subprocess
import sys
import textwrap

import numpy
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import agentmeter
from agentmeter import query
from agentmeter import report as reports
from agentmeter.cli import cli
from agentmeter.clock import FakeClock
from agentmeter.pricing import PriceTable
from agentmeter.recorder import DECISION_COLUMNS
from agentmeter.windows import quantile_of_sorted

START = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
PRICES = {
    "test-big": {"input": "$2.50", "output": "$10", "cache_read": "$1.25"},
    "test-small": {"input": "$0.15", "output": "$0.60"},
}
BIG_LATENCIES = [
    1200.0,
    950.5,
    3020.25,
    800.0,
    15000.0,
    2200.0,
    4100.0,
    1750.0,
    990.0,
    6100.5,
    2500.0,
    3333.3,
]
SMALL_LATENCIES = [400.0, 410.5, 388.25, 1200.0, 512.0]


def make_meter(db: str, clock: FakeClock) -> agentmeter.Meter:
    """A meter on ``db`` whose prices are the two test models only (litellm's map is not read)."""
    meter = agentmeter.Meter(db=db, clock=clock)
    meter.prices = PriceTable(PRICES, model_cost={})
    return meter


def add_decision(
    db: str, *, run_id: str, step: int, ts: float, policy: str, action: str, detail: dict
) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            f"INSERT INTO agentmeter_decisions ({', '.join(DECISION_COLUMNS)}) VALUES ({', '.join('?' * len(DECISION_COLUMNS))})",
            (
                run_id,
                step,
                ts,
                policy,
                "latency_ms",
                9000.0,
                8000.0,
                action,
                f"run {run_id}",
                json.dumps(detail),
            ),
        )
    conn.close()


class Recorded:
    """What the ``recorded`` fixture wrote, to compute expected values by hand."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.records: dict[str, list] = {"alpha": [], "beta": []}
        self.run_ids: dict[str, str] = {}


@pytest.fixture
def recorded(tmp_path) -> Recorded:
    """Two runs: alpha (acme; 12 priced calls, 1 error, 2 unpriced; 1 decision), beta (globex; halted)."""
    rec = Recorded(str(tmp_path / "agent.db"))
    clock = FakeClock(START)
    meter = make_meter(rec.db, clock)
    with meter.run(
        "alpha", tags={"tenant": "acme", "feature": "chat"}, run_id="a1b2c3d4e5f60001"
    ) as run:
        rec.run_ids["alpha"] = run.run_id
        for i, latency in enumerate(BIG_LATENCIES):
            clock.advance(10)
            rec.records["alpha"].append(
                run.record(
                    model="test-big",
                    provider="bigco",
                    usage=agentmeter.Usage(
                        input_tokens=1000 + 100 * i,
                        output_tokens=200 + i,
                        cache_read_tokens=500 * i,
                    ),
                    latency_ms=latency,
                    ttft_ms=latency / 10 if i % 2 == 0 else None,
                )
            )
        clock.advance(10)
        rec.records["alpha"].append(
            run.record(
                model="test-big",
                provider="bigco",
                latency_ms=300.0,
                status="error",
                error_type="RateLimitError",
            )
        )
        for _ in range(2):
            clock.advance(10)
            rec.records["alpha"].append(
                run.record(
                    model="mystery-model",
                    provider="bigco",
                    usage=agentmeter.Usage(input_tokens=50, output_tokens=5),
                    latency_ms=700.0,
                )
            )
        clock.advance(5)
    clock.advance(3600)
    with meter.run("beta", tags={"tenant": "globex"}, run_id="b0000000000000001") as run:
        rec.run_ids["beta"] = run.run_id
        for latency in SMALL_LATENCIES:
            clock.advance(20)
            rec.records["beta"].append(
                run.record(
                    model="test-small",
                    provider="smallco",
                    usage=agentmeter.Usage(input_tokens=2000, output_tokens=100),
                    latency_ms=latency,
                )
            )
        run.status = "halted"
    meter.close()
    # alpha's 6th call finished at START + 60; the decision before its 7th call, at START + 65.
    add_decision(
        rec.db,
        run_id=rec.run_ids["alpha"],
        step=7,
        ts=START + 65,
        policy="slow-tail",
        action="downgrade",
        detail={
            "transition": "fire",
            "reason": "slow-tail: latency_ms p90 = 9.00s > 8.00s",
            "stat": "p90",
        },
    )
    return rec


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="agentmeter", env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def invoke_json(*args: str):
    code, out, err = invoke(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def priced(records) -> list:
    return [r for r in records if r.cost_nano_usd is not None]


# -- runs ------------------------------------------------------------------------------------------
def test_runs_json_has_the_documented_keys_and_exact_values(recorded):
    runs = invoke_json("runs", "--db", recorded.db)
    assert [r["name"] for r in runs] == ["beta", "alpha"]  # newest first
    beta, alpha = runs
    assert all(tuple(r) == query.RUN_KEYS for r in runs)
    alpha_records = recorded.records["alpha"]
    nano = sum(r.cost_nano_usd for r in priced(alpha_records))
    assert nano == sum(
        (1000 + 100 * i) * 2500 + (200 + i) * 10_000 + 500 * i * 1250 for i in range(12)
    )
    assert alpha["cost_nano_usd"] == nano
    assert nano == 112_410_000 and alpha["cost_usd"] == "0.112410000"  # exact, nano-USD digits
    assert alpha["unknown_cost_calls"] == 2
    assert (alpha["calls"], alpha["errors"], alpha["decisions"]) == (15, 1, 1)
    assert alpha["input_tokens"] == sum(1000 + 100 * i for i in range(12)) + 100
    assert alpha["cache_read_tokens"] == sum(500 * i for i in range(12))
    ok_latencies = [*BIG_LATENCIES, 700.0, 700.0]
    assert alpha["p90_latency_ms"] == quantile_of_sorted(sorted(ok_latencies), 0.9)
    assert alpha["p90_latency_ms"] == pytest.approx(numpy.percentile(ok_latencies, 90), rel=1e-12)
    assert alpha["tags"] == {"feature": "chat", "tenant": "acme"}
    assert (alpha["status"], alpha["started_at"], alpha["duration_s"]) == ("ok", START, 155.0)
    assert beta["status"] == "halted" and beta["cost_nano_usd"] == 5 * (2000 * 150 + 100 * 600)
    assert beta["unknown_cost_calls"] == 0 and beta["decisions"] == 0


def test_runs_table_shows_unknown_costs_and_right_aligned_numbers(recorded):
    code, out, _ = invoke("runs", "--db", recorded.db)
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split("┃")[1:-1] == [
        " run               ",
        " name  ",
        " status ",
        " started (UTC)       ",
        " duration ",
        " calls ",
        " errors ",
        " tokens ",
        "                 cost ",
        "   p90 ",
        " decisions ",
    ]
    assert lines[3] == (
        "│ b0000000000000001 │ beta  │ halted │ 2027-01-15 09:02:35 │   100.0s │     5 │      0 │ "
        "10,500 │            $0.001800 │ 925ms │         0 │"
    )
    assert lines[4].startswith(
        "│ a1b2c3d4e5f60001  │ alpha │ ok     │ 2027-01-15 08:00:00 │   155.0s │    15 │      1 │"
    )
    assert "(+2 unknown) │" in lines[4]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (("--tag", "tenant=acme"), ["alpha"]),
        (("--tag", "tenant=acme", "--tag", "feature=chat"), ["alpha"]),
        (("--tag", "tenant=acme", "--tag", "feature=code"), []),
        (("--tag", "tenant=x' OR 1=1 --"), []),
        (("--tag", 'tenant=acme" OR "1"="1'), []),
        (("--tag", "tenant=%"), []),
        (("--status", "halted"), ["beta"]),
        (("--status", "halted", "--status", "ok"), ["beta", "alpha"]),
        (("--status", "ok' OR 'a'='a"), []),
        (("--limit", "1"), ["beta"]),
    ],
    ids=[
        "tag",
        "two-tags",
        "tag-mismatch",
        "sql-quote",
        "sql-double-quote",
        "like-wildcard",
        "status",
        "statuses",
        "status-sql",
        "limit",
    ],
)
def test_runs_filters_match_values_and_sql_metacharacters_are_inert(recorded, args, names):
    assert [r["name"] for r in invoke_json("runs", "--db", recorded.db, *args)] == names


@pytest.mark.parametrize(
    "name",
    ["x' OR 1", 'a"b', "$.x", "a b", "t" * 65],
    ids=["quote", "dquote", "path", "space", "too-long"],
)
def test_an_invalid_tag_name_is_one_line_and_exit_1(recorded, name):
    code, out, err = invoke("runs", "--db", recorded.db, "--tag", f"{name}=acme")
    assert (code, out) == (1, "")
    assert (
        err
        == f"Error: tag name {name!r} is not valid: use letters, digits, '_', '.', ':' or '-' (at most 64 characters), for example tenant or feature\n"
    )


@pytest.mark.parametrize("tag", ["=acme", "tenant"], ids=["no-name", "no-value"])
def test_a_malformed_tag_option_is_a_usage_error(recorded, tag):
    code, out, err = invoke("runs", "--db", recorded.db, "--tag", tag)
    assert (code, out) == (2, "")
    assert (
        err.splitlines()[-1]
        == f"Error: Invalid value for '--tag': expected NAME=VALUE such as tenant=acme, got {tag!r}"
    )


def test_runs_since_keeps_runs_that_started_or_ended_in_the_window(recorded):
    conn = sqlite3.connect(recorded.db)
    now = START + 3900  # beta started 3,755 s after START; alpha ended at 155 s
    assert [r["name"] for r in query.list_runs(conn, since_s=600, now=now)] == ["beta"]
    assert [r["name"] for r in query.list_runs(conn, since_s=3800, now=now)] == ["beta", "alpha"]
    conn.close()


def test_runs_since_on_the_command_line_reads_the_real_clock(tmp_path):
    import time

    db = str(tmp_path / "now.db")
    clock = FakeClock(time.time() - 3 * 86400)
    meter = make_meter(db, clock)
    with meter.run("old"):
        pass
    clock.set(time.time() - 3600)
    with meter.run("recent"):
        pass
    meter.close()
    assert [r["name"] for r in invoke_json("runs", "--db", db, "--since", "24h")] == ["recent"]
    assert [r["name"] for r in invoke_json("runs", "--db", db, "--since", "7d")] == [
        "recent",
        "old",
    ]


# -- show ------------------------------------------------------------------------------------------
def test_show_interleaves_calls_and_decisions_in_time_order(recorded):
    shown = invoke_json("show", "a1b2", "--db", recorded.db)
    assert shown["run"]["run_id"] == recorded.run_ids["alpha"]
    timeline = shown["timeline"]
    assert [e["kind"] for e in timeline[5:8]] == ["call", "decision", "call"]
    assert [e["ts"] for e in timeline] == sorted(e["ts"] for e in timeline)
    decision = timeline[6]
    assert tuple(decision) == query.DECISION_EVENT_KEYS
    assert (decision["policy"], decision["action"], decision["value"], decision["threshold"]) == (
        "slow-tail",
        "downgrade",
        9000.0,
        8000.0,
    )
    assert (
        decision["reason"] == "slow-tail: latency_ms p90 = 9.00s > 8.00s"
        and decision["transition"] == "fire"
    )
    calls = [e for e in timeline if e["kind"] == "call"]
    assert all(tuple(e) == query.CALL_EVENT_KEYS for e in calls)
    assert [e["step"] for e in calls] == list(range(1, 16))
    first = recorded.records["alpha"][0]
    assert calls[0]["cost_nano_usd"] == first.cost_nano_usd and calls[0]["cost_usd"] == format(
        first.cost, "f"
    )
    assert calls[0]["ttft_ms"] == 120.0 and calls[1]["ttft_ms"] is None
    assert calls[12]["status"] == "error" and calls[12]["error_type"] == "RateLimitError"
    assert (
        calls[13]["cost_nano_usd"] is None
        and calls[13]["cost_usd"] is None
        and calls[13]["cost_status"] == "unknown_model"
    )


def test_show_table_lists_every_event(recorded):
    code, out, _ = invoke("show", recorded.run_ids["beta"], "--db", recorded.db)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "run b0000000000000001  beta  status halted  tags tenant=globex"
    assert lines[1] == (
        "started 2027-01-15 09:02:35 UTC  ended 2027-01-15 09:04:15  5 calls, 0 errors, 0 decisions, cost $0.001800"
    )
    assert (
        lines[5]
        == "│  +20.0s │    1 │ call  │ test-small     │ 2,000 │          0 │    100 │ $0.000360 │    - │   400ms │ ok              │"
    )
    assert len(lines) == 2 + 3 + 5 + 1


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ("zzz", "Error: no recorded run has an id starting with 'zzz' (see `agentmeter runs`)"),
        ("", "Error: a run id (or a unique prefix of one) is required"),
    ],
    ids=["unknown", "empty"],
)
def test_show_an_unknown_run_is_one_line_and_exit_1(recorded, run, message):
    assert invoke("show", run, "--db", recorded.db) == (1, "", message + "\n")


@pytest.mark.parametrize("name", ["last", "latest"])
def test_show_last_is_the_newest_run(recorded, name):
    assert invoke_json("show", name, "--db", recorded.db)["run"]["name"] == "beta"


def test_show_an_ambiguous_prefix_names_the_matches(recorded):
    meter = make_meter(recorded.db, FakeClock(START + 7200))
    with meter.run("beta-again", run_id="b0000000000000002"):
        pass
    meter.close()
    assert invoke("show", "b000", "--db", recorded.db) == (
        1,
        "",
        "Error: run id prefix 'b000' is ambiguous: it matches b0000000000000002, b0000000000000001; "
        "give more characters\n",
    )
    assert (
        invoke_json("show", "b0000000000000002", "--db", recorded.db)["run"]["name"] == "beta-again"
    )


# -- report ----------------------------------------------------------------------------------------
def test_report_by_model_is_exact(recorded):
    rows = {r["group"]: r for r in invoke_json("report", "--db", recorded.db)}
    assert list(rows) == ["test-big", "test-small", "mystery-model"]  # by cost, highest first
    big = rows["test-big"]
    assert tuple(big) == reports.REPORT_KEYS
    assert big["cost_nano_usd"] == sum(r.cost_nano_usd for r in priced(recorded.records["alpha"]))
    assert (big["calls"], big["errors"], big["error_rate"]) == (13, 1, 1 / 13)
    assert big["unknown_cost_calls"] == 0  # the failed call has no usage: nothing was billed
    prompt = big["input_tokens"] + big["cache_read_tokens"]
    assert big["cache_hit_ratio"] == big["cache_read_tokens"] / prompt
    for q, key in ((0.5, "p50_latency_ms"), (0.9, "p90_latency_ms"), (0.99, "p99_latency_ms")):
        assert big[key] == quantile_of_sorted(sorted(BIG_LATENCIES), q)
        assert big[key] == pytest.approx(numpy.percentile(BIG_LATENCIES, q * 100), rel=1e-12)
    ttfts = [lat / 10 for lat in BIG_LATENCIES[::2]]
    assert big["p90_ttft_ms"] == quantile_of_sorted(sorted(ttfts), 0.9)
    mystery = rows["mystery-model"]
    assert (mystery["cost_nano_usd"], mystery["cost_usd"], mystery["unknown_cost_calls"]) == (
        None,
        None,
        2,
    )
    assert mystery["p50_ttft_ms"] is None and mystery["cache_hit_ratio"] == 0.0


def test_report_table_shows_unknown_cost_as_unknown(recorded):
    code, out, _ = invoke("report", "--db", recorded.db)
    assert code == 0
    lines = out.splitlines()
    assert [cell.strip() for cell in lines[1].split("┃")[1:-1]] == [
        "model", "calls", "errors", "input", "cache read", "output", "cache hit", "cost",
        "p50", "p90", "p99", "ttft p50", "ttft p90", "ttft p99",
    ]  # fmt: skip
    mystery = [cell.strip() for cell in lines[5].split("│")[1:-1]]
    assert mystery[0] == "mystery-model" and mystery[7] == "unknown"
    total = [cell.strip() for cell in lines[7].split("│")[1:-1]]
    assert total[:3] == ["total", "20", "5.0%"] and total[7].endswith("(+2 unknown)")
    big = [cell.strip() for cell in lines[3].split("│")[1:-1]]
    assert big[:3] == ["test-big", "13", "7.7%"] and big[8:11] == ["2.35s", "5.90s", "14.02s"]
    assert lines[3].split("│")[2] == "    13 "  # numbers right-aligned


@pytest.mark.parametrize(
    ("by", "groups"),
    [
        ("provider", ["bigco", "smallco"]),
        ("requested_model", ["test-big", "test-small", "mystery-model"]),
        ("tag:tenant", ["acme", "globex"]),
        ("tag:feature", ["chat", None]),
        ("tag:missing", [None]),
        ("day", ["2027-01-15"]),
        ("hour", ["2027-01-15T08:00Z", "2027-01-15T09:00Z"]),
    ],
    ids=["provider", "requested_model", "tag", "tag-partial", "tag-missing", "day", "hour"],
)
def test_report_groups(recorded, by, groups):
    rows = invoke_json("report", "--db", recorded.db, "--by", by)
    assert [r["group"] for r in rows] == groups
    assert sum(r["calls"] for r in rows) == 20


def test_report_of_one_run_and_of_a_window(recorded):
    rows = invoke_json("report", "--db", recorded.db, "--run", "b000")
    assert [(r["group"], r["calls"]) for r in rows] == [("test-small", 5)]
    assert rows[0]["p50_latency_ms"] == 410.5
    conn = sqlite3.connect(recorded.db)
    recent = reports.report(conn, since_s=60, now=START + 3870)  # beta's last 3 calls
    assert [(r["group"], r["calls"]) for r in recent] == [("test-small", 3)]
    conn.close()


@pytest.mark.parametrize(
    "by",
    ["colour", "tag:", "tag:a'b", "model; DROP TABLE agentmeter_calls"],
    ids=["unknown", "no-name", "quote", "sql"],
)
def test_report_refuses_an_unknown_grouping_in_one_line(recorded, by):
    code, out, err = invoke("report", "--db", recorded.db, "--by", by)
    assert (code, out) == (1, "") and len(err.splitlines()) == 1 and err.startswith("Error: ")


@pytest.mark.parametrize("n", [1, 2, 7, 100, 25_000], ids=["1", "2", "7", "100", "25k-numpy"])
def test_exact_quantiles_equal_the_sorted_reference(n):
    rng = random.Random(n)
    values = [rng.lognormvariate(7, 1.5) for _ in range(n)]
    values += values[: n // 10]  # ties
    expected = [quantile_of_sorted(sorted(values), q) for q in (0.5, 0.9, 0.99)]
    assert query.exact_quantiles(values) == expected
    assert expected == pytest.approx([numpy.percentile(values, p) for p in (50, 90, 99)], rel=1e-12)


@pytest.mark.parametrize("by", ["model", "model_version"])
def test_report_reads_a_recorder_from_before_the_response_cache(tmp_path, by):
    """Read-only, an m001-m003 recorder is not migrated: it reports no cache hits, not an error."""
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

    from agentmeter.migrations import MIGRATION_SET, STEPS

    old = Migrations(MIGRATION_SET)
    for step in STEPS[:3]:
        old()(step)
    db = str(tmp_path / "old.db")
    conn = sqlite3.connect(db)
    old.apply(Database(conn))
    with conn:
        conn.execute(
            "INSERT INTO agentmeter_calls (run_id, step, ts, model, input_tokens, output_tokens, "
            "usage_status, cost_nano_usd, cost_status, latency_ms, status) "
            "VALUES ('r', 1, ?, 'test-big', 10, 5, 'ok', 75, 'ok', 812.5, 'ok')",
            (START,),
        )
    conn.close()
    (group,) = invoke_json("report", "--db", db, "--by", by)
    assert (group["group"], group["calls"], group["cost_nano_usd"]) == ("test-big", 1, 75)
    assert (group["response_cache_hits"], group["saved_nano_usd"], group["p50_latency_ms"]) == (
        0,
        0,
        812.5,
    )


# -- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [["runs"], ["show", "abc"], ["report"], ["tail", "--once"], ["export"]],
    ids=["runs", "show", "report", "tail", "export"],
)
def test_a_missing_database_is_one_line_and_exit_1(tmp_path, args):
    missing = tmp_path / "nope.db"
    assert invoke(*args, "--db", str(missing)) == (
        1,
        "",
        f"Error: no flight recorder at {missing} (pass --db or set AGENTMETER_DB)\n",
    )
    assert not missing.exists()


def test_a_file_that_is_not_a_recorder_is_one_line_and_exit_1(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a database at all " * 100)
    code, out, err = invoke("report", "--db", str(bogus))
    assert (code, out) == (1, "") and len(err.splitlines()) == 1
    assert err.startswith(f"Error: {bogus} is not an agentmeter flight recorder")


def test_the_database_comes_from_agentmeter_db(recorded):
    result = CliRunner().invoke(cli, ["runs", "--json"], env={"AGENTMETER_DB": recorded.db})
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 2


# -- export ------------------------------------------------------------------------------------------
def db_rows(db: str, table: str) -> tuple[list[str], list[tuple]]:
    conn = sqlite3.connect(db)
    order = "started_at, run_id" if table == "runs" else "id"
    cursor = conn.execute(f"SELECT * FROM agentmeter_{table} ORDER BY {order}")
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    conn.close()
    return columns, rows


@pytest.mark.parametrize("table", ["calls", "decisions", "runs"])
def test_export_jsonl_round_trips(recorded, table):
    code, out, _ = invoke("export", "--db", recorded.db, "--table", table)
    assert code == 0
    columns, rows = db_rows(recorded.db, table)
    exported = [json.loads(line) for line in out.splitlines()]
    assert len(exported) == len(rows) > 0
    for record, row in zip(exported, rows, strict=True):
        assert list(record) == columns
        for column, value in zip(columns, row, strict=True):
            want = json.loads(value) if column in ("tags", "detail") else value
            assert record[column] == want, column


@pytest.mark.parametrize("table", ["calls", "decisions", "runs"])
def test_export_csv_round_trips(recorded, table):
    code, out, _ = invoke("export", "--db", recorded.db, "--table", table, "--format", "csv")
    assert code == 0
    columns, rows = db_rows(recorded.db, table)
    reader = csv.reader(io.StringIO(out))
    assert next(reader) == columns
    for line, row in zip(reader, rows, strict=True):
        assert line == [
            "" if v is None else repr(v) if isinstance(v, float) else str(v) for v in row
        ]
        for text, value in zip(line, row, strict=True):
            if isinstance(value, float):
                assert float(text) == value  # exact
            elif isinstance(value, int):
                assert int(text) == value


def test_export_of_one_run_to_a_file(recorded, tmp_path):
    target = tmp_path / "beta.jsonl"
    code, out, _ = invoke("export", "--db", recorded.db, "--run", "b0", "-o", str(target))
    assert (code, out) == (0, "")
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert {r["run_id"] for r in rows} == {recorded.run_ids["beta"]}


class IterationOnly:
    """A cursor that can only be iterated: whoever reads it cannot hold every row at once."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.description = cursor.description
        self._cursor = cursor

    def __iter__(self):
        return iter(self._cursor)


class StreamingConnection:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql, params=()):
        return IterationOnly(self._conn.execute(sql, params))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_streams_rows_from_the_cursor(recorded, fmt):
    conn = sqlite3.connect(recorded.db)
    out = io.StringIO()
    assert query.export(StreamingConnection(conn), out, fmt=fmt) == 20  # type: ignore[arg-type]
    assert len(out.getvalue().splitlines()) == 20 + (fmt == "csv")
    conn.close()


# -- tail --------------------------------------------------------------------------------------------
def test_tail_once_sees_rows_written_by_another_meter(recorded):
    code, out, _ = invoke("tail", "--once", "-n", "3", "--json", "--db", recorded.db)
    assert code == 0
    assert [(e["kind"], e["step"]) for e in map(json.loads, out.splitlines())] == [
        ("call", 3),
        ("call", 4),
        ("call", 5),
    ]
    clock = FakeClock(START + 7200)
    other = make_meter(recorded.db, clock)
    with other.run("gamma", run_id="c0ffee") as run:
        clock.advance(1)
        run.record(
            model="test-small",
            provider="smallco",
            usage=agentmeter.Usage(input_tokens=10, output_tokens=1),
            latency_ms=250.0,
        )
    other.close()
    code, out, _ = invoke("tail", "--once", "-n", "1", "--db", recorded.db)
    assert code == 0
    assert (
        out
        == "2027-01-15 10:00:01  c0ffee  #1  call test-small  in 10 cached 0 out 1  $0.000002  250ms  ok\n"
    )


class WritingClock(FakeClock):
    """A fake clock whose sleep lets another meter record a call: a writer between two polls."""

    def __init__(self, start: float, write) -> None:
        super().__init__(start)
        self.write = write

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.write()


def test_tail_follows_calls_and_decisions_as_they_are_recorded(recorded):
    meter_clock = FakeClock(START + 9000)
    writer = make_meter(recorded.db, meter_clock)
    run = writer.run("delta", run_id="d0d0")
    polls = []

    def write() -> None:
        meter_clock.advance(1)
        run.record(
            model="test-small",
            provider="smallco",
            usage=agentmeter.Usage(input_tokens=1, output_tokens=1),
            latency_ms=5.0,
        )
        assert writer.flush()

    def factory() -> sqlite3.Connection:
        return sqlite3.connect(f"file:{recorded.db}?mode=ro", uri=True)

    def stop() -> bool:
        polls.append(1)
        return len(polls) == 3

    clock = WritingClock(START, write)
    seen = list(query.tail(factory, poll_s=2.0, stop=stop, clock=clock))
    writer.close()
    assert [(e["kind"], e["run_id"], e["step"]) for e in seen] == [
        ("call", "d0d0", 1),
        ("call", "d0d0", 2),
    ]
    assert clock.slept == [2.0, 2.0]
    everything = list(query.tail(factory, since_id=(0, 0), stop=lambda: True))
    assert [e["kind"] for e in everything].count("call") == 22
    assert [e["kind"] for e in everything].count("decision") == 1


# -- imports -----------------------------------------------------------------------------------------
def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_agentmeter_help_does_not_import_litellm():
    out = run_python(
        """
        import sys
        from agentmeter.cli import main
        sys.argv = ["agentmeter", "--help"]
        try:
            main()
        except SystemExit:
            pass
        print("LITELLM" if any(m == "litellm" or m.startswith("litellm.") for m in sys.modules) else "CLEAN")
        """
    )
    assert out.splitlines()[-1] == "CLEAN"


def test_inspection_commands_do_not_import_litellm(recorded):
    out = run_python(
        f"""
        import sys
        from click.testing import CliRunner
        from agentmeter.cli import cli
        db = {recorded.db!r}
        for args in (["runs"], ["runs", "--json"], ["show", "a1b2"], ["report", "--by", "tag:tenant"],
                     ["tail", "--once"], ["export", "--format", "csv"]):
            result = CliRunner().invoke(cli, [*args, "--db", db])
            assert result.exit_code == 0, (args, result.output)
        print(sorted(m for m in sys.modules if m == "litellm" or m.startswith("litellm.")))
        """
    )
    assert out.splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("command", "keys"),
    [
        ("runs", query.RUN_KEYS),
        ("report", reports.REPORT_KEYS),
        ("show", query.CALL_EVENT_KEYS),
        ("tail", query.DECISION_EVENT_KEYS),
    ],
    ids=["runs", "report", "show", "tail"],
)
def test_the_json_keys_are_documented_in_the_help(command, keys):
    code, out, _ = invoke(command, "--help")
    assert code == 0 and "keys " + ", ".join(keys) + "." in " ".join(out.split())


def test_report_run_html_writes_the_post_mortem(tmp_path):
    """`agentmeter report RUN --html FILE` is the post-mortem, as the issue spells it."""
    from agentmeter.demo import run_demo

    db = tmp_path / "d.db"
    result = run_demo(db, verbose=False, steps=12)
    out = tmp_path / "pm.html"
    res = CliRunner().invoke(
        cli, ["report", result.run_id[:8], "--html", str(out), "--db", str(db)]
    )
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"wrote the post-mortem of run {result.run_id} to {out}"
    text = out.read_text()
    assert (
        text.lower().startswith("<!doctype html>")
        and "<svg" in text
        and "http://" not in text
        and "https://" not in text
    )
    missing = CliRunner().invoke(cli, ["report", "--html", str(out), "--db", str(db)])
    assert missing.exit_code == 2 and "--html needs a run" in missing.output


def test_show_folds_a_run_of_still_active_decisions_into_one_row(tmp_path):
    """A run paused again and again shows the first pause and a count; --json keeps every one."""
    db = str(tmp_path / "paused.db")
    clock = FakeClock(1_800_000_000.0)
    with make_meter(db, clock) as meter:
        run = meter.run("paused", run_id="p0000000000000001")
        run.record(model="test-small", usage=agentmeter.Usage(input_tokens=10), latency_ms=5)
    for i in range(40):
        detail = {"transition": "fire" if i == 0 else "active", "pause_s": 60.0 - i}
        add_decision(
            db, run_id="p0000000000000001", step=2, ts=1_800_000_001.0 + i / 10,
            policy="hourly-pace", action="pause", detail=detail,
        )  # fmt: skip
    add_decision(
        db, run_id="p0000000000000001", step=3, ts=1_800_000_009.0,
        policy="slow", action="downgrade", detail={"transition": "active"},
    )  # fmt: skip
    code, out, _ = invoke("show", "p0000000000000001", "--db", db)
    assert code == 0
    pauses = [line for line in out.splitlines() if "hourly-pace" in line]
    assert len(pauses) == 2  # the one that fired, then the first still active one
    assert "(and 38 more like it until +4.9s)" in " ".join(out.replace("│", " ").split())
    assert "slow" in out  # another policy's row is not folded into the pauses
    timeline = invoke_json("show", "p0000000000000001", "--db", db)["timeline"]
    assert sum(e["kind"] == "decision" for e in timeline) == 41


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([None, "a", "b"]), max_size=40))
def test_fold_repeats_keeps_every_event_and_folds_only_equal_neighbours(keys):
    events = list(enumerate(keys))
    folded = query.fold_repeats(events, lambda e: e[1])
    assert sum(more + 1 for _, more, _ in folded) == len(events)
    assert [first for first, _, _ in folded] == [
        e for i, e in enumerate(events) if i == 0 or e[1] is None or e[1] != events[i - 1][1]
    ]
    for first, more, last in folded:
        assert last[0] - first[0] == more  # a run of neighbours, first to last
        assert more == 0 or first[1] is not None
