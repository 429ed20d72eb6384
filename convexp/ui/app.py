"""The ``convexp ui`` web app: an ASGI (Starlette) app over one read-only store.

Pages are server-rendered HTML with a little JavaScript (``static/``); every page's data
is also JSON under ``/api/`` (what the scripts fetch, and what tests read). Kernels travel
as the stored little-endian float32 bytes and are drawn in the browser, so moving the step
slider costs the server one indexed row. Every asset ships in this package: a page fetches
nothing from anywhere but this app.

Errors never reach the server log as tracebacks: a request for something the database does
not hold is a 404, malformed parameters a 400 (an HTML page or JSON, as the route serves),
and anything unexpected a 500 with one line logged; the server keeps serving.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from convexp import __version__
from convexp.analysis import TOP_PATCHES
from convexp.analysis.cells import json_text
from convexp.analysis.cells import plain_value as _plain
from convexp.errors import ConvexpError, DamagedSnapshotError, QueryError
from convexp.store import Store
from convexp.ui import data
from convexp.ui.data import BadRequest, NotFound
from convexp.ui.gif import filters_gif as filters_gif_bytes

HERE = Path(__file__).resolve().parent
#: Rows the query page shows (its CSV download has up to QUERY_CSV_ROWS).
QUERY_PAGE_ROWS = 1000
QUERY_CSV_ROWS = 1_000_000

log = logging.getLogger("convexp.ui")


def colormap_table(name: str | None = None, size: int = 256) -> list[list[int]]:
    """The pictures' diverging colormap as ``size`` RGB triples, for the browser to colour kernels with."""
    import matplotlib
    import numpy as np

    from convexp.analysis.pictures import CMAP

    colours = matplotlib.colormaps[name or CMAP](np.linspace(0.0, 1.0, size))[:, :3]
    return (colours * 255).round().astype(int).tolist()


def attachment(filename: str) -> str:
    """A Content-Disposition header downloading as ``filename``, whatever characters it holds (a layer's name may hold
    any): an ASCII stand-in for old clients and the exact name in RFC 6266's ``filename*`` (UTF-8, percent-encoded)."""
    from urllib.parse import quote

    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\/;' else "_" for c in filename)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


class FiniteJSONResponse(JSONResponse):
    """Every JSON answer of the app: valid JSON whatever the database holds (a tracked run's config may hold
    NaN), non-finite numbers as null with the reason beside them (:func:`convexp.analysis.cells.json_text`)."""

    def render(self, content: Any) -> bytes:
        return json_text(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def script_json(value: Any) -> Markup:
    """``value`` as JSON that is safe inside a ``<script type="application/json">`` element."""
    text = json_text(value)
    return Markup(text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))


def _status(exc: Exception) -> int:
    if isinstance(exc, NotFound):
        return 404
    return 400


def _int_param(request: Request, name: str, default: int | None = None) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        if default is None:
            raise BadRequest(f"the query parameter '{name}' is missing")
        return default
    if not value.lstrip("-").isdigit():
        raise BadRequest(f"{name} must be a whole number, not '{value}'")
    number = int(value)
    if abs(number) > data.MAX_ID:
        raise BadRequest(f"{name} must be a whole number the database can hold (at most {data.MAX_ID}), not {value}")
    return number


def _ids_param(request: Request, name: str) -> list[int]:
    value = request.query_params.get(name, "")
    parts = [p for p in value.replace(" ", ",").split(",") if p]
    if not all(p.isdigit() and int(p) <= data.MAX_ID for p in parts):
        raise BadRequest(f"{name} must be run ids separated by commas, not '{value}'")
    return [int(p) for p in parts]


def _runs_param(request: Request) -> list[str]:
    return [p for p in request.query_params.get("runs", "").replace(" ", ",").split(",") if p]


#: Seconds a query of the query page (and /api/query, /query.csv) may run unless told otherwise, as
#: datasette limits the queries it serves: one endless query must not tie up a worker for long.
QUERY_TIME_LIMIT = 2.0


