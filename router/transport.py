"""A lean HTTP/1.1 keep-alive transport for httpx, on asyncio and httptools.

The router makes one kind of call, over and over, to one upstream: a request with
its body already in memory, then a streamed answer. httpx's default transport
(httpcore over anyio) spends most of the router's time managing its pool: on
every request it walks all pooled connections and asks each socket whether it is
readable (a system call), through several layers of anyio attribute lookups (see
the benchmark's profile in bench/). This transport keeps the httpx API (it is an
``httpx.AsyncBaseTransport``: requests and responses are httpx objects, errors are
httpx exceptions) and replaces only that layer:

- a per-origin pool with a LIFO deque of idle connections: O(1) to take and give
  back; a connection the server closed is noticed by its protocol, not polled;
- one ``asyncio.Protocol`` per connection, parsing responses with httptools (the
  C parser uvicorn also uses), with read-side flow control;
- every body chunk handed on as soon as it is parsed; nothing is buffered beyond
  what the socket delivered at once.

Timeouts come from the request's ``timeout`` extension, as httpx sets them:
``connect``, ``read`` (per wait for bytes) and ``pool``. A request that finds its
reused idle connection closed before any byte of the answer arrived is retried
once on a new connection; nothing else is retried.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httptools
import httpx

_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
Origin = tuple[bytes, bytes, int]


class _StaleConnection(Exception):
    """A reused connection closed before the answer started: safe to retry."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """httpx's four timeouts. This transport needs no ``write``: a request is
    handed to the socket's buffer in one call and never waits to be written."""

    connect: float | None
    read: float | None
    write: float | None
    pool: float | None


class _Connection(asyncio.Protocol):
    """One upstream connection: writes requests, parses answers, feeds one body stream."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._head: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._started = False
        self.done = False
        self.keep_alive = True
        self._error: Exception | None = None
        self._head_only = False
        self._until_close = False

    # -- asyncio.Protocol ----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid HTTP response from upstream: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._until_close and exc is None:
            # A body without a length or chunking ends when the server closes.
            self.keep_alive = False
            self._finish()
        if not self.done:
            if not self._started:
                self._fail(_StaleConnection())
            else:
                self._fail(
                    httpx.RemoteProtocolError(
                        "upstream closed the connection before the response was complete"
                    )
                )

    # -- httptools callbacks -----------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        framed = any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self._headers
        )
        self._until_close = not framed and self._status not in (204, 304) and self._status >= 200
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        if self._head_only:
            # A HEAD answer has no body, whatever its headers say; don't reuse.
            self.keep_alive = False
            self._finish()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._finish()

    # -- used by the transport -------------------------------------------------
    def _finish(self) -> None:
        if not self.done:
            self.done = True
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes, *, head_only: bool) -> None:
        self._reset()
        self._head_only = head_only
        self._head = self._loop.create_future()
        assert self.transport is not None
        self.transport.write(data)

    async def wait_head(self, seconds: float | None) -> tuple[int, list[tuple[bytes, bytes]]]:
        assert self._head is not None
        if self._error is not None:
            raise self._error
        await _wait(self._loop, self._head, seconds, "reading the response headers")
        return self._status, self._headers

    async def next_chunk(self, seconds: float | None) -> bytes | None:
        """Everything parsed so far, or None at the end of the body."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
                self._chunks.clear()
                self._buffered = 0
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return chunk
            if self._error is not None:
                raise self._error
            if self.done:
                return None
            self._waiter = self._loop.create_future()
            try:
                await _wait(self._loop, self._waiter, seconds, "reading the response body")
            finally:
                self._waiter = None


async def _wait(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], seconds: float | None, what: str
) -> None:
    """Await ``future``, failing it with httpx.ReadTimeout after ``seconds``.

    A timer on the loop, not ``asyncio.wait_for``: no extra task per wait."""
    if seconds is None:
        await future
        return

    def expire() -> None:
        if not future.done():
            future.set_exception(httpx.ReadTimeout(f"timed out {what}"))

    handle = loop.call_later(seconds, expire)
    try:
        await future
    finally:
        handle.cancel()


class _Pool:
    """Connections to one origin: idle ones in a LIFO deque, a cap on the total."""

    def __init__(
        self,
        origin: Origin,
        *,
        max_connections: int,
        max_keepalive: int,
        keepalive_expiry: float,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.origin = origin
        self._scheme, host, self._port = origin
        self._host = host.decode("ascii")
        self._max = max_connections
        self._max_idle = max_keepalive
        self._expiry = keepalive_expiry
        self._ssl = ssl_context if self._scheme == b"https" else None
        self._idle: deque[_Connection] = deque()
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def size(self) -> int:
        return self._in_use + len(self._idle)

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def idle(self) -> int:
        return sum(1 for conn in self._idle if not conn.closed)

    async def acquire(
        self, connect_timeout: float | None, pool_timeout: float | None
    ) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        deadline = None if pool_timeout is None else loop.time() + pool_timeout
        while True:
            now = time.monotonic()
            while self._idle:
                conn = self._idle.pop()
                if conn.closed or now - conn.idle_since > self._expiry:
                    conn.close()
                    continue
                self._in_use += 1
                return conn, True
            if self.size < self._max:
                self._in_use += 1
                try:
                    return await self._connect(loop, connect_timeout), False
                except BaseException:
                    self._in_use -= 1
                    self._wake_one()
                    raise
            waiter = loop.create_future()
            self._waiters.append(waiter)
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                raise httpx.PoolTimeout("no upstream connection became free in time") from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _connect(self, loop: asyncio.AbstractEventLoop, seconds: float | None) -> _Connection:
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                ),
                seconds,
            )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {self._host}") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {self._host}: {exc.strerror}") from None
        return conn

    def release(self, conn: _Connection, reusable: bool) -> None:
        self._in_use -= 1
        if reusable and not conn.closed and len(self._idle) < self._max_idle:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


