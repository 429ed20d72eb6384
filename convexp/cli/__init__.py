"""The ``convexp`` command: a thin layer that parses, calls the library, and prints.

Each command group lives in its own module. Library modules are imported inside the
commands, so ``convexp --help`` imports no numerical framework. Errors raised on
purpose (:class:`convexp.errors.ConvexpError`) are caught once, in :func:`main`, and
printed as one red line.
"""

from __future__ import annotations

import sys

from convexp.cli.app import app

# Each module registers its commands on app when imported; --help lists them in this order.
# isort: off
from convexp.cli import run, results, labels, groups, ui, analysis, conv, backends, saved
from convexp.cli import data, db
# isort: on

app.add_typer(
    data.app, name="data", short_help="Download or import MNIST, Fashion-MNIST, KMNIST or CIFAR-10 into the convexp cache."
)
app.add_typer(db.app, name="db", short_help="Migrate the results database; copy or delete runs.")


def main() -> None:
    """Entry point of the ``convexp`` script."""
    import signal

    from convexp.errors import ConvexpError

    # Ctrl-C / kill -INT stops convexp even when it was started with SIGINT ignored, as a shell
    # script's background job (`convexp run ... &`) is: Python's own handler, as in a terminal.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # Any terminal: under LC_ALL=C or PYTHONIOENCODING=ascii a name or table rule the encoding cannot
    # write becomes '?' instead of ending the command in a UnicodeEncodeError.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")
    from convexp.cli.output import protect_terminal

    protect_terminal()
    try:
        app()
    except ConvexpError as exc:
        _fail(str(exc), exc.exit_code)
    except BrokenPipeError:
        # The reader of our output went away (``convexp query ... | head``): nothing to report.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except OSError as exc:
        # A file the command reads or writes failed at the system level (a full disk, a folder
        # removed under it, no permission): one line naming the file, not a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(where + (exc.strerror or str(exc)), 1)


def _fail(message: str, exit_code: int) -> None:
    from rich.markup import escape

    from convexp.cli.output import console

    # The message is data, not markup: "pip install convexp[torch]" must print as written.
    console(stderr=True).print(f"[red]Error:[/red] {escape(message)}", soft_wrap=True)
    sys.exit(exit_code)


__all__ = ["app", "main", "backends", "results", "run"]
