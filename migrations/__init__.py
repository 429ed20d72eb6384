"""Alembic migrations of the results database; installed as ``convexp.migrations``."""
