"""The one exception tree of agentmeter.

    AgentmeterError                  root: catch this to catch everything agentmeter raises
    ├── ConfigError                  a policy file, pricing table or argument is wrong
    ├── StorageError                 the flight-recorder database cannot be opened or is too new
    ├── ReplayError                  a run cannot be replayed (unknown run id, missing content)
    └── ControlFlow                  a policy asks the agent's loop to stop or wait (not a fault)
        ├── BudgetExceeded           a ``halt`` action fired: stop the run
        └── PauseRequested           a ``pause`` action fired with ``pause="raise"``: resume later

Telemetry faults (a locked, read-only or full database; an odd usage payload) are never raised
into the agent's loop: they are counted and warned about once (see ``Meter.health()``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .decision import Decision

__all__ = [
    "AgentmeterError",
    "BudgetExceeded",
    "ConfigError",
    "ControlFlow",
    "PauseRequested",
    "ReplayError",
    "StorageError",
]


class AgentmeterError(Exception):
    """Root of every exception agentmeter raises."""


class ConfigError(AgentmeterError, ValueError):
    """A configuration input (policy YAML, pricing, argument) is invalid.

    ``problems`` lists each problem as one line naming the file, the place, what was wrong and
    what would be right; ``str(error)`` joins them.
    """

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        super().__init__(message)


class StorageError(AgentmeterError):
    """The flight-recorder database cannot be used (for example it was written by a newer agentmeter)."""


class ReplayError(AgentmeterError):
    """A recorded run cannot be replayed as asked."""


class ControlFlow(AgentmeterError):
    """A policy decided that the agent's loop must stop or wait; carries the ``Decision``."""

    def __init__(self, message: str, *, decision: Decision | None = None, **extra: Any) -> None:
        self.decision = decision
        super().__init__(message)


class BudgetExceeded(ControlFlow):
    """A ``halt`` action fired: the run must stop. ``decision.fired`` says which policy and why."""


class PauseRequested(ControlFlow):
    """A ``pause`` action fired and the meter was built with ``pause="raise"``.

    ``resume_at`` is the clock time (epoch seconds) at which the window has room again and
    ``pause_s`` the wait from now.
    """

    def __init__(
        self, message: str, *, decision: Decision | None = None, resume_at: float, pause_s: float
    ) -> None:
        self.resume_at = resume_at
        self.pause_s = pause_s
        super().__init__(message, decision=decision)


def read_config_file(path: Path, what: str) -> str:
    """The text of ``path``, or a ``ConfigError`` naming the file and ``what`` it should be."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None
