"""The flight recorder: round trip, migrations, shared files, failures that must not reach the agent."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import threading
from decimal import Decimal
from pathlib import Path

import pytest
import sqlite_utils
from hypothesis import given, settings
from hypothesis import strategies as st

import agentmeter
from agentmeter import Usage
from agentmeter import recorder as recorder_module
from agentmeter.errors import StorageError
from agentmeter.migrations import STEPS, migrate


def rows(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_round_trip_of_a_call(make_meter, db_path, clock):
    meter = make_meter(tags={"service": "search"})
    with meter.run("task", tags={"tenant": "acme", "user": "u42"}) as run:
        clock.advance(1)
        rec = run.record(
            model="gpt-4o",
            usage=Usage(
                input_tokens=1000, output_tokens=300, cache_read_tokens=2000, reasoning_tokens=100
            ),
            latency_ms=812.5,
            ttft_ms=200.0,
            pre_ms=3.0,
            post_ms=1.5,
            tags={"feature": "summarize"},
        )
    meter.close()
    (row,) = rows(
        db_path,
        "select run_id, step, ts, requested_model, model, provider, input_tokens, output_tokens, "
        "cache_read_tokens, cache_write_tokens, reasoning_tokens, usage_status, cost_nano_usd, "
        "cost_status, latency_ms, ttft_ms, pre_ms, post_ms, status, tags from agentmeter_calls",
    )
    assert row[:12] == (
        run.run_id,
        1,
        clock.now(),
        "gpt-4o",
        "gpt-4o",
        "openai",
        1000,
        300,
        2000,
        0,
        100,
        "reported",
    )
    assert row[12] == rec.cost_nano_usd and Decimal(row[12]) / 10**9 == rec.cost
    assert row[13:19] == ("ok", 812.5, 200.0, 3.0, 1.5, "ok")
    assert json.loads(row[19]) == {
        "service": "search",
        "tenant": "acme",
        "user": "u42",
        "feature": "summarize",
    }
    (run_row,) = rows(db_path, "select run_id, name, status, ended_at, tags from agentmeter_runs")
    assert run_row[:3] == (run.run_id, "task", "ok") and run_row[3] == clock.now()


def test_call_context_manager_times_and_records_errors(make_meter, db_path, clock):
    meter = make_meter()
    run = meter.run("r")
    with run.call("gpt-4o") as call:
        call.sent()
        clock.advance(0.25)
        call.first_token()
        clock.advance(1.0)
        call.first_token()  # idempotent
        call.received()
        clock.advance(0.05)
        call.set_usage({"usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
    with pytest.raises(TimeoutError), run.call("gpt-4o") as call:
        clock.advance(2)
        raise TimeoutError("provider timed out")
    meter.close()
    ok, err = rows(
        db_path,
        "select status, error_type, latency_ms, ttft_ms, post_ms, input_tokens, cost_status from agentmeter_calls order by id",
    )
    assert ok[0:2] == ("ok", None)
    assert (
        ok[2] == pytest.approx(1300.0)
        and ok[3] == pytest.approx(250.0)
        and ok[4] == pytest.approx(50.0)
    )
    assert ok[5] == 10 and ok[6] == "ok"
    assert err == (
        "error",
        "TimeoutError",
        pytest.approx(2000.0),
        None,
        None,
        None,
        "unknown_usage",
    )


def test_migrations_apply_on_a_blank_db(db_path):
    conn = sqlite3.connect(db_path)
    migrate(conn)
    tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert {
        "agentmeter_runs",
        "agentmeter_calls",
        "agentmeter_decisions",
        "_sqlite_migrations",
    } <= tables
    names = [
        r[0]
        for r in conn.execute(
            "select name from _sqlite_migrations where migration_set='agentmeter'"
        )
    ]
    assert names == [f.__name__ for f in STEPS]
    migrate(conn)  # idempotent
    assert conn.execute("select count(*) from _sqlite_migrations").fetchone()[0] == len(STEPS)


def test_shares_a_file_with_the_agents_own_tables(db_path, clock):
    memory = sqlite_utils.Database(db_path)
    memory["memories"].insert_all([{"id": i, "text": f"fact {i}"} for i in range(3)], pk="id")
    with agentmeter.Meter(db=memory, clock=clock) as meter:
        meter.run("r").record(model="gpt-4o", usage=Usage(input_tokens=5), latency_ms=1)
        memory["memories"].insert({"id": 3, "text": "written while agentmeter records"})
    assert memory["memories"].count == 4
    assert rows(db_path, "select count(*) from agentmeter_calls") == [(1,)]


def test_accepts_an_open_sqlite3_connection(db_path, clock):
    conn = sqlite3.connect(db_path)
    with agentmeter.Meter(db=conn, clock=clock) as meter:
        meter.run("r").record(model="gpt-4o", usage=Usage(input_tokens=5), latency_ms=1)
    assert conn.execute("select count(*) from agentmeter_calls").fetchone() == (1,)


def test_accepts_an_in_memory_connection_and_writes_inline(clock):
    conn = sqlite3.connect(":memory:")
    with agentmeter.Meter(db=conn, clock=clock) as meter:
        meter.run("r").record(model="gpt-4o", usage=Usage(input_tokens=5), latency_ms=1)
        assert conn.execute("select count(*) from agentmeter_calls").fetchone() == (1,)


def test_a_db_from_a_newer_agentmeter_is_refused(db_path):
    conn = sqlite3.connect(db_path)
    migrate(conn)
    conn.execute(
        "insert into _sqlite_migrations (migration_set, name, applied_at) values ('agentmeter', 'm999_future', 'x')"
    )
    conn.commit()
    conn.close()
    before = Path(db_path).read_bytes()
    with pytest.raises(StorageError, match=r"newer agentmeter.*m999_future"):
        agentmeter.Meter(db=db_path)
    assert Path(db_path).read_bytes() == before


def test_new_db_file_is_owner_only(db_path, clock):
    with agentmeter.Meter(db=db_path, clock=clock):
        pass
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600


def test_close_flushes_everything(db_path, clock):
    meter = agentmeter.Meter(db=db_path, clock=clock)
    run = meter.run("r")
    for _ in range(5000):
        run.record(model="gpt-4o", usage=Usage(input_tokens=5, output_tokens=1), latency_ms=1)
    meter.close()
    assert rows(db_path, "select count(*), sum(input_tokens) from agentmeter_calls") == [
        (5000, 25000)
    ]


def test_many_threads_record_everything(db_path, clock):
    meter = agentmeter.Meter(db=db_path, clock=clock)

    def work(i):
        run = meter.run(f"r{i}")
        for _ in range(500):
            run.record(
                model="gpt-4o-mini", usage=Usage(input_tokens=100, output_tokens=10), latency_ms=1
            )
        run.end()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    meter.close()
    assert rows(db_path, "select count(*), count(distinct run_id) from agentmeter_calls") == [
        (8000, 16)
    ]
    assert rows(db_path, "select count(*) from agentmeter_runs where status = 'ok'") == [(16,)]
    steps = rows(
        db_path,
        "select run_id, group_concat(step) from (select run_id, step from agentmeter_calls order by step) group by run_id",
    )
    assert all(sorted(map(int, s.split(","))) == list(range(1, 501)) for _, s in steps)


def test_read_only_db_does_not_break_the_loop(db_path, clock, caplog):
    """The DB turns read-only under the agent: it keeps going, budgets still hold, one warning.

    (CI runs as root, for whom file modes do not apply, so the writer's connection is swapped for
    a read-only one: SQLite raises the same 'attempt to write a readonly database' either way.)
    """
    policy = "version: 1\npolicies:\n  - name: cap\n    when: {metric: cost_usd, window: 1h, above: $0.001}\n    then: [halt]\n"
    with caplog.at_level(logging.WARNING, logger="agentmeter"):
        meter = agentmeter.Meter(db=db_path, clock=clock, policies=policy)
        meter.flush()
        meter._recorder._conn = sqlite3.connect(
            f"file:{db_path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
        meter._recorder._connect_fn = lambda: sqlite3.connect(
            f"file:{db_path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
        run = meter.run("r")
        for _ in range(3):
            run.record(model="gpt-4o", usage=Usage(input_tokens=1000), latency_ms=1)
        assert run.decide(model="gpt-4o").halt
        meter.flush()
        health = meter.health()
        meter.close()
    assert health["degraded"] and "readonly" in health["last_error"]
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1


def test_disk_full_degrades_and_counts_dropped_rows(db_path, clock):
    """SQLITE_FULL (here from max_page_count): the loop goes on; beyond the buffer rows are dropped and counted."""
    from agentmeter.recorder import connect

    meter = agentmeter.Meter(db=db_path, clock=clock)
    run = meter.run("r")
    meter.flush()
    filler = sqlite3.connect(db_path, isolation_level=None)
    filler.execute("create table filler (b blob)")
    pages = filler.execute("pragma page_count").fetchone()[0]
    filler.execute(f"pragma max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        for size in (4096, 1024, 256, 64, 16, 4, 1) * 50:  # use up every free byte
            try:
                filler.execute("insert into filler values (zeroblob(?))", (size,))
            except sqlite3.OperationalError:
                if size == 1:
                    raise
    filler.close()
    full = {"on": True}

    def connect_full():
        conn = connect(db_path)
        if full["on"]:
            conn.execute(f"pragma max_page_count = {pages}")
        return conn

    meter._recorder._conn.close()
    meter._recorder._conn = None
    meter._recorder._connect_fn = connect_full
    meter._recorder.max_buffered = 100
    for _ in range(500):
        assert run.record(model="gpt-4o", usage=Usage(input_tokens=1), latency_ms=1) is not None
    meter.flush()
    health = meter.health()
    assert health["degraded"] and "full" in health["last_error"]
    assert health["buffered"] == 100 and health["dropped"] == 400
    full["on"] = False
    meter._recorder.retry_s = 0.01
    meter.close()
    assert not meter.health()["degraded"]
    assert rows(db_path, "select count(*) from agentmeter_calls") == [(100,)]


def test_missing_directory_degrades_then_recovers(tmp_path, clock, caplog):
    """The DB's directory disappears: nothing raises, rows are buffered, and written once it is back."""
    folder = tmp_path / "gone"
    folder.mkdir()
    path = folder / "agent.db"
    policy = "version: 1\npolicies:\n  - name: cap\n    when: {metric: cost_usd, window: 1h, above: $0.01}\n    then: [halt]\n"
    with caplog.at_level(logging.WARNING, logger="agentmeter"):
        meter = agentmeter.Meter(db=str(path), clock=clock, policies=policy)
        run = meter.run("r")
        run.record(model="gpt-4o", usage=Usage(input_tokens=10), latency_ms=1)
        meter.flush()
        meter._recorder._conn.close()  # simulate losing the file handle with the directory
        meter._recorder._conn = None
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
        for _ in range(10):
            run.record(model="gpt-4o", usage=Usage(input_tokens=1000), latency_ms=1)
        assert run.decide(model="gpt-4o").halt  # budgets from memory
        meter.flush()
        health = meter.health()
        assert health["degraded"] and health["buffered"] == 11  # 10 calls + the halt decision
        folder.mkdir()
        meter._recorder.retry_s = 0.01
        meter.flush()
        meter.close()
    assert meter.health()["degraded"] is False
    assert rows(str(path), "select count(*) from agentmeter_calls") == [(10,)]
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1


