"""The ``agentmeter`` command: a thin client of the library (each command parses, calls, prints).

Nothing here imports litellm at module level, so ``agentmeter --help`` answers at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import AgentmeterError, ConfigError


class _Group(click.Group):
    """A group that turns agentmeter errors into one clear line and exit code 1 (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            for line in exc.problems:
                click.echo(f"Error: {line}", err=True)
            ctx.exit(1)
        except AgentmeterError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentmeter")
def cli() -> None:
    """agentmeter: the flight recorder and policy controller for LLM agents.

    The database comes from --db, else $AGENTMETER_DB, else ./agentmeter.db.
    """


@cli.command()
@click.option(
    "--db",
    "db_path",
    default="agentmeter-demo.db",
    show_default=True,
    help="Where to write the demo's flight recorder.",
)
@click.option("--steps", default=64, show_default=True, help="Agent steps to simulate.")
@click.option("--seed", default=7, show_default=True, help="Random seed of the simulated provider.")
@click.option(
    "--policies", default="default", show_default=True, help="Policy file or built-in name."
)
@click.option("--quiet", is_flag=True, help="Print only the summary.")
def demo(db_path: str, steps: int, seed: int, policies: str, quiet: bool) -> None:
    """Run a simulated agent on a simulated provider (no network, no key) under the policies."""
    import logging

    from .demo import run_demo
    from .report import print_model_summary

    logging.getLogger("agentmeter").setLevel(logging.ERROR)  # the demo prints every decision itself

    path = Path(db_path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    click.echo(f"agentmeter demo: simulated agent, simulated provider, policies: {policies}")
    click.echo(f"flight recorder: {path.resolve()}\n")
    result = run_demo(
        path, steps=steps, seed=seed, policies=policies, verbose=not quiet, emit=click.echo
    )
    click.echo("")
    print_model_summary(str(path), run_id=result.run_id)
    saved = result.baseline_cost - result.cost
    share = (saved / result.baseline_cost * 100) if result.baseline_cost else 0
    click.echo(
        f"\nThis run cost ${result.cost:.4f} over {result.steps} steps with {len(result.decisions)} "
        f"policy decisions; the same agent without policies would have cost "
        f"${result.baseline_cost:.4f} (saved ${saved:.4f}, {share:.0f}%)."
    )
    click.echo(f"Inspect it: sqlite3 {path} 'select * from agentmeter_decisions'")


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the normalized policy sets as JSON.")
def check(files: tuple[Path, ...], as_json: bool) -> None:
    """Validate policy files and print each normalized policy set; exit 1 on any error."""
    from .policy.spec import load_policies

    failed = False
    out: dict[str, Any] = {}
    for file in files:
        try:
            policy_set = load_policies(file)
        except ConfigError as exc:
            failed = True
            for line in exc.problems:
                click.echo(f"Error: {line}", err=True)
            continue
        assert policy_set is not None
        normalized = policy_set.normalized()
        out[str(file)] = normalized
        if not as_json:
            click.echo(
                f"{file}: ok ({len(policy_set.policies)} policies, digest {policy_set.digest})"
            )
            import yaml

            click.echo(yaml.safe_dump(normalized, sort_keys=False, width=100).rstrip())
    if as_json:
        click.echo(json.dumps(out, indent=2))
    if failed:
        sys.exit(1)


from .cli_inspect import register as _register_inspect  # noqa: E402
from .cli_optimize import register as _register_optimize  # noqa: E402
from .cli_replay import register as _register_replay  # noqa: E402

_register_inspect(cli)
_register_replay(cli)
_register_optimize(cli)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
