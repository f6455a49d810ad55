"""Replay commands: ``replay`` (what-if), ``postmortem`` (HTML timeline), ``prune`` (content retention).

Each command parses its options, calls the library (``agentmeter.replay``, ``agentmeter.html_report``,
``agentmeter.content``) and prints; errors are one line, never a traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .cli_common import db_option, open_readonly


def register(cli: click.Group) -> None:
    """Add the replay commands to ``cli``."""

    @cli.command("replay")
    @click.argument("run")
    @click.option(
        "--policies",
        required=True,
        metavar="FILE|NAME",
        help="Policy file or built-in name to replay under.",
    )
    @click.option(
        "--pricing",
        metavar="FILE",
        type=click.Path(dir_okay=False),
        help="YAML file with a pricing: section; every call is repriced with it.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
    @click.option("--limit", default=100, show_default=True, help="Differences to print at most.")
    @db_option
    def replay_command(
        run: str, policies: str, pricing: str | None, as_json: bool, limit: int, db_path: str | None
    ) -> None:
        """What-if: replay a run under other policies or prices.

        Shows which decisions would fire or not, and what run RUN would have cost. RUN is a run
        id, a unique prefix of one, or 'last'.
        """
        from .query import resolve_run_id
        from .replay import print_replay, replay

        conn = open_readonly(db_path)
        try:
            result = replay(conn, resolve_run_id(conn, run), policies=policies, pricing=pricing)
        finally:
            conn.close()
        if as_json:
            click.echo(json.dumps(result.as_dict(), indent=2))
        else:
            print_replay(result, limit=limit)

    @cli.command("postmortem")
    @click.argument("run")
    @click.option(
        "--html",
        "html_path",
        required=True,
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Where to write the HTML file.",
    )
    @db_option
    def postmortem(run: str, html_path: Path, db_path: str | None) -> None:
        """Write a run's post-mortem as one self-contained HTML file.

        A timeline of run RUN (latency, time to first token, cumulative spend, the model used),
        every decision with its reason, and a per-model table. No script, nothing fetched.
        """
        from .html_report import write_html_report
        from .query import resolve_run_id

        conn = open_readonly(db_path)
        try:
            run_id = resolve_run_id(conn, run)
            path = write_html_report(conn, run_id, html_path)
        finally:
            conn.close()
        click.echo(f"wrote the post-mortem of run {run_id} to {path}")

    @cli.command("prune")
    @click.option(
        "--before",
        required=True,
        metavar="AGE",
        help="Delete captured content older than AGE (e.g. 30d, 12h).",
    )
    @db_option
    def prune_command(before: str, db_path: str | None) -> None:
        """Delete captured content older than AGE (telemetry stays).

        Prompts and responses recorded by content capture go; calls, decisions and runs stay.
        """
        from .content import prune
        from .recorder import connect
        from .storage import is_postgres_url, resolve_db_path
        from .units import parse_duration_s

        try:
            before_s = parse_duration_s(before, allow_zero=True)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--before") from None
        path = resolve_db_path(db_path)
        if is_postgres_url(path):
            from .clock import SYSTEM_CLOCK
            from .storage import postgres

            deleted = postgres.prune(path, before_s, now=SYSTEM_CLOCK.now())
            shown = postgres.redact_url(path)
            click.echo(
                f"deleted {deleted:,} captured content rows older than {before} from {shown}"
            )
            return
        if not os.path.exists(path):
            raise click.ClickException(
                f"no flight recorder at {path} (pass --db or set AGENTMETER_DB)"
            )
        conn = connect(path)
        try:
            deleted = prune(conn, before_s)
        finally:
            conn.close()
        click.echo(f"deleted {deleted:,} captured content rows older than {before} from {path}")
