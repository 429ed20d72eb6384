"""The runs table (``/``), live: every run with its status and metrics, and the JSON it refreshes from."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from convexp.ui import data
from convexp.ui.data import BadRequest
from convexp.ui.views.base import FiniteJSONResponse, Views, ids_param, int_param, script_json


def runs_page(views: Views, request: Request) -> Response:
    rows = data.runs_table(views.store)
    return views.page(request, "runs.html", rows=rows, rows_json=script_json(rows))


def api_runs(views: Views, request: Request) -> Response:
    if "after" in request.query_params:
        return FiniteJSONResponse({"runs": data.runs_update(views.store, ids_param(request, "ids"), int_param(request, "after"))})
    params = request.query_params
    runs = data.runs_table(
        views.store, params.get("experiment") or None, params.get("backend") or None, params.get("status") or None
    )
    return FiniteJSONResponse({"runs": runs})


def api_metric_names(views: Views, request: Request) -> Response:
    """The names of every metric any run recorded: what the runs table offers as metric columns."""
    return FiniteJSONResponse({"names": views.store.metric_names(r.id for r in views.store.list_runs())})


def api_metric_column(views: Views, request: Request) -> Response:
    """One value of a metric for every run that recorded it: ``how`` is last (default), min, max, or at (the
    value at ``step``, or the last before it)."""
    params = request.query_params
    name, how = params.get("name", ""), params.get("how", "last")
    if not name:
        raise BadRequest("name: say which metric (a name as /api/metric-names lists them)")
    step = int_param(request, "step") if how == "at" else None  # missing: the value at which step?
    # a `how` the store does not know is its one-line error, a 400
    values = views.store.metric_of_runs(name, how, step)
    return FiniteJSONResponse({"name": name, "how": how, "step": step, "values": {str(i): v for i, v in values.items()}})


def routes(views: Views) -> list[Route]:
    """The runs page and its JSON, and the metrics it can show as columns."""
    return [
        Route("/", views.endpoint(runs_page)),
        Route("/api/runs", views.endpoint(api_runs)),
        Route("/api/metric-names", views.endpoint(api_metric_names)),
        Route("/api/metric-column", views.endpoint(api_metric_column)),
    ]
