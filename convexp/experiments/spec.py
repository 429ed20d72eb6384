"""What an experiment may say, and its validation (grids: :mod:`convexp.experiments.grids`; reading the file:
:mod:`convexp.experiments.experiments_file`).

An experiments file is YAML::

    default: quickstart          # run when no experiment is named (else the first one)
    experiments:
      quickstart:
        dataset: digits
        backend: numpy           # a list here (or in any field but layers) makes a grid
        layers: [...]
        ...

:class:`RunSpec` is the one definition of what an experiment may say. Any top-level
field of an experiment except ``layers`` and ``description`` may hold a list of
values; the experiment then expands to one run per combination, in file order.
Two more fields label the runs without being part of what they are asked to do:
``tags`` (a list) and ``notes`` (text), which every run of the experiment starts with.
Validation happens before anything runs: every error is a :class:`SpecError` whose
one-line message names the file, the experiment and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from convexp.backends.features import described, features_of_spec
from convexp.datasets import DATASET_NAMES, dataset_info
from convexp.errors import ConvexpError, did_you_mean
from convexp.model.augmentation import Augmentation
from convexp.model.initializers import INITIALIZER_NAMES
from convexp.model.layers import LAYER_TYPES, BatchNorm, Conv, Layer, PlannedLayer, flat, plan
from convexp.model.optimizers import SGD, Adam, AdamW, Optimizer

if TYPE_CHECKING:
    from convexp.backends.protocol import Backend


class SnapshotSchedule(BaseModel):
    """When kernels are recorded. Step 0 (before any update) is always recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    every: int | None = Field(default=None, ge=1, description="record every N steps (1 = every step)")
    epoch_end: bool = Field(default=True, description="record at the last step of each epoch")
    layers: list[str] | None = Field(default=None, description="conv layer names to record (default: all conv layers)")
    budget: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="share of training time recording may cost (0.05 = 5%): above it, every k-th of the `every` steps "
        "is recorded, k adapted to the measured costs (step 0, the first steps, epoch ends and the last step always)",
    )

    @model_validator(mode="after")
    def _budget_needs_steps(self) -> SnapshotSchedule:
        if self.budget is not None and self.every is None:
            raise ValueError("budget thins the snapshots taken every N steps: set every (1 = every step) with it")
        return self


