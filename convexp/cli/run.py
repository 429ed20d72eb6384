"""``convexp run`` and ``convexp validate``."""

from __future__ import annotations

import contextlib
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from convexp.cli.app import app
from convexp.cli.options import DataDir, Db, Device, Executor, SetOption

if TYPE_CHECKING:
    from convexp.experiments.overrides import Override
    from convexp.experiments.runner import PreparedRuns

ExperimentsFile = Annotated[
    Optional[Path],
    typer.Argument(
        help="Experiments YAML file [default: ./experiments.yaml, else the examples that come with convexp].", show_default=False
    ),
]


def _experiments_file(file: Optional[Path]) -> Path:
    """The file to read; says so on stderr when it is convexp's bundled examples."""
    from convexp.experiments.experiments_file import experiments_file

    path, bundled = experiments_file(file)
    if bundled:
        typer.echo(f"no ./experiments.yaml here: using the examples that come with convexp ({path})", err=True)
    return path


@app.command("run", short_help="Train experiments and record them in the database.")
def run_command(
    file: ExperimentsFile = None,
    experiment: Annotated[
        Optional[list[str]],
        typer.Option(
            "--experiment", "-e", help="Experiment to run (repeat for several) [default: the file's default, else its first]."
        ),
    ] = None,
    backend: Annotated[Optional[str], typer.Option(help="Run on this backend instead of the experiment's.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Override the number of epochs.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Override the seed.")] = None,
    set_: SetOption = None,
    budget: Annotated[
        Optional[float],
        typer.Option(
            metavar="SHARE",
            help="Let recording kernels cost at most this share of training time (0.05 = 5%): when every scheduled "
            "step would cost more, every k-th is recorded, k adapted to the measured costs; step 0, the first "
            "steps, epoch ends and the last step are always kept, and the run records which it kept and why "
            "(`convexp show`). Same as --set snapshots.budget=SHARE.",
        ),
    ] = None,
    device: Annotated[
        Optional[Device],
        typer.Option(help="Train on this device instead of the experiment's (auto: a GPU when the backend sees one)."),
    ] = None,
    resume: Annotated[
        Optional[int],
        typer.Option(
            "--resume",
            metavar="RUN",
            help="Continue run RUN (interrupted, failed or stale) from its last "
            "epoch checkpoint, recording into the same run; uses the run's own recorded spec.",
        ),
    ] = None,
    resume_sweep: Annotated[
        bool,
        typer.Option(
            "--resume-sweep",
            help="For an experiment with a sweep: block: continue its newest sweep in --db with the same definition "
            "(--set sweep.trials=N may raise its trials) instead of starting a new one: its interrupted trials "
            "resume from their checkpoints, then the trials it lacks run; finished trials are never repeated.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="With --resume: take over a run that still looks alive (its process on this host is alive, or "
            "elsewhere its heartbeat is under 30 s old); says whose run it takes. The other process then "
            "records nothing more into it.",
        ),
    ] = False,
    executor: Annotated[
        Executor,
        typer.Option(
            help="Where runs execute: 'local' (this process, one after another) or 'dask' "
            "(each run a task on a Dask cluster; needs convexp[dask])."
        ),
    ] = Executor.local,
    scheduler: Annotated[
        Optional[str], typer.Option(help="Dask scheduler address (tcp://host:8786) [default: start a LocalCluster].")
    ] = None,
    workers: Annotated[
        Optional[int], typer.Option(min=1, help="Worker processes of the LocalCluster [default: one per CPU].")
    ] = None,
    max_retries: Annotated[
        int,
        typer.Option(
            min=0,
            help="With dask: re-run a run whose task failed or whose worker died this many "
            "times (it resumes from its checkpoint).",
        ),
    ] = 2,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            help="Start without asking, however many runs and bytes (convexp asks above 100 runs or 5 GB: "
            "CONVEXP_CONFIRM_RUNS, CONVEXP_CONFIRM_BYTES).",
        ),
    ] = False,
    db: Db = None,
    data_dir: DataDir = None,
) -> None:
    """Train the experiments of FILE and record runs, metrics and kernel snapshots in the database.

    Everything is validated first (spec, backend, data); nothing is written unless all of it is good.
    With --executor dask every worker writes into --db: use a database they can all reach
    (PostgreSQL: --db postgresql+psycopg://user@host/convexp).
    """
    from convexp.errors import ConvexpError
    from convexp.experiments import runner
    from convexp.store import Store

    overrides = _overrides({"backend": backend, "epochs": epochs, "seed": seed, "device": device and device.value}, set_)
    if budget is not None:
        from convexp.experiments.overrides import Override

        overrides.insert(0, Override("snapshots.budget", budget, "--budget"))
    if executor is Executor.local and (scheduler or workers):
        raise ConvexpError(f"--{'scheduler' if scheduler else 'workers'} needs --executor dask")
    if executor is Executor.dask and scheduler and workers:
        raise ConvexpError("--workers starts a LocalCluster; with --scheduler the cluster's own workers run the grid")
    if executor is Executor.dask:
        if resume is not None:
            raise ConvexpError("--resume runs here; it cannot be combined with --executor dask")
        planned = _prepared(file, experiment, overrides, data_dir, resume_sweep)
        selection = _check_storage(
            planned, db, yes, memory_here=scheduler is None, overrides=overrides
        )  # a cluster of one's own: its machines
        with _sigterm_as_ctrl_c():
            _run_on_dask(planned, db, data_dir, scheduler, workers, max_retries, selection, resume_sweep)
        return
    if force and resume is None:
        raise ConvexpError("--force takes over a run to resume: give it with --resume RUN")
    if resume_sweep and resume is not None:
        raise ConvexpError("--resume RUN continues one run; --resume-sweep continues an experiment's sweep: give one")
    if resume is not None:
        if overrides or experiment:
            given = ", ".join(o.given for o in overrides) or "--experiment"
            raise ConvexpError(f"--resume {resume} continues the run as recorded; it cannot be combined with {given}")
        store = Store(db, must_exist=True)
        taken = store.get_run(resume)
        if force and taken.status == "running" and not taken.is_stale():
            beat = "no heartbeat" if taken.heartbeat_at is None else f"last heartbeat {taken.heartbeat_at:%H:%M:%S} UTC"
            typer.secho(
                f"--force: taking over run {resume} from pid {taken.pid} on {taken.host}, which looks alive ({beat}); "
                "that process records nothing more into it",
                err=True,
                fg="yellow",
            )
        planned_count = 1
    else:
        planned = _prepared(file, experiment, overrides, data_dir, resume_sweep)
        selection = _check_storage(planned, db, yes, overrides=overrides)
        store = Store(db)
        if resume_sweep:
            _check_resumable(store, planned.grids)  # one line before anything is printed or run
        if selection:
            typer.echo(selection, err=True)
        planned_count = len(planned)
    from convexp.cli.progress import RunPrinter

    listener = RunPrinter(planned_count)
    try:
        with _sigterm_as_ctrl_c(), listener:
            if resume is not None:
                outcomes = [runner.resume(resume, store, data_dir, listener, force=force)]
            else:
                outcomes = runner.execute(planned, store, data_dir, listener, resume_sweeps=resume_sweep)
        _print_sweeps(store, outcomes, [] if resume is not None else planned.grids, db)
    except KeyboardInterrupt:
        continued = " (continue a sweep with --resume-sweep)" if resume is None and any(g.sweep for g in planned.grids) else ""
        typer.secho(
            f"interrupted: the current run is marked 'interrupted'; what was recorded is kept{continued}", err=True, fg="yellow"
        )
        raise typer.Exit(130) from None
    finally:
        store.close()
    if outcomes:
        last, where = outcomes[-1].run_id, "" if db is None else f" --db {shlex.quote(db)}"
        typer.echo(
            f"recorded in {store.location}; next: `convexp show {last}{where}`, "
            f"`convexp plot filters {last}{where} --out filters.png`",
            err=True,
        )
    if any(o.status not in ("finished", "pruned") for o in outcomes):
        raise typer.Exit(1)


