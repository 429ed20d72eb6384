"""The read-only SQL page (``/query``), its JSON and its CSV download: any SELECT on the results database, limited
in rows and in time, as datasette serves its queries."""

from __future__ import annotations

import csv
import io

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from convexp.analysis.cells import plain_value
from convexp.errors import QueryError
from convexp.store.query import read_only_query
from convexp.ui.views.base import FiniteJSONResponse, Views, attachment, int_param

#: Rows the query page shows (its CSV download has up to QUERY_CSV_ROWS).
QUERY_PAGE_ROWS = 1000
QUERY_CSV_ROWS = 1_000_000
#: Seconds a query of the query page (and /api/query, /query.csv) may run unless told otherwise, as
#: datasette limits the queries it serves: one endless query must not tie up a worker for long.
QUERY_TIME_LIMIT = 2.0


def _query(views: Views, sql: str, limit: int):

    return read_only_query(views.store.url, sql, limit, views.query_time_limit)


def query_page(views: Views, request: Request) -> Response:
    sql = request.query_params.get("sql", "")
    result, error = None, None
    if sql.strip():
        try:
            result = _query(views, sql, QUERY_PAGE_ROWS + 1)
        except QueryError as exc:
            error = str(exc)
    rows = None if result is None else [[plain_value(v) for v in row] for row in result.rows[:QUERY_PAGE_ROWS]]
    return views.page(
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


def api_query(views: Views, request: Request) -> Response:
    sql = request.query_params.get("sql", "")
    result = _query(views, sql, int_param(request, "limit", QUERY_PAGE_ROWS))
    rows = [[plain_value(v) for v in row] for row in result.rows]
    return FiniteJSONResponse({"columns": result.columns, "rows": rows, "truncated": result.truncated})


def query_csv(views: Views, request: Request) -> Response:

    result = _query(views, request.query_params.get("sql", ""), QUERY_CSV_ROWS)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([["" if v is None else plain_value(v) for v in row] for row in result.rows])
    return PlainTextResponse(buffer.getvalue(), media_type="text/csv", headers={"Content-Disposition": attachment("query.csv")})


def routes(views: Views) -> list[Route]:
    """The query page, its JSON and its CSV."""
    return [
        Route("/query", views.endpoint(query_page)),
        Route("/query.csv", views.endpoint(query_csv)),
        Route("/api/query", views.endpoint(api_query)),
    ]
