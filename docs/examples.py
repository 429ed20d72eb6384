"""The documentation's examples, found and checked by running them: every fenced block of README.md and docs/.

How a block is checked follows from its language, or from an HTML comment on the line before it,
``<!-- example: ... -->``:

- ``console`` (no comment needed): each ``$ convexp ...`` line is run, in order, in a fresh folder
  holding the repository's experiments.yaml (as a user's clone does), MNIST found through
  ``$CONVEXP_DATA_DIR``; what it prints (stdout and stderr together, as a terminal shows them)
  must match the lines shown. A line ``...`` stands for any lines; what differs from run to run by
  nature (durations, dates, the host, versions, the folder, a table's ``seconds`` column) is
  compared as a placeholder; every other character must be as shown. Numbers are exact, except those that
  come out of floating-point training (see :data:`TRAINED_COMMANDS`, :func:`same_number`).
- ``python`` (no comment needed): run as a script in such a folder; it must exit 0, and any runs it
  recorded must have finished. ``with NAME`` puts :data:`PRELUDES` [NAME] before it (the model and
  data that a fragment about your own loop assumes).
- ``after `convexp ...``` (a console or Python block): those commands are run in the folder first,
  their output not compared.
- ``in PATH``: the block is part of the repository's file PATH (the example plugin, whose own tests
  run it); a first comment line naming the file is left out.
- ``yaml`` (no comment needed): a whole experiments file, validated as ``convexp run`` would;
  ``fragment of NAME`` merges the block's fields into experiment NAME of experiments.yaml, and a
  ``# N runs`` comment in it is the grid's size.
- ``set-up``: the README's two set-up commands; ``.ci/run`` runs them. ``shell``: each line's command
  exists with the options given (``convexp`` commands are parsed by the CLI itself, ``python X.py``
  scripts asked for their ``--help``, ``pip install`` extras looked up in pyproject.toml).
- ``layout``: every file and folder named in the tree exists.

Commands named inline in the prose, in backticks (as ``convexp show RUN``), are parsed by the CLI too
(:func:`command_problem`): a command that does not exist, an option it does not take or an argument
too many is reported; a command named without its arguments, or with upper-case placeholders, is fine.

Commands that train for minutes (:data:`HEAVY`) make their blocks heavy: the test suite leaves them to
``python -m pytest -m heavy``, which ``.ci/run`` runs as well.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
#: Where the docs say a user's clone is (the folder the commands run in is shown as it).
USER_FOLDER = "/home/you/convexp"
#: Commands that train for minutes: blocks running them are checked by ``pytest -m heavy``.
HEAVY = (
    "convexp run -e edge-detectors",
    "convexp run -e mnist-keras-convnet --backend tensorflow --epochs 12",
)
#: The one-epoch MNIST run that the test suite trains once and shares (tests/conftest.py's mnist_keras_run).
MNIST_NUMPY = "convexp run -e mnist-keras-convnet --backend numpy --epochs 1"
#: Commands whose output reports what training computed. Their last digits depend on the CPU: the order in which
#: BLAS adds a sum differs between processor types and thread counts (the quickstart's final test loss is
#: 0.0448262 on one core type and 0.0448754 on another). So in what these print, a number with a fractional
#: part or an exponent is compared within :data:`TRAINED_TOLERANCE` (see :func:`same_number`); integers (steps,
#: rows, epochs, filter counts) and everything other commands print (formulas, initializer limits, shapes,
#: parameter counts, seeded samples) are exact by construction and compared digit for digit.
TRAINED_COMMANDS = ("run", "runs", "show", "filters", "summary", "compare")
#: How far a trained number may be from the one shown: this share of the shown value, plus one unit in the shown
#: value's last printed digit (its rounding). Measured: across OpenBLAS core types (SkylakeX, Haswell,
#: Sandybridge, Prescott) and one or two threads the quickstart's numbers moved by at most 0.11%; the filters
#: table after one MNIST epoch (docs/guides/analysis.md) by up to 0.66% beyond one unit with Haswell's kernels
#: (a mean of -0.0602 printed as -0.0597). 2% leaves three times that.
TRAINED_TOLERANCE = 0.02
#: A table's columns whose values differ from run to run by nature.
VOLATILE_COLUMNS = {"seconds", "started", "framework_version"}
#: Terminal width for the commands: wide enough that no table the docs show is wrapped.
COLUMNS = "400"

#: What fragments about recording your own loop assume is defined (``<!-- example: with NAME -->``).
PRELUDES = {
    "keras-model": """