def _prepared(file, experiment, overrides, data_dir, resume_sweep: bool) -> PreparedRuns:
    """The selection, validated; with --resume-sweep, one with a sweep."""
    from convexp.errors import ConvexpError
    from convexp.experiments import runner

    planned = runner.prepare_runs(_experiments_file(file), experiment, overrides, data_dir)
    if resume_sweep and not any(grid.sweep for grid in planned.grids):
        names = ", ".join(grid.experiment for grid in planned.grids)
        raise ConvexpError(f"--resume-sweep continues a sweep, but experiment(s) {names} have no sweep: block")
    return planned


def _print_sweeps(store, outcomes, grids, db: str | None) -> None:
    """A line per sweep of the selection, or that a resumed run was a trial of: its trials by status, and its best."""
    from convexp.experiments.sweeping import newest_sweep, summarise_sweep

    ran = [o.sweep_id for o in outcomes if o.sweep_id is not None]
    for sweep_id in dict.fromkeys([*ran, *(newest_sweep(store, grid) for grid in grids if grid.sweep)]):
        if sweep_id is not None:
            summary = summarise_sweep(store, sweep_id)
            typer.echo(summary.describe())
            where = "" if db is None else f" --db {shlex.quote(db)}"
            typer.echo(f"draw it: `{summary.plot_command}{where}`", err=True)


