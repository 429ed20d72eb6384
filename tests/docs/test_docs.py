"""The documentation site: its references name every command, option, experiment field, table and column there
is -- each checked against something other than the generator (the CLI's own --help, the example experiments,
a database the Alembic migrations built) -- and the site builds with MkDocs' --strict, offline."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sqlite3
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO, docs_module, run_cli


def hooks():
    """docs/hooks.py, which generates the references."""
    return docs_module("hooks")


def help_commands(*group: str) -> list[str]:
    """The commands ``convexp [GROUP] --help`` lists."""
    result = run_cli(*group, "--help")
    assert result.returncode == 0, result.stderr
    block = result.stdout.split("Commands:")[1]
    # a command's line starts two spaces in; a wrapped description's continuation, further in
    return [line.split()[0] for line in block.splitlines() if re.match(r"  \S", line)]


def test_the_cli_reference_has_every_command_and_option_the_help_lists():
    text = hooks().reference("cli")
    # the options before any command ("convexp --version"), in a section of their own
    root = text.split("## `convexp`")[1].split("\n## ")[0]
    for option in set(re.findall(r"^\s+(--[a-z][a-z-]*)", run_cli("--help").stdout, re.M)) - {"--help"}:
        assert f"`{option}`" in root, option
    assert "`--version`" in root
    groups = {"data", "db"}
    for command in help_commands():
        names = [f"{command} {sub}" for sub in help_commands(command)] if command in groups else [command]
        for name in names:
            assert f"## `convexp {name}`" in text, name
            listed = run_cli(*name.split(), "--help").stdout
            # the options' own lines: "  --backend TEXT  ..." or "  -e, --experiment TEXT  ..."
            options = [m.group(1) for m in re.finditer(r"^\s+(?:-\w, )?(--[a-z][a-z-]*)", listed, re.M)]
            assert options or name in ("ui",), name
            section = text.split(f"## `convexp {name}`")[1].split("\n## ")[0]
            for option in set(options) - {"--help"}:
                assert f"`{option}`" in section, (name, option)


def test_the_yaml_reference_has_every_field_the_examples_use():
    text = hooks().reference("yaml")
    used: set[str] = set()

    def collect(value, under_layers=False, paths=False):
        if isinstance(value, dict):
            for key, inner in value.items():
                # a named layer list's name, and a sweep parameter's dotted path, are the user's
                if not (under_layers and isinstance(inner, list)) and not paths:
                    used.add(key)
                collect(inner, under_layers=key == "layers", paths=key == "parameters")
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for experiment in yaml.safe_load((REPO / "experiments.yaml").read_text())["experiments"].values():
        collect(experiment)
    missing = sorted(key for key in used if f"| `{key}` |" not in text and key not in ("type", "name", "tags", "notes"))
    assert "sweep" in used and "loguniform" in used  # the example sweep's fields are among them
    assert not missing
    for layer_type in re.findall(r"\{type: (\w+)|- type: (\w+)", (REPO / "experiments.yaml").read_text()):
        layer_type = layer_type[0] or layer_type[1]
        if layer_type in ("cosine", "step", "constant"):  # a schedule's type, not a layer's
            continue
        assert f"## layer: {layer_type}" in text


def test_the_database_reference_has_every_table_and_column_the_migrations_create(tmp_path):
    from convexp.store import Store

    Store(str(tmp_path / "r.db")).close()  # created by running every Alembic migration
    connection = sqlite3.connect(tmp_path / "r.db")
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    text = hooks().reference("database")
    for table in tables:
        if table == "alembic_version":
            continue
        assert f"## `{table}`" in text, table
        section = text.split(f"## `{table}`")[1].split("\n## ")[0]
        for column in (row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')):
            row = next((line for line in section.splitlines() if line.startswith(f"| `{column}` |")), None)
            assert row is not None, (table, column)
            assert row.split(" | ")[-1].rstrip(" |"), f"{table}.{column} has no description"  # the last cell


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The documentation site, built once with ``mkdocs build --strict`` (the build fails on any warning)."""
    if shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]'")
    where = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(where)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return where


def test_the_site_builds_strictly_and_offline(site):
    page = (site / "reference" / "yaml" / "index.html").read_text()
    assert "layer: batch_norm" in page and "<!-- reference" not in page
    fetched = re.compile(r"""<(?:script|img|iframe|source)\b[^>]*\bsrc=["']https?://|<link\b[^>]*\bhref=["']https?://""")
    for html in site.rglob("*.html"):  # nothing fetched from elsewhere when a page is read
        assert not fetched.search(html.read_text()), html


