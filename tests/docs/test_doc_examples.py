"""Every example in README.md and the docs is run, and what it prints is what the docs show (docs/examples.py says how
each kind of block is checked). Blocks that train for minutes are marked ``heavy``: ``python -m pytest -m heavy``."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO, docs_examples, mnist_folder

examples = docs_examples()
BLOCKS = examples.blocks()
#: Heavy commands already run by an earlier block of this session: the folder and what they printed.
MADE: dict = {}


def cases(*kinds: str) -> list:
    return [
        pytest.param(block, id=block.name, marks=[pytest.mark.heavy] if block.heavy else [])
        for block in BLOCKS
        if block.kind in kinds
    ]


CHECKED = ("console", "python", "in", "experiments", "fragment", "set-up", "shell", "layout")


def test_every_block_in_the_docs_is_checked():
    assert len(BLOCKS) > 20
    for block in BLOCKS:
        assert block.kind in CHECKED, (
            f"{block.name}: a ```{block.language} block that nothing checks: "
            "say how with an <!-- example: ... --> comment on the line before it (see docs/examples.py)"
        )


def test_the_output_matcher_tells_a_changed_number_from_a_duration():
    shown = ["run 1 quickstart/numpy: finished, test accuracy 0.9833, 0.03 s/epoch", "..."]
    assert examples.mismatch(shown, "run 1 quickstart/numpy: finished, test accuracy 0.9833, 0.05 s/epoch\nmore\n") is None
    assert examples.mismatch(shown, "run 1 quickstart/numpy: finished, test accuracy 0.9861, 0.03 s/epoch\n")
    assert examples.mismatch(["a", "b"], "a\nb\nc\n")  # a line the docs do not show, and no "..." for it
    table = [" id ┃ seconds ┃ test_accuracy", "━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━", " 1  │ 0.8     │ 0.983333"]
    assert examples.mismatch(table, " id ┃ seconds ┃ test_accuracy\n━━╇━━╇━━\n 1 │ 12.25 │ 0.983333\n") is None
    assert examples.mismatch(table, " id ┃ seconds ┃ test_accuracy\n━━╇━━╇━━\n 1 │ 0.8 │ 0.98\n")


def test_numbers_from_training_are_compared_within_the_tolerance_and_all_others_exactly():
    """The README's 0.0448 printed as 0.0449 on another CPU passes in what `convexp run` prints; an initializer's
    limit, a count or a trained number off by more than the tolerance does not."""
    shown = ["  epoch 20/20: test_loss 0.0448, test_accuracy 0.9833, 0.01 s"]
    assert examples.trained("convexp run -e quickstart") and not examples.trained("convexp init glorot_uniform")
    assert examples.mismatch(shown, "  epoch 20/20: test_loss 0.0449, test_accuracy 0.9833, 0.01 s\n", toleranced=True) is None
    assert examples.mismatch(shown, "  epoch 20/20: test_loss 0.0449, test_accuracy 0.9833, 0.01 s\n", toleranced=False)
    assert examples.mismatch(shown, "  epoch 20/20: test_loss 0.0470, test_accuracy 0.9833, 0.01 s\n", toleranced=True)
    assert examples.mismatch(shown, "  epoch 19/20: test_loss 0.0448, test_accuracy 0.9833, 0.01 s\n", toleranced=True)
    assert examples.mismatch(shown, "  epoch 20/20: test_cost 0.0448, test_accuracy 0.9833, 0.01 s\n", toleranced=True)
    # the tolerance is a share of the value shown plus one unit in its last digit, never a unit of a digit it lacks
    assert examples.same_number("0.0448262", "0.0448754") and not examples.same_number("0.0448262", "0.0462262")
    assert examples.same_number("-0.0602", "-0.0597")  # after one MNIST epoch, SkylakeX and Haswell kernels
    assert examples.same_number("1e-07", "1.004e-07") and not examples.same_number("1e-07", "3e-07")
    assert not examples.same_number("900", "901")  # counts are exact
    assert not examples.same_number("0.983333", "0.96")  # 2.4% off


def test_the_contributing_notes_state_the_rule_that_docs_examples_applies():
    notes = (REPO / "docs" / "layout.md").read_text().split("## Writing examples in the docs")[1]
    assert f"within {examples.TRAINED_TOLERANCE:.1%}" in notes
    named = re.search(r"in what (.*?) print", " ".join(notes.split())).group(1)
    assert re.findall(r"`(?:convexp )?(\w+)`", named) == list(examples.TRAINED_COMMANDS)


def test_every_command_named_in_the_prose_is_one_convexp_takes():
    named = examples.inline_commands()
    assert len(named) > 50
    problems = [f"{page.relative_to(REPO)}: {problem}" for page, span in named if (problem := examples.command_problem(span))]
    assert not problems, "\n".join(problems)


def test_the_prose_check_tells_a_wrong_command_from_a_placeholder():
    for wrong in ("convexp data import mnist DIR", "convexp show --nonsense", "convexp frobnicate", "convexp name/tga"):
        assert examples.command_problem(wrong), wrong
    for right in ("convexp show", "convexp run --resume RUN", "convexp name/tag/note", "convexp COMMAND --help"):
        assert examples.command_problem(right) is None, right
    assert examples.command_problem("convexp show", complete=True)  # typed as it is, it lacks its run


def _folder_and_env(tmp_path, block, request):
    needs_mnist = "mnist" in block.text or "mnist" in block.marker or "edge-detectors" in block.text + block.marker
    mnist = mnist_folder()
    if needs_mnist and mnist is None:
        pytest.skip("MNIST IDX files not found: set CONVEXP_TEST_MNIST or put them in ../shared/data/mnist")
    made = MADE
    if examples.MNIST_NUMPY in {examples._spaced(c.line) for c in block.commands()} | set(block.after()):
        db = request.getfixturevalue("mnist_keras_run")  # trained once per test session, as the docs run it
        made[examples.MNIST_NUMPY] = (db.parent, (db.parent / "output.txt").read_text())
    return examples.fresh_folder(tmp_path), examples.environment(mnist), made


@pytest.mark.parametrize("block", cases("console"))
def test_console_example(block, tmp_path, request):
    folder, env, made = _folder_and_env(tmp_path, block, request)
    problems = examples.check_console(block, folder, env, made)
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("block", cases("python"))
def test_python_example(block, tmp_path, request):
    folder, env, made = _folder_and_env(tmp_path, block, request)
    problems = examples.check_python(block, folder, env, made)
    assert not problems, "\n\n".join(problems)
    if (folder / "convexp.db").exists():  # the runs it recorded ended as they should
        listed = subprocess.run(
            [sys.executable, "-m", "convexp", "runs", "--format", "json"], cwd=folder, env=env, capture_output=True, text=True
        )
        assert listed.returncode == 0, listed.stderr
        assert all(run["status"] == "finished" for run in json.loads(listed.stdout)), listed.stdout


@pytest.mark.parametrize("block", cases("in"))
def test_example_is_part_of_the_file_it_names(block):
    path = REPO / block.marker.split()[1]
    lines = block.text.strip("\n").splitlines()
    if lines[0].startswith("#") and path.name in lines[0]:  # the comment naming the file
        lines = lines[1:]
    assert "\n".join(lines).strip() in path.read_text(), f"{block.name} is not in {path}"


@pytest.mark.parametrize("block", cases("experiments", "fragment"))
def test_yaml_example_validates(block, tmp_path):
    from convexp.experiments import runner

    if block.kind == "fragment":
        name = block.marker.split()[2]
        experiments = yaml.safe_load((REPO / "experiments.yaml").read_text())
        experiments["experiments"][name] |= yaml.safe_load(block.text)
        names = [name]
    else:
        experiments = yaml.safe_load(block.text)
        names = None
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump(experiments))
    planned = list(runner.prepare_runs(path, names))
    size = re.search(r"# (\d+) runs", block.text)
    if size:
        assert len(planned) == int(size.group(1))


@pytest.mark.parametrize("block", cases("set-up"))
def test_set_up_commands_are_what_ci_runs(block):
    ci = {" ".join(line.replace("--quiet ", "").split()) for line in (REPO / ".ci" / "run").read_text().splitlines()}
    for line in block.text.strip().splitlines():
        for part in line.split(" && "):
            if part.strip() != "convexp run":  # the quickstart: the README's console example runs it
                assert " ".join(part.split()) in ci, f"{block.name}: `{part}` is not in .ci/run"


@pytest.mark.parametrize("block", cases("shell"))
def test_shell_example_commands_exist_with_their_options(block):
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for line in block.text.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "convexp":
            problem = examples.command_problem(shlex.join(words), complete=True)
            assert problem is None, f"{block.name}: {problem}"
        elif words[:2] == ["python", words[1]] and words[1].endswith(".py"):
            script = REPO / words[1]
            assert script.exists(), f"{block.name}: {words[1]} does not exist"
            listed = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True)
            assert listed.returncode == 0, listed.stderr
            for option in (word for word in words[2:] if word.startswith("--")):
                assert option in listed.stdout, f"{block.name}: {words[1]} has no {option}"
        elif words[:3] == ["pip", "install", "-e"]:
            wanted = re.fullmatch(r"\.\[(.*)\]", words[3]).group(1).split(",")
            assert set(wanted) <= set(extras), f"{block.name}: no such extra in {wanted}"
        else:
            assert words[0] in ("createdb",), f"{block.name}: nothing checks `{line}`"


@pytest.mark.parametrize("block", cases("layout"))
def test_layout_names_only_files_that_exist(block):
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    names = {part for path in tracked for part in path.split("/")}
    folders = {part + "/" for path in tracked for part in path.split("/")[:-1]}
    for name in re.findall(r"(?<![\w/])([a-z_][a-z0-9_-]*(?:\.py|/))", block.text):
        assert name in names or name in folders, f"{block.name}: {name} is in no tracked path"
