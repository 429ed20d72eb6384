"""One run's page (``/runs/ID``): its details, curves and layers, with its curves as CSV and a layer's filters
over training as a GIF."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from convexp.ui import data
from convexp.ui.gif import filters_gif as filters_gif_bytes
from convexp.ui.views.base import FiniteJSONResponse, Views, attachment, int_param, script_json

RUN_API = "/api/runs/{run_id}"


def run_page(views: Views, request: Request) -> Response:
    run = data.get_run(views.store, request.path_params["run_id"])
    details = data.run_details(views.store, run)
    return views.page(request, "run.html", run=details, run_json=script_json(details))


def api_run(views: Views, request: Request) -> Response:
    run = data.get_run(views.store, request.path_params["run_id"])
    return FiniteJSONResponse(data.run_details(views.store, run))


def api_metrics(views: Views, request: Request) -> Response:
    run = data.get_run(views.store, request.path_params["run_id"])
    return FiniteJSONResponse(data.metrics_since(views.store, run, int_param(request, "after", -1)))


def metrics_csv(views: Views, request: Request) -> Response:
    run = data.get_run(views.store, request.path_params["run_id"])
    name = f"run-{run.id}-curves.csv"
    csv = data.metrics_csv(views.store, run)
    return PlainTextResponse(csv, media_type="text/csv", headers={"Content-Disposition": attachment(name)})


def filters_gif(views: Views, request: Request) -> Response:
    run = data.get_run(views.store, request.path_params["run_id"])
    layer, params = request.path_params["layer"], request.query_params
    frames = int_param(request, "frames") if params.get("frames") else None
    gif = filters_gif_bytes(views.store, run, layer, params.get("from"), params.get("to"), frames)
    name = f"run-{run.id}-{layer}-steps-{params.get('from') or 'first'}-{params.get('to') or 'last'}.gif"
    return Response(gif, media_type="image/gif", headers={"Content-Disposition": attachment(name)})


def routes(views: Views) -> list[Route]:
    """The run page, its JSON, its curves' CSV and its GIFs (a layer's name may hold "/": Keras names nested
    layers "block1/conv")."""
    return [
        Route("/runs/{run_id}", views.endpoint(run_page)),
        Route("/runs/{run_id}/curves.csv", views.endpoint(metrics_csv)),
        Route("/runs/{run_id}/layers/{layer:path}/filters.gif", views.endpoint(filters_gif)),
        Route(RUN_API, views.endpoint(api_run)),
        Route(RUN_API + "/metrics", views.endpoint(api_metrics)),
    ]
