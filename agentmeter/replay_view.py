"""How a what-if replay reads: the differences, as a list and as a table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .replay import ReplayDecision, ReplayResult

__all__ = ["iter_differences", "print_replay"]


def iter_differences(result: ReplayResult) -> list[tuple[str, ReplayDecision]]:
    """``("-", recorded)`` and ``("+", replayed)`` decisions in timeline order (step, then time)."""
    marked = [("-", d) for d in result.removed] + [("+", d) for d in result.added]
    marked.sort(
        key=lambda item: (item[1].step if item[1].step is not None else -1, item[1].ts, item[0])
    )
    return marked


# --------------------------------------------------------------------------------------------
# Printing


def print_replay(result: ReplayResult, *, limit: int = 100, console: Any = None) -> None:
    """Print the differences as a timeline table, any notes, and the summary line."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if console is None:
        console = Console()
        if console.width < 120:
            console = Console(width=120)
    console.print(
        f"What-if replay of run {result.run_id} under {result.policies} "
        f"({result.calls:,} recorded calls, {len(result.recorded):,} recorded decisions)",
        highlight=False,
        soft_wrap=True,
    )
    differences = iter_differences(result)
    if not differences:
        console.print(
            f"No differences: these policies take exactly the {len(result.recorded):,} recorded decisions.",
            highlight=False,
        )
    else:
        table = Table(title_justify="left", show_edge=False, pad_edge=False)
        for column, justify in (
            ("step", "right"),
            ("at", "right"),
            ("", "center"),
            ("policy", "left"),
            ("action", "left"),
            ("reason", "left"),
        ):
            table.add_column(column, justify=justify, no_wrap=column != "reason")  # type: ignore[arg-type]
        for mark, d in differences[:limit]:
            style = "green" if mark == "+" else "red"
            table.add_row(
                "" if d.step is None else str(d.step),
                _elapsed(d.ts, result.started_at),
                Text(mark, style=f"bold {style}"),
                d.policy,
                Text(
                    d.action
                    if d.transition in ("fire", "active", d.action)
                    else f"{d.action} ({d.transition})",
                    style=style,
                ),
                d.reason,
            )
        console.print(table)
        if len(differences) > limit:
            console.print(
                f"... and {len(differences) - limit:,} more (--limit, or --json for all)",
                highlight=False,
                soft_wrap=True,
            )
        console.print(
            "+ would fire under these policies   - fired when recorded, would not now",
            style="dim",
            highlight=False,
            soft_wrap=True,
        )
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(result.summary(), highlight=False, soft_wrap=True)


def _elapsed(ts: float, started: float | None) -> str:
    if started is None:
        return f"{ts:.0f}"
    seconds = max(0.0, ts - started)
    if seconds < 60:
        return f"+{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"+{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"+{hours}h{minutes:02d}m"