class ResponseStream(httpx.AsyncByteStream):
    """An answer's body: iterate for chunks as they arrive; always ``aclose``."""

    def __init__(self, conn: _Connection, pool: _Pool, read_timeout: float | None) -> None:
        self._conn = conn
        self._pool = pool
        self._timeout = read_timeout
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._conn.next_chunk(self._timeout)
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            conn = self._conn
            self._pool.release(conn, conn.done and conn.keep_alive and conn._error is None)


class LeanHTTPTransport(httpx.AsyncBaseTransport):
    """An httpx transport with a lean HTTP/1.1 keep-alive pool (see module docs)."""

    def __init__(
        self,
        *,
        max_connections: int = 512,
        max_keepalive_connections: int = 128,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._limits = (max_connections, max_keepalive_connections, keepalive_expiry)
        self._ssl = ssl_context
        self._pools: dict[Origin, _Pool] = {}

    def _pool(self, url: httpx.URL) -> _Pool:
        """The pool for ``url``'s origin, made on first use."""
        scheme = url.raw_scheme
        port = url.port or (443 if scheme == b"https" else 80)
        origin = (scheme, url.raw_host, port)
        pool = self._pools.get(origin)
        if pool is None:
            if scheme not in (b"http", b"https"):
                raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}")
            if scheme == b"https" and self._ssl is None:
                self._ssl = ssl.create_default_context()
            max_connections, max_keepalive, expiry = self._limits
            pool = self._pools[origin] = _Pool(
                origin,
                max_connections=max_connections,
                max_keepalive=max_keepalive,
                keepalive_expiry=expiry,
                ssl_context=self._ssl,
            )
        return pool

    def origin(self, url: httpx.URL) -> Origin:
        """The pool key for ``url``; resolve it once and pass it to ``exchange``."""
        return self._pool(url).origin

    async def exchange(
        self, origin: Origin, data: bytes, *, head_only: bool, timeouts: Timeouts
    ) -> tuple[int, list[tuple[bytes, bytes]], ResponseStream]:
        """Send one encoded request (see ``encode_request``) and wait for the answer's head.

        Returns the status, the raw headers and the body stream, which must be closed.
        """
        pool = self._pools.get(origin)
        if pool is None:
            raise httpx.UnsupportedProtocol("unknown origin: resolve it with origin() first")
        for attempt in (1, 2):
            conn, reused = await pool.acquire(timeouts.connect, timeouts.pool)
            try:
                conn.send(data, head_only=head_only)
                status, headers = await conn.wait_head(timeouts.read)
            except _StaleConnection:
                pool.release(conn, False)
                if reused and attempt == 1:
                    continue
                raise httpx.RemoteProtocolError(
                    "upstream closed the connection without sending a response"
                ) from None
            except BaseException:
                pool.release(conn, False)
                raise
            return status, headers, ResponseStream(conn, pool, timeouts.read)
        raise AssertionError("unreachable")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The httpx transport interface, for use under an ``httpx.AsyncClient``."""
        given: dict[str, Any] = request.extensions.get("timeout", {})
        timeouts = Timeouts(
            given.get("connect"), given.get("read"), given.get("write"), given.get("pool")
        )
        body = await request.aread()
        headers = list(request.headers.raw)
        if request.headers.get("transfer-encoding", "").lower() == "chunked":
            body = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        data = encode_request(request.method.encode("ascii"), request.url.raw_path, headers, body)
        status, raw, stream = await self.exchange(
            self.origin(request.url), data, head_only=request.method == "HEAD", timeouts=timeouts
        )
        return httpx.Response(
            status, headers=raw, stream=stream, extensions={"http_version": b"HTTP/1.1"}
        )

    @property
    def connections_in_use(self) -> int:
        """Connections lent to requests right now (0 when nothing is in flight)."""
        return sum(pool.in_use for pool in self._pools.values())

    @property
    def idle_connections(self) -> int:
        return sum(pool.idle for pool in self._pools.values())

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


def encode_request(
    method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes
) -> bytes:
    """A request on the wire: request line, headers, blank line, body.

    Refuses CR, LF or NUL inside any part, so nothing can smuggle in a header or a
    second request; one count over the head checks that, without a loop in Python.
    """
    head = b"".join(
        [method, b" ", target, b" HTTP/1.1\r\n", *[n + b": " + v + b"\r\n" for n, v in headers]]
    )
    lines = len(headers) + 1
    if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\0" in head:
        raise httpx.LocalProtocolError("header names and values must not contain CR, LF or NUL")
    return head + b"\r\n" + body
