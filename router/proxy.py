"""Forward one request to LiteLLM and stream the answer back, chunk by chunk.

This is the hot path. It is a plain ASGI callable (no framework routing or
middleware), does one pass over the request headers, reads the body up to a
limit, makes one upstream request through ``router.upstream`` and relays
the upstream response bytes as they arrive. A watcher notices a client that
hangs up and cancels the upstream call at once.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import Any

import httpx

from router.errors import (
    UPSTREAM_BUSY,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNREACHABLE,
    ApiFormat,
    RouterError,
    api_format,
    error_for,
    headers_too_large,
    rate_limited,
    request_too_large,
)
from router.exceptions import InvalidCustomHeader
from router.headers import (
    RequestIds,
    downstream_headers,
    memory_header_names,
    memory_headers,
    rate_limit_headers,
    request_id_from,
    upstream_headers,
)
from router.memory_router import MemoryRouter
from router.metrics import CLIENT_CLOSED, INVALID, Metrics, method_label, route_label
from router.ratelimit import Limit, RateLimiter
from router.rules import Decision
from router.settings import Settings
from router.upstream import Upstream
from router.usage import UsageTap, find_model, tap_for

Scope = dict[str, Any]
Receive = Any
Send = Any

_JSON_HEADERS = [(b"content-type", b"application/json")]


def _error_kind(exc: Exception) -> tuple[str, RouterError]:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout", UPSTREAM_TIMEOUT
    if isinstance(exc, httpx.PoolTimeout):
        return "pool_timeout", UPSTREAM_BUSY
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", UPSTREAM_TIMEOUT
    if isinstance(exc, httpx.ConnectError):
        return "connect", UPSTREAM_UNREACHABLE
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol", UPSTREAM_UNREACHABLE
    return "reset", UPSTREAM_UNREACHABLE


WATCH_AFTER = 0.05


class _Disconnect:
    """Watches for the client hanging up while its request is being proxied.

    The watcher task starts only once a request has run for ``WATCH_AFTER``
    seconds: most answers are done sooner, and so never pay for a task. A model
    that thinks, or a stream, gets the watcher, which cancels the proxying task
    the moment the client leaves, closing the upstream request with it.
    """

    __slots__ = ("_handle", "_receive", "_task", "_watcher", "finishing", "fired")

    def __init__(self, receive: Receive, task: asyncio.Task[Any]) -> None:
        self._receive = receive
        self._task = task
        self._watcher: asyncio.Future[None] | None = None
        self.fired = False
        self.finishing = False
        self._handle = asyncio.get_running_loop().call_later(WATCH_AFTER, self._start)

    def _start(self) -> None:
        if not self.finishing:
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        if not self.finishing:
            self.fired = True
            self._task.cancel()

    def close(self) -> None:
        self.finishing = True
        self._handle.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


class Proxy:
    """The ASGI app that forwards every non-control request to LiteLLM."""

    def __init__(
        self,
        *,
        settings: Settings,
        router: MemoryRouter,
        metrics: Metrics,
        upstream: Upstream,
        limiter: RateLimiter,
        logger: logging.Logger,
    ) -> None:
        self._limiter = limiter
        self._upstream = upstream
        self._new_id = RequestIds()
        self._max_body = settings.max_body_bytes
        self._max_header = settings.max_header_bytes
        self._key = settings.supermemory_key
        self._key_bytes = self._key.encode() if self._key else b""
        self._end_user = settings.litellm_end_user_header
        self._router = router
        self._metrics = metrics
        self._log = logger
        self._injected_names = ",".join(
            memory_header_names(self._key, litellm_end_user=self._end_user)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = perf_counter()
        path: str = scope["path"]
        fmt = api_format(path)
        route = route_label(path)
        method = method_label(scope["method"])
        metrics = self._metrics
        rules = self._router.rules
        wanted = rules.header_names_raw
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]

        # One pass over the headers: what the rules read, the request id, the length.
        lookup: dict[str, str] = {}
        request_id_raw: bytes | None = None
        content_length: bytes | None = None
        all_headers = self._router.needs_all_headers
        header_bytes = 0
        for name, value in raw_headers:
            header_bytes += len(name) + len(value) + 4
            if name == b"x-request-id":
                request_id_raw = value
            elif name == b"content-length":
                content_length = value
            if all_headers or name in wanted:
                key = name.decode("latin-1")
                text = value.decode("latin-1")
                lookup[key] = f"{lookup[key]}, {text}" if key in lookup else text
        if request_id_raw is not None and self._key_bytes and self._key_bytes in request_id_raw:
            request_id_raw = None  # never echo the key back, even when a client sends it
        request_id = request_id_from(request_id_raw, self._new_id)
        if header_bytes > self._max_header:
            metrics.rejected.labels("headers_too_large").inc()
            metrics.requests_of(INVALID, route, method, "431").inc()
            await _reply(send, headers_too_large(self._max_header), fmt, request_id)
            return

        try:
            decision = (
                await self._router.adecide(lookup)
                if all_headers
                else self._router.decide_lower(lookup)
            )
        except InvalidCustomHeader as exc:
            error = error_for(exc)
            metrics.rejected.labels(error.code).inc()
            metrics.requests_of(INVALID, route, method, str(error.status)).inc()
            self._log.warning("%s rejected: %s", request_id.decode(), exc)
            await _reply(send, error, fmt, request_id)
            return
        except Exception as exc:
            self._log.exception("%s routing failed", request_id.decode())
            error = error_for(exc)
            metrics.requests_of(INVALID, route, method, str(error.status)).inc()
            await _reply(send, error, fmt, request_id)
            return

        user = metrics.user_label(decision.user_id)
        metrics.decisions_of(user, decision.source).inc()

        limit = rules.limits.for_user(decision.user_id)
        if limit is not None:
            verdict = await self._limiter.check(decision.user_id, limit)
            if not verdict.allowed:
                reason = verdict.reason or "requests"
                metrics.rate_limited.labels(user, reason).inc()
                error = rate_limited(decision.user_id, reason, verdict.retry_after)
                metrics.requests_of(user, route, method, str(error.status)).inc()
                self._log.warning(
                    "%s rate limited: user_id=%s reason=%s retry_after=%.2fs",
                    request_id.decode(),
                    decision.user_id,
                    reason,
                    verdict.retry_after,
                )
                extra = rate_limit_headers(
                    limit=verdict.limit,
                    remaining=verdict.remaining,
                    reset_seconds=verdict.reset_seconds,
                    retry_after=verdict.retry_after,
                )
                await _reply(send, error, fmt, request_id, extra)
                return

        if (
            content_length is not None
            and content_length.isdigit()
            and int(content_length) > self._max_body
        ):
            await self._refuse_large(send, fmt, request_id, user, route, method, start)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                metrics.requests_of(user, route, method, CLIENT_CLOSED).inc()
                return
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self._max_body:
                    await self._refuse_large(send, fmt, request_id, user, route, method, start)
                    return
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        model = find_model(body) if body else None

        if self._log.isEnabledFor(logging.INFO):
            self._log.info(
                "%s routing model=%s user_id=%s source=%s rule=%s injected=%s",
                request_id.decode(),
                model or "-",
                decision.user_id,
                decision.source,
                decision.reason,
                self._injected_names,
            )

        metrics.in_flight_of(user).inc()
        task = asyncio.current_task()
        assert task is not None
        state = _Disconnect(receive, task)
        status = "500"
        try:
            status = await self._forward(
                scope,
                send,
                rules.custom_header_raw,
                raw_headers,
                body,
                decision,
                limit,
                request_id,
                fmt,
                user,
                route,
                model,
                start,
                state,
            )
        except asyncio.CancelledError:
            if not state.fired:
                raise
            task.uncancel()
            status = CLIENT_CLOSED
            self._log.info("%s client went away; upstream closed", request_id.decode())
        finally:
            state.close()
            metrics.in_flight_of(user).dec()
            metrics.duration_of(user, route).observe(perf_counter() - start)
            # Last, so that a request counted here has all its other samples recorded.
            metrics.requests_of(user, route, method, status).inc()

    async def _forward(
        self,
        scope: Scope,
        send: Send,
        custom_header: bytes,
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes,
        decision: Decision,
        limit: Limit | None,
        request_id: bytes,
        fmt: ApiFormat,
        user: str,
        route: str,
        model: str | None,
        start: float,
        state: _Disconnect,
    ) -> str:
        """Send upstream and relay the answer. Returns the status to record."""
        metrics = self._metrics
        inject = memory_headers(decision.user_id, self._key, litellm_end_user=self._end_user)
        inject.append((b"x-request-id", request_id))
        headers = upstream_headers(raw_headers, custom_header=custom_header, inject=inject)
        target: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        if query:
            target += b"?" + query
        metrics.overhead.observe(perf_counter() - start)
        try:
            status, answer_headers, answer = await self._upstream(
                scope["method"], target, headers, body
            )
        except httpx.TransportError as exc:
            kind, error = _error_kind(exc)
            metrics.upstream_errors.labels(user, kind).inc()
            self._log.warning(
                "%s upstream %s error: %s", request_id.decode(), kind, type(exc).__name__
            )
            state.finishing = True
            await _reply(send, error, fmt, request_id)
            return str(error.status)

        try:
            content_type: bytes | None = None
            content_encoding: bytes | None = None
            has_length = False
            out_headers: list[tuple[bytes, bytes]] = []
            for name, value in answer_headers:
                lname = name.lower()
                if lname == b"content-type":
                    content_type = value
                elif lname == b"content-encoding":
                    content_encoding = value
                elif lname == b"content-length":
                    has_length = True
                out_headers.append((lname, value))
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": downstream_headers(out_headers, request_id=request_id),
                }
            )
            tap: UsageTap | None = tap_for(content_type, content_encoding)
            first = True
            try:
                async for chunk in answer:
                    if first:
                        first = False
                        metrics.ttfb_of(user, route).observe(perf_counter() - start)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if tap is not None:
                        tap.feed(chunk)
            except httpx.TransportError as exc:
                kind, _ = _error_kind(exc)
                metrics.upstream_errors.labels(user, kind).inc()
                self._log.warning(
                    "%s upstream %s error mid-response: %s",
                    request_id.decode(),
                    kind,
                    type(exc).__name__,
                )
                state.finishing = True
                await _end_broken_stream(send, content_type, fmt, has_length)
                return str(status)
            if first:
                metrics.ttfb_of(user, route).observe(perf_counter() - start)
            state.finishing = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            if tap is not None:
                usage = tap.finish()
                if usage.seen:
                    metrics.record_tokens(
                        user, model or usage.model, usage.prompt, usage.completion
                    )
                    if limit is not None and limit.tokens_per_minute:
                        await self._limiter.add_tokens(
                            decision.user_id, limit, usage.prompt + usage.completion
                        )
            return str(status)
        finally:
            await answer.aclose()

    async def _refuse_large(
        self,
        send: Send,
        fmt: ApiFormat,
        request_id: bytes,
        user: str,
        route: str,
        method: str,
        start: float,
    ) -> None:
        self._metrics.rejected.labels("body_too_large").inc()
        self._metrics.requests_of(user, route, method, "413").inc()
        self._metrics.duration_of(user, route).observe(perf_counter() - start)
        await _reply(send, request_too_large(self._max_body), fmt, request_id)


async def _reply(
    send: Send,
    error: RouterError,
    fmt: ApiFormat,
    request_id: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = error.body(fmt)
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                *_JSON_HEADERS,
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id),
                *(extra or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _end_broken_stream(
    send: Send, content_type: bytes | None, fmt: ApiFormat, has_length: bool
) -> None:
    """End a response whose upstream broke part-way.

    An event stream gets a final error event in its API's format, then a clean
    end, so SDKs raise instead of hanging. A body with a promised length is left
    unfinished, so the server drops the connection and the client sees it cut.
    """
    if has_length:
        return
    if content_type is not None and content_type.lower().startswith(b"text/event-stream"):
        error = UPSTREAM_UNREACHABLE.body(fmt)
        if fmt == "anthropic":
            event = b"event: error\ndata: " + error + b"\n\n"
        else:
            event = b"data: " + error + b"\n\n"
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
