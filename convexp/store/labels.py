"""A run's name, tags and notes: what the user calls it, set after the fact or when it is made.

They are the only columns of a run a user changes; ``convexp name``, ``convexp tag`` and
``convexp note`` are thin over these functions, and the UI shows and filters by them (read-only).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update

from convexp.errors import StoreError
from convexp.model.names import notes_problem, run_name_problem, tag_problem
from convexp.store.models import Run
from convexp.store.records import RunRecord
from convexp.store.store import Store


def checked_tags(tags: Iterable[object], where: str = "") -> list[str]:
    """``tags`` as a list without repeats, in the order given; :class:`StoreError` (prefixed with ``where``)
    naming the first one that cannot tag a run."""
    if isinstance(tags, (str, bytes)):  # a string is iterable: 'baseline' would be seven one-letter tags
        raise StoreError(f"{where}tags are a list of strings, not the string {tags!r}: give [{tags!r}]")
    kept: list[str] = []
    for tag in tags:
        problem = tag_problem(tag)
        if problem:
            raise StoreError(f"{where}{problem}")
        if tag not in kept:
            kept.append(tag)  # type: ignore[arg-type]
    return kept


def set_name(store: Store, run_id: int, name: str | None) -> RunRecord:
    """Name a run (None removes its name); returns the run as it now stands."""
    if name is not None and (problem := run_name_problem(name)):
        raise StoreError(problem)
    return _change(store, run_id, name=name)


def set_notes(store: Store, run_id: int, notes: str | None) -> RunRecord:
    """Replace a run's notes (None or empty removes them); returns the run as it now stands."""
    if notes is not None and (problem := notes_problem(notes)):
        raise StoreError(problem)
    return _change(store, run_id, notes=notes or None)


def change_tags(store: Store, run_id: int, add: Iterable[str] = (), remove: Iterable[str] = ()) -> RunRecord:
    """Add and remove tags of a run in one transaction (adding one it has, or removing one it lacks,
    changes nothing); returns the run as it now stands."""
    added, removed = checked_tags(add), set(checked_tags(remove))
    store.get_run(run_id)  # "no run with id N", before anything
    with store.transaction() as connection:
        current = connection.execute(select(Run.tags).where(Run.id == run_id)).scalar_one() or []
        tags = [t for t in current if t not in removed] + [t for t in added if t not in current and t not in removed]
        connection.execute(update(Run).where(Run.id == run_id).values(tags=tags or None))
    return store.get_run(run_id)


def has_tags(run: RunRecord, wanted: Iterable[str]) -> bool:
    """Whether ``run`` carries every tag of ``wanted``."""
    return set(wanted) <= set(run.tags or ())


def _change(store: Store, run_id: int, **values: str | None) -> RunRecord:
    store.get_run(run_id)
    with store.transaction() as connection:
        connection.execute(update(Run).where(Run.id == run_id).values(**values))
    return store.get_run(run_id)
