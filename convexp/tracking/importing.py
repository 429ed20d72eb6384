"""``convexp import``: a run recorded from saved weights, one snapshot per file, so that every reader works on a
model convexp did not train (``show``, ``filters``, ``compare``, ``plot``, ``report``, the web UI).

Several files are one run, their snapshots ordered by the step each file records (a Lightning checkpoint's
``global_step``), else by the first number in the file name (``epoch=3.ckpt``, ``model_0400.pt``), else in the
order given; ``steps`` says them outright. Every file is read and checked before anything is written, and the run
notes each file's path and SHA-256: a file imported before is refused, naming the run it went into.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from convexp.errors import ConvexpError
from convexp.store import Store
from convexp.tracking.run import track
from convexp.tracking.saved_weights import SavedWeights, read_saved

_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class ImportedRun:
    """What an import made: the run, and each file's step."""

    run_id: int
    location: str
    steps: list[tuple[int, Path]]
    layers: list[str]


def import_files(
    paths: Sequence[str | os.PathLike[str]],
    experiment: str,
    db: str | os.PathLike[str] | None = None,
    *,
    layers: list[str] | None = None,
    steps: list[int] | None = None,
    name: str | None = None,
) -> ImportedRun:
    """Record the files' conv kernels as one run of ``experiment`` in ``db`` (see the module's docs); raises one line
    (:class:`ConvexpError`) for a bad file, layers that differ between files, steps that do not fit, or a file
    imported before -- and then writes nothing."""
    if not paths:
        raise ConvexpError("give the saved model's file(s) to import")
    saved = [read_saved(Path(path), layers) for path in paths]
    ordered = _ordered(saved, steps)
    first = ordered[0][1]
    for _, other in ordered[1:]:
        shapes = {n: k.shape for n, (k, _) in other.kernels.items()}
        if shapes != {n: k.shape for n, (k, _) in first.kernels.items()}:
            raise ConvexpError(
                f"{other.path}: its conv layers differ from {first.path}'s ({', '.join(first.kernels)}): one run is one "
                "network; import it on its own, or choose the layers they share with --layers"
            )
    with Store(db) as store:
        _refuse_imported(store, saved)
    files = [{"path": str(s.path.resolve()), "sha256": s.sha256, "format": s.format, "step": step} for step, s in ordered]
    run = track(experiment, db, framework=first.format, name=name, quiet=True)
    with run:
        for step, weights in ordered:
            run.log_kernels(weights.kernels, step=step, epoch=0)
    with Store(db) as store:
        store.update_spec(run.run_id, {"imported": files})
        location = store.location
    return ImportedRun(run.run_id, location, [(step, s.path) for step, s in ordered], list(first.kernels))


def _ordered(saved: list[SavedWeights], steps: list[int] | None) -> list[tuple[int, SavedWeights]]:
    """Each file with its step, in step order: as given, else each file's own, else from its name, else its place."""
    if steps is not None:
        if len(steps) != len(saved):
            raise ConvexpError(f"--steps gives {len(steps)} step(s) for {len(saved)} file(s)")
        chosen = list(steps)
    elif all(s.step is not None for s in saved):
        chosen = [int(s.step) for s in saved]  # type: ignore[arg-type]
    elif len(saved) > 1 and all(_NUMBER.search(s.path.stem) for s in saved):
        chosen = [int(_NUMBER.findall(s.path.stem)[0]) for s in saved]
    else:
        chosen = list(range(len(saved)))
    if len(set(chosen)) != len(chosen) or any(step < 0 for step in chosen):
        given = ", ".join(f"{s.path.name} {step}" for s, step in zip(saved, chosen))
        raise ConvexpError(f"the files' steps must be different whole numbers from 0 ({given}): give them with --steps")
    return sorted(zip(chosen, saved), key=lambda pair: pair[0])


def _refuse_imported(store: Store, saved: list[SavedWeights]) -> None:
    digests = {s.sha256: s.path for s in saved}
    for run in store.list_runs():
        for file in (run.spec.get("imported") or []) if isinstance(run.spec, dict) else []:
            if isinstance(file, dict) and file.get("sha256") in digests:
                path = digests[file["sha256"]]
                raise ConvexpError(f"{path} was already imported as run {run.id} (the same bytes, from {file.get('path')})")