def _run_on_dask(planned, db, data_dir, scheduler, workers, max_retries, selection: str = "", resume_sweep=False) -> None:
    from convexp.cli.progress import GridPrinter
    from convexp.experiments.executors import run_on_dask
    from convexp.store import Store

    where = scheduler or f"a LocalCluster of {workers or 'one per CPU'} worker(s)"
    with Store(db) as store:
        if resume_sweep:
            _check_resumable(store, planned.grids)
        if selection:
            typer.echo(selection, err=True)
        typer.echo(f"{len(planned)} run(s) on {where}, recording into {store.location}", err=True)
        try:
            with GridPrinter(len(planned)) as show:
                outcomes = run_on_dask(
                    planned,
                    store,
                    data_dir,
                    scheduler=scheduler,
                    workers=workers,
                    max_retries=max_retries,
                    listener=show,
                    resume_sweeps=resume_sweep,
                )
        except KeyboardInterrupt:
            sweeps = " (a sweep with --resume-sweep)" if any(g.sweep for g in planned.grids) else ""
            typer.secho(
                "interrupted: the grid stopped; its runs that had not finished are marked 'interrupted' "
                f"(continue one with convexp run --resume RUN{sweeps})",
                err=True,
                fg="yellow",
            )
            raise typer.Exit(130) from None
        _print_sweeps(store, outcomes, planned.grids, db)
    finished, pruned = (sum(o.status == status for o in outcomes) for status in ("finished", "pruned"))
    typer.echo(f"grid: {finished}/{len(outcomes)} run(s) finished" + (f", {pruned} pruned" if pruned else ""))
    if finished + pruned != len(outcomes):
        raise typer.Exit(1)


