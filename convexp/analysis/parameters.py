"""Runs by their parameters: what each run was asked to do, as flat fields to show, filter and group by.

A run's parameters are its experiment, backend and concrete kernel initializer, then every field of
its spec with today's defaults filled in, flattened with dots (``optimizer.learning_rate``,
``layers.0.filters``, ``snapshots.every``); a run recorded from your own loop has its ``config``
there as ``config.NAME``. ``convexp runs`` shows the fields that vary among the runs it lists,
``--where`` filters on any of them, and ``convexp summary`` groups by them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from convexp.errors import ConvexpError, did_you_mean
from convexp.experiments.spec import RunSpec
from convexp.store import RunRecord, Store

if TYPE_CHECKING:
    import pandas

    from convexp.experiments.spec import RunSpec


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested spec as dotted keys: {"optimizer.learning_rate": 0.001, "layers.0.filters": 32, ...}."""
    if isinstance(value, dict):
        items: dict[str, Any] = {}
        for key, inner in value.items():
            items.update(flatten(inner, f"{prefix}{key}."))
        return items
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        items = {}
        for index, inner in enumerate(value):
            items.update(flatten(inner, f"{prefix}{index}."))
        return items
    return {prefix.rstrip("."): value}


def run_spec(spec: dict[str, Any]) -> RunSpec | None:
    """A recorded spec as today's model, its defaults filled in (a run recorded before a field existed had
    its default); None if it no longer validates (e.g. its backend's plugin is gone, or it is a tracked run's)."""

    try:
        return RunSpec.model_validate(spec)
    except (ValidationError, ValueError):
        return None


def resolved_spec(spec: dict[str, Any], model: RunSpec | None = None) -> dict[str, Any]:
    """A recorded spec with today's defaults filled in (``model``: its :func:`run_spec`, if made
    already); the spec as recorded if it no longer validates."""
    model = model or run_spec(spec)
    return spec if model is None else model.model_dump(mode="json")


def run_parameters(run: RunRecord, model: RunSpec | None = None, spec_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run's parameters as flat fields (see the module's docs); ``model``: its :func:`run_spec`, and
    ``spec_fields``: its spec flattened (``flatten(resolved_spec(...))``), if made already."""
    return {
        "experiment": run.experiment,
        "backend": run.backend,
        **(spec_fields if spec_fields is not None else flatten(resolved_spec(run.spec, model))),
        "kernel_initializer": run.kernel_initializer,  # the concrete one: 'default' is the backend's own
    }


def varying_fields(parameters: Sequence[dict[str, Any]]) -> list[str]:
    """The fields whose values are not the same in every run (a field a run lacks counts as None), in spec
    order; a field whose values repeat an earlier varying field's in every run (``kernel_initializer``
    beside ``initializer``) is left out, and so are the layers' fields where the runs' ``architecture`` (the
    name of their layer list) varies: it says which layers each run has in one column."""
    keys: dict[str, None] = {}
    for fields in parameters:
        keys.update(dict.fromkeys(fields))
    varying: dict[tuple[str, ...], str] = {}
    for k in keys:
        column = tuple(_key(p.get(k)) for p in parameters)
        if len(set(column)) > 1:
            varying.setdefault(column, k)
    found = list(varying.values())
    if "architecture" in found:
        found = [k for k in found if not k.startswith("layers.")]
    return found


def _key(value: Any) -> str:
    """A hashable, order-independent stand-in for a parameter's value."""
    return json.dumps(value, sort_keys=True, default=str)


