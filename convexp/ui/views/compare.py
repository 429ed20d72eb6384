"""The comparison of runs (``/compare?runs=...``): their metrics, kernel drift and filter similarity at one step."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from convexp.ui import data
from convexp.ui.views.base import FiniteJSONResponse, Views, runs_param, script_json


def compare_page(views: Views, request: Request) -> Response:
    step = request.query_params.get("step", "last") or "last"
    result = data.comparison(views.store, runs_param(request), step)
    embedded = {**result, "kernels": data.compared_kernels(views.store, result)}
    return views.page(request, "compare.html", comparison=result, step=step, comparison_json=script_json(embedded))


def api_compare(views: Views, request: Request) -> Response:
    result = data.comparison(views.store, runs_param(request), request.query_params.get("step", "last") or "last")
    return FiniteJSONResponse(result)


def routes(views: Views) -> list[Route]:
    """The comparison page and its JSON."""
    return [Route("/compare", views.endpoint(compare_page)), Route("/api/compare", views.endpoint(api_compare))]
