"""The examples in examples/ run as documented (offline) and do what they say."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, tmp_path):
    db = tmp_path / f"{name}.db"
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout, sqlite3.connect(db)


def test_quickstart(tmp_path):
    stdout, conn = run_example("quickstart", tmp_path)
    assert "decision before the manual call: gpt-4o-mini" in stdout
    assert conn.execute("select count(*) from agentmeter_calls").fetchone() == (5,)
    assert conn.execute("select policy, action from agentmeter_decisions").fetchall() == [
        ("burst-budget", "downgrade"),
        ("burst-budget", "alert"),
    ]


def test_closed_loop(tmp_path):
    stdout, conn = run_example("closed_loop", tmp_path)
    assert "compact: context-bloat" in stdout and "downgrade: burst-budget" in stdout
    assert conn.execute("select count(distinct model) from agentmeter_calls").fetchone() == (2,)


def test_ab_experiment(tmp_path):
    from agentmeter.compare import compare

    stdout, conn = run_example("ab_experiment", tmp_path)
    assert stdout == f"recorded 200 runs to {tmp_path / 'ab_experiment.db'}\n"
    (c,) = compare(conn, by="tag:experiment_id", baseline="control").comparisons
    assert c.arm == "trimmed" and c.cost_significant and c.cost_per_run_change < -0.25
    assert not c.latency_significant
