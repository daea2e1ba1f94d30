"""Raw-socket peers for the wire tier: a scripted upstream that records the exact
bytes it receives, and a client that writes exact bytes and parses what comes back.

The upstream stands in for LiteLLM. Each accepted connection runs the test's
``script(conn)`` in its own thread; ``conn`` reads whole requests (head plus a
Content-Length or chunked body) and writes whatever bytes the script says, so a
test can answer with anything HTTP/1.1 allows, and much that it does not.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import h11

_LENGTH = re.compile(rb"^content-length:\s*(\d+)\s*$", re.IGNORECASE | re.MULTILINE)
_CHUNKED = re.compile(rb"^transfer-encoding:\s*chunked\s*$", re.IGNORECASE | re.MULTILINE)


class UpstreamConn:
    """One connection the router opened to the scripted upstream."""

    def __init__(self, sock: socket.socket, index: int, upstream: ScriptedUpstream) -> None:
        self.sock = sock
        self.index = index
        self.upstream = upstream
        self._buffer = b""
        self.eof = threading.Event()  # set when the router closed its side
        self.requests: list[bytes] = []

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.eof.set()
            return False
        self._buffer += data
        return True

    def read_request(self) -> bytes | None:
        """The next whole request (head and body, as received), or None at EOF."""
        while b"\r\n\r\n" not in self._buffer:
            if not self._fill():
                return None
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        head += b"\r\n\r\n"
        # The router always sends a Content-Length; a chunked request is a failure.
        assert not _CHUNKED.search(head), head
        match = _LENGTH.search(head)
        length = int(match.group(1)) if match else 0
        while len(rest) < length:
            if not self._fill():
                return None
            rest = self._buffer.partition(b"\r\n\r\n")[2]
        body = rest[:length]
        self._buffer = rest[len(body) :]
        request = head + body
        self.requests.append(request)
        self.upstream.record(request)
        return request

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait_eof(self, timeout: float = 5.0) -> bool:
        """Wait until the router has closed the connection (the script's own reads
        see it); True if it did within ``timeout`` seconds."""
        return self.eof.wait(timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


Script = Callable[[UpstreamConn], None]


class ScriptedUpstream:
    """A loopback server that runs ``script`` on every connection it accepts."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.connections: list[UpstreamConn] = []
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def record(self, request: bytes) -> None:
        with self.changed:
            self.requests.append(request)
            self.changed.notify_all()

    def wait_requests(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` requests have arrived in all."""
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} of {count} requests arrived")

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.sock.accept()
            except OSError:
                return
            with self.changed:
                conn = UpstreamConn(sock, len(self.connections), self)
                self.connections.append(conn)
                self.changed.notify_all()
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: UpstreamConn) -> None:
        try:
            self.script(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


def response(
    status: int = 200,
    body: bytes = b"ok",
    headers: list[tuple[bytes, bytes]] | None = None,
    reason: bytes = b"OK",
) -> bytes:
    """A whole response with a Content-Length."""
    head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    for name, value in [*(headers or []), (b"Content-Length", str(len(body)).encode())]:
        head += name + b": " + value + b"\r\n"
    return head + b"\r\n" + body


def serve_forever(answer: bytes | Callable[[bytes], bytes]) -> Script:
    """A script that answers every request on the connection the same way."""

    def script(conn: UpstreamConn) -> None:
        while (request := conn.read_request()) is not None:
            conn.send(answer(request) if callable(answer) else answer)

    return script


# -- the client side ---------------------------------------------------------------


@dataclass
class Received:
    """What a raw client got back, parsed with h11."""

    raw: bytes
    interim: list[int] = field(default_factory=list)
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False

    def header(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n == name.lower()]

    def record(self, event: object) -> None:
        """Keep what an h11 event of the answer carries."""
        if isinstance(event, h11.InformationalResponse):
            self.interim.append(event.status_code)
        elif isinstance(event, h11.Response):
            self.status = event.status_code
            self.headers = [(n.lower(), v) for n, v in event.headers.raw_items()]
        elif isinstance(event, h11.Data):
            self.body += event.data
        elif isinstance(event, h11.EndOfMessage):
            self.trailers = list(event.headers.raw_items())
            self.complete = True


def parse_response(raw: bytes, *, method: bytes = b"POST") -> Received:
    """Parse the bytes a client received as one HTTP/1.1 exchange."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    conn.receive_data(b"")  # what followed was the end of the connection
    got = Received(raw)
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return got
        if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            return got
        got.record(event)
        if got.complete:
            return got


def exchange(port: int, data: bytes, *, method: bytes = b"POST", timeout: float = 10.0) -> Received:
    """Send ``data`` on a new connection, read until the router closes it, parse it.

    Requests should carry ``Connection: close`` so that the router closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        raw = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                raw += chunk
    return parse_response(raw, method=method)


def exchanges(
    port: int, requests: list[bytes], *, method: bytes = b"POST", timeout: float = 10.0
) -> list[Received]:
    """Send ``requests`` one after another on ONE client connection, each after the
    previous answer is complete; the last should carry ``Connection: close``."""
    got: list[Received] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        conn = h11.Connection(h11.CLIENT)
        for data in requests:
            conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
            conn.send(h11.EndOfMessage())
            sock.sendall(data)
            received = Received(b"")
            while not received.complete:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    chunk = sock.recv(65536)
                    received.raw += chunk
                    conn.receive_data(chunk)
                    if not chunk:
                        raise AssertionError(f"connection closed mid-answer: {received.raw!r}")
                else:
                    received.record(event)
            got.append(received)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
    return got


def request(
    path: bytes = b"/v1/chat/completions",
    *,
    method: bytes = b"POST",
    body: bytes = b'{"model":"m"}',
    headers: list[tuple[bytes, bytes]] | None = None,
    close: bool = True,
) -> bytes:
    """A request with a Content-Length (and ``Connection: close`` unless ``close=False``)."""
    head = method + b" " + path + b" HTTP/1.1\r\nHost: router\r\n"
    for name, value in headers or []:
        head += name + b": " + value + b"\r\n"
    if body or method not in (b"GET", b"HEAD"):
        head += b"Content-Length: %d\r\n" % len(body)
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body
