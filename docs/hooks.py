"""MkDocs hook: the reference pages are generated from the code, so they cannot drift from it.

A page holding ``<!-- reference: NAME -->`` gets that marker replaced by :func:`reference` ``(NAME)``: ``cli``
(every command and option, from the Typer app), ``layout`` (every package and module of convexp and its
backends, with the first line of its docstring), ``yaml`` (every experiment field, from the spec's pydantic
models), ``database`` (every table and column, from the SQLAlchemy models), ``api`` (every public Python name,
through mkdocstrings) or ``changelog`` (CHANGELOG.md, kept at the repository's root). tests/docs/test_docs.py
checks that every command, field, column and public name appears, and builds the site with ``--strict``.
"""

from __future__ import annotations

import re
import typing
from typing import Any

MARKER = re.compile(r"<!-- reference: (\w+) -->")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each reference marker with its generated Markdown."""
    return MARKER.sub(lambda match: reference(match.group(1)), markdown)


#: A role of a docstring (``:func:`track```, ``:meth:`~Store.finish```) as the rendered HTML shows it.
ROLE = re.compile(r":(?:meth|func|class|mod|attr|data|exc|obj):<code>(~?)([^<]+)</code>")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """The docstrings' roles rendered as code: ``:meth:`TrackedRun.finish``` shows as ``TrackedRun.finish``, and
    ``:func:`~convexp.tracking.track``` as ``track``."""
    return ROLE.sub(lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}</code>", html)


def reference(name: str) -> str:
    """The generated reference ``name``: cli, yaml, database, layout or api."""
    return {
        "cli": cli_reference,
        "yaml": yaml_reference,
        "database": database_reference,
        "layout": layout_reference,
        "api": api_reference,
        "changelog": changelog,
    }[name]()


def changelog() -> str:
    """CHANGELOG.md at the repository's root (its one copy), its links to docs/ pages made relative to the site."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "CHANGELOG.md").read_text()
    return text.replace("](docs/", "](")


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


# --- the command line -------------------------------------------------------------------------------------------


def cli_commands() -> list[tuple[str, Any]]:
    """Every command of ``convexp`` (groups' subcommands too) as (full name, click command), in the app's order."""
    import typer.main

    from convexp.cli import app

    root = typer.main.get_command(app)
    found: list[tuple[str, Any]] = []

    def walk(prefix: str, command: Any) -> None:
        subcommands = getattr(command, "commands", None)  # a group (Typer carries its own click: duck-typed)
        if subcommands:
            for name, sub in subcommands.items():
                if not getattr(sub, "hidden", False):
                    walk(f"{prefix} {name}", sub)
        else:
            found.append((prefix, command))

    walk("convexp", root)
    return found


def cli_reference() -> str:
    """The options that come before any command, then each command: what it does, its arguments and options with
    their defaults."""
    import typer.main

    from convexp.cli import app

    root = typer.main.get_command(app)
    out = ["\n".join(["## `convexp`", "", "Options given before any command.", "", *_params_table(root.params)])]
    for name, command in cli_commands():
        parts = [f"## `{name}`", "", (command.help or "").strip().split("\n\n")[0], ""]
        parts += _params_table(command.params)
        out.append("\n".join(parts))
    return "\n".join(out)


def _params_table(params: list[Any]) -> list[str]:
    """A command's arguments and options (``--help`` left out) as the rows of a Markdown table; none, no table."""
    params = [p for p in params if p.name != "help"]
    if not params:
        return []
    rows = ["| argument or option | default | what it does |", "|---|---|---|"]
    for param in params:
        if param.param_type_name == "argument":
            label = f"`{param.name.upper()}`" + (" ..." if getattr(param, "nargs", 1) == -1 else "")
            text = getattr(param, "help", None) or ""
        else:
            label = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
            text = param.help or ""
        default = "required" if param.required else _default(param)
        rows.append(f"| {label} | {_cell(default)} | {_cell(text)} |")
    return [*rows, ""]


def _default(param: Any) -> str:
    if getattr(param, "is_flag", False):
        return "on" if param.default else "off"
    default = param.default
    if default is None or default == () or default == []:
        return ""
    if hasattr(default, "value"):
        default = default.value
    return f"`{default}`"


# --- the experiment file ----------------------------------------------------------------------------------------


