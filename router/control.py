"""The router's own endpoints: health, readiness, metrics, routing info and memories.

These are served by FastAPI; every other path goes to the proxy, except that all of
``/metrics/`` and ``/memory-routing/`` is the router's. ``/metrics``,
``/memory-routing/info`` and the memory endpoints can be limited to loopback callers or
to a bearer token (``control_access``); the health endpoints are always open.

``/memory-routing/info`` shows the caller's decision, the rules file in use and why
(``router.config_source``), and the caller's rate limit with what is left of it, read
with the limiter's ``peek``, which takes nothing.

The memory endpoints act on the caller's own id, decided by the same rules as a
proxied request (a header the rules refuse is refused here too); no parameter can
name another id. Their errors, like every refusal here, come in the caller's API
format: Anthropic's when it sends ``anthropic-version``, else OpenAI's.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from router import __version__
from router.dashboard import DashboardAssets
from router.errors import caller_format, error_for
from router.exceptions import (
    Forbidden,
    InvalidLimit,
    InvalidWindow,
    MemoryBackendError,
    MemoryNotFound,
    MemoryOff,
    RequestRefused,
    UpstreamError,
)
from router.headers import memory_header_names
from router.memory.backend import Memory
from router.memory.manage import DEFAULT_LIMIT, MAX_LIMIT, MemoryAdmin
from router.memory_router import MemoryRouter
from router.metrics import Metrics
from router.ratelimit import Budget, Limit, RateLimiter
from router.reload import ConfigReloader
from router.settings import Settings
from router.stats import HISTORY_SECONDS, TrafficStats
from router.upstream import Upstream

READINESS_TIMEOUT = 3.0
# The stats endpoint reports LiteLLM's readiness as last probed, at most this old: a
# dashboard polling every few seconds costs LiteLLM one probe per this many seconds.
READINESS_CACHE_SECONDS = 5.0
MEMORIES = "/memory-routing/memories"
STATS = "/memory-routing/stats"
DASHBOARD = "/memory-routing/dashboard"
DEFAULT_WINDOW = 300
CONTROL_PATHS = frozenset({"/health", "/health/readiness", "/metrics", "/memory-routing/info"})
# Paths under these prefixes are the router's too, never forwarded: /metrics/ because the
# stack serves LiteLLM's own metrics there without a key, for Prometheus on the private
# network; /memory-routing/ because it is the router's own namespace.
CONTROL_PREFIXES = ("/metrics/", "/memory-routing/")
# What a memory id in a DELETE path may be; anything else names no memory.
_MEMORY_ID = re.compile(r"[A-Za-z0-9_:.-]{1,255}")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_guard(settings: Settings) -> Callable[[Request], None]:
    """A dependency that refuses callers the ``control_access`` setting excludes."""
    token = settings.control_token.get_secret_value().encode() if settings.control_token else None
    mode = settings.control_access

    def guard(request: Request) -> None:
        if mode == "open":
            return
        if token is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token):
                return
        if mode == "loopback" and _is_loopback(request.client.host if request.client else None):
            return
        raise Forbidden

    return guard


def build_control_app(
    *,
    settings: Settings,
    router: MemoryRouter,
    metrics: Metrics,
    stats: TrafficStats,
    upstream: Upstream,
    reloader: ConfigReloader | None = None,
    on_startup: Callable[[], Awaitable[None]] | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
    memory: MemoryAdmin | None = None,
    logger: logging.Logger | None = None,
    limiter: RateLimiter | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            await on_startup()
        try:
            yield
        finally:
            if on_shutdown is not None:
                await on_shutdown()

    app = FastAPI(
        title="memory-router",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    guarded = [Depends(access_guard(settings))]
    injected = memory_header_names(
        settings.supermemory_key,
        litellm_end_user=settings.litellm_end_user_header,
        supermemory=settings.supermemory_headers,
    )
    log = logger if logger is not None else logging.getLogger("memory_router")

    def redacted(payload: Any) -> Response:
        body = json.dumps(payload)
        for secret in settings.secrets:  # a caller may have sent one as its own id
            body = body.replace(secret, "[redacted]")
        return Response(body, media_type="application/json")

    @app.exception_handler(RequestRefused)
    async def refused(request: Request, exc: RequestRefused) -> Response:
        error = error_for(exc)
        return Response(
            error.body(caller_format(request.headers)),
            status_code=error.status,
            media_type="application/json",
        )

    @app.exception_handler(MemoryBackendError)
    async def memory_failed(request: Request, exc: MemoryBackendError) -> Response:
        log.warning("%s %s: memory backend failed: %s", request.method, request.url.path, exc)
        error = error_for(exc)
        return Response(
            error.body(caller_format(request.headers)),
            status_code=error.status,
            media_type="application/json",
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/readiness")
    async def readiness() -> JSONResponse:
        litellm = await probe_litellm(upstream)
        ready = litellm == "ok"
        return JSONResponse(
            {
                "status": "ready" if ready else "not_ready",
                "checks": {"router": "ok", "config": "ok", "litellm": litellm},
            },
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", dependencies=guarded)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/memory-routing/info", dependencies=guarded)
    async def routing_info(request: Request) -> Response:
        info = await router.aget_routing_info(request.headers)  # a refusal goes to ``refused``
        info["injected_headers"] = injected
        info["supermemory_key_configured"] = settings.supermemory_key is not None
        info["memory_backend"] = settings.memory_backend
        info["litellm_url"] = settings.litellm_url
        if reloader is not None:
            info["config"] = {**info["config"], **reloader.status()}
        limit = router.rules.limits.for_user(info["user_id"])
        info["rate_limit"] = None
        if limit is not None:
            left = await limiter.peek(info["user_id"], limit) if limiter is not None else None
            info["rate_limit"] = _rate_limit_json(limit, left)
        return redacted(info)

    started_at = time.time()
    probed: dict[str, Any] = {"status": None, "checked_at": None}
    probed_at = -math.inf
    probing: asyncio.Lock = asyncio.Lock()

    async def litellm_status() -> dict[str, Any]:
        """LiteLLM's readiness, probed at most once per READINESS_CACHE_SECONDS."""
        nonlocal probed, probed_at
        async with probing:
            if time.monotonic() - probed_at >= READINESS_CACHE_SECONDS:
                status = await probe_litellm(upstream)
                probed = {"status": status, "checked_at": round(time.time(), 3)}
                probed_at = time.monotonic()
        return probed

    @app.get(STATS, dependencies=guarded)
    async def traffic_stats(request: Request) -> Response:
        snapshot = stats.snapshot(_window(request.query_params.get("window")))
        config = reloader.status() if reloader is not None else {"sha256": router.rules.digest}
        snapshot["router"] = {
            "version": __version__,
            "started_at": round(started_at, 3),
            "config": config,
            "litellm": await litellm_status(),
            "supermemory_key_configured": settings.supermemory_key is not None,
            "memory_backend": settings.memory_backend,
        }
        return redacted(snapshot)

    assets = DashboardAssets.load()
    # With a token configured, a browser cannot send it for the page itself: the page
    # holds no data, so it is served to anyone, and asks for the token the data needs.
    page_guard = [] if settings.control_token is not None else guarded

    @app.get(DASHBOARD, dependencies=page_guard)
    async def dashboard() -> Response:
        return assets.page

    @app.get(DASHBOARD + "/{name}", dependencies=page_guard)
    async def dashboard_asset(name: str) -> Response:
        return assets.file(name)

    async def caller(request: Request) -> tuple[str, MemoryAdmin]:
        """The caller's own id, by the proxy's rules, and the admin to ask."""
        user_id = (await router.adecide(request.headers)).user_id  # a refusal: ``refused``
        if memory is None:
            raise MemoryOff
        return user_id, memory

    @app.get(MEMORIES, dependencies=guarded)
    async def list_memories(request: Request) -> Response:
        user_id, admin = await caller(request)
        params = request.query_params
        query = params.get("q", "").strip()
        limit = _limit(params.get("limit"))
        if query:
            found = await admin.search(user_id, query, limit)
        else:
            found = await admin.list(user_id, limit)
        return redacted(
            {
                "user_id": user_id,
                "backend": admin.backend_name,
                "query": query or None,
                "memories": [_memory_json(m) for m in found],
            }
        )

    @app.delete(MEMORIES + "/{memory_id}", dependencies=guarded)
    async def forget_memory(request: Request, memory_id: str) -> Response:
        user_id, admin = await caller(request)
        if not _MEMORY_ID.fullmatch(memory_id) or not await admin.forget(user_id, memory_id):
            raise MemoryNotFound
        return redacted({"user_id": user_id, "deleted": 1})

    @app.delete(MEMORIES, dependencies=guarded)
    async def forget_all_memories(request: Request) -> Response:
        user_id, admin = await caller(request)
        deleted = await admin.forget_all(user_id)
        return redacted({"user_id": user_id, "deleted": deleted})

    return app


