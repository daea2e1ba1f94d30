"""``create_app``: wires settings, rules, metrics and the upstream client into one ASGI app.

Request flow: ``RouterApp`` sends the router's own paths to the control app
(FastAPI) and every other HTTP request straight to ``Proxy``, keeping framework
routing and middleware off the hot path.

Memory: with the ``supermemory-api`` or ``local`` backend a ``MemoryService`` is
opened here (a local store that cannot be opened stops the start with
``MemorySetupError``), handed to the proxy and to the memory endpoints, started with
the app and drained at shutdown. The drain shares the ``drain_seconds`` window with
the in-flight requests, counted from the SIGTERM when ``router.server.run`` serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from router.config_source import ConfigSource, find_config
from router.control import CONTROL_PATHS, CONTROL_PREFIXES, build_control_app
from router.logs import LOGGER_NAME, redact_handlers
from router.memory.factory import open_admin, open_service
from router.memory.manage import MemoryAdmin
from router.memory.metrics import MemoryMetrics
from router.memory.service import MemoryService
from router.memory_router import MemoryRouter
from router.metrics import Metrics
from router.proxy import Proxy, Receive, Scope, Send
from router.ratelimit import RateLimiter, build_rate_limiter
from router.reload import ConfigReloader
from router.settings import Settings
from router.stats import TrafficStats
from router.upstream import AiohttpUpstream, HttpxUpstream, Timeouts, Upstream


def build_upstream(settings: Settings) -> AiohttpUpstream:
    """The shared upstream client: aiohttp's pool, short connect timeout, long
    read timeout; see ``router.upstream`` for how it is set up for a proxy."""
    return AiohttpUpstream(
        settings.litellm_url,
        timeouts=Timeouts(settings.connect_timeout, settings.read_timeout, settings.pool_timeout),
        max_connections=settings.max_connections,
        keepalive_expiry=settings.keepalive_expiry,
    )


class RouterApp:
    """The ASGI entry point. Attributes expose the parts for tests and embedding."""

    def __init__(
        self,
        *,
        settings: Settings,
        router: MemoryRouter,
        metrics: Metrics,
        upstream: Upstream,
        control: FastAPI,
        proxy: Proxy,
        reloader: ConfigReloader,
        limiter: RateLimiter,
        stats: TrafficStats,
        memory: MemoryService | None = None,
        memory_admin: MemoryAdmin | None = None,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.router = router
        self.metrics = metrics
        self.upstream = upstream
        self.control = control
        self.proxy = proxy
        self.reloader = reloader
        self.limiter = limiter
        self.memory = memory
        self.memory_admin = memory_admin
        self.shutdown_began: float | None = None

    def begin_shutdown(self) -> None:
        """Note when shutting down began (the server calls this on SIGTERM): the memory
        queue's drain ends within ``drain_seconds`` of it."""
        if self.shutdown_began is None:
            self.shutdown_began = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path not in CONTROL_PATHS and not path.startswith(CONTROL_PREFIXES):
                await self.proxy(scope, receive, send)
                return
        await self.control(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    router: MemoryRouter | None = None,
    registry: CollectorRegistry | None = None,
    http_client: httpx.AsyncClient | None = None,
    rate_limiter: RateLimiter | None = None,
    logger: logging.Logger | None = None,
    memory: MemoryService | None = None,
    config_source: ConfigSource | None = None,
) -> RouterApp:
    """Build an isolated router app.

    ``config_source`` is the rules file to run and watch, and why (the CLI passes the
    one its ``--config`` chose); by default ``settings.config``, else the file
    ``router.config_source.find_config`` finds. ``router`` defaults to those rules;
    pass a ``MemoryRouter`` subclass to plug in your own id lookup.
    ``registry`` defaults to a fresh ``CollectorRegistry``. An ``http_client``
    you pass is used through ``HttpxUpstream`` and stays yours to close; without
    one, the router uses aiohttp (``router.upstream``) and closes it at shutdown. The
    same goes for ``rate_limiter``, which defaults to Redis when ``REDIS_URL`` is
    set and to an in-process limiter otherwise. ``memory`` is a ``MemoryService`` of
    your own (any ``MemoryBackend``); the app starts it, and it stays yours to close.
    Without one, the app opens the backend ``settings.memory_backend`` names, if the
    router does memory itself, and drains and closes it at shutdown.
    """
    source = config_source if config_source is not None else find_config(settings.config)
    if router is None:
        router = MemoryRouter(source.path)
    if registry is None:
        registry = CollectorRegistry()
    upstream: Upstream
    if http_client is None:
        upstream = build_upstream(settings)
    else:
        timeouts = Timeouts(settings.connect_timeout, settings.read_timeout, settings.pool_timeout)
        upstream = HttpxUpstream(http_client, settings.litellm_url, timeouts)
    log = logger if logger is not None else logging.getLogger(LOGGER_NAME)
    redact_handlers(log, settings.secrets)
    metrics = Metrics(
        registry,
        max_user_ids=settings.max_user_id_labels,
        known_user_ids=router.rules.known_user_ids(),
    )
    owns_memory = memory is None
    if memory is None:
        memory_metrics = MemoryMetrics(registry, settings.memory_backend)
        memory = open_service(settings, memory_metrics, router.rules.memory)
    else:
        memory_metrics = memory.metrics
    admin = open_admin(settings, memory_metrics, memory)

    owns_limiter = rate_limiter is None
    limiter = rate_limiter
    if limiter is None:
        redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None

        def limiter_failed(kind: str) -> None:
            metrics.limiter_errors.labels(kind).inc()

        limiter = build_rate_limiter(
            redis_url,
            fail_open=settings.rate_limit_fail_open,
            on_error=limiter_failed,
            logger=log.getChild("ratelimit"),
        )
    reloader = ConfigReloader(
        router,
        source,
        metrics,
        log,
        force_polling=settings.watch_force_polling,
    )
    stats = TrafficStats()
    watch_task: asyncio.Task[None] | None = None
    app: RouterApp | None = None

    async def startup() -> None:
        nonlocal watch_task
        if memory is not None:
            memory.start()
        if settings.watch_config:
            watch_task = asyncio.create_task(reloader.watch())
        reloader.install_sighup()

    async def shutdown() -> None:
        reloader.remove_sighup()
        reloader.stop()
        if watch_task is not None:
            watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch_task
        await upstream.aclose()  # a caller's httpx client stays open: it is theirs
        if owns_limiter:
            await limiter.aclose()
        if admin is not None:
            await admin.aclose()
        if memory is not None and owns_memory:
            assert app is not None
            began = app.shutdown_began if app.shutdown_began is not None else time.monotonic()
            window = max(0.0, settings.drain_seconds - (time.monotonic() - began))
            await memory.aclose(window)  # turns lost are logged and counted by the queue

    control = build_control_app(
        settings=settings,
        router=router,
        metrics=metrics,
        upstream=upstream,
        reloader=reloader,
        on_startup=startup,
        on_shutdown=shutdown,
        memory=admin,
        stats=stats,
        logger=log,
        limiter=limiter,
    )
    proxy = Proxy(
        settings=settings,
        router=router,
        metrics=metrics,
        upstream=upstream,
        limiter=limiter,
        logger=log,
        stats=stats,
        memory=memory,
    )
    app = RouterApp(
        settings=settings,
        router=router,
        metrics=metrics,
        upstream=upstream,
        control=control,
        proxy=proxy,
        reloader=reloader,
        limiter=limiter,
        stats=stats,
        memory=memory,
        memory_admin=admin,
    )
    return app