def shown_value(value: Any) -> Any:
    """A parameter's value as a table cell: lists and mappings as JSON, anything else as it is."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


#: The comparisons ``--where`` takes, longest first where one begins another.
OPERATORS = ("<=", ">=", "!=", "==", "<", ">", "=")


@dataclass(frozen=True)
class Condition:
    """``FIELD=VALUE``, ``FIELD!=VALUE`` or an order (``FIELD<VALUE``, ``<=``, ``>``, ``>=``): a run matches when
    its field equals the value (or has a value, not null, that differs), as numbers when both are numbers, or, for
    an order, when its field is a number that compares so -- as SQL's comparisons of the stored spec. The same rule is the runs page's and the experiment page's (``runs.js``)."""

    field: str
    value: str
    operator: str = "="

    @classmethod
    def parse(cls, text: str) -> Condition:
        """A condition from its text; raises naming the text when it has no comparison, or orders a value that
        is not a number."""
        found = [(text.find(op), -len(op), op) for op in OPERATORS if op in text]
        if not found:
            raise ConvexpError(f"--where '{text}': write FIELD=VALUE (or !=, <, <=, >, >=), e.g. --where initializer=he_normal")
        at, _, operator = min(found)
        field, value = text[:at].strip(), text[at + len(operator) :].strip()
        if not field:
            raise ConvexpError(f"--where '{text}': write FIELD=VALUE (or !=, <, <=, >, >=), e.g. --where initializer=he_normal")
        operator = "=" if operator == "==" else operator
        if operator in ("<", "<=", ">", ">=") and _number(value) is None:
            raise ConvexpError(f"--where '{text}': {operator} compares numbers, and '{value}' is not one")
        return cls(field, value, operator)

    def matches(self, parameters: dict[str, Any]) -> bool:
        """Whether a run with these parameters meets the condition."""
        actual = parameters.get(self.field)
        wanted = _number(self.value)
        number = float(actual) if isinstance(actual, (int, float)) and not isinstance(actual, bool) else None
        if self.operator in ("=", "!="):
            equal = number == wanted if wanted is not None and number is not None else as_text(actual) == self.value
            return equal if self.operator == "=" else not equal and actual is not None  # != holds for a value only
        if number is None or wanted is None:
            return False
        return {"<": number < wanted, "<=": number <= wanted, ">": number > wanted, ">=": number >= wanted}[self.operator]


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def as_text(value: Any) -> str:
    """A parameter's value as it is written on the command line: true/false, null, JSON for lists, else str."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def check_fields(fields: Iterable[str], parameters: Sequence[dict[str, Any]], option: str) -> None:
    """Refuse a field that no run has, in one line naming the fields there are."""
    known: dict[str, None] = {}
    for p in parameters:
        known.update(dict.fromkeys(p))
    for name in fields:
        if name not in known:
            raise ConvexpError(
                f"{option} {name}: no such field in these runs{did_you_mean(name, known)}; fields: {', '.join(known)}"
            )


@dataclass(frozen=True)
class RunsWithParameters:
    """Runs, each with its parameters, and the fields that vary among them."""

    runs: list[RunRecord]
    parameters: list[dict[str, Any]]
    varying: list[str]


def runs_with_parameters(
    store: Store,
    experiment: str | None = None,
    backend: str | None = None,
    status: str | None = None,
    where: Sequence[str | Condition] = (),
    tags: Sequence[str] = (),
) -> RunsWithParameters:
    """The runs that match the filters, carry every tag of ``tags`` and meet every ``FIELD=VALUE`` condition,
    with their parameters and the fields that vary among the runs kept. A condition on a field no run has
    raises, naming the fields."""
    runs = [r for r in store.list_runs(experiment=experiment, backend=backend, status=status) if set(tags) <= set(r.tags or ())]
    parameters = [run_parameters(r) for r in runs]
    conditions = [c if isinstance(c, Condition) else Condition.parse(c) for c in where]
    if runs:
        check_fields([c.field for c in conditions], parameters, "--where")
    kept = [(r, p) for r, p in zip(runs, parameters) if all(c.matches(p) for c in conditions)]
    kept_parameters = [p for _, p in kept]
    return RunsWithParameters([r for r, _ in kept], kept_parameters, varying_fields(kept_parameters))


def runs_frame(
    store: Store,
    experiment: str | None = None,
    backend: str | None = None,
    status: str | None = None,
    where: Sequence[str | Condition] = (),
    tags: Sequence[str] = (),
) -> pandas.DataFrame:
    """The runs as a pandas DataFrame indexed by run id: name, tags, status, test accuracy and times, then
    one column per parameter field (every field, varying or not; lists and mappings as JSON text)."""
    try:
        import pandas  # heavy: loaded only when this is used
    except ImportError:
        raise ConvexpError("runs_frame needs pandas: pip install pandas") from None
    found = runs_with_parameters(store, experiment, backend, status, where, tags)
    records = [
        {
            "id": r.id,
            "name": r.name,
            "tags": ",".join(r.tags or ()),
            "status": r.shown_status(),
            "test_accuracy": r.test_accuracy,
            "epochs_completed": r.epochs_completed,
            "steps_completed": r.steps_completed,
            "started_at": r.started_at,
            "seconds": r.seconds,
            **{k: shown_value(v) for k, v in p.items()},
        }
        for r, p in zip(found.runs, found.parameters)
    ]
    frame = pandas.DataFrame.from_records(records)
    return frame.set_index("id") if records else frame