def yaml_models() -> list[tuple[str, Any]]:
    """(heading, pydantic model) for the experiment and every model it nests: the run's fields, the snapshot
    schedule, augmentation, the optimizers and their schedule, and every layer type."""
    from convexp.experiments.spec import RunSpec, SnapshotSchedule
    from convexp.experiments.sweep_spec import Objective, Pruning, SweepSpec
    from convexp.model.augmentation import Augmentation
    from convexp.model.layers import LAYER_TYPES
    from convexp.model.optimizers import SGD, Adam, AdamW, Schedule

    models: list[tuple[str, Any]] = [
        ("An experiment", RunSpec),
        ("snapshots", SnapshotSchedule),
        ("augmentation", Augmentation),
        ("optimizer: sgd", SGD),
        ("optimizer: adam", Adam),
        ("optimizer: adamw", AdamW),
        ("optimizer schedule", Schedule),
        ("sweep", SweepSpec),
        ("sweep objective", Objective),
        ("sweep prune", Pruning),
    ]
    for model in LAYER_TYPES:
        layer_type = typing.get_args(model.model_fields["type"].annotation)[0]
        models.append((f"layer: {layer_type}", model))
    return models


def yaml_reference() -> str:
    """Each model's fields: type, default, constraints and description."""
    out = []
    for heading, model in yaml_models():
        doc = (model.__doc__ or "").strip().split("\n\n")[0]
        rows = ["| field | type | default | constraints | what it is |", "|---|---|---|---|---|"]
        for field, info in model.model_fields.items():
            if heading.startswith("layer") and field == "type" or heading.startswith("optimizer:") and field == "name":
                continue
            default = "required" if info.is_required() else f"`{_shown(info.get_default(call_default_factory=True))}`"
            constraints = ", ".join(_constraint(m) for m in info.metadata if _constraint(m))
            rows.append(
                f"| `{field}` | {_cell(_type_name(info.annotation))} | {_cell(default)} | {_cell(constraints)} | "
                f"{_cell(info.description or '')} |"
            )
        if model.__name__ == "RunSpec":
            rows.append(
                "| `sweep` | mapping | none |  | a search over some fields instead of a grid of them: a run per trial "
                "(see sweep below; `convexp run --resume-sweep` continues one) |"
            )
        out.append("\n".join([f"## {heading}", "", _cell(doc), "", *rows, ""]))
        if heading == "sweep":
            out.append(_distributions())
    out.append(
        "Besides these, an experiment may have `tags:` (a list of labels) and `notes:` (free text): they label its "
        "runs and are not part of their spec. A list given for any field but `layers`, `description` and `tags`, "
        "nested fields too, is a grid axis: a run for each value; `grid:` maps dotted paths (a layer's fields too: "
        "`layers.0.filters`) to lists of values, and `{range: [start, stop]}` is a run per whole number. "
        "`convexp run --set PATH=VALUE` sets any field from the command line."
    )
    return "\n".join(out)


def _distributions() -> str:
    """The distributions a sweep's parameter may be drawn from."""
    from convexp.experiments.sweep_spec import KINDS

    what = {
        "uniform": "`{uniform: [low, high]}`: any number between, evenly",
        "loguniform": "`{loguniform: [low, high]}` (0 < low): evenly in log space, as learning rates are swept",
        "int": "`{int: [low, high]}`: a whole number, both ends included",
        "choice": "`{choice: [a, b, ...]}`: one of the values (any YAML value, a list or a mapping too)",
    }
    rows = ["| distribution | what it draws |", "|---|---|", *(f"| `{kind}` | {what[kind]} |" for kind in KINDS)]
    return "\n".join(["### sweep parameters", "", "`parameters` maps dotted paths (as `grid:`'s) to one of:", "", *rows, ""])


def _shown(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return value


def _type_name(annotation: Any) -> str:
    """A field's type as a reader of YAML thinks of it: ``int | null``, ``list of layers``, ``valid | same``."""
    import types

    from convexp.model.layers import LAYER_TYPES

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        if all(arg in LAYER_TYPES for arg in args):
            return "layer"
        return " | ".join(_type_name(arg) for arg in args)
    if origin is list:
        inner = _type_name(args[0])
        return "list of layers" if inner == "layer" else f"list of {inner}"
    if origin is tuple:
        return "[" + ", ".join(_type_name(arg) for arg in args) + "]"
    if origin is typing.Literal:
        return " | ".join(str(arg) for arg in args)
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _constraint(metadata: Any) -> str:
    for attribute, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "at least")):
        value = getattr(metadata, attribute, None)
        if value is not None:
            return f"{symbol} {value}" + (" items" if attribute == "min_length" else "")
    return ""


# --- the database -----------------------------------------------------------------------------------------------


