"""Run an ASGI app on a real uvicorn server in a background thread."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from tests.support.polling import wait_for
from tests.support.ports import HOST


@contextmanager
def serve_in_thread(
    app: Any, config: uvicorn.Config | None = None, **options: Any
) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 on a free port; yields its base URL.

    ``config`` is a ready uvicorn config (the router's own); otherwise ``options``
    build one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    if config is None:
        defaults: dict[str, Any] = {"log_level": "warning", "lifespan": "on", "access_log": False}
        config = uvicorn.Config(app, **{**defaults, **options})
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), timeout=10)
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
