"""Serving the app: the listening socket, the loopback warning, and uvicorn."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from convexp.errors import ConvexpError

if TYPE_CHECKING:
    from starlette.applications import Starlette

INSTALL_HINT = "convexp ui needs its web server: pip install 'convexp[ui]'"


def create_app(db: str | None = None, data_dir: Path | None = None, query_time_limit: float | None = None) -> Starlette:
    """The ``convexp ui`` app for the database ``db`` (read-only); raises at once if the database cannot be shown.
    ``data_dir``: where datasets that need files are (the patches panel replays networks on the test images);
    ``query_time_limit``: seconds a query of the query page may run."""
    try:
        from convexp.ui.app import create_app as build  # starlette, of the optional ui extra: refused in one line without it
    except ImportError as exc:
        raise ConvexpError(f"{INSTALL_HINT} ({exc})") from None
    return build(db, data_dir=data_dir, query_time_limit=query_time_limit)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one); a one-line error when the address cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConvexpError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that say they are
    # TCP, and with it on, every small response on a kept-alive connection waited ~40 ms for the client's ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == 98:  # EADDRINUSE
            raise ConvexpError(
                f"--port {port}: {host}:{port} is already in use; pick another port (--port 0 takes a free one)"
            ) from None
        raise ConvexpError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


#: How long a stopped server lets the requests in flight finish before it closes them, seconds.
SHUTDOWN_SECONDS = 5


def serve(app: Starlette, host: str = "127.0.0.1", port: int = 8765, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` on host:port until Ctrl-C or SIGTERM (then return); ``on_ready`` gets the address once it
    listens. A request the server closed at its stop may still be running in a worker thread (a query, until its
    time limit): the caller decides whether to wait for it (:func:`exit_now` does not)."""
    import uvicorn  # the optional ui extra, only to serve

    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{shown}:{bound_port}/"
    configure_logging()
    # Ctrl-C waits for requests in flight (a long GIF) at most this long, then closes them: stopping is bounded.
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=SHUTDOWN_SECONDS
    )
    server = uvicorn.Server(config)
    if on_ready:
        on_ready(url)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn hands back the Ctrl-C that stopped it, once it has stopped: done
        pass


def configure_logging() -> None:
    """One line per server error on stderr (the app's own log; uvicorn's access log stays off)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("convexp ui: %(message)s"))
    log = logging.getLogger("convexp.ui")  # the views' log (convexp.ui.views.base)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def exit_now() -> None:
    """End the process now that its server has stopped, without waiting for worker threads still running a request
    the server already closed (a query runs until its time limit): Ctrl-C stops ``convexp ui`` at once, and a
    second Ctrl-C never meets the interpreter waiting for them."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
