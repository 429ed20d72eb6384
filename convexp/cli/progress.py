"""What ``convexp run`` shows while it trains: progress bars on stderr, one line per finished run on stdout.

Names and messages are data, not markup: they are escaped before rich prints them.
"""

from __future__ import annotations

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from convexp.cli.output import console


def outcome_line(outcome, label: str) -> str:
    """The line printed when a run ends: its status (in colour), why it stopped, its accuracy and speed."""
    accuracy = "n/a" if outcome.test_accuracy is None else f"{outcome.test_accuracy:.4f}"
    seconds = outcome.epoch_seconds
    per_epoch = f", {sum(seconds) / len(seconds):.2f} s/epoch" if seconds else ""
    colour = {"finished": "green", "pruned": "yellow"}.get(outcome.status, "red")
    reason = f" ({escape(outcome.message)})" if outcome.message else ""
    objective = f", objective {outcome.objective:.4g}" if outcome.objective is not None else ""
    return f"{label}: [{colour}]{outcome.status}[/{colour}]{reason}, test accuracy {accuracy}{objective}{per_epoch}"


def _run_label(run_id: int, experiment: str, backend: str, trial: int | None = None) -> str:
    return escape(f"run {run_id} {experiment}/{backend}" + (f" trial {trial}" if trial is not None else ""))


class RunPrinter:
    """Runs trained here: a progress bar per epoch, a line per epoch, and a summary per run."""

    def __init__(self, total_runs: int):
        self.console = console(stderr=True)
        self.out = console()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.total_runs, self.index = total_runs, 0

    def __enter__(self) -> RunPrinter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def note(self, line: str) -> None:
        """A line about the run being trained (that its budget leaves steps out), above the progress bar."""
        self.console.print(f"{self.label}: " + escape(line))

    def run_start(self, run_id, run, job) -> None:
        self.index += 1
        self.run_id, self.epochs, self.job = run_id, job.epochs, job
        self.label = _run_label(run_id, run.experiment, run.backend.name, run.trial)
        if run.sampled:  # a sweep's new trial: the values drawn for it
            from convexp.experiments.sweeping import format_values  # loaded with the runner that calls this

            self.console.print(f"[bold]{self.label}[/bold]: " + escape(format_values(run.sampled)))
        resumed = job.resume_from
        self.console.print(
            f"[bold]{self.label}[/bold] ({self.index}/{self.total_runs}): {escape(run.spec.dataset)}, "
            f"{len(job.train_labels)} train / {len(job.test_labels)} test, {job.epochs} epoch(s) x "
            f"{job.steps_per_epoch} steps"
            + (f", stopping at step {job.total_steps} (max_steps)" if job.total_steps < job.epochs * job.steps_per_epoch else "")
            + f", init {escape(run.kernel_initializer)}, {escape(run.spec.optimizer.name)}"
            + (f"; resuming after epoch {resumed.epoch} (step {resumed.step})" if resumed else "")
        )
        self._new_task(resumed.epoch + 1 if resumed else 1)

    def _new_task(self, epoch: int) -> None:
        steps = min(self.job.steps_per_epoch, self.job.total_steps - (epoch - 1) * self.job.steps_per_epoch)
        self.task = self.progress.add_task(f"epoch {epoch}/{self.epochs}", total=max(steps, 0), loss="")

    def step(self, step, epoch, metrics) -> None:
        self.progress.update(self.task, advance=1, loss=f"loss {metrics['train_loss']:.4f}")

    def epoch_end(self, epoch, metrics) -> None:
        self.progress.remove_task(self.task)
        self.console.print(
            f"  epoch {epoch}/{self.epochs}: test_loss {metrics['test_loss']:.4f}, "
            f"test_accuracy {metrics['test_accuracy']:.4f}, {metrics['epoch_seconds']:.2f} s"
        )
        if epoch < self.epochs and epoch * self.job.steps_per_epoch < self.job.total_steps:
            self._new_task(epoch + 1)

    def run_end(self, outcome) -> None:
        self.out.print(outcome_line(outcome, self.label))


class GridPrinter:
    """Runs on a cluster: one bar of runs done / failed / running, and a line per run as it ends.

    Used as the ``listener`` of :func:`convexp.experiments.executors.run_on_dask`."""

    def __init__(self, total_runs: int):
        self.progress = Progress(
            TextColumn("runs"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console(stderr=True),
            transient=True,
        )
        self.task = self.progress.add_task("grid", total=total_runs, counts="")

    def __enter__(self) -> GridPrinter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, state, outcome) -> None:
        self.progress.update(
            self.task,
            completed=state.done + state.failed,
            counts=f"{state.done} done, {state.failed} failed, {state.running} running",
        )
        if outcome is not None:
            label = _run_label(outcome.run_id, outcome.experiment, outcome.backend, outcome.trial)
            self.progress.console.print(outcome_line(outcome, label))
