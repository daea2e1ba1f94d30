"""How the proxy talks to LiteLLM: one call that sends a request and returns the
answer's status, headers and body stream.

``LeanUpstream`` is the hot path: it writes straight into ``LeanHTTPTransport``'s
pool with the upstream's address resolved once at startup, so no URL is parsed
and no ``httpx.Request`` or ``httpx.Response`` is built per request.
``HttpxUpstream`` goes through any ``httpx.AsyncClient`` (one passed to
``create_app``, for example); it is slower but works with every httpx transport.
Both raise httpx's exceptions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import httpx

from router.transport import LeanHTTPTransport, Timeouts, encode_request

RawHeaders = list[tuple[bytes, bytes]]


class Body(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    async def __call__(
        self, method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, RawHeaders, Body]: ...


def _split(base_url: str) -> tuple[httpx.URL, bytes, bytes]:
    url = httpx.URL(base_url)
    host = url.raw_host + (b":%d" % url.port if url.port else b"")
    return url, host, url.raw_path.rstrip(b"/")


class LeanUpstream:
    def __init__(self, transport: LeanHTTPTransport, base_url: str, timeouts: Timeouts) -> None:
        url, self._host, self._prefix = _split(base_url)
        self._transport = transport
        self._origin = transport.origin(url)
        self._timeouts = timeouts

    async def __call__(
        self, method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, RawHeaders, Body]:
        extra = [(b"host", self._host)]
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            extra.append((b"content-length", b"%d" % len(body)))
        data = encode_request(
            method.encode("ascii"), self._prefix + target, [*extra, *headers], body
        )
        return await self._transport.exchange(
            self._origin, data, head_only=method == "HEAD", timeouts=self._timeouts
        )


class HttpxUpstream:
    def __init__(self, client: httpx.AsyncClient, base_url: str, timeouts: Timeouts) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._timeout = {
            "connect": timeouts.connect,
            "read": timeouts.read,
            "write": timeouts.write,
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
        response = await self._client.send(request, stream=True)
        return response.status_code, list(response.headers.raw), _HttpxBody(response)


class _HttpxBody:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._response.aiter_raw()

    async def aclose(self) -> None:
        await self._response.aclose()
