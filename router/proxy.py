"""Forward one request to LiteLLM and stream the answer back, chunk by chunk.

This is the hot path. It is a plain ASGI callable (no framework routing or
middleware). Each request gets one ``Exchange``: its id, API format, route,
method, start time, user, decision and limit, and the status it ended with.
However a request ends (refused, forwarded, failed upstream, abandoned by the
client), ``Proxy._record`` counts it once, in one place.

Identity comes from the request's header block only: the proxy takes an
immutable copy of it on entry, and the id, the API key, the policy check, the
rate limit and the forwarded headers are all decided from that copy. Nothing the
server adds later (a chunked request's trailer fields, for example) can change
them.

The answer's bytes are relayed as they arrive, and each chunk, once sent, is read by
one ``router.answer.Answer``: it splits the answer into events once and feeds them to
its observers (the tokens, the assistant's text for memory, the end of the answer),
and keeps the start of a small 400 or 500 answer for ``router.hints`` (one log line
naming the likely cause of LiteLLM's misleading answers about the client's key). When
the answer is over, ``Proxy._answered`` acts on what was read.

A watcher notices a client that hangs up and cancels the upstream call at once. If
the answer's end had already been relayed (its final event, such as ``data: [DONE]``,
or a whole JSON body), the client got everything: the request counts with the status
it got, its tokens, and its turn is stored. Otherwise it counts as 499 and nothing is
stored.

Memory in the router (the ``supermemory-api`` and ``local`` backends): a chat request
goes through ``MemoryService.prepare`` before it is forwarded (memories found for the
decided id go into the turn's user message, within a time budget), the answer's
``x-memory-router-memory`` header says what happened, the answer's text is one of the
observers, and ``MemoryService.finish`` queues the turn for storage once the answer has
ended. With ``supermemory-router`` or ``off`` there is no service,
and the hot path does no memory work at all.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import Any

from router.answer import Answer, Observer
from router.api_keys import KEY_HEADERS, api_key_from
from router.apis import ApiFormat as Api
from router.apis import api_of, gemini_model
from router.errors import (
    UPSTREAM_UNREACHABLE,
    ApiFormat,
    RouterError,
    api_format,
    error_for,
    headers_too_large,
    invalid_header,
    rate_limited,
    request_too_large,
)
from router.exceptions import InvalidCustomHeader, UpstreamError
from router.headers import (
    RequestIds,
    downstream_headers,
    memory_header_names,
    memory_headers,
    rate_limit_headers,
    request_id_from,
    upstream_headers,
)
from router.hints import Peek, hint_for, wants_peek
from router.memory.answer_text import AnswerText
from router.memory.service import HEADER as MEMORY_HEADER
from router.memory.service import MemoryContext, MemoryService, Outcome
from router.memory_router import MemoryRouter
from router.metrics import CLIENT_CLOSED, INVALID, Metrics, method_label, route_label
from router.ratelimit import Limit, RateLimiter
from router.rules import Decision
from router.settings import Settings
from router.stats import TrafficStats
from router.upstream import Body, Upstream
from router.usage import UsageReader, find_model

Scope = dict[str, Any]
Receive = Any
Send = Any
RawHeaders = tuple[tuple[bytes, bytes], ...]

_JSON_HEADERS = [(b"content-type", b"application/json")]
_MEMORY_HEADERS = {o.value: (MEMORY_HEADER.encode(), o.value.encode()) for o in Outcome}
_LOG_ROUTING = "%s routing model=%s user_id=%s source=%s rule=%s injected=%s"

WATCH_AFTER = 0.05


class Exchange:
    """One request, from arrival to its last byte."""

    __slots__ = (
        "answer",
        "api",
        "completion_tokens",
        "decision",
        "fmt",
        "in_flight",
        "limit",
        "memory",
        "memory_header",
        "method",
        "model",
        "prompt_tokens",
        "request_id",
        "route",
        "start",
        "status",
        "text",
        "tokens",
        "ttft",
        "user",
    )

    def __init__(self, scope: Scope, request_id: bytes, start: float) -> None:
        path: str = scope["path"]
        self.request_id = request_id
        self.start = start
        self.fmt: ApiFormat = api_format(path)  # the shape of the router's own errors
        self.api: Api | None = api_of(path)
        self.route = route_label(path)
        self.method = method_label(scope["method"])
        self.user = INVALID  # the metric label, until an id is decided
        self.decision: Decision | None = None
        self.limit: Limit | None = None
        self.status = "500"
        self.in_flight = False
        self.model: str | None = None  # from the request body, for the token metric
        self.ttft: float | None = None  # seconds to the first body byte
        self.prompt_tokens = 0
        self.completion_tokens = 0
        # Memory in the router: its view of the request, and the answer's header saying
        # what it did (both None without memory in the router).
        self.memory: MemoryContext | None = None
        self.memory_header: tuple[bytes, bytes] | None = None
        # The answer as it is read, and two of its observers.
        self.answer: Answer | None = None
        self.tokens: UsageReader | None = None
        self.text: AnswerText | None = None

    @property
    def rid(self) -> str:
        return self.request_id.decode()


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
        stats: TrafficStats,
        memory: MemoryService | None = None,
    ) -> None:
        self._stats = stats
        self._limiter = limiter
        self._memory = memory
        self._upstream = upstream
        self._new_id = RequestIds()
        self._max_body = settings.max_body_bytes
        self._max_header = settings.max_header_bytes
        key = settings.supermemory_key
        self._key_bytes = key.encode() if key else b""  # never echoed, whatever the backend
        # Only Supermemory's memory router gets the id and the key as headers.
        self._supermemory = settings.supermemory_headers
        self._key = key if self._supermemory else None
        self._end_user = settings.litellm_end_user_header
        self._router = router
        self._metrics = metrics
        self._log = logger
        self._injected_names = ",".join(
            memory_header_names(
                self._key, litellm_end_user=self._end_user, supermemory=self._supermemory
            )
            or ["-"]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = perf_counter()
        # The header block, copied once: everything below is decided from this copy.
        headers: RawHeaders = tuple(scope["headers"])
        wanted = self._router.rules.header_names_raw
        all_headers = self._router.needs_all_headers

        # One pass: what the rules read, the request id, the length, size and encoding.
        lookup: dict[str, str] = {}
        request_id_raw: bytes | None = None
        content_length: bytes | None = None
        header_bytes = 0
        for name, value in headers:
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
        x = Exchange(scope, request_id_from(request_id_raw, self._new_id), start)
        try:
            if header_bytes > self._max_header:
                self._metrics.rejected.labels("headers_too_large").inc()
                await self._reply(send, x, headers_too_large(self._max_header))
            else:
                await self._serve(x, scope, headers, lookup, content_length, receive, send)
        finally:
            self._record(x)

    async def _serve(
        self,
        x: Exchange,
        scope: Scope,
        headers: RawHeaders,
        lookup: dict[str, str],
        content_length: bytes | None,
        receive: Receive,
        send: Send,
    ) -> None:
        metrics = self._metrics
        try:
            router = self._router
            decision = (
                await router.adecide(lookup)
                if router.needs_all_headers
                else router.decide_lower(lookup)
            )
        except InvalidCustomHeader as exc:
            error = error_for(exc)
            metrics.rejected.labels(error.code).inc()
            self._log.warning("%s rejected: %s", x.rid, exc)
            await self._reply(send, x, error)
            return
        except Exception as exc:
            self._log.exception("%s routing failed", x.rid)
            await self._reply(send, x, error_for(exc))
            return
        x.decision = decision
        x.user = metrics.user_label(decision.user_id)
        metrics.decisions_of(x.user, decision.source).inc()
        metrics.in_flight_of(x.user).inc()
        self._stats.started(x.user, decision.source)
        x.in_flight = True

        x.limit = limit = self._router.rules.limits.for_user(decision.user_id)
        if limit is not None and not await self._admit(x, limit, send):
            return

        if (
            content_length is not None
            and content_length.isdigit()
            and int(content_length) > self._max_body
        ):
            await self._refuse_large(x, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                x.status = CLIENT_CLOSED
                return
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self._max_body:
                    await self._refuse_large(x, send)
                    return
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        x.model = gemini_model(scope["path"]) if x.api == "gemini" else None
        if x.model is None and body:
            x.model = find_model(body)

        task = asyncio.current_task()
        assert task is not None
        watch = _Disconnect(receive, task)
        try:
            memory = self._memory
            outcome: str | None = None
            if memory is not None and scope["method"] == "POST":
                # Bounded by the memory budget; a client that leaves meanwhile cancels it.
                body, outcome, x.memory = await memory.prepare(
                    decision.user_id, scope["path"], body, self._router.rules.memory
                )
                if outcome is not None:
                    x.memory_header = _MEMORY_HEADERS.get(outcome)
            if self._log.isEnabledFor(logging.INFO):
                args = (x.model or "-", decision.user_id, decision.source, decision.reason)
                if outcome is None:
                    self._log.info(_LOG_ROUTING, x.rid, *args, self._injected_names)
                else:
                    self._log.info(
                        _LOG_ROUTING + " memory=%s", x.rid, *args, self._injected_names, outcome
                    )
            await self._forward(x, scope, headers, body, send, watch)
        except asyncio.CancelledError:
            if not watch.fired:
                raise
            task.uncancel()
            answer = x.answer
            if answer is not None:
                answer.finish()
            if answer is not None and answer.ended():
                # The client left once it had the whole answer: a success, as it saw it.
                self._log.debug("%s client went away after the answer's end", x.rid)
                await self._answered(x, headers)
            else:
                x.status = CLIENT_CLOSED
                self._log.info("%s client went away; upstream closed", x.rid)
        finally:
            watch.close()

    async def _admit(self, x: Exchange, limit: Limit, send: Send) -> bool:
        """Ask the rate limiter; answer 429 (or 503) and return False when refused."""
        assert x.decision is not None
        verdict = await self._limiter.check(x.decision.user_id, limit)
        if verdict.allowed:
            return True
        reason = verdict.reason or "requests"
        self._metrics.rate_limited.labels(x.user, reason).inc()
        self._log.warning(
            "%s rate limited: user_id=%s reason=%s retry_after=%.2fs",
            x.rid,
            x.decision.user_id,
            reason,
            verdict.retry_after,
        )
        extra = rate_limit_headers(
            limit=verdict.limit,
            remaining=verdict.remaining,
            reset_seconds=verdict.reset_seconds,
            retry_after=verdict.retry_after,
        )
        await self._reply(
            send, x, rate_limited(x.decision.user_id, reason, verdict.retry_after), extra
        )
        return False

    async def _forward(
        self,
        x: Exchange,
        scope: Scope,
        headers: RawHeaders,
        body: bytes,
        send: Send,
        watch: _Disconnect,
    ) -> None:
        """Send upstream, then relay the answer; ``x.status`` says how it ended."""
        metrics = self._metrics
        decision = x.decision
        assert decision is not None
        extra = [x.memory_header] if x.memory_header is not None else None
        inject = memory_headers(
            decision.user_id,
            self._key,
            litellm_end_user=self._end_user,
            supermemory=self._supermemory,
        )
        inject.append((b"x-request-id", x.request_id))
        out = upstream_headers(
            headers, custom_header=self._router.rules.custom_header_raw, inject=inject
        )
        for name, value in out:
            if not value.isascii() and not _is_utf8(value):
                # The client writes header values as UTF-8: other bytes would change on the way.
                metrics.rejected.labels("invalid_header").inc()
                await self._reply(send, x, invalid_header(name.decode("latin-1")), extra)
                return
        target: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        if query:
            target += b"?" + query
        metrics.overhead.observe(perf_counter() - x.start)
        try:
            status, answer_headers, answer = await self._upstream(
                scope["method"], target, out, body
            )
        except UpstreamError as exc:
            self._upstream_failed(x, exc, "")
            watch.finishing = True
            await self._reply(send, x, error_for(exc), extra)
            return
        try:
            await self._relay(x, status, answer_headers, answer, send, watch, headers)
        finally:
            await answer.aclose()  # at once, also when the client left

    async def _relay(
        self,
        x: Exchange,
        status: int,
        answer_headers: list[tuple[bytes, bytes]],
        body: Body,
        send: Send,
        watch: _Disconnect,
        request_headers: RawHeaders,
    ) -> None:
        """Relay the upstream's answer chunk by chunk, each read by ``x.answer`` once
        sent; at its end, ``_answered``."""
        metrics = self._metrics
        content_type: bytes | None = None
        content_encoding: bytes | None = None
        content_length: bytes | None = None
        relayed: list[tuple[bytes, bytes]] = []
        # 204 and 304 carry no body whatever their Content-Length says (RFC 9110
        # 8.6); relayed, the length would make the server wait for bytes never sent.
        bodyless = status in (204, 304)
        for name, value in answer_headers:
            lname = name.lower()
            if lname == b"content-type":
                content_type = value
            elif lname == b"content-encoding":
                content_encoding = value
            elif lname == b"content-length":
                if bodyless:
                    continue
                content_length = value
            relayed.append((lname, value))
        x.status = str(status)
        down = downstream_headers(relayed, request_id=x.request_id)
        if x.memory_header is not None:
            down.append(x.memory_header)
        await send({"type": "http.response.start", "status": status, "headers": down})
        answer = self._read_answer(x, status, content_type, content_encoding, content_length)
        first = True
        try:
            async for chunk in body:
                if first:
                    first = False
                    x.ttft = perf_counter() - x.start
                    metrics.ttfb_of(x.user, x.route).observe(x.ttft)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                answer.feed(chunk)
        except UpstreamError as exc:
            self._upstream_failed(x, exc, " mid-response")
            watch.finishing = True
            await _end_broken_stream(send, content_type, x.fmt, content_length is not None)
            return
        if first:
            x.ttft = perf_counter() - x.start
            metrics.ttfb_of(x.user, x.route).observe(x.ttft)
        watch.finishing = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await self._answered(x, request_headers)

    def _read_answer(
        self,
        x: Exchange,
        status: int,
        content_type: bytes | None,
        content_encoding: bytes | None,
        content_length: bytes | None,
    ) -> Answer:
        """The reader of this answer (``x.answer``): its tokens, and with memory in the
        router its text; the start of a small error answer for ``router.hints``."""
        observers: list[Observer] = []
        if x.memory is not None:
            x.text = x.memory.reader(
                status=status, content_type=content_type, content_encoding=content_encoding
            )
            if x.text is not None:
                observers.append(x.text)
        x.tokens = UsageReader()
        observers.append(x.tokens)
        peek = None
        if status >= 400 and wants_peek(status, content_type, content_encoding, content_length):
            peek = Peek()
        length = None
        if content_length is not None and content_length.strip().isdigit():
            length = int(content_length)
        x.answer = Answer(
            x.api,
            observers,
            content_type=content_type,
            content_encoding=content_encoding,
            content_length=length,
            peek=peek,
        )
        return x.answer

    async def _answered(self, x: Exchange, request_headers: RawHeaders) -> None:
        """The answer was relayed to its end: name the likely cause of a misleading error,
        queue the turn for memory, count the tokens."""
        answer = x.answer
        assert answer is not None
        answer.finish()
        if answer.peek is not None:
            self._hint(x, int(x.status), bytes(answer.peek.data), request_headers)
        if x.memory is not None and self._memory is not None:
            self._memory.finish(x.memory, x.text)  # queues the turn; never waits
        usage = x.tokens.usage if x.tokens is not None else None
        if usage is None or not usage.seen:
            return
        metrics = self._metrics
        x.prompt_tokens = usage.prompt
        x.completion_tokens = usage.completion
        metrics.record_tokens(x.user, x.model or usage.model, usage.prompt, usage.completion)
        limit = x.limit
        if limit is not None and limit.tokens_per_minute and x.decision is not None:
            await self._limiter.add_tokens(
                x.decision.user_id, limit, usage.prompt + usage.completion
            )

    def _hint(self, x: Exchange, status: int, body: bytes, request_headers: RawHeaders) -> None:
        """Log the likely cause of one of LiteLLM's misleading answers (router.hints)."""
        keys = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in request_headers
            if name.decode("latin-1").lower() in KEY_HEADERS
        }
        hint = hint_for(status, body, has_key=api_key_from(keys) is not None)
        if hint is not None:
            self._log.warning("%s hint: %s", x.rid, hint)

    def _upstream_failed(self, x: Exchange, exc: UpstreamError, where: str) -> None:
        self._metrics.upstream_errors.labels(x.user, exc.kind).inc()
        self._log.warning("%s upstream %s error%s: %s", x.rid, exc.kind, where, exc)

    async def _refuse_large(self, x: Exchange, send: Send) -> None:
        self._metrics.rejected.labels("body_too_large").inc()
        await self._reply(send, x, request_too_large(self._max_body))

    async def _reply(
        self,
        send: Send,
        x: Exchange,
        error: RouterError,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Answer with one of the router's own errors, in the caller's API format."""
        x.status = str(error.status)
        body = error.body(x.fmt)
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    *_JSON_HEADERS,
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", x.request_id),
                    *(extra or ()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _record(self, x: Exchange) -> None:
        """Count a finished request: the one place every outcome is recorded."""
        metrics = self._metrics
        if x.in_flight:
            metrics.in_flight_of(x.user).dec()
        seconds = perf_counter() - x.start
        metrics.duration_of(x.user, x.route).observe(seconds)
        self._stats.finished(
            x.user,
            int(x.status),
            seconds,
            x.ttft,
            x.prompt_tokens,
            x.completion_tokens,
            was_started=x.in_flight,
        )
        # Last, so that a request counted here has all its other samples recorded.
        metrics.requests_of(x.user, x.route, x.method, x.status).inc()


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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
