"""Reading an experiments file: YAML whose keys must be unique (a repeated experiment or field is an error, not the
last one silently winning), found in the folder or, failing that, the examples bundled with convexp."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from convexp.errors import SpecError, did_you_mean
from convexp.model.names import experiment_name_problem

DEFAULT_FILE = "experiments.yaml"


def bundled_examples() -> Path | None:
    """The example experiments that come with convexp: the repository's experiments.yaml, shipped
    inside an installed package as convexp/examples/experiments.yaml (None if neither is there)."""
    package = Path(__file__).resolve().parents[1]  # convexp/
    for candidate in (package / "examples" / DEFAULT_FILE, package.parent / DEFAULT_FILE):
        if candidate.is_file():
            return candidate
    return None


def experiments_file(path: str | Path | None = None) -> tuple[Path, bool]:
    """The experiments file to read, and whether it is convexp's bundled examples.

    An explicit ``path`` is used as given; without one, ./experiments.yaml if it exists, else
    the examples that come with convexp (so that ``convexp run`` works in any folder)."""
    if path is not None:
        return Path(path), False
    local = Path(DEFAULT_FILE)
    if local.exists():
        return local, False
    bundled = bundled_examples()
    return (bundled, True) if bundled is not None else (local, False)


def read_file(path: str | Path) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """Parse an experiments file into (default experiment name, raw experiments), checking its outline."""

    path = Path(path)
    if not path.is_file():
        hint = " (pass a file: convexp run PATH)" if path.name == DEFAULT_FILE else ""
        raise SpecError(f"{path}: no such experiments file{hint}")
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_keys_loader())  # noqa: S506 - a SafeLoader
    except DuplicateKey as exc:
        raise SpecError(
            f"{path}:{exc.line}: '{exc.key}' is given twice (lines {exc.first_line} and {exc.line}); keep one"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise SpecError(f"{path}{where}: malformed YAML: {exc.problem or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: malformed YAML: {exc}") from None
    if not isinstance(document, dict):
        raise SpecError(f"{path}: must be a mapping with an 'experiments' key, not {type(document).__name__}")
    unknown = set(document) - {"default", "experiments"}
    if unknown:
        key = sorted(map(str, unknown))[0]
        raise SpecError(f"{path}: unknown top-level key '{key}'{did_you_mean(key, ['default', 'experiments'])}")
    experiments = document.get("experiments")
    if not isinstance(experiments, dict) or not experiments:
        raise SpecError(f"{path}: 'experiments' must be a non-empty mapping of experiment names to experiments")
    for name, body in experiments.items():
        problem = experiment_name_problem(str(name))
        if problem:
            raise SpecError(f"{path}: experiment '{name}': {problem}")
        if not isinstance(body, dict):
            raise SpecError(f"{path}: experiment '{name}' must be a mapping of fields, not {type(body).__name__}")
    default = document.get("default")
    if default is not None and default not in experiments:
        raise SpecError(f"{path}: default experiment '{default}' is not defined{did_you_mean(default, map(str, experiments))}")
    return default, {str(k): v for k, v in experiments.items()}


class DuplicateKey(Exception):
    """A mapping in an experiments file gives one key twice (YAML would silently keep the last)."""

    def __init__(self, key: object, first_line: int, line: int):
        self.key, self.first_line, self.line = key, first_line, line


def _unique_keys_loader() -> type:
    """PyYAML's SafeLoader, but a mapping that gives a key twice raises :class:`DuplicateKey` with both lines:
    two experiments of one name, or ``epochs`` twice, must not quietly become the last one."""

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<' merges: later keys override on purpose
                continue
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKey(key, seen[key], line)
                seen[key] = line
            except TypeError:  # an unhashable key: the mapping's own construction says so
                break
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return UniqueKeyLoader
