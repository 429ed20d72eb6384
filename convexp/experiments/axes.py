"""Where a grid's axes are, and the dotted paths that name an experiment's fields.

An axis is a list where the field takes one value: at the top of an experiment (``seed: [0, 1]``), inside a
mapping (``optimizer: {name: adam, learning_rate: [0.001, 0.01]}``), or in a ``grid:`` block of dotted paths,
which reaches a layer's fields too (``grid: {layers.0.filters: [16, 32]}``). A field that itself takes a list
(``snapshots.layers``) is an axis when given a list of lists. ``{range: [start, stop]}`` (or ``[start, stop,
step]``, stop excluded, as Python's range) is a whole-number axis that is never listed in memory. A path is
checked against the experiment format (:class:`~convexp.experiments.spec.RunSpec` and the models it holds), so
a misspelt one is one line naming the fields there are.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from convexp.experiments.spec import RunSpec, suggestion
from convexp.model.layers import LAYER_TYPES

#: Fields whose lists are never axes: the network (its own lists are its shape), the description, the labels.
NOT_GRIDDED = ("layers", "description", "tags")
#: The block of dotted paths, each a list of values (an axis).
GRID_KEY = "grid"


def expand_range(value: Any, where: str) -> Any:
    """``{range: [start, stop(, step)]}`` as a ``range`` (stop excluded); anything else as it is. Raises
    ``ValueError("field 'WHERE': ...")`` for bounds that are not whole numbers or give no values."""
    if not (isinstance(value, dict) and set(value) == {"range"}):
        return value
    bounds = value["range"]
    if not (isinstance(bounds, list) and 2 <= len(bounds) <= 3 and all(type(b) is int for b in bounds)):
        raise ValueError(f"field '{where}': range takes [start, stop] or [start, stop, step], whole numbers (got {bounds!r})")
    if len(bounds) == 3 and bounds[2] == 0:
        raise ValueError(f"field '{where}': a range's step cannot be 0")
    values = range(*bounds)
    if not values:
        raise ValueError(f"field '{where}': range {bounds} gives no values (the stop is excluded)")
    return values


def find_axes(raw: Mapping[str, Any]) -> dict[str, Sequence[Any]]:
    """Every axis of an experiment's fields, dotted path -> its values, in file order (the ``grid:`` block's
    where it stands). Raises ``ValueError("field '...': ...")`` for an empty axis, a bad range, a ``grid:``
    entry that is not a list or names no field, or a path given twice."""
    axes: dict[str, Sequence[Any]] = {}
    for key, value in raw.items():
        if key == GRID_KEY:
            for path, values in _grid_block(raw, value).items():
                if path in axes or any(path.startswith(p + ".") or p.startswith(path + ".") for p in axes):
                    raise ValueError(f"field '{GRID_KEY}.{path}': '{path}' is a list in the experiment already; give it once")
                axes[path] = values
        elif key not in NOT_GRIDDED:
            _collect(key, value, _field_annotation(RunSpec, None, key), axes)
    return axes


def _collect(path: str, value: Any, annotation: Any, axes: dict[str, Sequence[Any]]) -> None:
    value = expand_range(value, path)
    if isinstance(value, range):
        axes[path] = value
    elif isinstance(value, list) and not (takes_list(annotation) and not _lists(value)):
        if not value:
            raise ValueError(f"field '{path}': an empty list gives no runs")
        axes[path] = value
    elif isinstance(value, dict) and _models(annotation, value):  # a field that takes a mapping: its fields
        for key, inner in value.items():
            if key in axes or f"{path}.{key}" in axes:
                continue
            _collect(f"{path}.{key}", inner, _field_annotation(annotation, value, key), axes)


def _lists(values: list[Any]) -> bool:
    """Whether a list given to a field that takes a list holds several values of it (lists, or null)."""
    return all(isinstance(v, list) or v is None for v in values) and any(isinstance(v, list) for v in values)


def _grid_block(raw: Mapping[str, Any], block: Any) -> dict[str, Sequence[Any]]:
    if not isinstance(block, dict) or not block:
        raise ValueError(
            f"field '{GRID_KEY}': dotted paths, each with a list of values, e.g. {{optimizer.learning_rate: [0.001, 0.01]}}"
        )
    found: dict[str, Sequence[Any]] = {}
    for path, values in block.items():
        where = f"{GRID_KEY}.{path}"
        check_path(raw, str(path), where)
        values = expand_range(values, where)
        if not isinstance(values, (list, range)):
            raise ValueError(f"field '{where}': a list of values, or {{range: [start, stop]}} (got {values!r})")
        if not values:
            raise ValueError(f"field '{where}': an empty list gives no runs")
        found[str(path)] = values
    return found


def takes_list(annotation: Any) -> bool:
    """Whether a field of this type takes a list as its value."""
    return any(get_origin(arm) in (list, tuple) or arm in (list, tuple) for arm in _arms(annotation))


def _arms(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _arms(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [arm for part in get_args(annotation) for arm in _arms(part)]
    return [annotation]


def _models(annotation: Any, value: Mapping[str, Any] | None = None) -> list[type[BaseModel]]:
    """The models a mapping of this type may be, narrowed by its ``name`` or ``type`` (the discriminators)."""
    found = []
    for arm in _arms(annotation):
        if get_origin(arm) in (list, tuple):
            continue
        if isinstance(arm, type) and issubclass(arm, BaseModel):
            found.append(arm)
    if value:
        for key in ("name", "type"):
            tag = value.get(key)
            if isinstance(tag, str):
                narrowed = [m for m in found if key in m.model_fields and tag in _literals(m.model_fields[key].annotation)]
                if narrowed:
                    return narrowed
    return found


def _literals(annotation: Any) -> tuple[Any, ...]:
    return tuple(v for arm in _arms(annotation) if get_origin(arm) is Literal for v in get_args(arm))


def _field_annotation(annotation: Any, value: Mapping[str, Any] | None, key: str) -> Any:
    for model in _models(annotation, value):
        if key in model.model_fields:
            return model.model_fields[key].annotation
    return None


def split_path(path: str) -> list[str]:
    """``optimizer.learning_rate`` -> its parts."""
    return path.split(".")


def top_field(path: str) -> str:
    """The experiment field a path lies in: ``snapshots`` for ``snapshots.every``."""
    return split_path(path)[0]


def check_path(raw: Mapping[str, Any], path: str, where: str | None = None) -> None:
    """That ``path`` names a field of this experiment: each part a field of the model there (a layer's by its
    ``type``, an optimizer's by its ``name``), a layer by its index. Raises ``ValueError("field 'WHERE': ...")``
    naming the fields there are."""
    where = where or path
    parts = split_path(path)
    node: Any = raw
    annotation: Any = RunSpec
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth]) or "the experiment"
        mapping = node if isinstance(node, dict) else None
        if parts[depth - 1 : depth] == ["layers"]:
            layers = node if isinstance(node, list) else []
            if not part.isdigit() or int(part) >= len(layers):
                raise ValueError(f"field '{where}': '{part}' is not a layer of {here} (0 to {len(layers) - 1})")
            node = layers[int(part)]
            kind = node.get("type") if isinstance(node, dict) else None
            annotation = next((m for m in LAYER_TYPES if kind in _literals(m.model_fields["type"].annotation)), None)
            continue
        fields = list(dict.fromkeys(f for m in _models(annotation, mapping) for f in m.model_fields))
        if part not in fields:
            raise ValueError(f"field '{where}': {here} has no field '{part}'{suggestion(part, fields)}")
        annotation = _field_annotation(annotation, mapping, part)
        node = mapping.get(part) if mapping is not None else None
        if isinstance(node, list) and part != "layers" and node and all(isinstance(v, dict) for v in node):
            node = node[0]  # a list of whole mappings (an axis): its fields are those of its first


def with_default(raw: Mapping[str, Any], path: str) -> dict[str, Any]:
    """``raw`` with the top field of ``path`` written out when the experiment leaves it to its default and it is a
    mapping (the default optimizer, ``{name: adam}``), so that setting a field inside it keeps the rest."""
    top = top_field(path)
    field = RunSpec.model_fields.get(top)
    if top in raw or field is None or field.default_factory is None or len(split_path(path)) == 1:
        return dict(raw)
    default = field.default_factory()  # type: ignore[call-arg]
    if not isinstance(default, BaseModel):
        return dict(raw)
    return {**raw, top: default.model_dump(exclude_defaults=True)}


def set_path(raw: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``raw`` with ``value`` at ``path`` (a layer by its index; a list of whole mappings, an axis, gets
    it in each)."""
    result = copy.deepcopy(dict(raw))
    _set(result, split_path(path), value)
    return result


def _set(node: Any, parts: list[str], value: Any) -> None:
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        if head.isdigit():
            if not rest:
                node[int(head)] = value
            else:
                _set(node[int(head)], rest, value)
            return
        for item in node:
            _set(item, parts, value)
        return
    if not rest:
        node[head] = value
        return
    if not isinstance(node.get(head), (dict, list)):
        node[head] = {}
    _set(node[head], rest, value)


def product(axes: Sequence[Sequence[Any]]) -> Iterator[tuple[Any, ...]]:
    """Every combination of the axes' values, the last fastest -- as itertools.product, but reading each axis
    by index, so that a range of a billion values is never listed."""
    sizes = [len(a) for a in axes]
    if any(n == 0 for n in sizes):
        return
    index = [0] * len(axes)
    while True:
        yield tuple(a[i] for a, i in zip(axes, index))
        for k in range(len(axes) - 1, -1, -1):
            index[k] += 1
            if index[k] < sizes[k]:
                break
            index[k] = 0
        else:
            return
