"""Inspection commands: runs, show, report, tail, export (filled in by the inspection work)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add the inspection commands to ``cli``."""
