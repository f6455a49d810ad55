"""PostgreSQL as the shared flight recorder, against a real server started for this module.

The server is a throwaway cluster on 127.0.0.1 (initdb + pg_ctl, as the ``postgres`` OS user when
run as root). Without the PostgreSQL binaries these tests skip, unless
``AGENTMETER_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import agentmeter
from agentmeter import Usage
from agentmeter.errors import StorageError

if os.environ.get("AGENTMETER_REQUIRE_POSTGRES"):
    import psycopg
else:
    psycopg = pytest.importorskip("psycopg", reason="pip install 'agentmeter[postgres]'")

WORKERS = Path(__file__).with_name("workers.py")
PRICES = agentmeter.PriceTable({"w-model": {"input": "$1", "output": "$4"}}, model_cost={})


def _bin_dir() -> str | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--", *args]


@pytest.fixture(scope="module")
def server():
    """A throwaway PostgreSQL cluster on loopback; yields a function making fresh database URLs."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        message = "PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("AGENTMETER_REQUIRE_POSTGRES"):
            pytest.fail(message + " (AGENTMETER_REQUIRE_POSTGRES is set)")
        pytest.skip(message)
    root = tempfile.mkdtemp(prefix="agentmeter-pg-")
    data = os.path.join(root, "data")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    run = lambda args: subprocess.run(  # noqa: E731
        _as_postgres(args), check=True, capture_output=True, text=True, cwd=root
    )
    run([f"{bin_dir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
    )
    run([f"{bin_dir}/pg_ctl", "-D", data, "-o", options, "-l", f"{root}/log", "-w", "start"])
    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    names = iter(range(1, 10_000))

    def new_db() -> str:
        name = f"t{next(names)}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{port}/{name}"

    try:
        yield new_db
    finally:
        run([f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg(server):
    return server()


def _rows(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def test_calls_and_decisions_round_trip(pg, clock):
    """Calls, decisions and runs land in PostgreSQL with the values recorded, money exact."""
    policy = (
        "version: 1\npolicies:\n  - name: tiny\n"
        "    when: {metric: cost_usd, stat: sum, window: 1h, scope: run, above: 0.000001}\n"
        "    then: [alert]\n"
    )
    with agentmeter.Meter(db=pg, policies=policy, pricing=PRICES, clock=clock) as meter:
        with meter.run("job", tags={"tenant": "acme"}) as run:
            run.decide(model="w-model", prompt_tokens=10)
            rec = run.record(
                model="w-model", usage=Usage(input_tokens=100, output_tokens=10), latency_ms=12.5
            )
            run.decide(model="w-model", prompt_tokens=10)
        assert meter.flush()
        assert meter.health()["committed"] > 0 and not meter.health()["degraded"]
    calls = _rows(
        pg,
        "SELECT run_id, model, input_tokens, output_tokens, cost_nano_usd, latency_ms, tags::jsonb ->> 'tenant' FROM agentmeter_calls",
    )
    assert calls == [(run.run_id, "w-model", 100, 10, rec.cost_nano_usd, 12.5, "acme")]
    assert rec.cost_nano_usd == 140_000
    runs = _rows(pg, "SELECT name, status FROM agentmeter_runs")
    assert runs == [("job", "ok")]
    decisions = _rows(pg, "SELECT policy, action FROM agentmeter_decisions")
    assert ("tiny", "alert") in decisions


def test_money_columns_are_bigint(pg):
    """Money is an integer column (nano-USD), never a float."""
    agentmeter.Meter(db=pg, pricing=PRICES).close()
    types = dict(
        _rows(
            pg,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'agentmeter_calls'",
        )
    )
    assert types["cost_nano_usd"] == "bigint"
    assert types["ts"] == "double precision"
    assert types["id"] == "bigint"


def test_migrations_applied_once_and_newer_schema_refused(pg):
    """Each named migration is recorded once; a name this version does not know is refused."""
    from agentmeter.migrations import STEPS

    agentmeter.Meter(db=pg, pricing=PRICES).close()
    agentmeter.Meter(db=pg, pricing=PRICES).close()
    names = [r[0] for r in _rows(pg, "SELECT name FROM _agentmeter_migrations ORDER BY id")]
    assert names == [f.__name__ for f in STEPS]
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute("INSERT INTO _agentmeter_migrations (name) VALUES ('m999_future')")
    with pytest.raises(StorageError, match=r"newer agentmeter.*m999_future"):
        agentmeter.Meter(db=pg, pricing=PRICES)


def test_every_migration_has_a_postgres_dialect():
    """Each SQLite step translates to PostgreSQL types (one list of migration names)."""
    from agentmeter.migrations import STEPS
    from agentmeter.storage.postgres import step_sql

    for func in STEPS:
        statements = step_sql(func)
        assert statements, func.__name__
        assert not any(" REAL" in s or "INTEGER" in s for s in statements), func.__name__


def test_importing_agentmeter_does_not_import_psycopg():
    """psycopg loads only when a postgresql:// URL is opened."""
    code = "import sys, agentmeter; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_budget_survives_a_restart(pg, clock):
    """A new meter seeds its windows from PostgreSQL: what was spent before still counts."""
    policy = (
        "version: 1\npolicies:\n  - name: cap\n"
        "    when: {metric: cost_usd, stat: sum, window: 1h, scope: all, above: 0.0005}\n"
        "    then: [halt]\n"
    )
    with agentmeter.Meter(db=pg, policies=policy, pricing=PRICES, clock=clock) as meter:
        with meter.run("first") as run:
            for _ in range(4):
                run.record(
                    model="w-model", usage=Usage(input_tokens=100, output_tokens=10), latency_ms=1.0
                )
    with agentmeter.Meter(db=pg, policies=policy, pricing=PRICES, clock=clock) as meter:
        run = meter.run("second")
        decision = run.decide(model="w-model", prompt_tokens=10)
        assert decision.halt, "the spend recorded before the restart was not seeded"


def _spawn(mode: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.Popen(
        [sys.executable, str(WORKERS), mode, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_shared_cap_holds_across_processes(pg):
    """6 processes x 2 threads spend against one fleet-wide cap: the recorded spend never exceeds it."""
    cap_usd = "0.05"
    agentmeter.Meter(db=pg, pricing=PRICES).close()  # migrate once, before the crowd
    procs = [_spawn("cap", pg, "2", cap_usd) for _ in range(6)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["errors"] == [] for r in results), results
    assert sum(r["halted"] for r in results) == 12
    (recorded,) = _rows(pg, "SELECT coalesce(sum(cost_nano_usd), 0) FROM agentmeter_calls")[0]
    cap_nano = 50_000_000
    assert recorded == sum(r["nano"] for r in results)
    assert recorded <= cap_nano
    per_call = 1000 * 1000 + 150 * 4000  # what one call costs in nano-USD
    assert recorded > cap_nano - 12 * 2 * per_call  # the cap was reached, not refused early
    assert _rows(pg, "SELECT count(*) FROM agentmeter_reservations")[0][0] == 0


def test_workers_record_every_row(pg):
    """N processes open a blank database at once and record: each migration runs once, every row
    arrives, exactly priced."""
    procs = [_spawn("load", pg, "2", "500") for _ in range(4)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    count, nano = _rows(pg, "SELECT count(*), sum(cost_nano_usd) FROM agentmeter_calls")[0]
    assert count == sum(r["count"] for r in results) == 4 * 2 * 500
    assert nano == sum(r["nano"] for r in results)
    names = _rows(pg, "SELECT name FROM _agentmeter_migrations")
    assert len(names) == len(set(names)) == len(agentmeter.migrations.STEPS)


def test_shared_scope_folds_in_other_writers(pg, clock):
    """A tag scope's window counts the calls another meter recorded in the same database."""
    policy = (
        "version: 1\npolicies:\n  - name: fleet\n"
        "    when: {metric: cost_usd, stat: sum, window: 1h, scope: {tag: tenant}, above: 0.0003}\n"
        "    then: [halt]\n"
    )
    a = agentmeter.Meter(db=pg, policies=policy, pricing=PRICES, clock=clock, sync_s=3600)
    b = agentmeter.Meter(db=pg, policies=policy, pricing=PRICES, clock=clock, sync_s=3600)
    try:
        with a.run("a", tags={"tenant": "acme"}) as run:
            for _ in range(3):
                run.record(
                    model="w-model", usage=Usage(input_tokens=100, output_tokens=10), latency_ms=1.0
                )
        assert a.flush()
        conn = psycopg.connect(pg, autocommit=True)
        b._sync_foreign(conn)
        conn.close()
        decision = b.run("b", tags={"tenant": "acme"}).decide(model="w-model", prompt_tokens=10)
        assert decision.halt, "the other writer's calls were not folded in"
    finally:
        a.close()
        b.close()


def test_unreachable_server_degrades_and_warns_once(caplog):
    """No server: the agent keeps running, rows are buffered, one warning says why."""
    url = f"postgresql://postgres:secret@127.0.0.1:{_free_port()}/nothing"
    with (
        caplog.at_level(logging.WARNING, logger="agentmeter"),
        agentmeter.Meter(db=url, pricing=PRICES) as meter,
    ):
        with meter.run("offline") as run:
            run.record(
                model="w-model", usage=Usage(input_tokens=1, output_tokens=1), latency_ms=1.0
            )
        assert meter.flush()
        health = meter.health()
        assert (health["committed"], health["degraded"]) == (0, True)
        assert health["buffered"] == 3  # run start, call, run end
    warnings = [r.getMessage() for r in caplog.records if "flight recorder" in r.getMessage()]
    assert [w.split(" the flight recorder")[0] for w in warnings] == [
        "agentmeter: cannot open",
        "agentmeter: cannot write",
    ]
    assert not any("secret" in w for w in warnings)


def test_cli_reads_postgres(pg, clock):
    """``runs``, ``report --by model`` and ``export`` accept a postgresql:// URL as --db."""
    from click.testing import CliRunner

    from agentmeter.cli import cli as main

    with agentmeter.Meter(db=pg, pricing=PRICES, clock=clock) as meter:
        with meter.run("cli-job") as run:
            run.record(
                model="w-model", usage=Usage(input_tokens=100, output_tokens=10), latency_ms=1.0
            )
    runner = CliRunner()
    result = runner.invoke(main, ["runs", "--db", pg, "--json"])
    assert result.exit_code == 0, result.output
    assert "cli-job" in result.output
    result = runner.invoke(main, ["report", "--db", pg, "--by", "model", "--json"])
    assert result.exit_code == 0, result.output
    assert "w-model" in result.output
    result = runner.invoke(main, ["export", "--db", pg])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[0])["model"] == "w-model"


@pytest.mark.parametrize("count", [3, 120], ids=["executemany", "copy"])
def test_batch_commit_keeps_every_value(pg, count):
    """Both batch paths (executemany, COPY) store text with tabs, newlines, backslashes exactly."""
    from agentmeter.recorder import CALL_COLUMNS
    from agentmeter.storage import postgres

    agentmeter.Meter(db=pg, pricing=PRICES).close()
    odd = 'tab\there\nline\\back "quote" \u00e9\u2603'
    rows = []
    for i in range(count):
        row = dict.fromkeys(CALL_COLUMNS)
        row.update(
            run_id=f"r{i}",
            step=i,
            ts=1_800_000_000.123456 + i,
            model=odd,
            usage_status="reported",
            cost_nano_usd=2**53 + i,
            cost_status="ok",
            latency_ms=0.1 + i,
            status="ok",
            stream=0,
            tags=json.dumps({"tenant": odd}),
            cache_hit=0,
        )
        rows.append(tuple(row.values()))
    conn = postgres.connect(pg)
    try:
        postgres.commit(conn, {"call": rows})
    finally:
        conn.close()
    back = _rows(pg, f"SELECT {', '.join(CALL_COLUMNS)} FROM agentmeter_calls ORDER BY step")
    assert back == rows


def test_response_cache_on_postgres(pg, clock):
    """An identical request is answered from ``agentmeter_cache`` in PostgreSQL."""
    from agentmeter.simulate import SimulatedProvider

    sim = SimulatedProvider(clock, seed=4)
    for name in list(sim.profiles):
        sim.degrade(name, error_rate=0.0)
    messages = [{"role": "user", "content": "Summarize: the cat sat on the mat."}]
    with agentmeter.Meter(
        db=pg, clock=clock, completion_fn=sim.completion, cache_ttl="1h"
    ) as meter:
        run = meter.run("r")
        first = run.completion(model="gpt-4o", messages=messages)
        meter.flush()
        second = run.completion(model="gpt-4o", messages=messages)
        run.end()
    assert sim.calls == 1
    assert second["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
    hits = _rows(pg, "SELECT cache_hit FROM agentmeter_calls ORDER BY id")
    assert hits == [(0,), (1,)]


def test_agentmeter_db_may_be_a_url(pg, monkeypatch):
    """``$AGENTMETER_DB=postgresql://...`` records into PostgreSQL, password never shown."""
    monkeypatch.setenv("AGENTMETER_DB", pg)
    with agentmeter.Meter(pricing=PRICES) as meter:
        assert meter.health()["path"] == pg
        meter.run("env").end()
    assert _rows(pg, "SELECT name FROM agentmeter_runs") == [("env",)]
    from agentmeter.storage.postgres import redact_url

    assert redact_url("postgresql://u:pw@h:5/d") == "postgresql://u:***@h:5/d"


def test_tail_follows_postgres(pg, clock):
    """`agentmeter tail` on PostgreSQL: the recent events, then those committed since, per poll."""
    import sqlite3

    from agentmeter import query
    from agentmeter.storage import postgres

    with agentmeter.Meter(db=pg, pricing=PRICES, clock=clock) as meter:
        run = meter.run("r")
        run.record(model="w-model", usage=Usage(input_tokens=1), latency_ms=1)
    mirror = postgres.snapshot(pg)
    polls = iter(range(3))
    seen: list[int] = []
    writer = agentmeter.Meter(db=pg, pricing=PRICES, clock=clock)
    writer_run = writer.run("w")

    def stop() -> bool:
        n = next(polls, None)
        if n is None:
            return True
        writer_run.record(model="w-model", usage=Usage(input_tokens=2), latency_ms=2)
        writer.flush()
        return False

    try:
        for event in query.tail(
            lambda: mirror, last=5, poll_s=0, stop=stop, refresh=lambda c: postgres.refresh(pg, c)
        ):
            seen.append(event["id"])
    finally:
        writer.close()
    assert len(seen) == 4 and seen == sorted(seen)  # 1 recent, then one new call per poll
    assert isinstance(mirror, sqlite3.Connection)


def test_cli_tail_once_on_postgres(pg, clock):
    from click.testing import CliRunner

    from agentmeter.cli import cli

    with agentmeter.Meter(db=pg, pricing=PRICES, clock=clock) as meter:
        meter.run("r").record(model="w-model", usage=Usage(input_tokens=1), latency_ms=1)
    result = CliRunner().invoke(cli, ["tail", "--db", pg, "--once", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[0])["model"] == "w-model"


def test_a_dropped_connection_is_reconnected_without_losing_rows(pg, clock):
    """The server ends the writer's session (restart, network): the batch is retried, not lost."""
    with agentmeter.Meter(db=pg, pricing=PRICES, clock=clock) as meter:
        run = meter.run("flaky")
        run.record(model="w-model", usage=Usage(input_tokens=1, output_tokens=1), latency_ms=1.0)
        assert meter.flush()
        with psycopg.connect(pg, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        for _ in range(5):
            run.record(
                model="w-model", usage=Usage(input_tokens=1, output_tokens=1), latency_ms=1.0
            )
        run.end()
        assert meter.flush()
        health = meter.health()
    assert (health["degraded"], health["dropped"], health["buffered"]) == (False, 0, 0)
    assert health["warnings"] == []  # retried at once, never degraded
    assert _rows(pg, "SELECT count(*) FROM agentmeter_calls") == [(6,)]


def test_prune_on_postgres_removes_content_and_cache_but_not_calls(pg):
    from click.testing import CliRunner

    from agentmeter.cli import cli

    with agentmeter.Meter(db=pg, pricing=PRICES, capture_content=True) as meter:
        run = meter.run("r")
        record = run.record(model="w-model", usage=Usage(input_tokens=5), latency_ms=1)
        run.capture(
            {"model": "w-model", "messages": [{"role": "user", "content": "hi"}]},
            {"choices": []},
            record,
        )
    assert _rows(pg, "select count(*) from agentmeter_content") == [(2,)]
    result = CliRunner().invoke(cli, ["prune", "--before", "0s", "--db", pg])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(
        "deleted 2 captured content rows older than 0s from postgresql://"
    )
    assert _rows(pg, "select count(*) from agentmeter_content") == [(0,)]
    assert _rows(pg, "select count(*) from agentmeter_calls") == [(1,)]
