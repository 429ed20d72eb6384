"""An experiment's runs grouped by their parameters (``/experiments/NAME?by=...``): each group's mean, spread and
interval, and its curves."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from convexp.errors import ConvexpError
from convexp.ui.data import BadRequest, NotFound
from convexp.ui.experiment_data import experiment_view
from convexp.ui.views.base import FiniteJSONResponse, Views, script_json

#: A CLI option named in a library error, where this page has the query parameter of that name.
OPTION = re.compile(r"--(by|metric|measure|layer|where)\b")


def _experiment(views: Views, request: Request) -> dict[str, Any]:
    """The experiment's view, computed once while its runs do not change (a run that finishes, is added, deleted,
    renamed or tagged makes a new one, and for a filter measure, snapshots thinned away)."""
    params = request.query_params
    name = request.path_params["name"]
    by = [f for value in params.getlist("by") for f in value.split(",") if f]
    chosen = (params.get("metric") or None, params.get("measure") or None, params.get("layer") or None)
    where = [w for value in params.getlist("where") for w in value.split() if w]
    listed = views.store.list_runs(experiment=name)
    runs = tuple((r.id, r.uid, r.status, r.steps_completed, r.name, tuple(r.tags or ())) for r in listed)
    snapshots = views.store.snapshot_count(r.id for r in listed) if chosen[1] else None  # a measure: thinning counts
    key = (name, tuple(by), chosen, tuple(where), runs, snapshots)
    try:
        return views.experiment_cache.get(key, lambda: experiment_view(views.store, name, by, *chosen, where))
    except (BadRequest, NotFound):  # what the page itself refused: as it is
        raise
    except ConvexpError as exc:  # the library speaks of the CLI's options; this page's are its query parameters
        raise BadRequest(OPTION.sub(r"\1", str(exc))) from None


def experiment_page(views: Views, request: Request) -> Response:
    view = _experiment(views, request)
    return views.page(request, "experiment.html", view=view, view_json=script_json(view))


def api_experiment(views: Views, request: Request) -> Response:
    return FiniteJSONResponse(_experiment(views, request))


def routes(views: Views) -> list[Route]:
    """The experiment page and its JSON (an experiment's name may hold "/")."""
    return [
        Route("/experiments/{name:path}", views.endpoint(experiment_page)),
        Route("/api/experiments/{name:path}", views.endpoint(api_experiment)),
    ]
