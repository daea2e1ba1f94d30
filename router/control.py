"""The router's own endpoints: health, readiness, metrics and routing info.

These are served by FastAPI; every other path goes to the proxy. ``/metrics``
and ``/memory-routing/info`` can be limited to loopback callers or to a bearer
token (``control_access``); the health endpoints are always open.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from router.errors import error_for
from router.exceptions import Forbidden, RequestRefused, UpstreamError
from router.headers import memory_header_names
from router.memory_router import MemoryRouter
from router.metrics import Metrics
from router.reload import ConfigReloader
from router.settings import Settings
from router.upstream import Upstream

READINESS_TIMEOUT = 3.0
CONTROL_PATHS = frozenset({"/health", "/health/readiness", "/metrics", "/memory-routing/info"})
# Paths under /metrics/ are the router's too, never LiteLLM's: the stack serves
# LiteLLM's own metrics there without a key, for Prometheus on the private network.
CONTROL_PREFIX = "/metrics/"


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
    upstream: Upstream,
    reloader: ConfigReloader | None = None,
    on_startup: Callable[[], Awaitable[None]] | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
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
        settings.supermemory_key, litellm_end_user=settings.litellm_end_user_header
    )

    @app.exception_handler(RequestRefused)
    async def refused(_: Request, exc: RequestRefused) -> Response:
        error = error_for(exc)
        return Response(
            error.body("openai"), status_code=error.status, media_type="application/json"
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/readiness")
    async def readiness() -> JSONResponse:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT):
                status, _, answer = await upstream("GET", b"/health/liveliness", (), b"")
                await answer.aclose()
            litellm = "ok" if status == 200 else f"unhealthy (HTTP {status})"
        except TimeoutError:
            litellm = "timeout"
        except UpstreamError as exc:
            litellm = "timeout" if exc.kind.endswith("timeout") else "unreachable"
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
        info["litellm_url"] = settings.litellm_url
        if reloader is not None:
            info["config"] = {**info["config"], **reloader.status()}
        body = json.dumps(info)
        for secret in settings.secrets:  # a caller may have sent one as its own id
            body = body.replace(secret, "[redacted]")
        return Response(body, media_type="application/json")

    return app
