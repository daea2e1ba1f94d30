"""The router's own endpoints: health, readiness, metrics and routing info.

These are served by FastAPI; every other path goes to the proxy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from router.errors import invalid_user_id
from router.headers import memory_headers
from router.memory_router import MemoryRouter
from router.metrics import Metrics
from router.rules import InvalidCustomHeader
from router.settings import Settings

CONTROL_PATHS = frozenset({"/health", "/health/readiness", "/metrics", "/memory-routing/info"})


def build_control_app(
    *,
    settings: Settings,
    router: MemoryRouter,
    metrics: Metrics,
    client: httpx.AsyncClient,
    on_shutdown: Callable[[], Any] | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:
            await on_shutdown()

    app = FastAPI(
        title="memory-router",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    injected = [
        name.decode()
        for name, _ in memory_headers(
            "x", settings.supermemory_key, litellm_end_user=settings.litellm_end_user_header
        )
    ]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/readiness")
    async def readiness() -> JSONResponse:
        url = settings.litellm_url + "/health/liveliness"
        try:
            answer = await client.get(url, timeout=httpx.Timeout(3.0))
            litellm = (
                "ok" if answer.status_code == 200 else f"unhealthy (HTTP {answer.status_code})"
            )
        except httpx.TimeoutException:
            litellm = "timeout"
        except httpx.TransportError:
            litellm = "unreachable"
        ready = litellm == "ok"
        return JSONResponse(
            {
                "status": "ready" if ready else "not_ready",
                "checks": {"router": "ok", "config": "ok", "litellm": litellm},
            },
            status_code=200 if ready else 503,
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/memory-routing/info")
    async def routing_info(request: Request) -> Response:
        try:
            info = router.get_routing_info(request.headers)
        except InvalidCustomHeader as exc:
            error = invalid_user_id(exc.header, exc.problem)
            return Response(
                error.body("openai"), status_code=error.status, media_type="application/json"
            )
        info["injected_headers"] = injected
        info["supermemory_key_configured"] = settings.supermemory_key is not None
        info["litellm_url"] = settings.litellm_url
        return JSONResponse(info)

    return app
