"""The uvicorn server settings the router runs with, shared by the CLI and tests."""

from __future__ import annotations

import resource
import signal
import socket
from collections.abc import Callable
from typing import Any

import uvicorn

from router.http_protocol import REQUEST_LINE_ALLOWANCE, guarded_protocol
from router.settings import Settings


def server_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """uvicorn config for the router.

    One worker (prometheus-client counters live in the process). No Server or
    Date header of its own: upstream's pass through unchanged. The HTTP protocol
    is ``router.http_protocol``'s guarded httptools.
    """
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "log_level": settings.log_level_number,
        "access_log": False,
        "server_header": False,
        "date_header": False,
        "lifespan": "on",
        # No X-Forwarded-For rewriting: the loopback guard must see the real peer.
        "proxy_headers": False,
        # On SIGTERM: stop accepting, let in-flight streams finish for up to this long.
        "timeout_graceful_shutdown": settings.drain_seconds,
        # httptools, with the request head bounded, trailer fields dropped and any
        # Upgrade ignored: the router serves no WebSocket (nor HTTP/2).
        "http": guarded_protocol(settings.max_header_bytes + REQUEST_LINE_ALLOWANCE),
        "ws": "none",
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


class RouterServer(uvicorn.Server):
    """uvicorn's server, telling the app when shutting down begins (``begin_shutdown``),
    so that work the app does after the connections close (draining the memory store
    queue) stays within the same drain window."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._on_shutdown is not None:
            self._on_shutdown()
        await super().shutdown(sockets)


def run(app: Any, settings: Settings, sockets: list[socket.socket] | None = None) -> bool:
    """Serve until stopped. Returns whether the server started.

    SIGTERM is the normal way to stop the router (``docker stop``, systemd): after
    the drain, uvicorn re-raises the signal it caught; a no-op handler turns that
    into a clean return, so the process exits 0 instead of dying by the signal.
    """
    raise_open_file_limit()
    previous = signal.signal(signal.SIGTERM, _ignore)
    try:
        server = RouterServer(server_config(app, settings), getattr(app, "begin_shutdown", None))
        server.run(sockets=sockets)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return bool(server.started)


def raise_open_file_limit() -> int:
    """Lift the soft limit on open files to the hard one.

    Each proxied stream holds two sockets (client and upstream), and the usual
    soft limit of 1024 would refuse connections at about 500 streams.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            return soft
    return soft


def _ignore(signum: int, frame: object) -> None:
    return None
