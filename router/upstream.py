"""How the proxy talks to LiteLLM: one call that sends a request and returns the
answer's status, raw headers and body stream.

``AiohttpUpstream`` is the hot path: aiohttp's client (its C HTTP parser and
keep-alive pool), set up as a proxy needs it:

- nothing is added or changed: no default headers, no cookie jar, no
  decompression, no redirects followed, no proxy settings from the environment;
- the upstream's address is parsed once; each request only appends its path;
- a request the upstream may have received is sent once. aiohttp retries a
  failed reused connection only for idempotent methods (RFC 9112 9.3.1); a
  connection the upstream closed while idle is noticed by its protocol and never
  reused, and idle connections expire before a typical server's keep-alive (see
  ``Settings.keepalive_expiry``);
- the number of upstream requests in flight is capped by an ``asyncio.Semaphore``
  rather than by aiohttp's connector limit: the semaphore hands a freed slot on
  even when the waiter it woke is cancelled, where the connector can strand it;
- a pooled connection on which the upstream sends bytes while no request is
  outstanding is closed, never reused: those bytes would otherwise be read as
  the next caller's answer;
- interim 1xx answers are skipped by aiohttp; a final status outside 200-599,
  or a response head over ``MAX_RESPONSE_HEAD`` bytes, is an ``UpstreamError``.

``HttpxUpstream`` goes through any ``httpx.AsyncClient`` (one passed to
``create_app``); it never follows a redirect either.

Both raise only ``UpstreamError``, whose ``kind`` names what went wrong.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import aiohttp
import httpx
from aiohttp.client_proto import ResponseHandler
from multidict import CIMultiDict
from yarl import URL

from router.exceptions import UpstreamError, UpstreamErrorKind

RawHeaders = list[tuple[bytes, bytes]]
ErrorKind = UpstreamErrorKind

# The largest response head relayed; a larger one is a protocol error (502).
MAX_RESPONSE_HEAD = 64 * 1024
# aiohttp's own parser bounds: per line and field, and the number of fields.
_MAX_FIELD = 16 * 1024
_MAX_FIELDS = 256
_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: to connect, between bytes of the answer, and to wait for a free slot."""

    connect: float | None
    read: float | None
    pool: float | None


class Body(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    async def __call__(
        self, method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, RawHeaders, Body]: ...

    async def aclose(self) -> None: ...


def check_answer(status: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
    """Refuse a final answer a proxy must not relay: a status outside 200-599
    (1xx is never final here) or a head over ``MAX_RESPONSE_HEAD`` bytes."""
    if not 200 <= status <= 599:
        raise UpstreamError("protocol", f"status {status}")
    size = 0
    for name, value in headers:
        size += len(name) + len(value) + 4
    if size > MAX_RESPONSE_HEAD:
        raise UpstreamError("protocol", f"response head over {MAX_RESPONSE_HEAD} bytes")


def _kind_of(exc: BaseException) -> ErrorKind:
    """aiohttp's exceptions, in the router's terms. Order matters: subclasses first."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect_timeout"
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return "protocol"
    return "reset"


class _GuardedHandler(ResponseHandler):
    """aiohttp's connection protocol, plus one rule: a pooled connection closes
    when the upstream sends bytes that no request asked for.

    ``idle`` is set by ``_GuardedConnector`` as the connection goes back to the
    pool, and cleared by aiohttp when the connection is given its next request.
    Bytes that arrive while idle close it; so do bytes that arrive in the same
    read as the end of an answer and make up more than that answer (a second
    message, which aiohttp would otherwise queue for the next request). A partial
    message left in the parser is discarded with it: aiohttp gives every request
    a new parser."""

    idle = False

    def set_response_params(self, **kwargs: Any) -> None:
        self.idle = False
        super().set_response_params(**kwargs)

    def data_received(self, data: bytes) -> None:
        if self.idle and data:
            self._drop()
            return
        super().data_received(data)
        if self.idle and self.should_close:
            self._drop()

    def _drop(self) -> None:
        self.force_close()
        if self.transport is not None:
            self.transport.close()


class _GuardedConnector(aiohttp.TCPConnector):
    """aiohttp's TCP connector with ``_GuardedHandler`` connections.

    The one place the router reaches into aiohttp's internals (its protocol
    factory and its release hook); the wire tests pin the behaviour, and
    pyproject.toml pins aiohttp to the minor versions they pass on."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._factory = cast(
            "functools.partial[ResponseHandler]",
            functools.partial(_GuardedHandler, loop=self._loop),
        )

    def _release(
        self, key: Any, protocol: ResponseHandler, *, should_close: bool = False
    ) -> None:
        if isinstance(protocol, _GuardedHandler):
            protocol.idle = True
        super()._release(key, protocol, should_close=should_close)


