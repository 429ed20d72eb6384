"""``convexp ui``: the read-only web app over the results."""

from __future__ import annotations

from typing import Annotated

import typer

from convexp.cli.app import app
from convexp.cli.options import DataDir, Db


@app.command("ui", short_help="Watch runs and filters in the browser (read-only, live).")
def ui_command(
    db: Db = None,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. Anything but a loopback address makes the results readable by anyone who can reach the port."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).", min=0, max=65535)] = 8765,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the runs page in your web browser.")] = False,
    data_dir: DataDir = None,
    query_time_limit: Annotated[
        float,
        typer.Option(
            "--query-time-limit", metavar="SECONDS", help="Stop a query of the query page after this many seconds.", min=0.001
        ),
    ] = 2.0,
) -> None:
    """Serve a live, read-only web app over the results database: the runs table (filters, sorting,
    live progress), each run's spec, parameter table and training curves, its filters at any
    recorded step (step slider, play, one filter over time, what the filters resemble, each filter's
    strongest test-image patches), runs compared side by side, and a read-only SQL box.

    Nothing in the app can write to the database. Ctrl-C stops the server. Needs the ui extra:
    pip install 'convexp[ui]'."""
    from convexp.ui import create_app, serve
    from convexp.ui.server import exit_now, is_loopback

    application = create_app(db, data_dir, query_time_limit)
    location = application.state.store.location
    if not is_loopback(host):
        typer.echo(
            f"warning: --host {host} is not a loopback address: the results in {location} become "
            "readable by anyone who can reach this port",
            err=True,
        )

    def ready(url: str) -> None:
        typer.echo(f"convexp ui: {location} (read-only) at {url}  (Ctrl-C stops)", err=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    serve(application, host, port, on_ready=ready)
    exit_now()  # read-only: nothing to close that the process's end does not
