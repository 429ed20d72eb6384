"""The runs table (``/``), live: every run with its status and metrics, and the JSON it refreshes from."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from convexp.ui import data
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


def routes(views: Views) -> list[Route]:
    """The runs page and its JSON."""
    return [Route("/", views.endpoint(runs_page)), Route("/api/runs", views.endpoint(api_runs))]
