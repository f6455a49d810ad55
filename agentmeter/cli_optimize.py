"""Self-optimization commands: ``compare`` (A/B statistics) and ``tune`` (proposals from history).

Each command parses its options, makes one call into ``agentmeter.compare`` or ``agentmeter.tune``
and prints a table for people or ``--json`` for programs. numpy and scipy load inside the
library calls, never when the CLI starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .cli_common import db_option
from .cli_inspect import _Duration, _echo_json, _echo_table, _field, _int, _ms, _pct, _reading
from .units import parse_duration_s, parse_percent

Row = dict[str, Any]

COMPARE_EPILOG = (
    'JSON: {"by", "baseline", "alpha", "confidence", "seed", "resamples", "since_s", '
    '"excluded_calls", "arms": [ARM, ...], "comparisons": [COMPARISON, ...], "verdicts", "notes"}. '
    "ARM: arm, calls, runs, errors, error_rate, unknown_cost_calls, priced_runs, "
    "cost_per_call_usd, cost_per_call_ci_usd, cost_per_run_usd, cost_per_run_ci_usd, "
    "p50_latency_ms, p90_latency_ms, p50_ttft_ms, p90_ttft_ms, mean_output_tokens. COMPARISON: "
    "arm, baseline, cost_per_run_change (relative to the baseline), cost_per_run_change_ci, "
    "cost_per_run_p, cost_per_run_significant, cost_per_call_change, cost_per_call_change_ci, "
    "p50_latency_change, latency_p, latency_significant, error_rate, baseline_error_rate, "
    "error_rate_p, error_rate_significant, verdict. Costs are exact decimal USD strings."
)
TUNE_EPILOG = (
    'JSON: {"policies", "since_s", "margin", "quantile", "min_calls", "latency_p90_target_ms", '
    '"max_error_rate", "by", "calls", "changed", "proposals": [PROPOSAL, ...], "routing": [MIX, '
    '...], "diff", "proposed_yaml", "replay", "notes"}. PROPOSAL: policy, condition, metric, '
    "stat, window, scope, unit, current, proposed, status (changed, unchanged, kept), basis, n, "
    "recover_below. MIX: task, status (optimal, infeasible, no eligible models), message, "
    "models, shares, current_shares, expected_cost_per_call_usd, current_cost_per_call_usd, "
    "expected_p90_latency_ms (a linear surrogate), expected_error_rate. replay: runs, "
    "recorded_cost_usd, current and proposed (cost_usd, decisions, by_policy, halted_runs, "
    "calls_not_made)."
)


def _ci(key: str) -> Callable[[Row], str]:
    def cell(row: Row) -> str:
        value, ci = row[key], row[f"{key[:-4]}_ci_usd"]
        if value is None:
            return "-"
        places = 6 if value < 0.01 else 4
        return _usd_text(value) + (
            "" if ci is None else f" ({ci[0]:.{places}f}–{ci[1]:.{places}f})"
        )

    return cell


def _usd_text(value: Any) -> str:
    return f"${value:.6f}" if value < 0.01 else f"${value:.4f}"


COMPARE_COLUMNS = (
    ("arm", _field("arm")),
    (">calls", _field("calls", _int)),
    (">runs", _field("runs", _int)),
    (">errors", _field("error_rate", _pct)),
    (">cost / call (CI)", _ci("cost_per_call_usd")),
    (">cost / run (CI)", _ci("cost_per_run_usd")),
    (">p50", _field("p50_latency_ms", _ms)),
    (">p90", _field("p90_latency_ms", _ms)),
    (">ttft p50", _field("p50_ttft_ms", _ms)),
    (">ttft p90", _field("p90_ttft_ms", _ms)),
    (">out tokens", _field("mean_output_tokens", lambda v: "-" if v is None else f"{v:,.0f}")),
)
PROPOSAL_COLUMNS = (
    ("policy", lambda p: p.policy if p.condition == 0 else f"{p.policy} [{p.condition}]"),
    ("condition", lambda p: f"{p.metric} {p.stat} {p.window or ''} {p.scope}".replace("  ", " ")),
    (">current", lambda p: _value(p.current, p.unit)),
    (">proposed", lambda p: "-" if p.proposed is None else _value(p.proposed, p.unit)),
    ("basis", lambda p: p.basis),
)
MIX_COLUMNS = (
    ("model", lambda m: m.model),
    (">calls", lambda m: _int(m.calls)),
    (
        ">cost / call",
        lambda m: "-" if m.cost_per_call_usd is None else _usd_text(m.cost_per_call_usd),
    ),
    (">p90", lambda m: _ms(m.p90_latency_ms)),
    (">errors", lambda m: _pct(m.error_rate)),
    ("note", lambda m: m.reason or ""),
)


def _value(value: float, unit: str) -> str:
    if unit == "usd":
        return f"${value:,.6f}".rstrip("0").rstrip(".") if value < 1 else f"${value:,.2f}"
    if unit == "ms":
        return _ms(value)
    return f"{value:.0%}" if unit == "ratio" else f"{value:,g}"


def _print_tune(result: Any) -> None:
    """Proposals, routing mixes, the YAML diff and the replay check, for people."""
    click.echo(f"Thresholds of {result.policies} ({result.settings['calls']:,} calls)")
    _echo_table(PROPOSAL_COLUMNS, list(result.proposals), empty="(no thresholds in the file)")
    for mix in result.mixes:
        shares = dict(current=mix.current_shares, proposed=mix.shares)
        columns = (
            *MIX_COLUMNS[:-1],
            *((f">{k} share", _share(v)) for k, v in shares.items()),
            MIX_COLUMNS[-1],
        )
        click.echo(f"\nRouting mix for task {mix.task}: {mix.status}")
        _echo_table(columns, list(mix.models), empty="(no calls)")
        click.echo(mix.message)
        if mix.status == "optimal":
            click.echo(
                f"expected cost per call {_usd_text(mix.expected_cost_per_call_usd)} (now "
                f"{_usd_text(mix.current_cost_per_call_usd)}); p90 surrogate (sum of share x "
                f"model p90) {_ms(mix.expected_p90_latency_ms)}; error rate "
                f"{_pct(mix.expected_error_rate)}"
            )
    click.echo("\n" + (result.diff.rstrip() or "No threshold changes."))
    if result.replay is not None:
        click.echo("\n" + result.replay.summary())
        for note in result.replay.notes:
            click.echo(f"note: {note}")
    for note in result.notes:
        click.echo(f"note: {note}")


def _share(shares: dict[str, float]) -> Callable[[Any], str]:
    return lambda m: "-" if m.model not in shares else f"{shares[m.model]:.1%}"


def _parse(parser: Callable[[str], float], hint: str) -> Callable[..., float | None]:
    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
        if value is None:
            return None
        try:
            return parser(value)
        except ValueError as exc:
            raise click.BadParameter(f"{exc} ({hint})") from None

    return convert


# -- commands ----------------------------------------------------------------------------------
def register(cli: click.Group) -> None:
    """Add the self-optimization commands to ``cli``."""

    @cli.command("compare", epilog=COMPARE_EPILOG)
    @click.option(
        "--by",
        required=True,
        metavar="KEY",
        help="What the arms are: tag:NAME (e.g. tag:experiment_id), model, requested_model or provider.",
    )
    @click.option("--since", type=_Duration(), help="Only calls that finished in this window (7d).")
    @click.option("--baseline", metavar="ARM", help="Compare with this arm (default: most calls).")
    @click.option(
        "--alpha",
        default=0.05,
        show_default=True,
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        help="Significance level of every test.",
    )
    @click.option("--seed", default=0, show_default=True, help="Seed of the resampling.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @db_option
    def compare_command(
        db_path: str | None,
        by: str,
        since: float | None,
        baseline: str | None,
        alpha: float,
        seed: int,
        as_json: bool,
    ) -> None:
        """A/B statistics per arm, and each arm against the baseline: cost, latency, errors.

        Cost per run with bootstrap CIs (runs resampled) and a permutation test, latency with
        Mann-Whitney U, error rate with Fisher's exact test; one plain verdict per arm.
        """
        from .compare import compare

        with _reading(db_path) as conn:
            result = compare(conn, by=by, since_s=since, baseline=baseline, alpha=alpha, seed=seed)
        if as_json:
            _echo_json(result.as_dict())
            return
        rows = [a.as_dict() for a in result.arms]
        _echo_table(COMPARE_COLUMNS, rows, empty=f"no calls with a {by} value")
        for line in [*result.verdicts(), *(f"note: {n}" for n in result.notes)]:
            click.echo(line)

    @cli.command("tune", epilog=TUNE_EPILOG)
    @click.option("--policies", required=True, metavar="FILE|NAME", help="The current policies.")
    @click.option("--since", type=_Duration(), help="Learn from calls in this window (7d).")
    @click.option(
        "--latency-p90",
        "latency_p90_ms",
        metavar="DURATION",
        callback=_parse(lambda v: parse_duration_s(v) * 1000.0, "like 8s or 2500ms"),
        help="Routing mix bound on the p90 latency (8s).",
    )
    @click.option(
        "--max-error-rate",
        metavar="PERCENT",
        callback=_parse(parse_percent, "like 5%"),
        help="Routing mix bound on the error rate (5%).",
    )
    @click.option("--by", metavar="tag:NAME", help="One routing mix per value of this tag.")
    @click.option(
        "--quantile",
        default="99%",
        show_default=True,
        metavar="PERCENT",
        callback=_parse(parse_percent, "like 99%"),
        help="The quantile of history a threshold is set from.",
    )
    @click.option(
        "--margin",
        default=1.2,
        show_default=True,
        type=click.FloatRange(min=0, min_open=True),
        help="Multiplier over that quantile (headroom).",
    )
    @click.option(
        "--min-calls",
        default=30,
        show_default=True,
        type=click.IntRange(min=1),
        help="Fewest calls (per model, per window) to learn from.",
    )
    @click.option(
        "--replay-runs",
        default=20,
        show_default=True,
        type=click.IntRange(min=0),
        help="Newest runs to replay through both policy sets (0: none).",
    )
    @click.option(
        "--write",
        "write_path",
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write the proposed policy YAML here.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
    @db_option
    def tune_command(
        db_path: str | None, write_path: Path | None, as_json: bool, **options: Any
    ) -> None:
        """Propose thresholds and a cheapest model mix from history; replay-check the proposal.

        Latency alarms at each model's p99 x margin, budgets at the p99 of the windowed spend x
        margin; the mix minimizes cost per call under --latency-p90 and --max-error-rate.
        """
        from .tune import tune

        since = options.pop("since")
        with _reading(db_path) as conn:
            result = tune(conn, since_s=since, **options)
        if write_path is not None:
            try:
                write_path.write_text(result.proposed_yaml, encoding="utf-8")
            except OSError as exc:
                raise click.ClickException(f"cannot write {write_path}: {exc.strerror}") from None
        if as_json:
            _echo_json(result.as_dict())
        else:
            _print_tune(result)
        if write_path is not None and not as_json:
            click.echo(f"wrote the proposed policies to {write_path}")
