"""Replay commands: replay (what-if), prune (filled in by the replay work)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add the replay commands to ``cli``."""
