"""The public API is deliberate: every name in __all__ exists, nothing public is left out."""

from __future__ import annotations

import subprocess
import sys

import agentmeter


def test_all_exports_exist():
    for name in agentmeter.__all__:
        assert hasattr(agentmeter, name), name


def test_public_members_are_exported():
    public = {
        name
        for name, value in vars(agentmeter).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("agentmeter")
    }
    assert public <= set(agentmeter.__all__), public - set(agentmeter.__all__)


def test_exceptions_form_one_tree():
    for name in ("ConfigError", "StorageError", "ReplayError", "BudgetExceeded", "PauseRequested"):
        assert issubclass(getattr(agentmeter, name), agentmeter.AgentmeterError)
    assert issubclass(agentmeter.BudgetExceeded, agentmeter.ControlFlow)


def test_import_does_not_load_heavy_dependencies():
    code = (
        "import sys, agentmeter, os;"
        "heavy = [m for m in ('litellm', 'scipy', 'numpy') if m in sys.modules];"
        "print(heavy, os.environ.get('LITELLM_LOCAL_MODEL_COST_MAP'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True"