class RunSpec(BaseModel):
    """One fully resolved run: every field has a single value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(default="", description="free text: what the experiment asks")
    dataset: str = Field(
        description="digits (bundled), mnist, fashion-mnist, kmnist, cifar10 (`convexp data fetch NAME`), or "
        "{path: FILE.npz} for your own arrays"
    )
    backend: str = Field(default="numpy", description="the backend plugin that trains it (`convexp plugins` lists them)")
    layers: list[Layer] = Field(
        min_length=1,
        description="the network, input to logits (the last layer: dense, one unit per class); or named lists of "
        "layers, a run of each",
    )
    architecture: str | None = Field(
        default=None,
        description="with layers given as named lists ({plain: [...], batch_norm: [...]}), the one this run trains "
        "(a list of names is a grid axis; by default, every one)",
    )
    initializer: str = Field(
        default="glorot_uniform",
        description="how conv and dense kernels are drawn (`convexp init NAME` gives the formula); default: the framework's own",
    )
    bias_initializer: str = Field(default="zeros", description="how biases are drawn (the fans of their layer's kernel)")
    optimizer: Optimizer = Field(
        default_factory=lambda: Adam(name="adam"), discriminator="name", description="sgd, adam or adamw, with its settings"
    )
    epochs: int = Field(ge=1, description="passes over the training set")
    batch_size: int = Field(default=32, ge=1, description="examples per update (the last batch of an epoch may be smaller)")
    seed: int = Field(
        default=0, ge=0, lt=2**63, description="initial weights, batch order, dropout and augmentation follow from it"
    )
    shuffle: bool = Field(default=True, description="visit the training examples in a seeded random order each epoch")
    shared_init: bool = Field(
        default=False, description="draw initial weights once with numpy from the seed and load them into the backend"
    )
    max_steps: int | None = Field(default=None, ge=1, description="stop after this many updates")
    train_examples: int | None = Field(default=None, ge=1, description="train on the first N examples only")
    log_every: int = Field(default=1, ge=1, description="record train_loss/train_accuracy every N steps")
    gradient_clip_norm: float | None = Field(
        default=None, gt=0, description="scale every gradient by min(1, c / ||g||), ||g|| the norm of all of them together"
    )
    label_smoothing: float = Field(
        default=0.0, ge=0, lt=1, description="train on targets (1 - s) one-hot + s / classes (the test loss stays plain)"
    )
    augmentation: Augmentation | None = Field(
        default=None, description="shift and flip each training image by seeded draws: {shift: 2, flip: true}"
    )
    snapshots: SnapshotSchedule = Field(default_factory=SnapshotSchedule, description="when kernels are recorded")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="where to train: auto (a GPU when the backend sees one, else the CPU), cpu, or cuda (a GPU or an error)",
    )
    checkpoints: bool = Field(
        default=True, description="keep the training state of the last finished epoch, so `convexp run --resume` can continue"
    )

    @model_validator(mode="before")
    @classmethod
    def _named_layers(cls, data: Any) -> Any:
        """``layers`` given as named lists: the one ``architecture`` names."""
        if not isinstance(data, dict):
            return data
        layers, name = data.get("layers"), data.get("architecture")
        if isinstance(layers, dict):
            if not layers:
                raise ValueError("field 'layers': no named layer lists")
            names = ", ".join(map(str, layers))
            if name is None:
                raise ValueError(f"field 'architecture': the layers are named ({names}); name the one to train")
            if not isinstance(name, str) or name not in layers:
                raise ValueError(f"field 'architecture': {name!r} is not one of the named layer lists ({names})")
            return {**data, "layers": layers[name]}
        if name is not None:
            raise ValueError("field 'architecture': it names one of several layer lists, but 'layers' is a single list")
        return data

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:

        if value.startswith("npz:"):  # your own arrays: checked now, so a bad file is refused before any run
            try:
                dataset_info(value)
            except ConvexpError as exc:
                raise ValueError(str(exc)) from None
            return value
        if value not in DATASET_NAMES:
            raise ValueError(
                f"unknown dataset '{value}'{did_you_mean(value, DATASET_NAMES)}; known: {', '.join(DATASET_NAMES)}, "
                "or {path: FILE.npz} for your own arrays"
            )
        return value

    @field_validator("initializer", "bias_initializer")
    @classmethod
    def _known_initializer(cls, value: str) -> str:

        names = INITIALIZER_NAMES + ("default",)
        if value not in names:
            raise ValueError(f"unknown initializer '{value}'{did_you_mean(value, names)}; known: {', '.join(names)}")
        return value

    @model_validator(mode="after")
    def _fits_together(self) -> RunSpec:
        planned = self.plan()
        conv_names = [p.name for p in flat(planned) if isinstance(p.layer, Conv)]
        for name in self.snapshots.layers or []:
            if name not in conv_names:
                raise ValueError(
                    f"snapshots.layers: '{name}' is not a conv layer{did_you_mean(name, conv_names)}; "
                    f"conv layers: {', '.join(conv_names) or 'none'}"
                )

        info = dataset_info(self.dataset)
        _, height, width = info.input_shape
        if self.augmentation is not None and self.augmentation.shift >= min(height, width):
            raise ValueError(
                f"augmentation.shift: {self.augmentation.shift} pixels moves a {height}x{width} image out of its frame; "
                f"at most {min(height, width) - 1}"
            )
        schedule = self.optimizer.schedule
        if schedule is not None and schedule.warmup_steps > 0:
            examples = min(info.train_examples, self.train_examples or info.train_examples)
            updates = -(-examples // self.batch_size) * self.epochs
            updates = min(updates, self.max_steps) if self.max_steps else updates
            if schedule.warmup_steps > updates:
                raise ValueError(
                    f"optimizer.schedule.warmup_steps: {schedule.warmup_steps} updates of warmup, but the run makes "
                    f"{updates}; the learning rate would never reach learning_rate"
                )
        return self

    def plan(self) -> tuple[PlannedLayer, ...]:
        """The layers with names and shapes for this spec's dataset (raises ValueError if they cannot apply)."""

        info = dataset_info(self.dataset)
        try:
            return tuple(plan(self.layers, info.input_shape, info.num_classes))
        except ConvexpError as exc:
            raise ValueError(f"layers: {exc}") from None

    def snapshot_layers(self) -> tuple[str, ...]:
        """Names of the layers recorded at each snapshot: the conv layers chosen (all by default) and every
        batch_norm layer (its gamma, beta and running statistics, which replaying the network needs)."""
        planned = self.plan()
        chosen = set(self.snapshots.layers or (p.name for p in flat(planned) if isinstance(p.layer, Conv)))
        return tuple(p.name for p in flat(planned) if p.name in chosen or isinstance(p.layer, BatchNorm))