def test_an_odd_usage_payload_never_raises(make_meter):
    run = make_meter().run("r")
    rec = run.record(
        model="gpt-4o",
        response={"usage": {"prompt_tokens": "lots", "completion_tokens": -3}},
        latency_ms=1,
    )
    assert rec is not None and rec.cost is None and rec.cost_status == "unknown_usage"


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 200_000),
            st.integers(0, 20_000),
            st.integers(0, 100_000),
            st.sampled_from(["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "o3"]),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_recorded_cost_sum_equals_decimal_sum(tmp_path_factory, calls):
    path = str(tmp_path_factory.mktemp("p") / "a.db")
    expected = Decimal(0)
    with agentmeter.Meter(db=path) as meter:
        run = meter.run("r")
        for inp, out, cread, model in calls:
            usage = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cread)
            rec = run.record(model=model, usage=usage, latency_ms=1)
            assert rec.cost is not None and rec.cost >= 0
            expected += agentmeter.compute_cost(model, usage)
    (total,) = rows(path, "select sum(cost_nano_usd) from agentmeter_calls")[0]
    assert Decimal(total) / 10**9 == expected
    assert run.spent == expected


def test_a_writer_that_falls_behind_slows_the_loop_instead_of_growing_memory(db_path, clock):
    """Past max_queued waiting rows, put() yields to the writer: the queue stays bounded."""
    meter = agentmeter.Meter(db=db_path, clock=clock)
    recorder = meter._recorder
    recorder.max_queued = 500
    peak = 0
    run = meter.run("r")
    for _ in range(20_000):
        run.record(model="gpt-4o", usage=Usage(input_tokens=1), latency_ms=1)
        peak = max(peak, recorder._queue.qsize())
    meter.close()
    assert peak <= 500 + 1
    assert rows(db_path, "select count(*) from agentmeter_calls") == [(20_000,)]


_VALUE = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
_CELL = st.none() | _VALUE
_NOT_NULL = {"ts", "usage_status", "cost_status", "status", "stream", "tags", "cache_hit"}


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            *[_VALUE if column in _NOT_NULL else _CELL for column in recorder_module.CALL_COLUMNS]
        ),
        min_size=1,
        max_size=70,
    ),
    per_statement=st.sampled_from([1, 2, 8, 64]),
)
def test_multi_row_inserts_store_exactly_what_executemany_stores(rows, per_statement):
    """Call rows go in many to a statement, all-None columns as literal NULLs: same rows, same order."""

    def stored(insert):
        conn = sqlite3.connect(":memory:", isolation_level=None)
        migrate(conn)
        insert(conn)
        columns = ", ".join(recorder_module.CALL_COLUMNS)
        return conn.execute(f"SELECT id, {columns} FROM agentmeter_calls ORDER BY id").fetchall()

    old = recorder_module._MAX_ROWS_PER_INSERT
    recorder_module._MAX_ROWS_PER_INSERT = per_statement
    try:
        chunked = stored(lambda conn: recorder_module.insert_calls(conn, rows))
    finally:
        recorder_module._MAX_ROWS_PER_INSERT = old
    one_by_one = stored(lambda conn: conn.executemany(recorder_module._SQL["call"], rows))
    assert chunked == one_by_one
    assert [type(v) for row in chunked for v in row] == [type(v) for row in one_by_one for v in row]


