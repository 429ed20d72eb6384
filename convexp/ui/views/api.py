"""What a run page's scripts fetch for one layer: its recorded steps, its kernels (the stored float32 bytes, drawn
in the browser), a filter's trajectory, the weights' distribution and histogram, what each filter is, and the
top patches."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from convexp.analysis import TOP_PATCHES
from convexp.ui import data
from convexp.ui.data import NotFound
from convexp.ui.views.base import FiniteJSONResponse, Views, int_param
from convexp.ui.views.run import RUN_API

#: Any name a layer may have, "/" included.
LAYER_API = RUN_API + "/layers/{layer:path}"


def api_steps(views: Views, request: Request) -> Response:
    run = data.get_run(views.store, request.path_params["run_id"])
    return FiniteJSONResponse(data.layer_steps(views.store, run, request.path_params["layer"], int_param(request, "after", -1)))


def api_kernels(views: Views, request: Request) -> Response:
    run = data.get_run(views.store, request.path_params["run_id"])
    found = data.kernels_at(
        views.store, run, request.path_params["layer"], request.query_params.get("step"), int_param(request, "count", 1)
    )
    headers = {
        "X-Convexp-Shape": ",".join(map(str, found[0].shape)),
        "X-Convexp-Steps": ",".join(str(s.step) for s in found),
        "X-Convexp-Epochs": ",".join(str(s.epoch) for s in found),
        "Cache-Control": "no-store",
    }
    return Response(b"".join(s.kernel for s in found), media_type="application/octet-stream", headers=headers)


def api_filter(views: Views, request: Request) -> Response:
    run = data.get_run(views.store, request.path_params["run_id"])
    index = request.path_params["index"]
    if not index.isdigit():
        raise NotFound(f"no filter '{index}': a filter is a whole number")
    points = int_param(request, "points", data.TRAJECTORY_POINTS)
    return FiniteJSONResponse(data.filter_trajectory(views.store, run, request.path_params["layer"], int(index), points))


def api_distribution(views: Views, request: Request) -> Response:
    run = data.get_run(views.store, request.path_params["run_id"])
    points = int_param(request, "points", data.distributions.MAX_POINTS)
    return FiniteJSONResponse(data.layer_distribution(views.store, run, request.path_params["layer"], points))


def api_histogram(views: Views, request: Request) -> Response:
    run = data.get_run(views.store, request.path_params["run_id"])
    layer, bins = request.path_params["layer"], int_param(request, "bins", 30)
    return FiniteJSONResponse(data.layer_histogram(views.store, run, layer, request.query_params.get("step"), bins))


def api_analysis(views: Views, request: Request) -> Response:
    run = data.get_run(views.store, request.path_params["run_id"])
    return FiniteJSONResponse(
        data.layer_analysis(views.store, run, request.path_params["layer"], request.query_params.get("step"))
    )


def api_patches(views: Views, request: Request) -> Response:
    run = data.get_run(views.store, request.path_params["run_id"])
    layer, top = request.path_params["layer"], int_param(request, "top", TOP_PATCHES)
    step = data.step_of(views.store, run, layer, request.query_params.get("step"))
    key = (run.id, run.uid, layer, step, top)  # a recorded step never changes
    patches = views.patches_cache.get(
        key, lambda: data.layer_patches(views.store, run, layer, str(step), top, views.load_dataset)
    )
    return FiniteJSONResponse(patches)


def routes(views: Views) -> list[Route]:
    """A layer's data, under /api/runs/ID/layers/NAME/."""
    return [
        Route(LAYER_API + "/steps", views.endpoint(api_steps)),
        Route(LAYER_API + "/kernels", views.endpoint(api_kernels)),
        Route(LAYER_API + "/filters/{index}", views.endpoint(api_filter)),
        Route(LAYER_API + "/analysis", views.endpoint(api_analysis)),
        Route(LAYER_API + "/distribution", views.endpoint(api_distribution)),
        Route(LAYER_API + "/histogram", views.endpoint(api_histogram)),
        Route(LAYER_API + "/patches", views.endpoint(api_patches)),
    ]
