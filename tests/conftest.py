from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

import agentmeter
from agentmeter.clock import FakeClock

START = 1_800_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "agent.db")


@pytest.fixture
def make_meter(db_path, clock):
    """Build meters on the test's DB and fake clock; closes them at the end."""
    meters: list[agentmeter.Meter] = []

    def make(policies=None, **kwargs):
        kwargs.setdefault("db", db_path)
        kwargs.setdefault("clock", clock)
        meter = agentmeter.Meter(policies=policies, **kwargs)
        meters.append(meter)
        return meter

    yield make
    for meter in meters:
        meter.close()
