"""One run described in full: what it was asked to do, how far it got, and what it recorded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convexp.analysis.plan_text import describe_plan, format_parameter_table
from convexp.analysis.recorded_plan import plan_recorded
from convexp.model.layers import PlannedLayer
from convexp.model.parameters import parameter_table
from convexp.store import LayerSnapshots, MetricRecord, RunRecord, Store
from convexp.store.budget import percent
from convexp.store.space import RunSize, format_bytes, run_sizes


@dataclass(frozen=True)
class RunDescription:
    """A run's record, its architecture with shapes, its last metrics, its snapshots and checkpoint."""

    run: RunRecord
    plan: tuple[PlannedLayer, ...] | None  # None when the recorded layers no longer plan (written by another convexp)
    last_metrics: dict[str, MetricRecord]
    snapshots: list[LayerSnapshots]
    checkpoint: tuple[int, int] | None  # (epoch, step) of the latest checkpoint
    size: RunSize | None = None  # the bytes its rows hold
    #: Whether each layer's last snapshot was checked against a checksum (None: not read; False: some
    #: were recorded before checksums, so only decoded).
    last_checked: bool | None = None

    @property
    def architecture(self) -> str | None:
        """The network in one line with each layer's output shape."""
        return None if self.plan is None else describe_plan(self.plan)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        run = self.run
        return {
            "id": run.id,
            "uid": run.uid,
            "experiment": run.experiment,
            "backend": run.backend,
            "name": run.name,
            "tags": list(run.tags or ()),
            "notes": run.notes,
            "status": run.shown_status(),
            "recorded_status": run.status,
            "message": run.message,
            "attempts": run.attempts,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "seconds": run.seconds,
            "host": run.host,
            "pid": run.pid,
            "dataset": run.dataset,
            "seed": run.seed,
            "epochs_completed": run.epochs_completed,
            "epochs_planned": run.spec.get("epochs"),
            "steps_completed": run.steps_completed,
            "kernel_initializer": run.kernel_initializer,
            "bias_initializer": run.bias_initializer,
            "framework": run.framework,
            "framework_version": run.framework_version,
            "device": run.device,
            "backend_version": run.backend_version,
            "convexp_version": run.convexp_version,
            "architecture": self.architecture,
            "parameters": None
            if self.plan is None
            else [
                {
                    "layer": r.name,
                    "type": r.type,
                    "output_shape": list(r.output_shape),
                    "kernel_shape": None if r.kernel_shape is None else list(r.kernel_shape),
                    "weights": r.weights,
                    "biases": r.biases,
                    "statistics": r.statistics,
                    "parameters": r.parameters,
                }
                for r in parameter_table(self.plan)
            ],
            "last_metrics": {name: {"step": m.step, "epoch": m.epoch, "value": m.value} for name, m in self.last_metrics.items()},
            "snapshots": {
                s.layer: {"count": s.count, "first_step": s.first_step, "last_step": s.last_step, "shape": list(s.shape)}
                for s in self.snapshots
            },
            "checkpoint": None if self.checkpoint is None else {"epoch": self.checkpoint[0], "step": self.checkpoint[1]},
            "last_snapshots_checked": self.last_checked,
            "storage": None
            if self.size is None
            else {
                "snapshot_rows": self.size.snapshots,
                "snapshot_bytes": self.size.snapshot_bytes,
                "metric_rows": self.size.metrics,
                "metric_bytes": self.size.metric_bytes,
                "checkpoint_bytes": self.size.checkpoint_bytes,
                "total_bytes": self.size.total_bytes,
            },
            "spec": run.spec,
        }


