"""Running experiments: the YAML format and its grids (:mod:`~convexp.experiments.spec`), the runner that trains a
run on a backend and records it, the executors that spread runs over processes or a Dask cluster, and the estimates
of the disk and memory a selection needs, made before anything starts."""
