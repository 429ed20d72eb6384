"""Running experiments: the YAML format and its grids (:mod:`~convexp.experiments.spec`), the runner that trains a
run on a backend and records it, the executors that spread runs over processes or a Dask cluster, and the estimates
of the disk and memory a selection needs, made before anything starts."""

#: What this package offers a user's own Python, by module (the API reference documents exactly these; names
#: only: importing convexp.experiments imports none of them).
PUBLIC: dict[str, tuple[str, ...]] = {
    "convexp.experiments.runner": ("prepare_runs", "execute", "resume", "PreparedRuns", "PreparedRun", "RunOutcome"),
}
