"""What convexp prints and serves is safe whatever the database holds (issue 41's classes, each closed by one rule):
terminal output escapes control characters, every JSON document is strict JSON, every name is addressable in the
web app and its downloads, and a web request's work is bounded."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import TINY_DIGITS, one_line_error, run_cli, write_experiments

TINY = {**TINY_DIGITS, "max_steps": 3}


# --- the terminal: what convexp prints cannot drive it ----------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "\x1b]0;pwned\x07",  # sets the window title
        "\x1b[2J\x1b[H",  # clears the screen
        "\x9b31m",  # a C1 control: CSI in one character
        "safe\u202eevil",  # right-to-left override: reorders what follows
        "\r overwritten",
    ],
)
def test_notes_and_names_are_printed_escaped_never_raw(small_db, tmp_path, hostile):
    db = tmp_path / "r.db"
    db.write_bytes(small_db.read_bytes())
    raw = [c for c in hostile if not c.isprintable()]
    for command in (("note", "1", f"before {hostile} after"), ("show", "1"), ("runs",), ("runs", "-f", "csv")):
        result = run_cli(*command, "--db", str(db))
        assert result.returncode == 0, result.stderr
        assert not any(c in result.stdout + result.stderr for c in raw), repr(result.stdout)
        on_terminal = on_a_terminal("convexp", *command[:1], *(["1"] if command[0] == "show" else []), "--db", str(db))
        assert not any(c in on_terminal for c in raw), repr(on_terminal)
        if command[0] == "show" and "\r" not in hostile:  # show breaks notes at \r as at \n: lines, not a return
            assert hostile.encode("unicode_escape").decode() in on_terminal, repr(on_terminal)
    assert json.loads(run_cli("show", "1", "-f", "json", "--db", str(db)).stdout)["notes"] == f"before {hostile} after"


def on_a_terminal(*command: str) -> str:
    """What a command writes to a real terminal (a pseudo-terminal: click and rich print differently to one)."""
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "convexp", *command[1:]], stdout=follower, stderr=follower, env={**os.environ, "COLUMNS": "200"}
    )
    os.close(follower)
    out = b""
    with contextlib.suppress(OSError):  # the terminal reads EIO once the command has exited
        while chunk := os.read(leader, 1 << 16):
            out += chunk
    process.wait(timeout=600)
    os.close(leader)
    text = out.decode("utf-8", "replace").replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # rich's own colours


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_printable_leaves_no_character_that_could_drive_a_terminal(text):
    from convexp.cli.output import printable

    shown = printable(text)
    assert all(c.isprintable() or c in "\n\t" for c in shown)
    assert shown == text or any(not c.isprintable() and c not in "\n\t" for c in text)  # only what must change changes


def test_a_confirmation_cuts_a_long_note_short_and_show_prints_it_whole(small_db, tmp_path):
    db = tmp_path / "r.db"
    db.write_bytes(small_db.read_bytes())
    note = "x" * 1_000_000
    result = run_cli("note", "1", "-", "--db", str(db), input=note)
    assert result.returncode == 0 and len(result.stdout) < 400 and "(1,000,000 characters)" in result.stdout
    assert note in run_cli("show", "1", "--db", str(db)).stdout


def test_notes_that_are_not_utf8_are_refused_in_one_line(small_db, tmp_path):
    db = tmp_path / "r.db"
    db.write_bytes(small_db.read_bytes())
    before = db.read_bytes()
    code = "import sys; from convexp.cli import main; sys.argv = ['convexp', 'note', '1', b'caf\\xe9'.decode('utf-8', 'surrogateescape'), '--db', sys.argv[1]]; main()"
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=300)
    one_line_error(result, "not UTF-8")
    assert db.read_bytes() == before


# --- JSON is JSON ---------------------------------------------------------------------------------------------


def test_every_json_document_holds_no_nan_and_says_which_number_was_not_finite():
    from convexp.analysis.cells import NON_FINITE_FIELD, json_text

    value = {"lr": float("nan"), "top": np.float32("inf"), "low": -math.inf, "kept": [1.0, float("nan")], "n": np.int64(3)}
    text = json_text(value)
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {text}"))
    assert parsed == {
        "lr": None,
        "top": None,
        "low": None,
        "kept": [1.0, None],
        "n": 3,
        NON_FINITE_FIELD: {"lr": "nan", "top": "inf", "low": "-inf"},
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_json_text_is_always_strict_json(value):
    from convexp.analysis.cells import json_text

    json.loads(json_text(value), parse_constant=lambda c: pytest.fail(f"{c} in {value!r}"))


def test_a_tracked_config_holding_nan_leaves_the_runs_table_and_json_outputs_valid(tmp_path):
    from starlette.testclient import TestClient

    import convexp
    from convexp.ui import create_app

    db = tmp_path / "t.db"
    with convexp.track("loop", db, config={"lr": float("nan"), "decay": float("inf")}) as run:
        run.log_metrics({"loss": 1.0}, step=1)
    with TestClient(create_app(str(db))) as client:
        for path in ("/api/runs", "/api/runs/1", "/api/experiments/loop"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)
            json.loads(response.text, parse_constant=lambda c, path=path: pytest.fail(f"{c} in {path}"))
        assert client.get("/experiments/loop").status_code == 200  # a config that does not vary: one group
    for command in (("runs", "-f", "json"), ("show", "1", "-f", "json")):
        result = run_cli(*command, "--db", str(db))
        assert result.returncode == 0, result.stderr
        json.loads(result.stdout, parse_constant=lambda c, command=command: pytest.fail(f"{c} in {command}"))


# --- names addressable everywhere ------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["block1/conv", "a/b/c", "ünï cödé ✓", "x.y;z"])
def test_a_layer_of_any_name_is_reachable_in_every_route_and_downloads_under_its_name(tmp_path, layer):
    from urllib.parse import quote, unquote

    from starlette.testclient import TestClient

    import convexp
    from convexp.ui import create_app

    db = tmp_path / "t.db"
    kernels = np.random.default_rng(0).standard_normal((3, 4, 1, 3, 3)).astype(np.float32)
    with convexp.track("team/a", db) as run:
        for step in range(3):
            run.log_kernels({layer: kernels[step]}, step=step)
    base = f"/api/runs/1/layers/{quote(layer, safe='')}"
    with TestClient(create_app(str(db))) as client:
        for path in ("/steps", "/kernels?step=0", "/filters/0", "/distribution", "/histogram", "/analysis"):
            assert client.get(base + path).status_code == 200, (path, client.get(base + path).text)
        gif = client.get(f"/runs/1/layers/{quote(layer, safe='')}/filters.gif?frames=2")
        assert gif.status_code == 200, gif.text
        disposition = gif.headers["content-disposition"]
        disposition.encode("latin-1")  # a header carries Latin-1 only
        assert unquote(disposition.split("filename*=UTF-8''")[1]) == f"run-1-{layer}-steps-first-last.gif"
        assert client.get("/experiments/team/a").status_code == 200
        assert client.get("/api/experiments/team/a").json()["experiment"] == "team/a"


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "\x1b[31m", " ", "x" * 101])
def test_a_layer_name_that_cannot_be_shown_is_refused_when_validated(tmp_path, name):
    body = {**TINY, "layers": [{**TINY["layers"][0], "name": name}, *TINY["layers"][1:]]}
    one_line_error(run_cli("validate", str(write_experiments(tmp_path / "e.yaml", {"x": body}))), "layer name")


# --- web work bounded -----------------------------------------------------------------------------------------


def test_a_gif_of_a_wide_layer_draws_fewer_frames_and_refuses_more_naming_the_bound(tmp_path):
    from starlette.testclient import TestClient

    import convexp
    from convexp.ui import create_app
    from convexp.ui.gif import MAX_GIF_CELLS

    db = tmp_path / "t.db"
    with convexp.track("wide", db) as run:
        for step in range(3):
            run.log_kernels(
                {"conv": np.full((700, 1, 3, 3), step, np.float32), "narrow": np.zeros((256, 1, 3, 3), np.float32)}, step=step
            )
    with TestClient(create_app(str(db))) as client:
        refused = client.get("/runs/1/layers/conv/filters.gif")
        assert refused.status_code == 400 and f"at most {MAX_GIF_CELLS} filter cells" in refused.text
        too_many = client.get("/runs/1/layers/narrow/filters.gif?frames=6")
        assert too_many.status_code == 400 and "frames must be from 2 to 5" in too_many.text
        points = client.get("/api/runs/1/layers/narrow/filters/0?points=100000")
        assert points.status_code == 400 and "points must be from 2 to" in points.json()["error"]


def test_pictures_of_a_layer_without_filters_are_refused_naming_those_with_them(tmp_path):
    from starlette.testclient import TestClient

    from convexp.ui import create_app

    body = {**TINY, "layers": [{"type": "conv", "filters": 4, "kernel_size": 3}, {"type": "batch_norm"}, *TINY["layers"][1:]]}
    db = tmp_path / "r.db"
    assert run_cli("run", str(write_experiments(tmp_path / "e.yaml", {"bn": body})), "--db", str(db)).returncode == 0
    for command in (
        ("plot", "filters", "1", "--layer", "batch_norm1", "--out", str(tmp_path / "f.png")),
        ("plot", "evolution", "1", "--layer", "batch_norm1", "--out", str(tmp_path / "f.gif")),
        ("filters", "1", "--layer", "batch_norm1"),
    ):
        one_line_error(run_cli(*command, "--db", str(db)), "batch_norm1 holds no filters", "layers with filters: conv1")
    with TestClient(create_app(str(db))) as client:
        response = client.get("/runs/1/layers/batch_norm1/filters.gif")
        assert response.status_code == 400 and "holds no filters" in response.text
