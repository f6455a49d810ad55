"""The litellm callback records calls made straight through litellm (it cannot enforce)."""

from __future__ import annotations

import sqlite3
import time

import pytest

import agentmeter


@pytest.fixture
def litellm_callbacks():
    import litellm

    saved = list(litellm.callbacks)
    yield litellm
    litellm.callbacks = saved


def wait_for_rows(path, n, timeout_s=20.0):
    """litellm runs success callbacks on a worker thread: poll until they have landed."""
    deadline = time.monotonic() + timeout_s
    while True:
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute(
                "select model, status, input_tokens, output_tokens, cost_nano_usd, stream, ttft_ms is not null "
                "from agentmeter_calls order by id"
            ).fetchall()
        finally:
            conn.close()
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_callback_records_plain_and_streamed_calls(db_path, litellm_callbacks):
    litellm = litellm_callbacks
    meter = agentmeter.Meter(db=db_path)
    run = meter.run("direct")
    litellm.callbacks = [agentmeter.litellm_callback(run)]
    response = litellm.completion(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], mock_response="hello"
    )
    for _ in litellm.completion(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        mock_response="hello there",
        stream=True,
    ):
        pass
    deadline = time.monotonic() + 20
    while run.step < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    meter.close()
    rows = wait_for_rows(db_path, 2)
    usage = agentmeter.normalize_usage(response)
    assert rows[0] == (
        "gpt-4o",
        "ok",
        usage.input_tokens,
        usage.output_tokens,
        agentmeter.pricing.cost_nano_usd("gpt-4o", usage),
        0,
        0,
    )
    assert rows[1][:2] == ("gpt-4o-mini", "ok") and rows[1][5:] == (1, 1)
