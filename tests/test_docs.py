"""The CLI's documentation cannot drift from the commands.

``docs/cli.md`` is the ``--help`` of every command, generated here; set
``AGENTMETER_UPDATE_DOCS=1`` to rewrite it after changing a command. Every command and option has
a help text, and the README names every command as ``agentmeter NAME``.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from agentmeter.cli import cli

ROOT = Path(__file__).resolve().parent.parent
CLI_DOCS = ROOT / "docs" / "cli.md"
README = ROOT / "README.md"
HEADER = """\
# The agentmeter command

<!-- Generated from each command's --help by tests/test_docs.py; do not edit by hand.
     After changing a command: AGENTMETER_UPDATE_DOCS=1 python -m pytest tests/test_docs.py -->

The database comes from `--db`, else `$AGENTMETER_DB`, else `./agentmeter.db`.
"""


def commands(
    group: click.Group = cli, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command under ``group`` (sub-groups walked), by name, as (path, command)."""
    found = []
    for name in sorted(group.commands):
        command = group.commands[name]
        if command.hidden:
            continue
        found.append(((*path, name), command))
        if isinstance(command, click.Group):
            found.extend(commands(command, (*path, name)))
    return found


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(
        cli, [*path, "--help"], prog_name="agentmeter", terminal_width=80, env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    return result.stdout.rstrip()


def render() -> str:
    sections = [HEADER, f"```\n{help_text(())}\n```\n"]
    for path, _ in commands():
        sections.append(f"## agentmeter {' '.join(path)}\n\n```\n{help_text(path)}\n```\n")
    return "\n".join(sections)


def test_docs_cli_md_is_the_commands_help():
    want = render()
    have = CLI_DOCS.read_text() if CLI_DOCS.exists() else ""
    if have != want and os.environ.get("AGENTMETER_UPDATE_DOCS"):
        CLI_DOCS.parent.mkdir(exist_ok=True)
        CLI_DOCS.write_text(want)
        have = want
    assert have == want, (
        "docs/cli.md differs from the commands' --help; regenerate it with "
        "AGENTMETER_UPDATE_DOCS=1 python -m pytest tests/test_docs.py"
    )


@pytest.mark.parametrize("path", [path for path, _ in commands()], ids=" ".join)
def test_every_command_and_option_has_help(path):
    command = cli
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert (command.help or "").strip(), f"agentmeter {' '.join(path)} has no help text"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert (param.help or "").strip(), (
                f"agentmeter {' '.join(path)} {param.opts[0]} has no help"
            )


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_the_readme_names_every_command(name):
    assert f"agentmeter {name}" in README.read_text(), (
        f"README.md does not mention `agentmeter {name}`"
    )
