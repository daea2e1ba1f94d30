"""LeanHTTPTransport against scripted upstreams on loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from router.transport import LeanHTTPTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Upstream:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length) if length else b""
        self.requests.append(head + body)
        return head + body

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Upstream]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> Upstream:
        upstream = Upstream(handler)
        upstream.server = await asyncio.start_server(upstream._serve, "127.0.0.1", 0)
        servers.append(upstream.server)
        return upstream

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def client(**limits: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=LeanHTTPTransport(**limits), timeout=httpx.Timeout(2.0, pool=0.3)
    )


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def test_keep_alive_reuses_one_connection(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await upstream.read_request(reader)
            writer.write(OK)

    upstream = await serve(handler)
    async with client() as c:
        for i in range(5):
            r = await c.post(f"{upstream.url}/v1/x?i={i}", content=b"hello", headers={"x-a": "1"})
            assert (r.status_code, r.content, r.headers["content-type"]) == (
                200,
                b"{}",
                "application/json",
            )
    assert upstream.connections == 1
    first = upstream.requests[0]
    assert first.startswith(b"POST /v1/x?i=0 HTTP/1.1\r\n")
    assert b"\r\nx-a: 1\r\n" in first and first.endswith(b"\r\n\r\nhello")


async def test_chunked_body_streams_piece_by_piece(serve) -> None:  # type: ignore[no-untyped-def]
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    upstream = await serve(handler)
    async with client() as c, c.stream("GET", upstream.url) as r:
        chunks = r.aiter_raw()
        assert await chunks.__anext__() == b"first"  # before the rest exists
        release.set()
        assert [c async for c in chunks] == [b"second"]


async def test_idle_connection_closed_by_server_is_replaced(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_request(reader)
        writer.write(OK)
        await writer.drain()  # then close: keep-alive connection goes stale

    upstream = await serve(handler)
    async with client() as c:
        assert (await c.get(upstream.url)).status_code == 200
        await asyncio.sleep(0)  # let the close arrive (or not: a stale reuse is retried)
        assert (await c.get(upstream.url)).status_code == 200
    assert upstream.connections == 2


async def test_close_mid_body_is_an_error(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")

    upstream = await serve(handler)
    async with client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(upstream.url)


async def test_garbage_is_a_protocol_error(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await asyncio.sleep(1)

    upstream = await serve(handler)
    async with client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(upstream.url)


async def test_connection_refused() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with client() as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://127.0.0.1:{port}/")


async def test_read_timeout(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_request(reader)
        await asyncio.sleep(5)

    upstream = await serve(handler)
    async with httpx.AsyncClient(transport=LeanHTTPTransport(), timeout=0.2) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get(upstream.url)


async def test_pool_limit_and_pool_timeout(serve) -> None:  # type: ignore[no-untyped-def]
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await upstream.read_request(reader)
            await gate.wait()
            writer.write(OK)

    upstream = await serve(handler)
    async with client(max_connections=1) as c:
        first = asyncio.create_task(c.get(upstream.url))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await c.get(upstream.url)  # the only connection is busy past the pool timeout
        second = asyncio.create_task(c.get(upstream.url))
        gate.set()
        assert [(await t).status_code for t in (first, second)] == [200, 200]
    assert upstream.connections == 1


async def test_abandoned_stream_closes_its_connection(serve) -> None:  # type: ignore[no-untyped-def]
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await reader.read()  # returns at EOF: the client hung up
        closed.set()

    upstream = await serve(handler)
    transport = LeanHTTPTransport()
    async with httpx.AsyncClient(transport=transport) as c:
        async with c.stream("GET", upstream.url) as r:
            async for _ in r.aiter_raw():
                break
        await asyncio.wait_for(closed.wait(), 2)
        assert transport.connections_in_use == 0
        assert transport.idle_connections == 0


async def test_header_injection_is_refused() -> None:
    request = httpx.Request("GET", "http://127.0.0.1:9/", headers={"x-ok": "1"})
    request.headers._list.append((b"x-bad", b"x-bad", b"a\r\nx-injected: 1"))  # type: ignore[attr-defined]
    with pytest.raises(httpx.LocalProtocolError):
        await LeanHTTPTransport().handle_async_request(request)


async def test_head_request(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        await asyncio.sleep(1)

    upstream = await serve(handler)
    async with client() as c:
        r = await c.head(upstream.url)
        assert (r.status_code, r.headers["content-length"], r.content) == (200, "1234", b"")


async def test_body_delimited_by_close(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nno length, ends at close")
        await writer.drain()

    upstream = await serve(handler)
    async with client() as c:
        r = await c.get(upstream.url)
        assert r.content == b"no length, ends at close"
        assert (await c.get(upstream.url)).status_code == 200  # a new connection
    assert upstream.connections == 2


async def test_empty_answers_keep_the_connection(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await upstream.read_request(reader)
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    upstream = await serve(handler)
    async with client() as c:
        for _ in range(3):
            r = await c.delete(upstream.url)
            assert (r.status_code, r.content) == (204, b"")
    assert upstream.connections == 1


async def test_https_upstream() -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK)

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(transport=LeanHTTPTransport(ssl_context=client_ctx)) as c:
            for _ in range(2):
                r = await c.get(f"https://127.0.0.1:{port}/v1/models")
                assert (r.status_code, r.content) == (200, b"{}")
        # an untrusted certificate is refused
        async with httpx.AsyncClient(transport=LeanHTTPTransport()) as c:
            with pytest.raises(httpx.ConnectError):
                await c.get(f"https://127.0.0.1:{port}/")
    finally:
        server.close()
        await server.wait_closed()