def test_deferred_rows_are_built_by_the_writer_and_a_failing_builder_loses_only_its_row(
    db_path, caplog
):
    """Decision rows are built off the agent's thread; a builder that raises costs that row only."""
    meter = agentmeter.Meter(db=db_path)
    run = meter.run("r")
    built_on = []

    def decision_row(policy):
        built_on.append(threading.current_thread().name)
        if policy == "broken":
            raise ValueError("no reason text")
        return (run.run_id, 1, 1.0, policy, "cost_usd", 1.0, 0.5, "alert", "run r", "{}")

    for policy in ("first", "broken", "last"):
        meter.put("deferred", ("decision", decision_row, (policy,)))
    with caplog.at_level(logging.WARNING, logger="agentmeter"):
        assert meter.flush()
    meter.close()
    assert rows(db_path, "select policy from agentmeter_decisions order by id") == [
        ("first",),
        ("last",),
    ]
    assert set(built_on) == {"agentmeter-recorder"}
    assert "a decision row could not be built" in caplog.text


def test_a_call_record_is_a_whole_frozen_dataclass(db_path):
    """``record()`` fills a CallRecord's dict in one step: every field is set and it stays frozen."""
    import dataclasses

    from agentmeter.call import CallRecord

    with agentmeter.Meter(db=db_path) as meter:
        rec = meter.run("r").record(
            model="gpt-4o",
            usage=Usage(input_tokens=10, output_tokens=5),
            latency_ms=3.0,
            ttft_ms=1.0,
            stream=True,
            prompt_hash="abc",
        )
    assert set(dataclasses.asdict(rec)) == {f.name for f in dataclasses.fields(CallRecord)}
    assert (rec.step, rec.model, rec.latency_ms, rec.ttft_ms, rec.stream, rec.prompt_hash) == (
        1,
        "gpt-4o",
        3.0,
        1.0,
        True,
        "abc",
    )
    assert rec.cost is not None and rec.cost > 0 and dataclasses.replace(rec) == rec
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.model = "other"  # type: ignore[misc]