def _check_resumable(store, grids) -> None:
    """That each sweep of the selection has a sweep to continue in ``store``: one line before anything runs."""
    from convexp.experiments.sweeping import resumable_sweep

    for grid in grids:
        if grid.sweep is not None:
            resumable_sweep(store, grid)


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM stops training as cleanly as Ctrl-C does (a KeyboardInterrupt), while the block runs."""

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _free_space_line(db: str | None, free: int | None) -> str:
    from convexp.experiments import estimate_disk
    from convexp.store.database import describe, resolve_url

    where = describe(resolve_url(db))
    if free is None:
        return f"free space: not known for {where} (a server database; check its disk yourself)"
    return f"free space where {where} lives: {estimate_disk.format_bytes(free)}"


def _overrides(options: dict[str, Any], sets: list[str] | None) -> list[Override]:
    """The fields the command line sets: the options given (``--epochs 2``), then each ``--set PATH=VALUE``."""
    from convexp.experiments.overrides import as_overrides, parse_set

    given = as_overrides({name: value for name, value in options.items() if value is not None})
    return given + [parse_set(text) for text in sets or []]


def _check_storage(
    planned: PreparedRuns, db: str | None, yes: bool, memory_here: bool = True, overrides: list[Override] | None = None
) -> str:
    """Refuse a selection a run of which cannot fit in this machine's memory (``memory_here``: the runs
    train here), or that the disk cannot hold; ask before a big one; returns the line saying what it
    will write (printed once the database has opened: an error there stays one line)."""
    from convexp.errors import ConvexpError, StoreError
    from convexp.experiments import estimate_disk
    from convexp.experiments.allocator import tuning_setting
    from convexp.experiments.estimate_memory import check_grids
    from convexp.store.database import describe, resolve_url
    from convexp.store.settings import check_recording_settings

    check_recording_settings()  # before anything is printed: a bad setting is the one line the user sees
    tuning_setting()
    if memory_here:
        check_grids(planned.grids)
    expected = sum((estimate_disk.estimate_grid(grid) for grid in planned.grids), estimate_disk.NOTHING)
    free = estimate_disk.free_bytes(db)
    if free is not None and expected.total_bytes > free:
        raise StoreError(
            f"{describe(resolve_url(db))}: the runs would write up to {estimate_disk.format_bytes(expected.total_bytes)}, "
            f"more than the {estimate_disk.format_bytes(free)} free on its disk; record fewer steps "
            "(snapshots: every), fewer runs, or use another --db"
        )
    sets = " ".join(o.given for o in overrides or [] if o.given.startswith("--set "))
    line = f"this selection{f' ({sets})' if sets else ''}: {expected.describe()}"
    if estimate_disk.needs_confirmation(expected) and not yes:
        typer.echo(line, err=True)
        typer.echo(_free_space_line(db, free), err=True)
        if not typer.confirm(
            f"start {expected.runs:,} run(s) writing up to {estimate_disk.format_bytes(expected.total_bytes)}?",
            default=False,
            err=True,
        ):
            raise ConvexpError("nothing was run (pass --yes to start without asking)")
        return ""
    return line


@app.command("validate", short_help="Check an experiments file without running it.")
def validate_command(file: ExperimentsFile = None, set_: SetOption = None, db: Db = None) -> None:
    """Check an experiments file without running anything: structure, names, shapes and grids.

    Prints each experiment's network with its parameter table: per layer the output shape, kernel
    shape (out, in, kh, kw), weights, biases and parameters; how many runs it expands to, what they
    will write (snapshot rows, metric rows, bytes, estimated from the specs) and the least memory a
    run of it holds (an experiment a run of which cannot fit in this machine's memory is an error);
    and the free space where --db lives."""
    from convexp.analysis.plan_text import describe_plan, format_parameter_table
    from convexp.backends.registry import get_backends
    from convexp.experiments import estimate_disk
    from convexp.experiments.estimate_memory import check_grids
    from convexp.experiments.grids import validate_file
    from convexp.machine import available_memory

    file = _experiments_file(file)
    experiments = validate_file(file, backends=get_backends(), overrides=_overrides({}, set_))
    total = estimate_disk.NOTHING
    available = available_memory()
    for name, grid in experiments.items():
        spec = grid.spec()
        expected = estimate_disk.estimate_grid(grid)
        total = total + expected
        runs = grid.sweep.describe() if grid.sweep else f"{len(grid):,} run(s)"
        typer.echo(f"{name}: {runs}, {spec.dataset}, {describe_plan(spec.plan())}")
        typer.echo("\n".join(f"  {line}" for line in format_parameter_table(spec.plan())))
        typer.echo(f"  writes {expected.describe()}")
        needed = check_grids([grid], available)
        typer.echo(
            f"  holds at least {estimate_disk.format_bytes(needed)} of memory a run (parameters, gradients, optimizer state, a batch's activations, the data)"
        )
    typer.echo(f"{file}: {len(experiments)} experiment(s) valid; all of them: {total.describe()}")
    typer.echo(_free_space_line(db, estimate_disk.free_bytes(db)))
