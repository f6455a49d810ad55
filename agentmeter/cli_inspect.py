"""Inspection commands: runs, show, report, tail, export.

Each command parses its options, makes one call into ``agentmeter.query`` (``report``: into
``agentmeter.report``) and prints the result:
a table for people, ``--json`` (keys from ``query.*_KEYS``) for programs. Nothing here imports
litellm.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import IO, Any

import click

from . import query
from . import report as reports
from .cli_common import db_option, open_readonly
from .pricing import nano_to_usd
from .report import format_usd
from .storage import is_postgres_url, resolve_db_path
from .units import parse_duration_s
from .usage import BUCKETS


class _Duration(click.ParamType):
    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            return parse_duration_s(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _tag_pairs(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, tag_value = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE such as tenant=acme, got {value!r}")
        pairs[name] = tag_value
    return pairs


_COSTS = (
    "Costs are exact: cost_nano_usd (integer nano-USD) and cost_usd (decimal USD string); "
    "null when unknown. Times are epoch seconds."
)
_EVENTS = (
    f"A call has the keys {', '.join(query.CALL_EVENT_KEYS)}. "
    f"A decision has the keys {', '.join(query.DECISION_EVENT_KEYS)}."
)
RUNS_EPILOG = f"JSON: a list of runs with the keys {', '.join(query.RUN_KEYS)}. {_COSTS}"
SHOW_EPILOG = (
    'JSON: {"run": RUN, "timeline": [EVENT, ...]}; RUN has the keys of `agentmeter runs --json`. '
    f"{_EVENTS} {_COSTS}"
)
REPORT_EPILOG = f"JSON: a list of groups with the keys {', '.join(reports.REPORT_KEYS)}. {_COSTS}"
TAIL_EPILOG = f"With --json: one JSON object per line. {_EVENTS} {_COSTS}"


@contextmanager
def _reading(db_path: str | None) -> Iterator[sqlite3.Connection]:
    """The recorder opened read-only; a database fault becomes one line and exit code 1."""
    conn = open_readonly(db_path)
    try:
        yield conn
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot read the flight recorder: {exc}") from None
    finally:
        conn.close()


# -- presentation ------------------------------------------------------------------------------
def _echo_json(value: Any) -> None:
    click.echo(json.dumps(query.jsonable(value), indent=2, ensure_ascii=False))


Row = dict[str, Any]
Column = tuple[str, Callable[[Row], str]]


def _echo_table(
    columns: Sequence[Column], rows: Sequence[Row], *, empty: str, total: Row | None = None
) -> None:
    """A table of ``rows`` (``empty`` when there are none); numeric columns (header ``>...``) right-aligned."""
    if not rows:
        click.echo(empty)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for header, _ in columns:
        table.add_column(header.lstrip(">"), justify="right" if header.startswith(">") else "left")
    for i, row in enumerate(rows):
        table.add_row(
            *(cell(row) for _, cell in columns),
            end_section=total is not None and i == len(rows) - 1,
        )
    if total is not None:
        table.add_row(*(cell(total) for _, cell in columns))
    buffer = io.StringIO()
    Console(file=buffer, width=shutil.get_terminal_size((160, 24)).columns).print(table)
    click.echo(buffer.getvalue().rstrip("\n"))


def _preload_table() -> threading.Thread:
    """Start importing the table renderer (rich, ~40 ms) in the background.

    ``report`` reads in SQLite worker threads that leave the GIL free most of the time, so the
    import costs the command nearly nothing there; join the thread before the command returns.
    """
    thread = threading.Thread(target=_import_table, daemon=True)
    thread.start()
    return thread


def _import_table() -> None:
    import rich.console
    import rich.table  # noqa: F401


def _usd(nano: int | None, unknown_calls: int = 0) -> str:
    value = None if nano is None else nano_to_usd(nano)
    if value is not None and 0 < value < Decimal("0.01"):
        text = f"${value:.6f}"
        return f"{text} (+{unknown_calls} unknown)" if unknown_calls else text
    return format_usd(value, unknown_calls)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"


def _int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _text(value: Any) -> str:
    return "(none)" if value is None else str(value)


def _tags(tags: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(tags.items())) or "-"


def _model(e: dict[str, Any]) -> str:
    requested, model = e["requested_model"], _text(e["model"])
    return model if requested in (None, e["model"]) else f"{requested} -> {model}"


def _status(e: dict[str, Any]) -> str:
    return e["status"] if not e["error_type"] else f"{e['status']} ({e['error_type']})"


def _event_line(e: dict[str, Any]) -> str:
    head = f"{_when(e['ts'])}  {(e['run_id'] or '-')[:8]}  #{e['step'] or '-'}"
    if e["kind"] == "decision":
        return f"{head}  decision {e['policy']} {_action(e)}"
    return (
        f"{head}  call {_model(e)}  in {_int(e['input_tokens'])} cached {_int(e['cache_read_tokens'])} "
        f"out {_int(e['output_tokens'])}  {_usd(e['cost_nano_usd'])}  {_ms(e['latency_ms'])}  {_status(e)}"
    )


def _cost(r: Row) -> str:
    return _usd(r["cost_nano_usd"], r.get("unknown_cost_calls", 0))


def _field(key: str, fmt: Callable[[Any], str] = str) -> Callable[[Row], str]:
    return lambda r: "" if key not in r else fmt(r[key])


RUN_COLUMNS: tuple[Column, ...] = (
    ("run", _field("run_id")),
    ("name", _field("name", _text)),
    ("status", _field("status")),
    ("started (UTC)", _field("started_at", _when)),
    (">duration", _field("duration_s", lambda s: "-" if s is None else f"{s:.1f}s")),
    (">calls", _field("calls", _int)),
    (">errors", _field("errors", _int)),
    (">tokens", lambda r: _int(sum(r[b] for b in BUCKETS if b != "reasoning_tokens"))),
    (">cost", _cost),
    (">p90", _field("p90_latency_ms", _ms)),
    (">decisions", _field("decisions", _int)),
)
REPORT_COLUMNS: tuple[Column, ...] = (
    (">calls", _field("calls", _int)),
    (">errors", _field("error_rate", _pct)),
    (">input", _field("input_tokens", _int)),
    (">cache read", _field("cache_read_tokens", _int)),
    (">output", _field("output_tokens", _int)),
    (">cache hit", _field("cache_hit_ratio", _pct)),
    (">cost", _cost),
    *(
        (f">{label}", _field(key, _ms))
        for label, key in (
            ("p50", "p50_latency_ms"),
            ("p90", "p90_latency_ms"),
            ("p99", "p99_latency_ms"),
            ("ttft p50", "p50_ttft_ms"),
            ("ttft p90", "p90_ttft_ms"),
            ("ttft p99", "p99_ttft_ms"),
        )
    ),
)


def _calls_only(fmt: Callable[[Row], str]) -> Callable[[Row], str]:
    return lambda e: fmt(e) if e["kind"] == "call" else ""


def _timeline_columns(started_at: float) -> tuple[Column, ...]:
    return (
        (">t", lambda e: f"+{e['ts'] - started_at:.1f}s"),
        (">step", _field("step", _int)),
        ("event", _field("kind")),
        ("model / policy", lambda e: _model(e) if e["kind"] == "call" else e["policy"]),
        (">input", _calls_only(_field("input_tokens", _int))),
        (">cache read", _calls_only(_field("cache_read_tokens", _int))),
        (">output", _calls_only(_field("output_tokens", _int))),
        (">cost", _calls_only(_cost)),
        (">ttft", _calls_only(_field("ttft_ms", _ms))),
        (">latency", _calls_only(_field("latency_ms", _ms))),
        ("status / action", lambda e: _status(e) if e["kind"] == "call" else _action(e)),
    )


def _action(e: Row) -> str:
    """The decision's action and why: its reason, else the details it recorded (a compaction's sizes)."""
    why = e["reason"] or " ".join(
        f"{k}={v}" for k, v in sorted(e["detail"].items()) if k != "transition"
    )
    text = f"{e['action']}: {why}" if why else e["action"]
    repeats = e.get("repeats")
    return f"{text} (and {repeats:,} more like it until +{e['until']:.1f}s)" if repeats else text


def _collapse_repeats(timeline: list[Row], started_at: float) -> list[Row]:
    """The timeline with each run of one policy's still-active decisions shown as its first
    (with how many followed, and until when); ``--json`` keeps every one."""
    return [
        {**first, "repeats": more, "until": last["ts"] - started_at} if more else first
        for first, more, last in query.fold_repeats(timeline, _still_active)
    ]


def _still_active(e: Row) -> tuple[str, str] | None:
    if e["kind"] == "decision" and e.get("transition") == "active":
        return e["policy"], e["action"]
    return None


def _print_run(run: Row, timeline: list[Row]) -> None:
    click.echo(
        f"run {run['run_id']}  {_text(run['name'])}  status {run['status']}  tags {_tags(run['tags'])}"
    )
    click.echo(
        f"started {_when(run['started_at'])} UTC  ended {_when(run['ended_at'])}  {run['calls']} calls, "
        f"{run['errors']} errors, {run['decisions']} decisions, cost {_cost(run)}"
    )
    started = run["started_at"]
    shown = _collapse_repeats(timeline, started)
    _echo_table(_timeline_columns(started), shown, empty="no calls recorded yet")


# -- commands ----------------------------------------------------------------------------------
def register(cli: click.Group) -> None:
    """Add the inspection commands to ``cli``."""

    @cli.command(epilog=RUNS_EPILOG)
    @click.option(
        "--since",
        type=_Duration(),
        help="Only runs that started or ended in this window (24h, 7d).",
    )
    @click.option(
        "--tag",
        "tags",
        multiple=True,
        callback=_tag_pairs,
        metavar="NAME=VALUE",
        help="Only runs with this tag (repeat to require several).",
    )
    @click.option(
        "--status",
        "statuses",
        multiple=True,
        help="Only runs with this status: running, ok, halted, error (repeatable).",
    )
    @click.option(
        "--limit",
        default=50,
        show_default=True,
        type=click.IntRange(min=0),
        help="At most this many runs, newest first (0: all).",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @db_option
    def runs(
        db_path: str | None,
        since: float | None,
        tags: dict[str, str],
        statuses: tuple[str, ...],
        limit: int | None,
        as_json: bool,
    ) -> None:
        """List recorded runs, newest first: calls, errors, tokens, exact cost, p90 latency, decisions."""
        with _reading(db_path) as conn:
            rows = query.list_runs(
                conn, since_s=since, tags=tags, status=statuses or None, limit=limit or None
            )
        if as_json:
            _echo_json(rows)
        else:
            _echo_table(RUN_COLUMNS, rows, empty="no runs match")

    @cli.command(epilog=SHOW_EPILOG)
    @click.argument("run_id", metavar="RUN")
    @click.option(
        "--json", "as_json", is_flag=True, help="Print JSON: the run's summary and its timeline."
    )
    @db_option
    def show(db_path: str | None, run_id: str, as_json: bool) -> None:
        """Show one run: its summary, then its calls and decisions in time order.

        RUN is a run id, a unique prefix of one, or 'last'. Consecutive still-active decisions of
        one policy (a cap that keeps pausing) show as one row with a count; --json lists each.
        """
        with _reading(db_path) as conn:
            timeline = query.run_timeline(conn, run_id)
            (run,) = query.list_runs(conn, run_id=run_id)
        if as_json:
            _echo_json({"run": run, "timeline": timeline})
        else:
            _print_run(run, timeline)

    @cli.command(epilog=REPORT_EPILOG)
    @click.option(
        "--by",
        default="model",
        show_default=True,
        help="Group by model, requested_model, model_version, provider, day, hour (UTC) or tag:NAME.",
    )
    @click.option(
        "--since", type=_Duration(), help="Only calls that finished in this window (24h, 7d)."
    )
    @click.option(
        "--run",
        "run_id",
        metavar="RUN",
        help="Only the calls of this run (id, unique prefix or 'last').",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @click.option(
        "--html",
        "html_path",
        metavar="FILE",
        help="With RUN (or --run): write the run's post-mortem as one HTML file instead.",
    )
    @click.argument("run_arg", metavar="[RUN]", required=False)
    @db_option
    def report(
        db_path: str | None,
        by: str,
        since: float | None,
        run_id: str | None,
        as_json: bool,
        html_path: str | None,
        run_arg: str | None,
    ) -> None:
        """Per group: calls, error rate, tokens, cache hits, exact cost, p50/p90/p99 latency and TTFT.

        With a RUN and --html FILE: the run's post-mortem (the same as ``agentmeter postmortem``).
        """
        run_id = run_arg or run_id
        if html_path is not None:
            if run_id is None:
                raise click.UsageError("--html needs a run: agentmeter report RUN --html out.html")
            from .html_report import write_html_report

            with _reading(db_path) as conn:
                resolved = query.resolve_run_id(conn, run_id)
                write_html_report(conn, resolved, html_path)
            click.echo(f"wrote the post-mortem of run {resolved} to {html_path}")
            return
        preload = None if as_json else _preload_table()
        try:
            with _reading(db_path) as conn:
                rows = reports.report(conn, by=by, since_s=since, run_id=run_id)
        finally:
            if preload is not None:
                preload.join()
        if as_json:
            _echo_json(rows)
        else:
            total = {"group": "total", **reports.report_total(rows)} if len(rows) > 1 else None
            _echo_table(
                ((by, _field("group", _text)), *REPORT_COLUMNS),
                rows,
                empty="no calls match",
                total=total,
            )
            hits = sum(r["response_cache_hits"] for r in rows)
            signals = sum(r["feedback"] for r in rows)
            if hits or signals:
                click.echo(reports.report_extras(rows))

    @cli.command(epilog=TAIL_EPILOG)
    @click.option(
        "-n",
        "--lines",
        "last",
        default=10,
        show_default=True,
        type=click.IntRange(min=0),
        help="Show this many recent events first.",
    )
    @click.option(
        "--once", is_flag=True, help="Print the recent events and exit instead of following."
    )
    @click.option(
        "--interval",
        default=0.5,
        show_default=True,
        type=click.FloatRange(min=0.05),
        help="Seconds between polls.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object per event.")
    @db_option
    def tail(db_path: str | None, last: int, once: bool, interval: float, as_json: bool) -> None:
        """Follow calls and decisions as agents record them (Ctrl-C stops)."""
        first = open_readonly(db_path)  # a missing database is one clear line, before following
        stop = (lambda: True) if once else None
        refresh = None
        path = resolve_db_path(db_path)
        if is_postgres_url(path):  # followed through a SQLite mirror brought up to date each poll
            from .storage import postgres

            refresh = lambda conn: postgres.refresh(path, conn)  # noqa: E731
            factory = lambda: first  # noqa: E731
        else:
            first.close()
            factory = lambda: open_readonly(db_path)  # noqa: E731
        try:
            for event in query.tail(
                factory, last=last, poll_s=interval, stop=stop, refresh=refresh
            ):
                click.echo(
                    json.dumps(query.jsonable(event), ensure_ascii=False)
                    if as_json
                    else _event_line(event)
                )
        except KeyboardInterrupt:
            pass
        except sqlite3.Error as exc:
            raise click.ClickException(f"cannot read the flight recorder: {exc}") from None

    @cli.command()
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(query.EXPORT_FORMATS),
        default="jsonl",
        show_default=True,
        help="jsonl: one object per row (tags and detail decoded); csv: a header, then the columns as stored.",
    )
    @click.option(
        "--table",
        type=click.Choice(query.EXPORT_TABLES),
        default="calls",
        show_default=True,
        help="Which table to export.",
    )
    @click.option(
        "--run",
        "run_id",
        metavar="RUN",
        help="Only the rows of this run (id, unique prefix or 'last').",
    )
    @click.option(
        "-o",
        "--output",
        type=click.File("w", encoding="utf-8"),
        default="-",
        help="Write here instead of standard output.",
    )
    @db_option
    def export(
        db_path: str | None, fmt: str, table: str, run_id: str | None, output: IO[str]
    ) -> None:
        """Stream a table's rows as JSON lines or CSV, in id order, in constant memory."""
        with _reading(db_path) as conn:
            query.export(conn, output, fmt=fmt, table=table, run_id=run_id)