def database_reference() -> str:
    """Each table: what it holds (its model's docstring) and its columns: type, null or not, keys, what each holds
    (its ``doc``)."""
    from convexp.store.models import Base

    models = {mapper.class_.__tablename__: mapper.class_ for mapper in Base.registry.mappers}
    out = []
    for table in Base.metadata.sorted_tables:
        doc = (models[table.name].__doc__ or "").strip().split("\n\n")[0] if table.name in models else ""
        rows = ["| column | type | null | key | what it holds |", "|---|---|---|---|---|"]
        for column in table.columns:
            keys = ["primary key"] if column.primary_key else []
            keys += [f"references {fk.target_fullname}" for fk in column.foreign_keys]
            null = "yes" if column.nullable else "no"
            rows.append(f"| `{column.name}` | {column.type} | {null} | {', '.join(keys)} | {_cell(column.doc or '')} |")
        out.append("\n".join([f"## `{table.name}`", "", _cell(doc), "", *rows, ""]))
    return "\n".join(out)


# --- the code's layout ------------------------------------------------------------------------------------------

#: The folders whose packages and modules the layout lists, and the name each is imported as.
LAYOUT_ROOTS = (("convexp", "convexp"), ("plugins", "convexp_plugins"))


def layout_modules() -> list[tuple[str, str, str]]:
    """Every package and module under convexp/ and plugins/, in tree order, as (path, import name, the first line of
    its docstring): read from the files, so that the map is the tree."""
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    found = []
    for folder, package in LAYOUT_ROOTS:
        root = repo / folder
        for path in sorted(root.rglob("*.py"), key=lambda p: (p.parent.relative_to(root).parts, p.name != "__init__.py", p.name)):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join((package, *parts[:-1])) if parts[-1] == "__init__" else ".".join((package, *parts))
            docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
            shown = str(path.relative_to(repo)) if parts[-1] != "__init__" else str(path.parent.relative_to(repo)) + "/"
            found.append((shown, name, first_sentence(docstring)))
    return found


def first_sentence(docstring: str) -> str:
    """The first sentence of a docstring's first paragraph (its lines joined)."""
    import re

    paragraph = " ".join(docstring.strip().split("\n\n")[0].split())
    match = re.search(r"(?<!e\.g|i\.e)\.(\s|$)", paragraph)
    sentence = paragraph[: match.start() + 1] if match else paragraph
    sentence = re.sub(
        r":\w+:`~?([^`]+)`", lambda m: f"`{m.group(1).rsplit('.', 1)[-1] if m.group(0).count('~') else m.group(1)}`", sentence
    )
    return sentence.replace("``", "`")


def layout_reference() -> str:
    """A table per package: each module and what it is, in one line."""
    out = []
    for shown, _name, line in layout_modules():
        if shown.endswith("/"):
            out += ["", f"### `{shown}`", "", _cell(line), "", "| module | what it is |", "|---|---|"]
        else:
            out.append(f"| `{shown.rsplit('/', 1)[-1]}` | {_cell(line)} |")
    return "\n".join(out).strip() + "\n"


# --- the Python API ---------------------------------------------------------------------------------------------


def api_sections() -> list[tuple[str, str, tuple[str, ...]]]:
    """The public Python API as (section title, module, names), each list from the code's own declaration: a
    module's ``__all__``, or the ``PUBLIC`` table of a package whose modules a user imports one by one."""
    import importlib

    from convexp import analysis, experiments

    def declared(module: str) -> tuple[str, ...]:
        return tuple(importlib.import_module(module).__all__)

    sections = [
        ("Recording from your own loop", "convexp.tracking", declared("convexp.tracking")),
        ("Recording from your own loop", "convexp.torch", declared("convexp.torch")),
        ("Recording from your own loop", "convexp.keras", declared("convexp.keras")),
        ("Recording from your own loop", "convexp.lightning", declared("convexp.lightning")),
        ("The results database", "convexp.store", declared("convexp.store")),
    ]
    sections += [("Reading runs back: analysis", module, names) for module, names in analysis.PUBLIC.items()]
    sections += [("Running experiments from Python", module, names) for module, names in experiments.PUBLIC.items()]
    sections += [("Datasets", "convexp.datasets", declared("convexp.datasets"))]
    sections += [("The plugin API", "convexp.plugin_api", declared("convexp.plugin_api"))]
    return sections


def api_reference() -> str:
    """Each public module with its docstring and each of its public names, rendered by mkdocstrings (inherited
    members included: the store's reads live on its parts)."""
    out, title = [], None
    for section, module, names in api_sections():
        if section != title:
            out += [f"## {section}", ""]
            title = section
        members = ", ".join(names)
        out += [
            f"::: {module}",
            "    options:",
            f"      members: [{members}]",
            "      inherited_members: true",
            f"      show_submodules: {'true' if module == 'convexp.plugin_api' else 'false'}",  # plugin_api.activations
            "      heading_level: 3",
            "",
        ]
    return "\n".join(out)