def describe_run(store: Store, run: RunRecord, check_last: bool = False) -> RunDescription:
    """Everything the store knows about one run. With ``check_last``, each layer's last snapshot is read
    and checked against its checksum (a damaged one raises :class:`~convexp.errors.DamagedSnapshotError`);
    otherwise no kernel bytes are read."""
    checkpoint = store.latest_checkpoint(run.id)
    snapshots = store.snapshot_summary(run.id)
    checked = None
    if check_last:
        checked = all(store.snapshot(run.id, s.layer, s.last_step).checksum is not None for s in snapshots)
    return RunDescription(
        run=run,
        plan=_plan(run.spec),
        last_metrics=store.last_metrics(run.id),
        snapshots=snapshots,
        checkpoint=None if checkpoint is None else (checkpoint.epoch, checkpoint.step),
        size=run_sizes(store, [run.id])[run.id],
        last_checked=checked,
    )


def _plan(spec: dict[str, Any]) -> tuple[PlannedLayer, ...] | None:
    try:
        return plan_recorded(spec)
    except ValueError:
        return None


def _trained_lines(description: RunDescription, optimizer: dict[str, Any], settings: str) -> list[str]:
    """What `show` says of a run convexp trained: its data and progress, then (after when it ran) its network,
    initializers and optimizer."""
    run = description.run
    return [
        f"  dataset     {run.dataset}, seed {run.seed}, batch {run.spec.get('batch_size')}",
        f"  progress    {run.epochs_completed} of {run.spec.get('epochs')} epoch(s), {run.steps_completed} steps"
        + ("" if run.seconds is None else f", {run.seconds:.2f} s"),
        f"  layers      {description.architecture or 'n/a (the recorded spec does not validate with this convexp)'}",
        f"  initializer {run.kernel_initializer} (bias {run.bias_initializer})",
        f"  optimizer   {optimizer.get('name', 'n/a')}" + (f": {settings}" if settings else ""),
    ]


def _tracked_lines(run: RunRecord) -> list[str]:
    """What `show` says of a run recorded from the user's own loop or imported: how and its progress, then (after
    when it ran) what it recorded and its config."""
    shapes = run.spec.get("kernel_shapes") or {}
    config = run.spec.get("config") or {}
    files = run.spec.get("imported") or []
    how = (
        f"imported from {len(files)} saved {run.framework} file(s) (convexp import): "
        + ", ".join(f"{Path(f.get('path', '?')).name} as step {f.get('step')}" for f in files)
        if files
        else f"from its own {run.framework} training loop (convexp.track), dataset {run.dataset}"
    )
    return [
        f"  recorded    {how}",
        f"  progress    {run.epochs_completed} epoch(s), {run.steps_completed} steps"
        + ("" if run.seconds is None else f", {run.seconds:.2f} s"),
        "  layers      "
        + (", ".join(f"{name} {list(shape)}" for name, shape in shapes.items()) or "none recorded")
        + (" (conv kernels: out, in / groups, kh, kw)" if shapes else ""),
        "  config      " + (", ".join(f"{key} {value}" for key, value in config.items()) or "none given"),
    ]


def recording_line(recording: dict[str, Any]) -> str:
    """What a run recorded under a budget kept, and why, as one line (from ``runs.recording``)."""
    share = recording.get("budget")
    head = (
        f"recording may cost {percent(share)} of training time" if isinstance(share, int | float) else "recorded under a budget"
    )
    if "snapshots_kept" not in recording:
        return head + " (the run did not end: what it kept is not summarised)"
    always = recording.get("always_kept") or {}
    why = [f"{reason} {_steps(steps)}" for reason, steps in always.items()]
    if recording.get("kept_by_cadence"):
        every = sorted({c["every"] for c in recording.get("cadence") or []})
        cadence = f"every {every[0]}" if len(every) == 1 else f"every {every[0]} to {every[-1]}" if every else "every"
        why.append(f"{recording['kept_by_cadence']} by the budget ({cadence} steps)")
    spent, trained = recording.get("recording_seconds"), recording.get("training_seconds")
    cost = f"; recording took {spent / trained:.1%} of training" if spent is not None and trained else ""
    return (
        f"{head}: kept {recording['snapshots_kept']} of {recording.get('steps_offered', '?')} steps' kernels"
        + (f" ({'; '.join(why)})" if why else "")
        + cost
    )