@dataclass(frozen=True)
class ResolvedRun:
    """One run of a (possibly gridded) experiment."""

    experiment: str
    spec: RunSpec
    #: The experiment's ``tags`` and ``notes``: each of its runs starts with them (``convexp tag``/``note`` change them later).
    tags: tuple[str, ...] = ()
    notes: str | None = None


#: Names people bring from other tools, and what convexp calls them.
_ALIASES = {"lr": "learning_rate", "kernel": "kernel_size", "pool": "pool_size", "activation_fn": "activation"}


def suggestion(name: str, fields: list[str]) -> str:
    """`` (did you mean 'learning_rate'?)`` for a misspelt field, or a name another tool uses (``lr``)."""
    if name in _ALIASES and _ALIASES[name] in fields:
        return f" (did you mean '{_ALIASES[name]}'?)"
    return did_you_mean(name, fields)


def describe_error(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = ".".join(str(part) for part in first["loc"] if not str(part).startswith("function-after"))
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        parent = first["loc"][:-1]
        key = str(first["loc"][-1])
        message = f"unknown field{suggestion(key, _field_names(parent))}"
    elif first["type"] not in ("value_error", "missing"):
        message += f" (got {first['input']!r})"
    more = error.error_count() - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"field '{loc}': {message}{suffix}" if loc else f"{message}{suffix}"


def _field_names(loc: tuple) -> list[str]:
    """Field names of the model at ``loc`` in a RunSpec, for did-you-mean suggestions."""

    if not loc:
        return [*RunSpec.model_fields, "tags", "notes"]
    if loc[0] == "snapshots":
        return list(SnapshotSchedule.model_fields)
    if loc[0] == "optimizer":
        return list({**SGD.model_fields, **Adam.model_fields, **AdamW.model_fields})
    if loc[0] == "layers":
        by_type = {get_args(m.model_fields["type"].annotation)[0]: m for m in LAYER_TYPES}
        model = by_type.get(loc[-1]) if len(loc) > 2 else None
        return list(model.model_fields) if model else []
    return []


def check_backend(spec: RunSpec, backends: Mapping[str, Backend]) -> None:
    """That ``spec`` can run on one of ``backends`` (name -> backend): the backend exists and, where the spec
    says ``default``, has a framework default initializer. Raises ``ValueError("field '...': ...")``."""
    names = list(backends)
    if spec.backend not in backends:
        raise ValueError(
            f"field 'backend': unknown backend '{spec.backend}'{did_you_mean(spec.backend, names)}; "
            f"known: {', '.join(names) or 'none'}"
        )
    if spec.device != "auto" and spec.device not in backends[spec.backend].devices:
        raise ValueError(
            f"field 'device': backend '{spec.backend}' cannot train on {spec.device}; "
            f"it trains on {', '.join(backends[spec.backend].devices)}"
        )

    missing = sorted(features_of_spec(spec) - backends[spec.backend].features)
    if missing:
        if all(m in ("gradient_clip_norm", "label_smoothing") for m in missing):
            field = missing[0]
        elif all(m.startswith("optimizer") or m in ("weight_decay", "schedule") for m in missing):
            field = "optimizer"
        else:
            field = "layers"
        raise ValueError(
            f"field '{field}': backend '{spec.backend}' does not implement {described(missing)}; "
            f"`convexp plugins` lists what each backend implements"
        )
    for field in ("initializer", "bias_initializer"):
        if getattr(spec, field) == "default" and not backends[spec.backend].default_initializers:
            raise ValueError(f"field '{field}': backend '{spec.backend}' has no framework default initializer; name one")
