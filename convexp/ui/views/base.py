"""What every page of the web app shares: the open store, the templates, one way to answer (HTML or JSON, errors
included), and the checked reading of query parameters."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.templating import Jinja2Templates

from convexp import __version__
from convexp.analysis.cells import json_text
from convexp.analysis.colour import CMAP, colormap_rgb
from convexp.datasets import load_dataset
from convexp.errors import ConvexpError, DamagedSnapshotError, QueryError
from convexp.store import Store
from convexp.ui import data
from convexp.ui.data import BadRequest, NotFound

#: The package folder holding ``templates/`` and ``static/``.
HERE = Path(__file__).resolve().parents[1]

log = logging.getLogger("convexp.ui")

#: A view: the app's shared state and the request in, a response out.
View = Callable[["Views", Request], Response]


class Kept:
    """The last ``size`` answers of a costly view by key, the oldest forgotten first; the key says everything the
    answer depends on (a recorded step never changes; an experiment's runs are fingerprinted)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.answers: dict[Any, Any] = {}
        self.computed = 0  # how many answers were computed rather than found
        self.lock = threading.Lock()  # views answer in a pool of threads

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The answer kept for ``key``, else ``compute()``'s, kept."""
        with self.lock:
            if key in self.answers:
                return self.answers[key]
        answer = compute()
        with self.lock:
            self.computed += 1
            self.answers[key] = answer
            while len(self.answers) > self.size:
                self.answers.pop(next(iter(self.answers)))
        return answer


class Views:
    """The state every view reads: the read-only ``store``, the templates, the datasets loaded for the patches
    panel (from ``data_dir``), and how long a query may run."""

    def __init__(self, store: Store, data_dir: Path | None, query_time_limit: float) -> None:
        self.store = store
        self.data_dir = data_dir
        self.query_time_limit = query_time_limit
        self.datasets: dict[str, Any] = {}
        #: The answers that cost seconds, kept for the next request: the top patches of a step (for 8 layers and
        #: steps), an experiment's groups (16 views).
        self.patches_cache = Kept(8)
        self.experiment_cache = Kept(16)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals.update(version=__version__, location=store.location, colormap=script_json(colormap_table()))

    def load_dataset(self, name: str) -> Any:
        """Dataset ``name``, loaded once (for the top patches)."""

        if name not in self.datasets:
            self.datasets[name] = load_dataset(name, self.data_dir)
        return self.datasets[name]

    def page(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        """An HTML page from ``template``."""
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)

    def error_page(self, request: Request, status: int, message: str) -> Response:
        """An error as the route serves: JSON under /api/ and for downloads, else an HTML page."""
        if request.url.path.startswith("/api/") or request.url.path.endswith(".csv"):
            return FiniteJSONResponse({"error": message, "status": status}, status_code=status)
        return self.templates.TemplateResponse(request, "error.html", {"status": status, "message": message}, status_code=status)

    def endpoint(self, view: View) -> Callable[[Request], Response]:
        """``view`` as a Starlette endpoint (run in the thread pool); its errors become error responses, never
        tracebacks."""

        @functools.wraps(view)
        def guarded(request: Request) -> Response:
            try:
                return view(self, request)
            except (NotFound, BadRequest, QueryError) as exc:
                return self.error_page(request, 404 if isinstance(exc, NotFound) else 400, str(exc))
            except DamagedSnapshotError as exc:  # a sound request the database cannot answer truthfully
                log.warning("%s %s: %s", request.method, request.url.path, exc)
                return self.error_page(request, 500, str(exc))
            except ConvexpError as exc:
                return self.error_page(request, 400, str(exc))
            except Exception as exc:  # a bug, or the database went away: one line, and keep serving
                log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
                return self.error_page(request, 500, f"internal error: {type(exc).__name__}: {exc}")

        return guarded


def colormap_table(name: str | None = None, size: int = 256) -> list[list[int]]:
    """The pictures' diverging colormap as ``size`` RGB triples, for the browser to colour kernels with."""
    return colormap_rgb(size, name or CMAP).tolist()


def attachment(filename: str) -> str:
    """A Content-Disposition header downloading as ``filename``, whatever characters it holds (a layer's name may hold
    any): an ASCII stand-in for old clients and the exact name in RFC 6266's ``filename*`` (UTF-8, percent-encoded)."""

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


def int_param(request: Request, name: str, default: int | None = None) -> int:
    """Query parameter ``name`` as a whole number the database can hold (``default`` when absent)."""
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


def ids_param(request: Request, name: str) -> list[int]:
    """Query parameter ``name`` as run ids separated by commas."""
    value = request.query_params.get(name, "")
    parts = [p for p in value.replace(" ", ",").split(",") if p]
    if not all(p.isdigit() and int(p) <= data.MAX_ID for p in parts):
        raise BadRequest(f"{name} must be run ids separated by commas, not '{value}'")
    return [int(p) for p in parts]


def runs_param(request: Request) -> list[str]:
    """The ``runs`` query parameter: run ids or names, separated by commas."""
    return [p for p in request.query_params.get("runs", "").replace(" ", ",").split(",") if p]
