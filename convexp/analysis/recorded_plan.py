"""The layer plan of a recorded run, rebuilt from its spec alone, so that analysis can name and describe its layers
after the backend that trained it is gone."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from convexp.datasets import dataset_info
from convexp.errors import ConvexpError
from convexp.model.layers import Layer, PlannedLayer, plan


def plan_recorded(spec: dict) -> tuple[PlannedLayer, ...]:
    """The layer plan of a recorded run's spec, from its layers and dataset alone.

    Unlike validating the whole spec, this needs no installed backend: a run can be described
    after its backend's plugin is gone. Raises ``ValueError`` when the layers do not validate."""

    if spec.get("external"):
        raise ValueError("it was recorded from its own training loop (convexp.track): convexp has its kernels, not its network")
    try:
        layers = TypeAdapter(list[Layer]).validate_python(spec.get("layers") or [])
        info = dataset_info(str(spec.get("dataset")))
        return tuple(plan(layers, info.input_shape, info.num_classes))
    except (ValidationError, ConvexpError) as exc:  # ShapeError is a ConvexpError
        raise ValueError(f"the recorded layers do not plan: {exc}") from None