async def probe_litellm(upstream: Upstream) -> str:
    """LiteLLM's liveliness: "ok", "unhealthy (HTTP n)", "timeout" or "unreachable"."""
    try:
        async with asyncio.timeout(READINESS_TIMEOUT):
            status, _, answer = await upstream("GET", b"/health/liveliness", (), b"")
            await answer.aclose()
    except TimeoutError:
        return "timeout"
    except UpstreamError as exc:
        return "timeout" if exc.kind.endswith("timeout") else "unreachable"
    return "ok" if status == 200 else f"unhealthy (HTTP {status})"


def _whole_number(
    raw: str | None, default: int, low: int, high: int, refused: type[RequestRefused]
) -> int:
    """A query parameter that must be a whole number from ``low`` to ``high``: ``default``
    when absent; anything else raises ``refused``."""
    if raw is None:
        return default
    value = raw.strip()
    if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise refused
    return int(value)


def _window(raw: str | None) -> int:
    """The ``window`` query parameter of the stats endpoint, in seconds."""
    return _whole_number(raw, DEFAULT_WINDOW, 10, HISTORY_SECONDS, InvalidWindow)


def _limit(raw: str | None) -> int:
    """The ``limit`` query parameter: a whole number from 1 to MAX_LIMIT."""
    return _whole_number(raw, DEFAULT_LIMIT, 1, MAX_LIMIT, InvalidLimit)


def _rate_limit_json(limit: Limit, left: Budget | None) -> dict[str, Any]:
    """The limit an id has and what is left of it; ``remaining`` is ``None`` when the
    limiter cannot tell (Redis is down)."""
    requests = limit.requests_per_minute is not None
    tokens = limit.tokens_per_minute is not None
    remaining = None
    if left is not None:
        remaining = {
            "requests": left.requests,
            "tokens": left.tokens,
            "requests_full_in_seconds": round(left.requests_full_in, 3),
            "tokens_full_in_seconds": round(left.tokens_full_in, 3),
        }
    return {
        "requests_per_minute": limit.requests_per_minute,
        "burst": limit.effective_burst if requests else None,
        "tokens_per_minute": limit.tokens_per_minute,
        "token_burst": limit.effective_token_burst if tokens else None,
        "remaining": remaining,
    }


def _memory_json(memory: Memory) -> dict[str, Any]:
    return {
        "id": memory.id,
        "text": memory.text,
        "score": memory.score,
        "created_at": memory.created_at,
        "conversation_id": memory.conversation_id,
    }
