"""The code's shape, checked: the top of convexp/ reads as its concepts, no module is over 450 lines, no two
modules import each other (directly or around a circle), and docs/layout.md's map lists every package and module
with its docstring -- checked against the files on disk, not against the generator's own walk."""

from __future__ import annotations

import ast

import grimp
import pytest

from tests.conftest import REPO, docs_module

#: What the top of convexp/ holds: the packages of its concepts, its leaves and the user's doors.
TOP_LEVEL = {
    "__init__.py", "__main__.py", "_moved.py", "plugin_api.py", "errors.py", "machine.py", "keras.py", "torch.py",
    "lightning.py",
    "model", "backends", "experiments", "tracking", "store", "analysis", "ui", "cli", "datasets",
}  # fmt: skip
MAX_LINES = 450


def _sources():
    for root in (REPO / "convexp", REPO / "plugins"):
        yield from sorted(root.rglob("*.py"))


def test_the_top_level_holds_the_concepts():
    entries = {p.name for p in (REPO / "convexp").iterdir() if p.name != "__pycache__" and p.suffix in (".py", "")}
    assert entries == TOP_LEVEL


@pytest.mark.parametrize("path", list(_sources()), ids=lambda p: str(p.relative_to(REPO)))
def test_every_module_is_short_and_says_what_it_is(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{path.relative_to(REPO)} has {len(text.splitlines())} lines"
    assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(REPO)} has no docstring"


def _cycles(graph, modules):
    """Strongly connected groups of more than one module (Tarjan), i.e. import circles."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & modules) for m in modules}
    # `import convexp` loads convexp.track and convexp.open only when first asked for (a module __getattr__):
    # not imports
    edges["convexp"] = [m for m in edges["convexp"] if m not in ("convexp.tracking", "convexp.analysis.notebook")]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    return found


def test_no_import_circle():
    """Type-checking imports count too: a circle there is still two modules that need each other."""
    graph = grimp.build_graph("convexp", "convexp_plugins")
    assert _cycles(graph, set(graph.modules)) == []


def test_the_layout_page_lists_every_package_and_module():
    text = docs_module("hooks").reference("layout")
    for path in _sources():
        relative = path.relative_to(REPO)
        if path.name == "__init__.py":
            assert f"### `{relative.parent}/`" in text, relative
        else:
            section = text.split(f"### `{relative.parent}/`")[1].split("### ")[0]
            assert f"| `{path.name}` |" in section, relative
    # each with the first sentence of its docstring
    assert (
        "| `plugin_api.py` | Everything a backend's author imports from convexp, in one module: `from convexp.plugin_api import ...`. |"
        in text
    )