def _steps(steps: list[int]) -> str:
    shown = ", ".join(str(s) for s in steps[:5])
    return (
        f"step {shown}" if len(steps) == 1 else f"steps {shown}" + (f" ... {steps[-1]} ({len(steps)})" if len(steps) > 5 else "")
    )


def format_description(description: RunDescription) -> str:
    """The description as the lines ``convexp show`` prints."""
    run = description.run
    optimizer = run.spec.get("optimizer") or {}
    settings = ", ".join(f"{k} {v}" for k, v in optimizer.items() if k != "name")
    # how and how far, then when (as ever), then what it is
    what = _tracked_lines(run) if run.spec.get("external") else _trained_lines(description, optimizer, settings)
    lines = [
        f"run {run.id} {run.experiment}/{run.backend}: {run.shown_status()}"
        + (f" ({run.message})" if run.message else "")
        + (f", {run.attempts} attempts" if run.attempts > 1 else ""),
        *([f"  name        {run.name}"] if run.name else []),
        *([f"  tags        {', '.join(run.tags)}"] if run.tags else []),
        *(
            [f"  notes       {line}" if k == 0 else f"              {line}" for k, line in enumerate(run.notes.splitlines())]
            if run.notes
            else []
        ),
        *([f"  sweep       trial {run.trial} of sweep {run.sweep_id}"] if run.sweep_id is not None else []),
        *what[:2],
        f"  started     {run.started_at:%Y-%m-%d %H:%M:%S} UTC on {run.host or '?'}"
        + ("" if run.finished_at is None else f"; ended {run.finished_at:%Y-%m-%d %H:%M:%S} UTC"),
        *what[2:],
        f"  framework   {run.framework} {run.framework_version} ("
        + ("" if run.spec.get("external") else f"backend plugin {run.backend_version}, ")
        + f"convexp {run.convexp_version})"
        + (f" on {run.device}" if run.device else ""),
        "  checkpoint  "
        + (
            "none"
            if description.checkpoint is None
            else f"after epoch {description.checkpoint[0]} (step {description.checkpoint[1]})"
        ),
    ]
    if description.size is not None:
        size = description.size
        lines.append(
            f"  storage     {format_bytes(size.total_bytes)}: {size.snapshots:,} kernel snapshot(s) "
            f"{format_bytes(size.snapshot_bytes)}, {size.metrics:,} metric row(s) {format_bytes(size.metric_bytes)}, "
            f"checkpoint {format_bytes(size.checkpoint_bytes)}"
        )
    lines.append("  metrics     none" if not description.last_metrics else "  metrics (last recorded values)")
    width = max(map(len, description.last_metrics), default=0)
    lines += [
        f"    {name:<{width}}  {m.value:.6g} (step {m.step}, epoch {m.epoch})" for name, m in description.last_metrics.items()
    ]
    if description.plan is not None:
        lines.append("  parameters")
        lines += [f"    {line}" for line in format_parameter_table(description.plan)]
    for s in description.snapshots:
        lines.append(f"  snapshots   {s.layer} {list(s.shape)}: {s.count} from step {s.first_step} to {s.last_step}")
    if run.recording:
        lines.append("  budget      " + recording_line(run.recording))
    if not description.snapshots:
        lines.append("  snapshots   none")
    elif description.last_checked is not None:
        run_id = description.run.id
        lines.append(
            "  checked     each layer's last snapshot decodes and matches its checksum; "
            f"`convexp db check {run_id}` checks every one"
            if description.last_checked
            else "  checked     each layer's last snapshot decodes; some were recorded without checksums "
            f"(`convexp db check --fix {run_id}` adds them)"
        )
    return "\n".join(lines)
