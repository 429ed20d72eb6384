"""The README's command table and the CLI say the same: every command is listed, and every option
the table names exists on that command (so the table cannot drift from `convexp --help` again)."""

from __future__ import annotations

import re
from typing import Any

import typer.main

from convexp.cli import app
from tests.conftest import REPO


def readme_rows() -> list[tuple[str, str]]:
    """(command cell, description) of each row of the README's "## Commands" table."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `convexp"):
            cell = re.match(r"\| `(convexp [^`]*)` \|", line.replace("\\|", "¦"))
            assert cell, line
            rows.append((cell.group(1).replace("¦", "|"), line))
    return rows


def cli_commands() -> dict[str, Any]:
    """Every command of the CLI by its full name ("run", "db copy", ...), as the click commands Typer builds."""
    found: dict[str, Any] = {}

    def walk(group: Any, prefix: str) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):  # a group of subcommands
                walk(command, f"{prefix}{name} ")
            else:
                found[f"{prefix}{name}"] = command

    walk(typer.main.get_command(app), "")
    return found


def command_of(cell: str, commands: dict[str, Any]) -> str:
    words = cell.split()[1:]
    two = " ".join(words[:2])
    return two if two in commands else words[0]


def test_every_cli_command_is_in_the_readme_table_and_every_row_is_a_command():
    commands = cli_commands()
    listed = {command_of(cell, commands) for cell, _ in readme_rows()}
    assert listed - set(commands) == set(), "the README lists commands the CLI does not have"
    assert set(commands) - listed == set(), "the CLI has commands the README's table does not list"


def test_every_option_the_table_names_exists_on_its_command():
    commands = cli_commands()
    for cell, _ in readme_rows():
        name = command_of(cell, commands)
        options = {opt for param in commands[name].params for opt in (*param.opts, *param.secondary_opts)}
        named = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", cell))
        assert named <= options, f"`{cell}`: {sorted(named - options)} are not options of convexp {name}"


def test_every_command_that_prints_data_takes_the_same_format_option():
    """-f/--format table|json|csv wherever a command prints data."""
    commands = cli_commands()
    for name in ("runs", "show", "query", "plugins", "check", "compare", "filters"):
        param = next((p for p in commands[name].params if "--format" in p.opts), None)
        assert param is not None and "-f" in param.opts, f"convexp {name} has no -f/--format"
        assert [f.value for f in param.type_descriptor.annotation] == ["table", "json", "csv"], name


def test_cli_choices_are_the_library_s():
    from convexp.analysis.pictures import KINDS
    from convexp.cli.options import PlotKind, StatusChoice
    from convexp.store.models import RUN_STATUSES

    assert [k.value for k in PlotKind] == list(KINDS)
    assert [s.value for s in StatusChoice] == [*RUN_STATUSES, "stale"]