import numpy as np, keras
from convexp.datasets import load_dataset

data = load_dataset("digits")
x_train, y_train = np.transpose(data.train_images, (0, 2, 3, 1)), data.train_labels
model = keras.Sequential([
    keras.Input((8, 8, 1)),
    keras.layers.Conv2D(8, 3, activation="relu"),
    keras.layers.Flatten(),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
""",
    "torch-loop": """
import torch
import torch.nn.functional as F
from torch import nn
from convexp.datasets import load_dataset

data = load_dataset("digits")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3)
        self.fc = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.conv1(x)), 1))


torch.manual_seed(0)
model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
images, labels = torch.from_numpy(data.train_images), torch.from_numpy(data.train_labels)
loader = [(images[i : i + 64], labels[i : i + 64]) for i in range(0, 640, 64)]
epochs, steps = 2, 20


def evaluate(model):
    with torch.no_grad():
        return (model(torch.from_numpy(data.test_images)).argmax(1).numpy() == data.test_labels).mean()


def train_step():
    x, y = loader[0]
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


import convexp
""",
}


@dataclass
class Block:
    """One fenced block of a page: where it is, its language, its text and its ``example:`` comment."""

    page: Path
    line: int
    language: str
    text: str
    marker: str = ""

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def kind(self) -> str:
        """How the block is checked (see the module's docs): its language's way, unless its comment says."""
        if self.marker and self.marker.split()[0] not in ("after", "with"):
            return self.marker.split()[0]
        return {"console": "console", "python": "python", "yaml": "experiments"}.get(self.language, "unchecked")

    @property
    def heavy(self) -> bool:
        """Whether checking the block trains for minutes (see :data:`HEAVY`)."""
        return any(_spaced(line) in HEAVY for line in self.after() + [command.line for command in self.commands()])

    def commands(self) -> list[Command]:
        """A console block's commands, each with the lines shown after it (none for other blocks)."""
        found: list[Command] = []
        if self.language != "console":
            return found
        for line in self.text.splitlines():
            if line.startswith("$ "):
                found.append(Command(line[2:].split("  #")[0].strip()))
            elif found:
                found[-1].shown.append(line)
            elif line.strip():
                raise ValueError(f"{self.name}: output before any $ command: {line!r}")
        return found

    def after(self) -> list[str]:
        """The commands an ``after `...``` comment runs before the block."""
        return re.findall(r"`([^`]+)`", self.marker) if self.marker.startswith("after ") else []


@dataclass
class Command:
    line: str
    shown: list[str] = field(default_factory=list)


def blocks() -> list[Block]:
    """Every fenced block of README.md and the docs pages, in order."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = re.fullmatch(r"<!-- example: (.*?) -->", before.strip())
            line = text[: match.start()].count("\n") + 1
            found.append(Block(page, line, match.group(1), match.group(2), marker.group(1) if marker else ""))
    return found


def _spaced(command: str) -> str:
    return " ".join(command.split())


# --- comparing what a command printed with what the docs show ---------------------------------------------------

_RULES = [
    (re.compile(r"(http://127\.0\.0\.1):\d+/"), r"\1:<port>/"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?"), "<date>"),
    (re.compile(r"\b\d+(\.\d+)? s\b"), "<n> s"),
    (re.compile(r"UTC on [^\s;]+;"), "UTC on <host>;"),
    (re.compile(r"\b\d+\.\d+\.\d+(\+\w+)?\b"), "<version>"),
    (re.compile(r"\b(epoch_seconds) +\S+"), r"\1 <n>"),
]


def normalise(lines: list[str], folder: str | None = None) -> list[str]:
    """Lines as compared: the folder as the docs' user folder, run-to-run values as placeholders, a table's
    cells stripped (its volatile columns as placeholders), runs of spaces as one."""
    out, columns = [], []
    for line in lines:
        if folder:
            line = line.replace(folder, USER_FOLDER)
        for pattern, replacement in _RULES:
            line = pattern.sub(replacement, line)
        if "┃" in line:
            columns = [cell.strip() for cell in line.split("┃")]
        elif "│" in line:
            cells = [cell.strip() for cell in line.split("│")]
            cells = ["<v>" if i < len(columns) and columns[i] in VOLATILE_COLUMNS else c for i, c in enumerate(cells)]
            line = " │ ".join(cells)
        elif re.fullmatch(r"[━╇]+", line.strip() or "x"):
            line = "<rule>"
        out.append(" ".join(line.split()))
    return out


def trained(command: str) -> bool:
    """Whether ``command`` reports what training computed (see :data:`TRAINED_COMMANDS`)."""
    words = shlex.split(command)
    return len(words) > 1 and words[0] == "convexp" and words[1] in TRAINED_COMMANDS


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def same_number(shown: str, printed: str) -> bool:
    """Whether a trained number printed matches the one shown: equal, or (with a fractional part or an exponent)
    within :data:`TRAINED_TOLERANCE` of the shown value plus one unit in its last printed digit."""
    if shown == printed:
        return True
    if not any(c in shown + printed for c in ".e"):
        return False  # integers are counts: exact
    mantissa, _, exponent = shown.partition("e")
    decimals = len(mantissa.partition(".")[2])
    unit = 10.0 ** (int(exponent or 0) - decimals)
    return abs(float(printed) - float(shown)) <= TRAINED_TOLERANCE * abs(float(shown)) + unit * (1 + 1e-9)


def same_line(shown: str, printed: str, toleranced: bool) -> bool:
    """Whether a printed line matches a line shown (both normalised): equal, or, ``toleranced``, equal but for
    numbers that are the same by :func:`same_number`."""
    if shown == printed or not toleranced:
        return shown == printed
    shown_numbers, printed_numbers = _NUMBER.findall(shown), _NUMBER.findall(printed)
    return (
        _NUMBER.split(shown) == _NUMBER.split(printed)
        and len(shown_numbers) == len(printed_numbers)
        and all(same_number(a, b) for a, b in zip(shown_numbers, printed_numbers))
    )


def mismatch(shown: list[str], printed: str, folder: str | None = None, toleranced: bool = False) -> str | None:
    """Why ``printed`` does not match the ``shown`` lines (see the module's docs), or None if it does;
    ``toleranced``: the command reports training (:func:`trained`), its numbers compared by :func:`same_number`."""
    want = normalise(shown)
    got = normalise(printed.rstrip("\n").splitlines(), folder)
    while want and not want[-1]:
        want.pop()
    if _fits(want, got, open_end=False, toleranced=toleranced):
        return None
    matched = max(i for i in range(len(want) + 1) if _fits(want[:i], got, open_end=True, toleranced=toleranced))
    if matched == len(want):
        ending = "\n".join(printed.rstrip("\n").splitlines()[-5:])
        return f"it printed more than the docs show, ending:\n{ending}"
    return f"the docs show {shown[matched]!r} (line {matched + 1} of the output shown), which it did not print; it printed:\n{printed}"


def _fits(want: list[str], got: list[str], open_end: bool, toleranced: bool = False) -> bool:
    """Whether the lines ``got`` match the pattern ``want`` (``...``: any lines; ``open_end``: more may follow)."""

    @cache
    def fits(i: int, j: int) -> bool:
        if i == len(want):
            return open_end or j == len(got)
        if want[i] == "...":
            return any(fits(i + 1, k) for k in range(j, len(got) + 1))
        return j < len(got) and same_line(want[i], got[j], toleranced) and fits(i + 1, j + 1)

    return fits(0, 0)


# --- running a block ---------------------------------------------------------------------------------------------


def fresh_folder(parent: Path) -> Path:
    """A folder as a user's clone is for the docs' commands: the repository's experiments.yaml in it."""
    folder = Path(tempfile.mkdtemp(dir=parent))
    shutil.copy(REPO / "experiments.yaml", folder / "experiments.yaml")
    return folder


def environment(mnist: Path | None) -> dict[str, str]:
    """The commands' environment: no database or data folder of the caller's, MNIST where the docs expect it."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEXP_")}
    env |= {"COLUMNS": COLUMNS, "PYTHONUNBUFFERED": "1"}
    if mnist is not None:
        env["CONVEXP_DATA_DIR"] = str(mnist)
    return env


def run_command(line: str, folder: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run one ``convexp ...`` line of the docs in ``folder``: its exit status and what it printed."""
    words = shlex.split(line)
    if words[0] != "convexp":
        raise ValueError(f"only convexp commands are run from the docs, not {line!r}")
    command = [sys.executable, "-m", "convexp", *words[1:]]
    if words[1:] == ["ui"]:  # a server: its first line, on a free port, then stopped
        return _first_line_of_server([*command, "--port", str(_free_port())], folder, env)
    result = subprocess.run(
        command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800
    )
    return result.returncode, result.stdout


def check_console(block: Block, folder: Path, env: dict[str, str], made: Made | None = None) -> list[str]:
    """Run a console block's commands in ``folder``; the problems found (none when it matches the docs).

    ``made`` maps a command to a folder where it has already run and what it printed: that folder's
    database is copied instead of running it again."""
    problems = prepare(block, folder, env, made)
    for command in [] if problems else block.commands():
        status, printed, where = _run_or_reuse(command.line, folder, env, made)
        if status != 0:
            problems.append(f"{block.name}: `{command.line}` exited {status}:\n{printed}")
            break
        problem = mismatch(command.shown, printed, where, toleranced=trained(command.line))
        if problem:
            problems.append(f"{block.name}: `{command.line}`: {problem}")
    return problems


def check_python(block: Block, folder: Path, env: dict[str, str], made: Made | None = None) -> list[str]:
    """Run a Python block as a script in ``folder`` (after its commands, with its prelude)."""
    problems = prepare(block, folder, env, made)
    if problems:
        return problems
    prelude = PRELUDES[block.marker.split()[1]] if block.marker.startswith("with ") else ""
    script = folder / "example.py"
    script.write_text(prelude + "\n" + block.text)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        return [f"{block.name}: the example exited {result.returncode}:\n{result.stdout[-4000:]}"]
    return []


#: Commands already run: the folder each ran in, and what it printed.
Made = dict[str, tuple[Path, str]]


def prepare(block: Block, folder: Path, env: dict[str, str], made: Made | None = None) -> list[str]:
    """Run the commands a block's ``after`` comment names, in ``folder``; the problems found."""
    for line in block.after():
        status, printed, _ = _run_or_reuse(line, folder, env, made)
        if status != 0:
            return [f"{block.name}: `{line}`, run before it, exited {status}:\n{printed}"]
    return []


def _run_or_reuse(line: str, folder: Path, env: dict[str, str], made: Made | None) -> tuple[int, str, str]:
    """Run a command, or copy the database it made elsewhere; a heavy command run first in a folder is
    added to ``made``, for the next block that runs it."""
    ready = (made or {}).get(_spaced(line))
    if ready is None:
        first = not (folder / "convexp.db").exists()
        status, printed = run_command(line, folder, env)
        if made is not None and first and status == 0 and _spaced(line) in HEAVY:
            made[_spaced(line)] = (folder, printed)
        return status, printed, str(folder)
    for path in ready[0].glob("convexp.db*"):
        shutil.copy(path, folder / path.name)
    return 0, ready[1], str(ready[0])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _first_line_of_server(command: list[str], folder: Path, env: dict[str, str]) -> tuple[int, str]:
    server = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        return (0 if server.poll() is None else server.returncode or 1), line
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


# --- commands named in the prose -------------------------------------------------------------------------------


def inline_commands() -> list[tuple[Path, str]]:
    """Every ``convexp ...`` command written inline (in backticks) in the pages' prose, outside fenced blocks."""
    found = []
    for page in PAGES:
        prose = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
        found += [(page, " ".join(span.split())) for span in re.findall(r"`(convexp [^`]+)`", prose)]
    return found


def command_problem(span: str, complete: bool = False) -> str | None:
    """Why a ``convexp ...`` command is not one convexp takes, or None. An upper-case word is a placeholder (``RUN``,
    ``DIR``), ``a|b`` means either, ``a/b`` names both. Named in the prose, a command may go without its arguments;
    ``complete`` (a line of a shell example, to be typed as it is) says that a missing argument is a problem too."""
    import typer.main

    from convexp.cli import app

    words = shlex.split(span)[1:]
    if words and "/" in words[0] and not words[0].startswith("-"):  # `convexp name/tag/note`
        return next(filter(None, (command_problem(f"convexp {name}", complete) for name in words[0].split("/"))), None)
    command: Any = typer.main.get_command(app)
    while getattr(command, "commands", None) and words and not words[0].startswith("-"):
        if words[0].isupper():  # `convexp COMMAND --help`
            return None
        if words[0] not in command.commands:
            return f"`{span}`: convexp has no command {words[0]!r}"
        command, words = command.commands[words[0]], words[1:]
    if getattr(command, "commands", None):  # convexp itself, or a group, named with options only (--help)
        return None
    values = [word.split("|")[0] for word in words if word != "--help"]  # every command has --help
    values = ["1" if value.isupper() else value for value in values]
    try:
        command.make_context(command.name, values)
    except Exception as error:  # Typer carries its own click: its exceptions are told apart by name
        if type(error).__name__ == "Exit" or (type(error).__name__ == "MissingParameter" and not complete):
            return None  # --help; a command named without its arguments
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        return f"`{span}`: {message}"
    return None
