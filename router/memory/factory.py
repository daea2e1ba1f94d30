"""Building the memory subsystem from settings, at startup.

Only ``supermemory-api`` and ``local`` retrieve and store in the router; with
``supermemory-router`` (Supermemory's proxy does it) or ``off`` there is no service.
The SDK is imported only when the ``supermemory-api`` backend is chosen.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from router.memory.backend import MemoryBackend, MemoryBackendError
from router.memory.config import MemoryPolicy
from router.memory.metrics import MemoryMetrics
from router.memory.service import MemoryService
from router.settings import Settings

IN_ROUTER_BACKENDS = frozenset({"supermemory-api", "local"})


async def open_backend(settings: Settings) -> MemoryBackend | None:
    """The backend ``settings.memory_backend`` names, opened; None when the router
    itself does no retrieval or storage."""
    if settings.memory_backend == "local":
        from router.memory.local import LocalBackend

        path = settings.memory_local_path
        path.parent.mkdir(parents=True, exist_ok=True)
        return await LocalBackend.open(path)
    if settings.memory_backend == "supermemory-api":
        from router.memory.supermemory_api import SupermemoryApiBackend

        key = settings.supermemory_key
        if key is None:
            raise MemoryBackendError("the supermemory-api backend needs SUPERMEMORY_API_KEY")
        return SupermemoryApiBackend.create(
            api_key=key, base_url=settings.memory_api_url, timeout=settings.memory_api_timeout
        )
    return None


async def open_service(
    settings: Settings, registry: CollectorRegistry, policy: MemoryPolicy | None = None
) -> MemoryService | None:
    """A memory service over the configured backend, not yet started; None when off."""
    backend = await open_backend(settings)
    if backend is None:
        return None
    return MemoryService(
        backend,
        MemoryMetrics(registry, backend.name),
        policy=policy,
        budget=settings.memory_budget_seconds,
        limit=settings.memory_search_limit,
        queue_size=settings.memory_queue_size,
        store_attempts=settings.memory_store_attempts,
        store_backoff=settings.memory_store_backoff_seconds,
    )
