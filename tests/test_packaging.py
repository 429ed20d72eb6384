"""A non-editable install carries the migrations and the built-in plugins, and can create a database."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_wheel_ships_migrations_and_plugins_and_migrates(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = (tmp_path / "dist").glob("convexp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "convexp/migrations/env.py",
        "convexp/migrations/script.py.mako",
        "convexp/migrations/versions/0001_initial.py",
        "convexp_plugins/numpy_backend/backend.py",
        "convexp/examples/experiments.yaml",
    } <= names
    # convexp ui's pages, scripts and styles ship inside the package (nothing is fetched at run time)
    shipped = {
        path.relative_to(REPO).as_posix()
        for folder in ("templates", "static")
        for path in (REPO / "convexp" / "ui" / folder).iterdir()
    }
    assert shipped and shipped <= names and "convexp/ui/static/run.js" in shipped
    assert not [n for n in names if n.startswith("convexp/examples/") and n != "convexp/examples/experiments.yaml"]
    assert zipfile.ZipFile(wheel).read("convexp/examples/experiments.yaml") == (REPO / "experiments.yaml").read_bytes()
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import convexp, convexp_plugins; from convexp.store import Store; from convexp.backends.registry import get_backends;"
        "from convexp.ui.app import HERE; assert (HERE / 'static' / 'common.js').is_file();"
        "print(convexp.__file__); print(convexp_plugins.__file__); print(sorted(get_backends()));"
        f"Store({str(tmp_path / 'w.db')!r}).close()"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(target)) and lines[1].startswith(str(target)), lines
    assert "'numpy'" in lines[2]
    assert (tmp_path / "w.db").exists()
    # in a folder without experiments.yaml, the installed package's own examples are used
    empty = tmp_path / "empty"
    empty.mkdir()
    validate = subprocess.run(
        [sys.executable, "-m", "convexp", "validate"], cwd=empty, env=env, capture_output=True, text=True, timeout=300
    )
    assert validate.returncode == 0, validate.stderr
    assert f"({target / 'convexp' / 'examples' / 'experiments.yaml'})" in validate.stderr
    assert "quickstart: 1 run(s)" in validate.stdout
