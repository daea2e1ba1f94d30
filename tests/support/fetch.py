"""HTTP on loopback without a client library: urllib, never through a proxy the
environment names (the way httpx's ``trust_env=False`` works), and raw bytes on a socket
for what no client would send."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """The answer's status and body; an error status is an answer too. Raises OSError
    (``URLError`` included) when nothing answers."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _DIRECT.open(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def send_raw(url: str, request: bytes, timeout: float = 5.0) -> bytes:
    """Send ``request`` as it is, bytes no client would send included, to the server at
    ``url``; the first bytes of its answer (up to 64 KiB)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        return sock.recv(65536)
