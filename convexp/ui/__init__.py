"""``convexp ui``: a live, read-only web app over the results database.

:func:`create_app` builds the ASGI app (Starlette) for a database; :func:`serve` runs it on
uvicorn. Needs the ``ui`` extra: ``pip install 'convexp[ui]'``.
"""

from __future__ import annotations

from convexp.ui.server import create_app, serve

__all__ = ["create_app", "serve"]
