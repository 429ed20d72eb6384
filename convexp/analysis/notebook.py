"""A results database in a notebook: ``convexp.open(db)``, its runs as a DataFrame, and a run whose methods return
what the command line prints and draws -- figures to show inline, arrays and DataFrames to compute with.

    import convexp

    results = convexp.open("convexp.db")
    results.runs(experiment="quickstart")   # a pandas DataFrame, one column per parameter that varies
    run = results.run(1)                    # or results.run("quickstart:numpy"); shown as an HTML summary
    run.filters(step=0)                     # a matplotlib Figure of conv1's filters at step 0
    run.kernels("conv1").kernels            # (snapshots, out, in, kh, kw) float32
    run.metrics()                           # a DataFrame of every metric row

Everything is read from the database (as ``convexp show``, ``plot`` and ``runs`` read it); nothing is written.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from convexp.analysis.selection import default_layer, select_run
from convexp.analysis.summary import describe_run, format_description
from convexp.store import KernelSeries, RunRecord, Store

if TYPE_CHECKING:
    import pandas
    from matplotlib.figure import Figure


class Results:
    """A results database opened for reading (``convexp.open``); a context manager, or closed by :meth:`close`."""

    def __init__(self, db: str | os.PathLike[str] | None = None):
        self.store = Store(None if db is None else str(db), must_exist=True)

    def runs(self, experiment: str | None = None, where: Sequence[str] = (), status: str | None = None) -> pandas.DataFrame:
        """The runs as ``convexp runs`` lists them, one row each, their parameters as columns (needs pandas)."""
        from convexp.analysis.parameters import runs_frame

        return runs_frame(self.store, experiment=experiment, status=status, where=where)

    def run(self, run: int | str) -> Run:
        """One run, by id or ``EXPERIMENT:BACKEND`` (the latest such run, finished first)."""
        return Run(self.store, select_run(self.store, str(run)))

    def close(self) -> None:
        """Close the database."""
        self.store.close()

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<convexp results in {self.store.location}: {len(self.store.list_runs())} run(s)>"


class Run:
    """One recorded run, read from the database: what ``convexp show`` prints, its kernels, metrics and pictures."""

    def __init__(self, store: Store, record: RunRecord):
        self.store, self.record = store, record

    @property
    def id(self) -> int:
        """The run's id."""
        return self.record.id

    def describe(self) -> str:
        """What ``convexp show RUN`` prints."""
        return format_description(describe_run(self.store, self.record))

    def kernels(self, layer: str | None = None) -> KernelSeries:
        """Every snapshot of a conv layer (default: conv1, or the first the run recorded): ``.kernels`` is
        (snapshots, out, in, kh, kw) float32, ``.steps`` their steps."""
        return self.store.kernel_series(self.id, layer or default_layer(self.store, self.record))

    def metrics(self, names: Sequence[str] | None = None) -> pandas.DataFrame:
        """Every metric row (step, epoch, name, value, wall_time) of the run, or of ``names`` (needs pandas)."""
        return self.store.metrics_frame(self.id, names)

    def filters(self, step: int | str = "last", layer: str | None = None) -> Figure:
        """A layer's filters at ``step`` (a number, ``first`` or ``last``), as ``convexp plot filters`` draws them."""
        return self._picture("filters", layer, step=step)

    def evolution(self, layer: str | None = None, filters: Sequence[int] = tuple(range(8))) -> Figure:
        """Chosen filters across the snapshots, as ``convexp plot evolution`` draws them."""
        return self._picture("evolution", layer, filters=tuple(filters))

    def curves(self) -> Figure:
        """The training curves, as ``convexp plot curves`` draws them."""
        return self._picture("curves", None)

    def _picture(self, kind: str, layer: str | None, **options: Any) -> Figure:
        from convexp.analysis.plot import PictureOptions, draw

        chosen = layer or (default_layer(self.store, self.record) if kind != "curves" else "conv1")
        return draw(kind, self.store, [self.record], PictureOptions(layer=chosen, **options))

    def __repr__(self) -> str:
        return self.describe().splitlines()[0]

    def _repr_html_(self) -> str:
        """A notebook's view of the run: what ``convexp show`` prints."""
        return f"<pre>{html.escape(self.describe())}</pre>"


def open_results(db: str | os.PathLike[str] | None = None) -> Results:
    """A results database for reading in a notebook (see the module's docs); ``db`` as ``--db`` takes it."""
    return Results(db)
