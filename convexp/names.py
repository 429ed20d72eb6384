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
