"""The command line's conventions: every command that prints data takes the same -f/--format, and the CLI's
choices are the library's. (The command reference is generated from the CLI: tests/docs/test_docs.py.)"""

from __future__ import annotations

from typing import Any

from tests.docs.test_docs import hooks


def cli_commands() -> dict[str, Any]:
    """Every command of the CLI by its full name ("run", "db copy", ...), as the click commands Typer builds (walked
    as the generated command reference walks them)."""
    return {name.removeprefix("convexp "): command for name, command in hooks().cli_commands()}


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
