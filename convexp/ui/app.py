"""The ``convexp ui`` web app: an ASGI (Starlette) app over one read-only store.

Pages are server-rendered HTML with a little JavaScript (``static/``); every page's data
is also JSON under ``/api/`` (what the scripts fetch, and what tests read). Kernels travel
as the stored little-endian float32 bytes and are drawn in the browser, so moving the step
slider costs the server one indexed row. Every asset ships in this package: a page fetches
nothing from anywhere but this app. Each page is a module of :mod:`convexp.ui.views`.

Errors never reach the server log as tracebacks: a request for something the database does
not hold is a 404, malformed parameters a 400 (an HTML page or JSON, as the route serves),
and anything unexpected a 500 with one line logged; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from convexp.store import Store
from convexp.ui.views import api, compare, experiment, query, run, runs
from convexp.ui.views.base import HERE, Views
from convexp.ui.views.query import QUERY_TIME_LIMIT

__all__ = ["HERE", "QUERY_TIME_LIMIT", "ClosedAtShutdown", "ServerTiming", "create_app"]

log = logging.getLogger("convexp.ui")

#: The page modules, each listing its routes.
PAGES = (runs, run, api, experiment, compare, query)


def create_app(
    db: str | None = None, store: Store | None = None, data_dir: Path | None = None, query_time_limit: float | None = None
) -> Starlette:
    """The app for the database ``db`` (opened read-only; raises :class:`~convexp.errors.StoreError` at once
    if it is missing, not convexp's, or from a newer convexp), or for an open ``store``. ``data_dir`` is
    where datasets that need files are found (for the patches panel), as ``--data-dir`` elsewhere."""
    views = Views(store or Store(db, read_only=True), data_dir, query_time_limit or QUERY_TIME_LIMIT)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = "no such page" if status == 404 else getattr(exc, "detail", "request refused")
        return views.error_page(request, status, f"{message}: {request.url.path}")

    routes: list[BaseRoute] = [route for page in PAGES for route in page.routes(views)]
    routes.append(Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"))
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: not_found},
        middleware=[Middleware(ClosedAtShutdown), Middleware(ServerTiming)],
    )
    app.state.store = views.store
    app.state.views = views
    return app


class ServerTiming:
    """Adds ``Server-Timing: app;dur=MS`` to every response: the time the app took to answer, which a
    browser's developer tools (and benchmarks/ui.py) read apart from the network's."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"server-timing", f"app;dur={took:.2f}".encode())],
                }
            await send(message)

        await self.app(scope, receive, timed)


class ClosedAtShutdown:
    """A request still being answered when a stopped server's grace runs out is cancelled by the server: it is
    answered ``503`` (when nothing of it was sent yet) and logged in one line, not as a server traceback.
    Cancellation reaches the app from nowhere else (a client that goes away is a message, not a cancel)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except asyncio.CancelledError:
            log.warning("stopped before %s %s was answered: closed it", scope["method"], scope["path"])
            if not started:
                body = b"convexp ui stopped before this answer was ready\n"
                headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
                await send({"type": "http.response.start", "status": 503, "headers": headers})
                await send({"type": "http.response.body", "body": body})
