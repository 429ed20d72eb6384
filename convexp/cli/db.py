"""``convexp db``: the results database's schema."""

from __future__ import annotations

import typer

from convexp.cli.options import Db

app = typer.Typer(help="The results database: schema migrations.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command(db: Db = None) -> None:
    """Create the database or migrate it to this convexp's schema (also done automatically on first use)."""
    from convexp.store import Store
    from convexp.store.database import current_revision

    with Store(db) as store:
        typer.echo(f"{store.location}: schema at revision {current_revision(store.engine)} (newest)")