class _AiohttpBody:
    __slots__ = ("_owner", "_response")

    def __init__(self, response: aiohttp.ClientResponse, owner: AiohttpUpstream) -> None:
        self._response = response
        self._owner: AiohttpUpstream | None = owner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise UpstreamError(_kind_of(exc), type(exc).__name__) from None
        except TimeoutError:
            raise UpstreamError("timeout") from None

    async def aclose(self) -> None:
        response = self._response
        try:
            if response.content.is_eof():
                response.release()  # back to the pool, unless it must close
            else:
                response.close()
        finally:
            if self._owner is not None:
                self._owner._done()
                self._owner = None


class AiohttpUpstream:
    """Requests to one upstream base URL over aiohttp's keep-alive pool."""

    def __init__(
        self,
        base_url: str,
        *,
        timeouts: Timeouts,
        max_connections: int,
        keepalive_expiry: float,
    ) -> None:
        url = URL(base_url)
        self._scheme = url.scheme
        self._host = url.raw_host or ""
        self._port = url.port
        self._prefix = url.raw_path.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.connect,
            sock_connect=timeouts.connect,
            sock_read=timeouts.read,
        )
        self._pool_timeout = timeouts.pool
        self._slots = asyncio.Semaphore(max_connections)
        self.in_use = 0  # requests holding a slot: sent, and their answer not yet closed
        self._keepalive = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = _GuardedConnector(
            limit=0,  # the semaphore limits; see the module docstring
            keepalive_timeout=self._keepalive if self._keepalive > 0 else None,
            force_close=self._keepalive <= 0,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            auto_decompress=False,
            trust_env=False,
            timeout=self._timeout,
            raise_for_status=False,
            max_line_size=_MAX_FIELD,
            max_field_size=_MAX_FIELD,
            max_headers=_MAX_FIELDS,
        )
        return self._session

    async def __call__(
        self, method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, RawHeaders, Body]:
        session = self._session or self._open()
        path, _, query = target.decode("latin-1").partition("?")
        url = URL.build(
            scheme=self._scheme,
            host=self._host,
            port=self._port,
            path=self._prefix + path,
            query_string=query,
            encoded=True,
        )
        request_headers = CIMultiDict(
            (name.decode("latin-1"), value.decode("utf-8")) for name, value in headers
        )
        slots = self._slots
        if slots.locked():
            try:
                async with asyncio.timeout(self._pool_timeout):
                    await slots.acquire()
            except TimeoutError:
                raise UpstreamError("pool_timeout") from None
        else:
            await slots.acquire()
        self.in_use += 1
        try:
            response = await session.request(
                method,
                url,
                headers=request_headers,
                data=body if body or method not in _BODYLESS else None,
                allow_redirects=False,
            )
        except BaseException as exc:
            self._done()
            if isinstance(exc, aiohttp.ClientError | TimeoutError):
                raise UpstreamError(_kind_of(exc), type(exc).__name__) from None
            raise
        answer_headers = list(response.raw_headers)
        try:
            check_answer(response.status, answer_headers)
        except UpstreamError:
            response.close()
            self._done()
            raise
        return response.status, answer_headers, _AiohttpBody(response, self)

    def _done(self) -> None:
        self.in_use -= 1
        self._slots.release()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


_HTTPX_KINDS: tuple[tuple[type[Exception], ErrorKind], ...] = (
    (httpx.ConnectTimeout, "connect_timeout"),
    (httpx.PoolTimeout, "pool_timeout"),
    (httpx.TimeoutException, "timeout"),
    (httpx.ConnectError, "connect"),
    (httpx.RemoteProtocolError, "protocol"),
)


def _httpx_kind(exc: httpx.TransportError) -> ErrorKind:
    for cls, kind in _HTTPX_KINDS:
        if isinstance(exc, cls):
            return kind
    return "reset"


class HttpxUpstream:
    """Requests through a caller's ``httpx.AsyncClient`` (it stays the caller's to close)."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, timeouts: Timeouts) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._timeout = {
            "connect": timeouts.connect,
            "read": timeouts.read,
            "write": timeouts.read,
            "pool": timeouts.pool,
        }

    async def __call__(
        self, method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, RawHeaders, Body]:
        request = httpx.Request(
            method,
            self._base + target.decode("latin-1"),
            headers=list(headers),
            content=body,
            extensions={"timeout": self._timeout},
        )
        try:
            response = await self._client.send(request, stream=True, follow_redirects=False)
        except httpx.TransportError as exc:
            raise UpstreamError(_httpx_kind(exc), type(exc).__name__) from None
        answer_headers = list(response.headers.raw)
        try:
            check_answer(response.status_code, answer_headers)
        except UpstreamError:
            await response.aclose()
            raise
        return response.status_code, answer_headers, _HttpxBody(response)

    async def aclose(self) -> None:
        return None


class _HttpxBody:
    __slots__ = ("_response",)

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.TransportError as exc:
            raise UpstreamError(_httpx_kind(exc), type(exc).__name__) from None

    async def aclose(self) -> None:
        await self._response.aclose()