def create_app(
    db: str | None = None, store: Store | None = None, data_dir: Path | None = None, query_time_limit: float | None = None
) -> Starlette:
    """The app for the database ``db`` (opened read-only; raises :class:`~convexp.errors.StoreError` at once
    if it is missing, not convexp's, or from a newer convexp), or for an open ``store``. ``data_dir`` is
    where datasets that need files are found (for the patches panel), as ``--data-dir`` elsewhere."""
    store = store or Store(db, read_only=True)
    datasets: dict[str, Any] = {}
    patches_cache: dict[tuple, dict] = {}

    def load_dataset(name: str):
        from convexp.datasets import load_dataset as load

        if name not in datasets:
            datasets[name] = load(name, data_dir)
        return datasets[name]

    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(version=__version__, location=store.location, colormap=script_json(colormap_table()))

    def page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        return templates.TemplateResponse(request, template, context, status_code=status_code)

    def error_page(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/") or request.url.path.endswith(".csv"):
            return FiniteJSONResponse({"error": message, "status": status}, status_code=status)
        return templates.TemplateResponse(request, "error.html", {"status": status, "message": message}, status_code=status)

    def endpoint(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """Run a handler in the thread pool; its errors become error responses, never tracebacks."""

        @functools.wraps(handler)
        def guarded(request: Request) -> Response:
            try:
                return handler(request)
            except (NotFound, BadRequest, QueryError) as exc:
                return error_page(request, _status(exc), str(exc))
            except DamagedSnapshotError as exc:  # a sound request the database cannot answer truthfully
                log.warning("%s %s: %s", request.method, request.url.path, exc)
                return error_page(request, 500, str(exc))
            except ConvexpError as exc:
                return error_page(request, 400, str(exc))
            except Exception as exc:  # a bug, or the database went away: one line, and keep serving
                log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
                return error_page(request, 500, f"internal error: {type(exc).__name__}: {exc}")

        return guarded

    # --- pages ---------------------------------------------------------------------------

    @endpoint
    def runs_page(request: Request) -> Response:
        rows = data.runs_table(store)
        return page(request, "runs.html", rows=rows, rows_json=script_json(rows))

    @endpoint
    def run_page(request: Request) -> Response:
        run = data.get_run(store, request.path_params["run_id"])
        details = data.run_details(store, run)
        return page(request, "run.html", run=details, run_json=script_json(details))

    def _experiment(request: Request) -> dict[str, Any]:
        params = request.query_params
        by = [f for value in params.getlist("by") for f in value.split(",") if f]
        return data.experiment_view(
            store,
            request.path_params["name"],
            by,
            params.get("metric") or None,
            params.get("measure") or None,
            params.get("layer") or None,
        )

    @endpoint
    def experiment_page(request: Request) -> Response:
        view = _experiment(request)
        return page(request, "experiment.html", view=view, view_json=script_json(view))

    @endpoint
    def api_experiment(request: Request) -> Response:
        return FiniteJSONResponse(_experiment(request))

    @endpoint
    def compare_page(request: Request) -> Response:
        step = request.query_params.get("step", "last") or "last"
        result = data.comparison(store, _runs_param(request), step)
        embedded = {**result, "kernels": data.compared_kernels(store, result)}
        return page(request, "compare.html", comparison=result, step=step, comparison_json=script_json(embedded))

    @endpoint
    def query_page(request: Request) -> Response:
        sql = request.query_params.get("sql", "")
        result, error = None, None
        if sql.strip():
            try:
                result = _query(sql, QUERY_PAGE_ROWS + 1)
            except QueryError as exc:
                error = str(exc)
        rows = None if result is None else [[_plain(v) for v in row] for row in result.rows[:QUERY_PAGE_ROWS]]
        return page(
            request,
            "query.html",
            status_code=400 if error else 200,
            sql=sql,
            error=error,
            result=result,
            rows=rows,
            truncated=result is not None and len(result.rows) > QUERY_PAGE_ROWS,
            limit=QUERY_PAGE_ROWS,
        )

    # --- data --------------------------------------------------------------------------------

    time_limit = query_time_limit or QUERY_TIME_LIMIT

    def _query(sql: str, limit: int):
        from convexp.store.query import read_only_query

        return read_only_query(store.url, sql, limit, time_limit)

    @endpoint
    def api_runs(request: Request) -> Response:
        if "after" in request.query_params:
            return FiniteJSONResponse({"runs": data.runs_update(store, _ids_param(request, "ids"), _int_param(request, "after"))})
        params = request.query_params
        return FiniteJSONResponse(
            {
                "runs": data.runs_table(
                    store, params.get("experiment") or None, params.get("backend") or None, params.get("status") or None
                )
            }
        )

    @endpoint
    def api_run(request: Request) -> Response:
        run = data.get_run(store, request.path_params["run_id"])
        return FiniteJSONResponse(data.run_details(store, run))

    @endpoint
    def api_metrics(request: Request) -> Response:
        run = data.get_run(store, request.path_params["run_id"])
        return FiniteJSONResponse(data.metrics_since(store, run, _int_param(request, "after", -1)))

    @endpoint
    def metrics_csv(request: Request) -> Response:
        run = data.get_run(store, request.path_params["run_id"])
        name = f"run-{run.id}-curves.csv"
        return PlainTextResponse(
            data.metrics_csv(store, run), media_type="text/csv", headers={"Content-Disposition": attachment(name)}
        )

    @endpoint
    def api_steps(request: Request) -> Response:
        run = data.get_run(store, request.path_params["run_id"])
        return FiniteJSONResponse(data.layer_steps(store, run, request.path_params["layer"], _int_param(request, "after", -1)))

    @endpoint
    def api_kernels(request: Request) -> Response:
        run = data.get_run(store, request.path_params["run_id"])
        found = data.kernels_at(
            store, run, request.path_params["layer"], request.query_params.get("step"), _int_param(request, "count", 1)
        )
        headers = {
            "X-Convexp-Shape": ",".join(map(str, found[0].shape)),
            "X-Convexp-Steps": ",".join(str(s.step) for s in found),
            "X-Convexp-Epochs": ",".join(str(s.epoch) for s in found),
            "Cache-Control": "no-store",
        }
        return Response(b"".join(s.kernel for s in found), media_type="application/octet-stream", headers=headers)

    @endpoint
    def api_filter(request: Request) -> Response:
        run = data.get_run(store, request.path_params["run_id"])
        index = request.path_params["index"]
        if not index.isdigit():
            raise NotFound(f"no filter '{index}': a filter is a whole number")
        points = _int_param(request, "points", data.TRAJECTORY_POINTS)
        return FiniteJSONResponse(data.filter_trajectory(store, run, request.path_params["layer"], int(index), points))

    @endpoint
    def filters_gif(request: Request) -> Response:
        run = data.get_run(store, request.path_params["run_id"])
        layer, params = request.path_params["layer"], request.query_params
        frames = _int_param(request, "frames") if params.get("frames") else None
        gif = filters_gif_bytes(store, run, layer, params.get("from"), params.get("to"), frames)
        name = f"run-{run.id}-{layer}-steps-{params.get('from') or 'first'}-{params.get('to') or 'last'}.gif"
        return Response(gif, media_type="image/gif", headers={"Content-Disposition": attachment(name)})

    @endpoint
    def api_distribution(request: Request) -> Response:
        run = data.get_run(store, request.path_params["run_id"])
        points = _int_param(request, "points", data.distributions.MAX_POINTS)
        return FiniteJSONResponse(data.layer_distribution(store, run, request.path_params["layer"], points))

    @endpoint
    def api_histogram(request: Request) -> Response:
        run = data.get_run(store, request.path_params["run_id"])
        layer, bins = request.path_params["layer"], _int_param(request, "bins", 30)
        return FiniteJSONResponse(data.layer_histogram(store, run, layer, request.query_params.get("step"), bins))

    @endpoint
    def api_analysis(request: Request) -> Response:
        run = data.get_run(store, request.path_params["run_id"])
        return FiniteJSONResponse(data.layer_analysis(store, run, request.path_params["layer"], request.query_params.get("step")))

    @endpoint
    def api_patches(request: Request) -> Response:
        run = data.get_run(store, request.path_params["run_id"])
        layer, top = request.path_params["layer"], _int_param(request, "top", TOP_PATCHES)
        step = data.step_of(store, run, layer, request.query_params.get("step"))
        key = (run.id, run.uid, layer, step, top)  # a recorded step never changes
        if key not in patches_cache:
            if len(patches_cache) >= 8:
                patches_cache.pop(next(iter(patches_cache)))
            patches_cache[key] = data.layer_patches(store, run, layer, str(step), top, load_dataset)
        return FiniteJSONResponse(patches_cache[key])

    @endpoint
    def api_compare(request: Request) -> Response:
        result = data.comparison(store, _runs_param(request), request.query_params.get("step", "last") or "last")
        return FiniteJSONResponse(result)

    @endpoint
    def api_query(request: Request) -> Response:
        sql = request.query_params.get("sql", "")
        limit = _int_param(request, "limit", QUERY_PAGE_ROWS)
        result = _query(sql, limit)
        rows = [[_plain(v) for v in row] for row in result.rows]
        return FiniteJSONResponse({"columns": result.columns, "rows": rows, "truncated": result.truncated})

    @endpoint
    def query_csv(request: Request) -> Response:
        import csv
        import io

        result = _query(request.query_params.get("sql", ""), QUERY_CSV_ROWS)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([["" if v is None else _plain(v) for v in row] for row in result.rows])
        return PlainTextResponse(
            buffer.getvalue(), media_type="text/csv", headers={"Content-Disposition": attachment("query.csv")}
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = "no such page" if status == 404 else getattr(exc, "detail", "request refused")
        return error_page(request, status, f"{message}: {request.url.path}")

    run_path = "/api/runs/{run_id}"
    # any name a layer or an experiment may have, "/" included (Keras names nested layers "block1/conv")
    layer_path = run_path + "/layers/{layer:path}"
    routes = [
        Route("/", runs_page),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/curves.csv", metrics_csv),
        Route("/runs/{run_id}/layers/{layer:path}/filters.gif", filters_gif),
        Route("/experiments/{name:path}", experiment_page),
        Route("/compare", compare_page),
        Route("/query", query_page),
        Route("/query.csv", query_csv),
        Route("/api/runs", api_runs),
        Route(run_path, api_run),
        Route(run_path + "/metrics", api_metrics),
        Route(layer_path + "/steps", api_steps),
        Route(layer_path + "/kernels", api_kernels),
        Route(layer_path + "/filters/{index}", api_filter),
        Route(layer_path + "/analysis", api_analysis),
        Route(layer_path + "/distribution", api_distribution),
        Route(layer_path + "/histogram", api_histogram),
        Route(layer_path + "/patches", api_patches),
        Route("/api/experiments/{name:path}", api_experiment),
        Route("/api/compare", api_compare),
        Route("/api/query", api_query),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found}, middleware=[Middleware(ServerTiming)])
    app.state.store = store
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


def configure_logging() -> None:
    """One line per server error on stderr (the app's own log; uvicorn's access log stays off)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("convexp ui: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
