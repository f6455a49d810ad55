"""Post-mortem of one run as a single, self-contained HTML file.

One file that opens anywhere, offline: inline CSS and inline SVG, no script, no font or image
fetched. It holds a timeline of the run's calls (total latency and time to first token per call,
cumulative spend, the model each call used), every decision as a marker with its reason (an SVG
``<title>`` tooltip, and a table; a run of one policy's still-active decisions is one marker and
row with a count), and a per-model table.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from .errors import ReplayError
from .pricing import nano_to_usd
from .query import fold_repeats
from .report import MODEL_SUMMARY_HEADERS
from .windows import quantile_of_sorted

__all__ = ["render_html_report", "write_html_report"]

# Above this many calls the lines are thinned to one point per pixel column (min and max kept).
MAX_POINTS = 20_000

_MODEL_COLORS = (
    "#4c78a8",
    "#f58518",
    "#54a24b",
    "#b279a2",
    "#e45756",
    "#72b7b2",
    "#9d755d",
    "#eeca3b",
)
_ACTION_COLORS = {
    "downgrade": "#2f6db5",
    "halt": "#d62728",
    "pause": "#e08a00",
    "alert": "#8e44ad",
    "compact": "#2ca02c",
    "compacted": "#2ca02c",
    "warn": "#c9a100",
    "recover": "#7f8c8d",
    "no_stream": "#17a2b8",
}

_W = 1120  # SVG width (user units); the SVG scales to the page
_LEFT, _RIGHT = 72, 24
_LANE_TOP = 30  # decision markers sit in a lane above the latency panel
_LAT_TOP, _LAT_H = 78, 240
_SPEND_TOP, _SPEND_H = _LAT_TOP + _LAT_H + 46, 170
_AXIS_Y = _SPEND_TOP + _SPEND_H
_H = _AXIS_Y + 46


@dataclass(frozen=True, slots=True)
class _Call:
    step: int | None
    ts: float
    model: str
    requested_model: str | None
    latency_ms: float | None
    ttft_ms: float | None
    cost_nano: int | None
    status: str
    error_type: str | None


@dataclass(frozen=True, slots=True)
class _Decision:
    step: int | None
    ts: float
    policy: str
    action: str
    transition: str
    reason: str
    repeats: int = 0  # the still-active decisions folded into this one (see ``_fold``)
    until: float = 0.0  # when the last of them was taken


def _fold(decisions: Sequence[_Decision]) -> list[_Decision]:
    """Each run of one policy's still-active decisions as its first, with a count (``fold_repeats``)."""
    return [
        replace(first, repeats=more, until=last.ts) if more else first
        for first, more, last in fold_repeats(
            decisions, lambda d: (d.policy, d.action) if d.transition == "active" else None
        )
    ]


def write_html_report(
    conn_or_path: sqlite3.Connection | str | os.PathLike[str],
    run_id: str,
    out_path: str | os.PathLike[str],
) -> Path:
    """Write the post-mortem of run ``run_id`` to ``out_path`` (one self-contained HTML file)."""
    html = render_html_report(conn_or_path, run_id)
    path = Path(out_path)
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise ReplayError(f"cannot write the report to {path}: {exc.strerror}") from None
    return path


def render_html_report(
    conn_or_path: sqlite3.Connection | str | os.PathLike[str], run_id: str
) -> str:
    """The post-mortem of run ``run_id`` as HTML text."""
    from .replay import open_db

    conn, opened = open_db(conn_or_path)
    try:
        return _render(conn, run_id)
    finally:
        if opened:
            conn.close()


