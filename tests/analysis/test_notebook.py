"""convexp.open(db) in a notebook: the runs as a DataFrame, a run's kernels, metrics and pictures, each equal to
what the database holds (read here with SQL), and its HTML view."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

import convexp
from tests.conftest import stored_kernels

pytest.importorskip("pandas", reason="the notebook API's tables are pandas DataFrames")


def test_a_run_in_a_notebook_is_what_the_database_holds(small_db):
    from matplotlib.figure import Figure

    with convexp.open(small_db) as results:
        frame = results.runs()
        assert list(frame.index) == [1] and frame.loc[1, "status"] == "finished"
        run = results.run(1)
        assert results.run("tiny:numpy").id == 1
        series = run.kernels()  # conv1, the run's first conv layer
        expected = stored_kernels(small_db, "conv1")
        assert list(series.steps) == sorted(expected)
        for step, kernel in zip(series.steps, series.kernels):
            assert kernel.tobytes() == expected[int(step)].tobytes()
        metrics = run.metrics()
        with sqlite3.connect(small_db) as connection:
            rows = connection.execute("SELECT step, name, value FROM metrics WHERE run_id = 1 ORDER BY name, step").fetchall()
        got = sorted(zip(metrics["step"], metrics["name"], metrics["value"]), key=lambda r: (r[1], r[0]))
        assert [(int(s), n, v) for s, n, v in got] == rows
        for figure in (run.filters(step=0), run.filters(), run.evolution(filters=[0, 1]), run.curves()):
            assert isinstance(figure, Figure) and figure.axes
        view = run._repr_html_()
        assert view.startswith("<pre>run 1 tiny/numpy: finished") and "snapshots   conv1" in view
        assert repr(run) == "run 1 tiny/numpy: finished"
        assert "1 run(s)" in repr(results)
        with pytest.raises(convexp.errors.ConvexpError, match="no run with id 9"):
            results.run(9)
    assert np.isfinite(series.kernels).all()


def test_open_refuses_a_database_that_is_not_there(tmp_path):
    with pytest.raises(convexp.errors.ConvexpError, match="missing.db"):
        convexp.open(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
