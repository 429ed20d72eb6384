"""The results database: runs, metrics and kernel snapshots.

Everything outside this package sees plain dataclasses (:mod:`convexp.store.records`)
and numpy arrays, never ORM objects::

    from convexp.store import Store
    store = Store("convexp.db")
    for run in store.list_runs(): ...
    series = store.kernel_series(run_id=1, layer="conv1")   # series.kernels: (steps, out, in, kh, kw)
"""

from convexp.store.records import KernelSeries, LayerSnapshots, MetricRecord, RunRecord, SnapshotToWrite, StoredSnapshot
from convexp.store.store import Store

__all__ = ["Store", "RunRecord", "MetricRecord", "KernelSeries", "LayerSnapshots", "SnapshotToWrite", "StoredSnapshot"]