def public_api() -> dict[str, tuple[str, ...]]:
    """Every public name, by module, as the code declares it: the ``__all__`` of the modules a user imports, and
    the ``PUBLIC`` tables of convexp.analysis and convexp.experiments (whose modules are imported one by one)."""
    from convexp import analysis, experiments

    modules = ["convexp.tracking", "convexp.torch", "convexp.keras", "convexp.lightning", "convexp.store"]
    declared = {name: tuple(importlib.import_module(name).__all__) for name in modules}
    declared.update(analysis.PUBLIC)
    declared.update(experiments.PUBLIC)
    declared.update({name: tuple(importlib.import_module(name).__all__) for name in ("convexp.datasets", "convexp.plugin_api")})
    return declared


def entry_text(html: str, identifier: str) -> str:
    """The text of the API page's entry ``identifier`` (its docstring, parameters, members), its signature left out."""
    start = html.index(f'id="{identifier}"')
    after_heading = html.index("</h", start)
    following = html.find('class="doc doc-object', after_heading)
    chunk = html[after_heading : following if following > 0 else len(html)]
    chunk = re.sub(r'<div class="doc-signature.*?</div>|<pre.*?</pre>', "", chunk, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", chunk).split())


def test_the_api_reference_has_an_entry_with_text_for_every_public_name(site):
    import inspect

    html = (site / "reference" / "api" / "index.html").read_text()
    entries = set(re.findall(r'id="(convexp[^"]+)"', html))
    declared = public_api()
    wanted = []
    for module, names in declared.items():
        imported = importlib.import_module(module)
        for name in names:
            wanted.append(f"{module}.{name}")
            value = getattr(imported, name)
            if not (inspect.isclass(value) and value.__module__.startswith("convexp")):
                continue
            for member in dir(value):  # its methods and properties, inherited ones too (the store's reads)
                owner = next((k for k in value.__mro__ if member in vars(k)), None)
                if member.startswith("_") or owner is None or not owner.__module__.startswith("convexp"):
                    continue
                if isinstance(vars(owner)[member], (property, classmethod, staticmethod)) or inspect.isfunction(
                    vars(owner)[member]
                ):
                    wanted.append(f"{module}.{name}.{member}")
    import convexp

    for name in ("track", "open"):  # what convexp's __getattr__ offers at its root: documented where they live
        value = getattr(convexp, name)
        homes = [f"{m}.{n}" for m, names in declared.items() for n in names if getattr(importlib.import_module(m), n) is value]
        assert homes, f"convexp.{name} is in no public module's declaration"
        wanted.append(homes[0])
    assert len(wanted) > 200  # the plugin API alone declares 65 names
    assert not [name for name in wanted if name not in entries], "public names without an entry"
    assert not [name for name in wanted if len(entry_text(html, name)) < 10], "entries that render empty"
    # the docstrings' roles are rendered as code, not shown raw
    assert not re.search(r":(?:meth|func|class|mod|attr|data|exc):<code>", html)
    assert "Keras calls back every 4 batches" in html  # module docstrings are rendered (convexp.keras's)


def test_the_changelog_lists_every_schema_revision_newest_first_up_to_the_migrations_head():
    """CHANGELOG.md's table of schema revisions against the Alembic scripts themselves (revision, date)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config(str(REPO / "alembic.ini"))
    config.set_main_option("script_location", str(REPO / "migrations"))  # wherever the tests run from
    script = ScriptDirectory.from_config(config)
    revisions = list(script.walk_revisions())  # newest first
    text = (REPO / "CHANGELOG.md").read_text()
    table = text.split("## Schema revisions")[1].split("\n## ")[0]
    rows = [line.split("|")[1:3] for line in table.splitlines() if re.match(r"\| \d{4} \|", line)]
    listed = [(revision.strip(), date.strip()) for revision, date in rows]
    assert listed[0][0] == script.get_current_head()
    created = [re.search(r"Create Date: (\d{4}-\d\d-\d\d)", revision.longdoc or "") for revision in revisions]
    expected = [(r.revision, match.group(1) if match else "") for r, match in zip(revisions, created)]
    assert listed == expected
