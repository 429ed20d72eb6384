"""Property test: whatever an experiments file says, validation accepts it or raises SpecError — nothing else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from convexp.errors import SpecError
from convexp.experiments.grids import resolve_runs
from convexp.experiments.spec import RunSpec
from tests.conftest import TINY_DIGITS

FIELDS = list(RunSpec.model_fields) + ["epohcs", "lr", "snapshot", "type"]
LAYER_KEYS = ["type", "filters", "kernel_size", "stride", "padding", "activation", "pool_size", "rate", "units", "name", "size"]
LAYER_TYPES = ["conv", "maxpool", "relu", "flatten", "dropout", "dense", "pool", 3]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 40),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["digits", "mnist", "numpy", "torch", "glorot_uniform", "default", "valid", "same", "relu", "sgd", "adam"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
layers = st.lists(
    st.dictionaries(
        st.sampled_from(LAYER_KEYS), st.one_of(st.sampled_from(LAYER_TYPES), st.integers(-2, 12), scalars), max_size=4
    ),
    max_size=5,
)
changes = st.dictionaries(st.sampled_from(FIELDS), values, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=changes, layer_list=st.one_of(st.none(), layers), drop=st.sets(st.sampled_from(list(TINY_DIGITS)), max_size=2))
@example(changes={"layers": {"": None}, "architecture": {}}, layer_list=None, drop=set())  # found by hypothesis: a TypeError
@example(changes={"augmentation": {"\n": None}}, layer_list=None, drop=set())  # found in CI: a key's line break in the message
@example(changes={"augmentation": {"\n": []}}, layer_list=None, drop=set())
def test_validation_accepts_or_raises_spec_error(changes, layer_list, drop):
    body = {k: v for k, v in TINY_DIGITS.items() if k not in drop}
    body.update(changes)
    if layer_list is not None:
        body["layers"] = layer_list
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "e.yaml"
        path.write_text(yaml.safe_dump({"experiments": {"x": body}}))
        try:
            runs = resolve_runs(path)
        except SpecError as exc:
            message = str(exc)
            assert message.startswith(f"{path}: ") and "\n" not in message
        else:
            assert runs and all(isinstance(r.spec, RunSpec) for r in runs)
