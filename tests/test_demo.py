"""The demo: a simulated agent under the default policies, written to a real flight recorder."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from decimal import Decimal

from click.testing import CliRunner

from agentmeter.cli import cli
from agentmeter.demo import run_demo


def test_demo_shows_the_policies_acting(tmp_path):
    path = tmp_path / "demo.db"
    result = run_demo(path, verbose=False)
    conn = sqlite3.connect(path)
    actions = {row[0] for row in conn.execute("select action from agentmeter_decisions")}
    assert {
        "downgrade",
        "upgrade",
        "compact",
        "compacted",
        "pause",
        "recover",
        "warn",
        "alert",
    } <= actions
    # the feedback loop: a downgrade undone by bad ratings, then resumed once quality recovers
    (upgrade_step,) = conn.execute(
        "select step from agentmeter_decisions where action = 'upgrade'"
    ).fetchone()
    assert conn.execute(
        "select model from agentmeter_calls where run_id = ? and step = ? and cache_hit = 0 order by id desc",
        (result.run_id, upgrade_step),
    ).fetchone() == ("gpt-4o",)
    assert (
        conn.execute("select count(*) from agentmeter_feedback where negative = 1").fetchone()[0]
        >= 3
    )
    # and the repeated glossary lookup was served by the response cache
    assert conn.execute(
        "select count(*), sum(saved_nano_usd) > 0 from agentmeter_calls where cache_hit = 1"
    ).fetchone() == (1, 1)
    models = {row[0] for row in conn.execute("select model from agentmeter_calls")}
    assert {"gpt-4o", "gpt-4o-mini"} <= models
    (calls, errors, recorded_cost) = conn.execute(
        "select count(*), sum(status = 'error'), sum(cost_nano_usd) from agentmeter_calls where run_id = ?",
        (result.run_id,),
    ).fetchone()
    assert calls >= result.steps and errors >= 1  # retried provider errors are recorded too
    assert Decimal(recorded_cost) / 10**9 == result.cost
    assert result.cost < result.baseline_cost / 2  # the policies at least halve the bill


def test_demo_is_deterministic(tmp_path):
    a = run_demo(tmp_path / "a.db", verbose=False)
    b = run_demo(tmp_path / "b.db", verbose=False)
    assert (a.cost, a.baseline_cost, a.steps) == (b.cost, b.baseline_cost, b.steps)
    assert [d.replace(a.run_id, "RUN") for d in a.decisions] == [
        d.replace(b.run_id, "RUN") for d in b.decisions
    ]


def test_demo_command(tmp_path):
    path = tmp_path / "d.db"
    result = CliRunner().invoke(cli, ["demo", "--db", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"flight recorder: {path.resolve()}" in result.output
    assert "per model" in result.output and "gpt-4o-mini" in result.output
    assert "without policies would have cost" in result.output


def test_demo_runs_with_the_network_disabled(tmp_path):
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise OSError('network disabled by the test')\n"
        "socket.socket.connect = refuse; socket.socket.connect_ex = refuse\n"
        "socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
        "from agentmeter.cli import main\n"
        f"sys.argv = ['agentmeter', 'demo', '--db', {str(tmp_path / 'n.db')!r}, '--quiet']\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "without policies would have cost" in out.stdout


def test_replaying_the_demo_under_its_own_policies_reproduces_it_exactly(tmp_path):
    """Every decision of the demo, feedback-driven upgrades included, comes back in a replay."""
    from agentmeter.replay import replay

    path = tmp_path / "demo.db"
    result = run_demo(path, verbose=False)
    again = replay(str(path), result.run_id, policies="default")
    assert again.removed == () and again.added == ()
    assert len(again.kept) == len(again.recorded) >= 10
    assert {d.action for d in again.kept} >= {"downgrade", "upgrade", "compact", "pause", "recover"}
    assert again.counterfactual_cost == again.recorded_cost == result.cost
