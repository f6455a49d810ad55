"""agentmeter: an embedded flight recorder and policy controller for LLM agents.

    meter = agentmeter.Meter(db="agent.db", policies="policies/default.yaml")
    with meter.run("research-task", tags={"tenant": "acme"}) as run:
        response = run.completion(model="gpt-4o", messages=messages)

Importing this package is cheap: litellm, scipy and numpy load only where they are used.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# litellm must read its bundled price map, never fetch one: set before anything imports it.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from .clock import Clock, FakeClock, SystemClock
from .decision import Compact, Decision, Fired
from .errors import (
    AgentmeterError,
    BudgetExceeded,
    ConfigError,
    ControlFlow,
    PauseRequested,
    ReplayError,
    StorageError,
)
from .usage import Usage

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .content import replay_run
    from .integrations import litellm_callback
    from .meter import Meter
    from .normalize import normalize_usage
    from .policy.spec import PolicySet, load_policies, parse_policies
    from .pricing import PriceTable, compute_cost
    from .run import Call, CallRecord, Run
    from .stats import RunStats

# Loaded on first use, so `agentmeter --help` and a bare import stay fast (the recorder, the
# engine, tenacity and the price table are not needed to print a help text).
_LAZY = {
    "Meter": ("agentmeter.meter", "Meter"),
    "normalize_usage": ("agentmeter.normalize", "normalize_usage"),
    "PriceTable": ("agentmeter.pricing", "PriceTable"),
    "compute_cost": ("agentmeter.pricing", "compute_cost"),
    "Call": ("agentmeter.run", "Call"),
    "CallRecord": ("agentmeter.run", "CallRecord"),
    "Run": ("agentmeter.run", "Run"),
    "RunStats": ("agentmeter.stats", "RunStats"),
    # pydantic and YAML load on first use of a policy file, not on import
    "PolicySet": ("agentmeter.policy.spec", "PolicySet"),
    "load_policies": ("agentmeter.policy.spec", "load_policies"),
    "parse_policies": ("agentmeter.policy.spec", "parse_policies"),
    "litellm_callback": ("agentmeter.integrations", "litellm_callback"),
    "replay_run": ("agentmeter.content", "replay_run"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'agentmeter' has no attribute {name!r}")


__all__ = [
    "AgentmeterError",
    "BudgetExceeded",
    "Call",
    "CallRecord",
    "Clock",
    "Compact",
    "ConfigError",
    "ControlFlow",
    "Decision",
    "FakeClock",
    "Fired",
    "Meter",
    "PauseRequested",
    "PolicySet",
    "PriceTable",
    "ReplayError",
    "Run",
    "RunStats",
    "StorageError",
    "SystemClock",
    "Usage",
    "__version__",
    "compute_cost",
    "litellm_callback",
    "load_policies",
    "normalize_usage",
    "parse_policies",
    "replay_run",
]
