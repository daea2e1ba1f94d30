"""Run an ASGI app on a real uvicorn server in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def wait_for(condition: Any, timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll ``condition`` until it is truthy, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@contextmanager
def serve_in_thread(
    app: Any, config: uvicorn.Config | None = None, **options: Any
) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 on a free port; yields its base URL.

    ``config`` is a ready uvicorn config (the router's own); otherwise ``options``
    build one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
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
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