# --------------------------------------------------------------------------------------------
def _load(
    conn: sqlite3.Connection, run_id: str
) -> tuple[dict[str, Any], list[_Call], list[_Decision]]:
    row = conn.execute(
        "SELECT name, started_at, ended_at, status, tags, policy_hash FROM agentmeter_runs WHERE run_id = ?",
        (run_id,),
    ).fetchone()
    calls = [
        _Call(
            step, ts, model or requested or "?", requested, latency, ttft, cost, status, error_type
        )
        for step, ts, requested, model, latency, ttft, cost, status, error_type in conn.execute(
            "SELECT step, ts, requested_model, model, latency_ms, ttft_ms, cost_nano_usd, status, "
            "error_type FROM agentmeter_calls WHERE run_id = ? ORDER BY id",
            (run_id,),
        )
    ]
    decisions = []
    for step, ts, policy, action, detail_text in conn.execute(
        "SELECT step, ts, policy, action, detail FROM agentmeter_decisions WHERE run_id = ? ORDER BY id",
        (run_id,),
    ):
        detail = _json(detail_text)
        reason = str(detail.get("reason") or "")
        if not reason and action == "compacted":
            reason = (
                f"compacted the context from {detail.get('tokens_before', '?'):,} to "
                f"{detail.get('tokens_after', '?'):,} tokens (target {detail.get('target_tokens', '?'):,})"
                if all(
                    isinstance(detail.get(k), int)
                    for k in ("tokens_before", "tokens_after", "target_tokens")
                )
                else "compacted the context"
            )
        decisions.append(
            _Decision(step, ts, policy, action, str(detail.get("transition", "fire")), reason)
        )
    if row is None and not calls:
        raise ReplayError(f"no run {run_id!r} in the flight recorder")
    run = {
        "name": row[0] if row else None,
        "started_at": row[1] if row else (calls[0].ts if calls else None),
        "ended_at": row[2] if row else None,
        "status": row[3] if row else "unknown",
        "tags": _json(row[4]) if row else {},
        "policy_hash": row[5] if row else None,
    }
    return run, calls, decisions


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _render(conn: sqlite3.Connection, run_id: str) -> str:
    from . import __version__
    from .report import model_summary

    run, calls, decisions = _load(conn, run_id)
    models = model_summary(conn, run_id=run_id)
    total_nano = sum(c.cost_nano or 0 for c in calls)
    unknown = sum(1 for c in calls if c.cost_nano is None and c.status == "ok")
    errors = sum(1 for c in calls if c.status != "ok")
    latencies = sorted(c.latency_ms for c in calls if c.latency_ms is not None and c.status == "ok")
    p50 = quantile_of_sorted(latencies, 0.5)
    p90 = quantile_of_sorted(latencies, 0.9)
    started = run["started_at"]
    last_ts = run["ended_at"] or (calls[-1].ts if calls else started)
    duration = (last_ts - started) if started is not None and last_ts is not None else None
    title = run["name"] or run_id
    palette = _model_palette(calls)
    shown = _fold(decisions)

    cards = [
        ("Spend", _usd(total_nano) + (f" <small>+{unknown} unpriced</small>" if unknown else "")),
        ("Calls", f"{len(calls):,}" + (f" <small>{errors:,} failed</small>" if errors else "")),
        ("Latency p50 / p90", f"{_secs(p50)} / {_secs(p90)}"),
        ("Decisions", f"{len(decisions):,}"),
        ("Duration", _duration(duration)),
    ]
    tags = ", ".join(f"{escape(str(k))}={escape(str(v))}" for k, v in sorted(run["tags"].items()))
    subtitle = " · ".join(
        part
        for part in (
            f"run <code>{escape(run_id)}</code>",
            f"status <b class='status-{escape(str(run['status']))}'>{escape(str(run['status']))}</b>",
            f"started {_utc(started)}" if started is not None else "",
            f"tags {tags}" if tags else "",
            f"policies <code>{escape(run['policy_hash'])}</code>" if run["policy_hash"] else "",
        )
        if part
    )
    parts = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Post-mortem · {escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<header><h1>Post-mortem: {escape(title)}</h1><p class='sub'>{subtitle}</p></header>",
        '<section class="cards">'
        + "".join(f'<div class="card"><span>{k}</span><strong>{v}</strong></div>' for k, v in cards)
        + "</section>",
        '<section><h2>Timeline</h2><figure class="chart">',
        _svg(calls, shown, palette, started),
        "</figure>",
        _legend(palette, decisions),
        "</section>",
        _decision_table(shown, started),
        _model_table(models, palette),
        f"<footer>agentmeter {escape(__version__)} · one self-contained file: no scripts, "
        "nothing fetched · hover a marker or a point for details</footer>",
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


# -- the chart ------------------------------------------------------------------------------------
def _model_palette(calls: Sequence[_Call]) -> dict[str, str]:
    palette: dict[str, str] = {}
    for call in calls:
        if call.model not in palette:
            palette[call.model] = _MODEL_COLORS[len(palette) % len(_MODEL_COLORS)]
    return palette


def _nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top`` (steps of 1, 2 or 5 times a power of ten)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** _floor_log10(raw)
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * power
        if step >= raw:
            break
    ticks = []
    value = 0.0
    while value < top + step * 0.999:
        ticks.append(value)
        value += step
    return ticks


def _floor_log10(value: float) -> int:
    exponent = 0
    while value >= 10:
        value /= 10
        exponent += 1
    while value < 1:
        value *= 10
        exponent -= 1
    return exponent


def _thin(indices: range, limit: int) -> list[int]:
    """The call indexes to draw: all of them, or an even spread of at most ``limit``."""
    n = len(indices)
    if n <= limit:
        return list(indices)
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def _svg(
    calls: Sequence[_Call],
    decisions: Sequence[_Decision],
    palette: dict[str, str],
    started: float | None,
) -> str:
    n = len(calls)
    plot_w = _W - _LEFT - _RIGHT
    out: list[str] = [
        f'<svg class="timeline" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="latency and cumulative spend per call, with policy decisions">'
    ]
    if n == 0:
        out.append(
            f'<text x="{_W / 2}" y="{_H / 2}" class="empty" text-anchor="middle">no calls recorded</text></svg>'
        )
        return "".join(out)

    def x_of(i: float) -> float:
        return _LEFT + (i + 0.5) * plot_w / n

    # Model bands behind the latency chart: which model served each stretch of calls.
    start = 0
    for i in range(1, n + 1):
        if i == n or calls[i].model != calls[start].model:
            x0 = _LEFT + start * plot_w / n
            x1 = _LEFT + i * plot_w / n
            out.append(
                f'<rect class="band" x="{x0:.1f}" y="{_LAT_TOP}" width="{max(x1 - x0, 0.5):.1f}" '
                f'height="{_LAT_H}" fill="{palette[calls[start].model]}"><title>steps '
                f"{calls[start].step}–{calls[i - 1].step}: {escape(calls[start].model)}</title></rect>"
            )
            start = i

    # Latency (total and time to first token).
    top = max([c.latency_ms or 0.0 for c in calls] + [c.ttft_ms or 0.0 for c in calls] + [1.0])
    ticks = _nice_ticks(top)
    scale = ticks[-1]

    def y_lat(ms: float) -> float:
        return _LAT_TOP + _LAT_H - ms / scale * _LAT_H

    out.append(_panel(_LAT_TOP, _LAT_H, ticks, y_lat, _secs_tick, "latency"))
    drawn = _thin(range(n), MAX_POINTS)
    latency_points = " ".join(
        f"{x_of(i):.1f},{y_lat(calls[i].latency_ms or 0.0):.1f}" for i in drawn
    )
    out.append(f'<polyline class="line latency" points="{latency_points}"/>')
    ttft = [i for i in drawn if calls[i].ttft_ms is not None]
    if ttft:
        points = " ".join(f"{x_of(i):.1f},{y_lat(calls[i].ttft_ms or 0.0):.1f}" for i in ttft)
        out.append(f'<polyline class="line ttft" points="{points}"/>')
    if n <= 2000:
        for i, call in enumerate(calls):
            failed = call.status != "ok"
            tip = (
                f"step {call.step} · {call.model} · {_secs(call.latency_ms)}"
                + (f" (first token {_secs(call.ttft_ms)})" if call.ttft_ms is not None else "")
                + f" · {_usd(call.cost_nano) if call.cost_nano is not None else 'cost unknown'}"
                + (f" · failed: {call.error_type or 'error'}" if failed else "")
            )
            out.append(
                f'<circle class="pt{" err" if failed else ""}" cx="{x_of(i):.1f}" '
                f'cy="{y_lat(call.latency_ms or 0.0):.1f}" r="{4 if failed else 2.6}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    out.append(
        f'<text class="panel-title" x="{_LEFT}" y="{_LANE_TOP - 12}">Latency per call</text>'
    )
    out.append(
        f'<text class="axis" x="{_LEFT - 8}" y="{_LANE_TOP + 16}" text-anchor="end">decisions</text>'
        f'<line class="lane" x1="{_LEFT}" y1="{_LAT_TOP - 4}" x2="{_W - _RIGHT}" y2="{_LAT_TOP - 4}"/>'
    )

    # Cumulative spend.
    cumulative: list[int] = []
    total = 0
    for call in calls:
        total += call.cost_nano or 0
        cumulative.append(total)
    spend_ticks = _nice_ticks(max(total, 1) / 1e9)
    spend_scale = spend_ticks[-1]

    def y_spend(usd: float) -> float:
        return _SPEND_TOP + _SPEND_H - usd / spend_scale * _SPEND_H

    out.append(_panel(_SPEND_TOP, _SPEND_H, spend_ticks, y_spend, _usd_tick, "spend"))
    spend_points = " ".join(f"{x_of(i):.1f},{y_spend(cumulative[i] / 1e9):.1f}" for i in drawn)
    base = _SPEND_TOP + _SPEND_H
    out.append(
        f'<path class="area" d="M{x_of(drawn[0]):.1f},{base} L{spend_points.replace(" ", " L")} '
        f'L{x_of(drawn[-1]):.1f},{base} Z"/>'
    )
    out.append(f'<polyline class="line spend" points="{spend_points}"/>')
    out.append(
        f'<text class="panel-title" x="{_LEFT}" y="{_SPEND_TOP - 12}">Cumulative spend '
        f"({escape(_usd(total))})</text>"
    )

    # X axis: call steps, with the time since the run started.
    for i in _thin(range(n), 9):
        x = x_of(i)
        label = f"step {calls[i].step}" if calls[i].step is not None else f"#{i + 1}"
        elapsed = f"+{_duration(calls[i].ts - started)}" if started is not None else ""
        out.append(
            f'<line class="tick" x1="{x:.1f}" y1="{_AXIS_Y}" x2="{x:.1f}" y2="{_AXIS_Y + 5}"/>'
            f'<text class="axis" x="{x:.1f}" y="{_AXIS_Y + 18}" text-anchor="middle">{label}</text>'
            f'<text class="axis dim" x="{x:.1f}" y="{_AXIS_Y + 32}" text-anchor="middle">{escape(elapsed)}</text>'
        )

    # Decisions: a rule across both panels and a marker per decision (stacked at one step).
    index_of_step: dict[int, int] = {}
    for i, call in enumerate(calls):
        if call.step is not None:
            index_of_step.setdefault(call.step, i)
    stacked: dict[float, int] = {}
    for d in decisions:
        i = _index_for(d, calls, index_of_step)
        # Between the call before and the call it decided: where a model band changes.
        x = _LEFT + i * plot_w / n if i < n else _W - _RIGHT - 4
        color = _ACTION_COLORS.get(d.action, "#555")
        level = stacked.get(x, 0)
        stacked[x] = level + 1
        y = _LANE_TOP + 6 + (level % 3) * 13 + (level // 3) * 4
        tip = f"step {d.step} · {d.policy} → {d.action} ({d.transition})" + (
            f"\n{d.reason}" if d.reason else ""
        )
        dash = ' stroke-dasharray="2 3"' if d.transition in ("recover", "warn") else ""
        out.append(
            f'<g class="decision-marker" data-action="{escape(d.action)}"><title>{escape(tip)}</title>'
            f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x:.1f}" y2="{_AXIS_Y}" stroke="{color}"{dash}/>'
            f"{_shape(d.action, x, y, color)}</g>"
        )
    out.append("</svg>")
    return "".join(out)


def _index_for(d: _Decision, calls: Sequence[_Call], index_of_step: dict[int, int]) -> int:
    """The call a decision came before: the first call of its step (or of a later one)."""
    if d.step is not None:
        if d.step in index_of_step:
            return index_of_step[d.step]
        later = [i for s, i in index_of_step.items() if s > d.step]
        if later:
            return min(later)
        return len(calls)
    for i, call in enumerate(calls):
        if call.ts >= d.ts:
            return i
    return len(calls)


def _shape(action: str, x: float, y: float, color: str) -> str:
    if action == "halt":
        return f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{color}" class="mk"/>'
    if action in ("pause", "warn"):
        return (
            f'<path d="M{x:.1f},{y - 6:.1f} L{x + 6:.1f},{y + 5:.1f} L{x - 6:.1f},{y + 5:.1f} Z" '
            f'fill="{color}" class="mk"/>'
        )
    if action in ("downgrade", "recover"):
        return (
            f'<path d="M{x - 6:.1f},{y - 4:.1f} L{x + 6:.1f},{y - 4:.1f} L{x:.1f},{y + 6:.1f} Z" '
            f'fill="{color}" class="mk"/>'
        )
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{color}" class="mk"/>'


def _panel(top: float, height: float, ticks: list[float], y_of: Any, fmt: Any, name: str) -> str:
    out = [
        f'<rect class="frame" x="{_LEFT}" y="{top}" width="{_W - _LEFT - _RIGHT}" height="{height}"/>'
    ]
    for t in ticks:
        y = y_of(t)
        out.append(
            f'<line class="grid" x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{fmt(t)}</text>'
        )
    return f'<g class="panel panel-{name}">' + "".join(out) + "</g>"


def _legend(palette: dict[str, str], decisions: Sequence[_Decision]) -> str:
    items = [
        '<span><i class="sw line-latency"></i>total latency</span>',
        '<span><i class="sw line-ttft"></i>time to first token</span>',
        '<span><i class="sw line-spend"></i>cumulative spend</span>',
        '<span><i class="sw dot-err"></i>failed call</span>',
    ]
    items += [
        f'<span><i class="sw band" style="background:{color}"></i>{escape(model)}</span>'
        for model, color in palette.items()
    ]
    actions = sorted({d.action for d in decisions})
    items += [
        f'<span><svg class="sw-mark" viewBox="-7 -7 14 14" width="13" height="13">'
        f"{_shape(a, 0, 0, _ACTION_COLORS.get(a, '#555'))}</svg>{escape(a)}</span>"
        for a in actions
    ]
    return '<p class="legend">' + "".join(items) + "</p>"


def _decision_table(decisions: Sequence[_Decision], started: float | None) -> str:
    if not decisions:
        return "<section><h2>Decisions</h2><p class='none'>No policy fired during this run.</p></section>"
    rows = []
    for d in decisions:
        color = _ACTION_COLORS.get(d.action, "#555")
        when = f"+{_duration(d.ts - started)}" if started is not None else _utc(d.ts)
        rows.append(
            f"<tr><td class='num'>{d.step if d.step is not None else ''}</td><td class='num'>{escape(when)}</td>"
            f"<td class='policy'>{escape(d.policy)}</td><td><span class='pill' style='background:{color}'>"
            f"{escape(d.action)}</span></td><td>{escape(d.transition)}</td>"
            f"<td class='reason'>{escape(d.reason)}{_more(d, started)}</td></tr>"
        )
    return (
        "<section><h2>Decisions</h2><table><thead><tr><th>step</th><th>at</th><th>policy</th>"
        "<th>action</th><th>transition</th><th>reason</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _more(d: _Decision, started: float | None) -> str:
    if not d.repeats:
        return ""
    when = f"+{_duration(d.until - started)}" if started is not None else _utc(d.until)
    return f" <small>(and {d.repeats:,} more like it until {escape(when)})</small>"


def _model_table(models: Sequence[dict[str, Any]], palette: dict[str, str]) -> str:
    if not models:
        return ""
    rows = []
    for m in models:
        color = palette.get(m["model"], "#999")
        cost = _usd(m["cost_nano_usd"]) + (
            f" (+{m['unknown_cost_calls']} unpriced)" if m["unknown_cost_calls"] else ""
        )
        rows.append(
            f"<tr><td><i class='sw band' style='background:{color}'></i>{escape(m['model'])}</td>"
            f"<td class='num'>{m['calls']:,}</td><td class='num'>{m['errors']:,}</td>"
            f"<td class='num'>{m['input_tokens']:,}</td><td class='num'>{m['cache_read_tokens']:,}</td>"
            f"<td class='num'>{m['cache_write_tokens']:,}</td><td class='num'>{m['output_tokens']:,}</td>"
            f"<td class='num'>{m['reasoning_tokens']:,}</td><td class='num'>{escape(cost)}</td>"
            f"<td class='num'>{_secs(m['p50_latency_ms'])}</td><td class='num'>{_secs(m['p90_latency_ms'])}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in MODEL_SUMMARY_HEADERS)
    return f"<section><h2>Per model</h2><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"


# -- formatting -----------------------------------------------------------------------------------
def _usd(nano: int | None) -> str:
    if nano is None:
        return "unknown"
    value = nano_to_usd(nano)
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def _usd_tick(usd: float) -> str:
    if usd == 0:
        return "$0"
    return f"${usd:,.2f}" if usd >= 0.1 else f"${usd:.3f}"


def _secs(ms: float | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.2f}s"


def _secs_tick(ms: float) -> str:
    return "0" if ms == 0 else (f"{ms / 1000:g}s" if ms >= 1000 else f"{ms:g}ms")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _utc(ts: float | None) -> str:
    if ts is None:
        return "–"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


_CSS = """
:root{--fg:#1d2433;--dim:#6b7385;--line:#e3e6ee;--bg:#f6f7fb;--card:#fff;--accent:#2f6db5}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:28px 28px 40px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:15px;margin:28px 0 10px;text-transform:uppercase;letter-spacing:.06em;color:var(--dim)}
.sub{margin:0;color:var(--dim)}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eceef4;padding:1px 5px;border-radius:4px}
.status-ok{color:#2a8a3e}.status-halted,.status-error{color:#c0392b}.status-running{color:#b7791f}
.cards{display:flex;gap:12px;margin-top:18px;flex-wrap:wrap}
.card{flex:1 1 150px;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card span{display:block;color:var(--dim);font-size:12px;text-transform:uppercase;letter-spacing:.05em}
.card strong{font-size:21px;font-weight:650}
.card small{font-size:12px;color:var(--dim);font-weight:400}
figure.chart{margin:0;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:8px}
svg.timeline{width:100%;height:auto;display:block}
svg .frame{fill:none;stroke:#cfd4df}
svg .grid{stroke:#eef0f5}
svg .axis{font-size:11px;fill:var(--dim)}
svg .axis.dim{fill:#9aa1b1}
svg .tick{stroke:#b8bfcc}
svg .panel-title{font-size:12.5px;font-weight:600;fill:var(--fg)}
svg .band{opacity:.09}
svg .line{fill:none;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}
svg .latency{stroke:#2f6db5}
svg .ttft{stroke:#f58518;stroke-dasharray:4 3;stroke-width:1.5}
svg .spend{stroke:#2a8a3e;stroke-width:2}
svg .area{fill:#2a8a3e;opacity:.10}
svg .pt{fill:#2f6db5}
svg .pt.err{fill:#d62728;stroke:#fff;stroke-width:1}
svg .lane{stroke:#e3e6ee}
svg .decision-marker line{stroke-width:1.2;opacity:.4}
svg .decision-marker .mk{stroke:#fff;stroke-width:1}
svg .decision-marker:hover line{opacity:1;stroke-width:2}
svg .empty{font-size:16px;fill:var(--dim)}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;color:var(--dim);font-size:12.5px;margin:10px 2px 0}
.legend span{display:inline-flex;align-items:center;gap:6px}
.sw{display:inline-block;width:14px;height:10px;border-radius:2px;vertical-align:middle;margin-right:6px}
.legend .sw{margin-right:0}
.sw.line-latency{height:3px;background:#2f6db5}
.sw.line-ttft{height:0;border-top:2px dashed #f58518;background:none}
.sw.line-spend{height:3px;background:#2a8a3e}
.sw.dot-err{width:9px;height:9px;border-radius:50%;background:#d62728}
.sw.band{opacity:.55}
.sw-mark{display:inline-block;vertical-align:middle}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:10px;overflow:hidden;font-size:13px}
th,td{padding:7px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f0f2f7;color:var(--dim);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
tr:last-child td{border-bottom:none}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.reason{color:#3b4356}
td.policy{white-space:nowrap}
.pill{color:#fff;border-radius:999px;padding:1px 8px;font-size:12px;white-space:nowrap}
.none{color:var(--dim)}
footer{margin-top:28px;color:#9aa1b1;font-size:12px}
"""
