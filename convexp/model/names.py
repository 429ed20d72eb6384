"""What may name an experiment: a leaf module, so the experiments file and the tracking API share one rule."""

from __future__ import annotations


def experiment_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an experiment, or None. ``:`` is refused: ``EXPERIMENT:BACKEND`` names
    a run by it, so an experiment ``a:b`` could be recorded but never addressed."""
    if not name.strip():
        return "an experiment needs a name"
    if ":" in name:
        return "a name cannot hold ':' (EXPERIMENT:BACKEND uses it to name a backend); rename it"
    if any(not c.isprintable() for c in name):
        return "a name cannot hold control characters such as a newline or a tab"
    return None


#: The longest run name and tag the ``runs`` table holds.
MAX_RUN_NAME = 200
MAX_TAG = 100


def tag_problem(tag: object) -> str | None:
    """Why ``tag`` cannot tag a run, or None: a tag is one printable word-like string (no spaces or commas,
    so ``--tag a,b`` and the UI's filter box can list several)."""
    if not isinstance(tag, str):
        return f"a tag is a string, not {type(tag).__name__} {tag!r}"
    if not tag.strip():
        return "a tag cannot be empty"
    if len(tag) > MAX_TAG:
        return f"a tag has at most {MAX_TAG} characters ({len(tag)} given)"
    if any(c.isspace() or c == "," or not c.isprintable() for c in tag):
        return f"tag {tag!r}: a tag cannot hold spaces, commas or control characters"
    return None


def run_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a run, or None: one printable line of at most :data:`MAX_RUN_NAME` characters."""
    if not isinstance(name, str):
        return f"a run name is a string, not {type(name).__name__} {name!r}"
    return _line_problem("a run name", name, MAX_RUN_NAME)


def _line_problem(what: str, name: str, most: int) -> str | None:
    """Why ``name`` is not one printable, non-empty line of at most ``most`` characters, or None."""
    if not name.strip():
        return f"{what} cannot be empty"
    if len(name) > most:
        return f"{what} has at most {most} characters ({len(name)} given)"
    if any(not c.isprintable() for c in name):
        return f"{what} cannot hold control characters such as a newline or a tab"
    return None


def notes_problem(notes: object) -> str | None:
    """Why ``notes`` cannot be a run's notes, or None: text of any length and lines, that UTF-8 can store (a
    command-line argument that was not UTF-8 arrives holding lone surrogates, which it cannot)."""
    if not isinstance(notes, str):
        return f"notes are a string, not {type(notes).__name__}"
    try:
        notes.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"the notes are not UTF-8 text (character {exc.start + 1} is a byte that is no character); write them in UTF-8"
    return None


#: The longest layer name an experiment may give.
MAX_LAYER_NAME = 100


def layer_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a layer, or None: one printable line of at most :data:`MAX_LAYER_NAME` characters
    (a name is shown in tables, pictures' titles and the UI's addresses)."""
    return _line_problem("a layer name", name, MAX_LAYER_NAME)
