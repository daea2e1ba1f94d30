"""Building the memory subsystem from settings, at startup.

Only ``supermemory-api`` and ``local`` retrieve and store in the router; with
``supermemory-router`` (Supermemory's proxy does it) or ``off`` there is no service.
The list, search and forget operations (``MemoryAdmin``) exist for every backend that
keeps memories somewhere the router can reach: the local file, or Supermemory's API,
which ``supermemory-router`` reaches with the same key since the memories are the same
pool. The SDK is imported only when a Supermemory backend is opened.
"""

from __future__ import annotations

from collections.abc import Callable

from router.exceptions import MemoryBackendError, MemorySetupError
from router.memory.backend import MemoryBackend
from router.memory.config import MemoryPolicy
from router.memory.manage import MemoryAdmin
from router.memory.metrics import MemoryMetrics
from router.memory.service import MemoryService
from router.settings import Settings

IN_ROUTER_BACKENDS = frozenset({"supermemory-api", "local"})


def _open_local(settings: Settings) -> MemoryBackend:
    from router.memory.local import LocalBackend

    path = settings.memory_local_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return LocalBackend.connect(path)
    except (OSError, MemoryBackendError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise MemorySetupError(
            f"memory backend local: cannot open {path} (MEMORY_ROUTER_MEMORY_LOCAL_PATH): "
            f"{reason}"
        ) from None


def _open_api(settings: Settings) -> MemoryBackend:
    from router.memory.supermemory_api import SupermemoryApiBackend

    key = settings.supermemory_key
    if key is None:
        backend = settings.memory_backend
        raise MemorySetupError(f"memory backend {backend}: needs SUPERMEMORY_API_KEY")
    return SupermemoryApiBackend.create(
        api_key=key, base_url=settings.memory_api_url, timeout=settings.memory_api_timeout
    )


def open_backend(settings: Settings) -> MemoryBackend | None:
    """The backend ``settings.memory_backend`` names, opened; None when the router
    itself does no retrieval or storage. A store that cannot be opened raises
    ``MemorySetupError``."""
    if settings.memory_backend == "local":
        return _open_local(settings)
    if settings.memory_backend == "supermemory-api":
        return _open_api(settings)
    return None


def open_service(
    settings: Settings, metrics: MemoryMetrics, policy: MemoryPolicy | None = None
) -> MemoryService | None:
    """A memory service over the configured backend, not yet started; None when the
    router does no memory itself."""
    backend = open_backend(settings)
    if backend is None:
        return None
    return MemoryService(
        backend,
        metrics,
        policy=policy,
        budget=settings.memory_budget_seconds,
        limit=settings.memory_search_limit,
        queue_size=settings.memory_queue_size,
        store_attempts=settings.memory_store_attempts,
        store_backoff=settings.memory_store_backoff_seconds,
    )


def admin_opener(settings: Settings) -> Callable[[], MemoryBackend] | None:
    """How to open the backend that lists and forgets memories, for a process with no
    memory service of its own (the CLI, or the server with ``supermemory-router``);
    None when there is nothing to reach: ``off``, or ``supermemory-router`` without a key."""
    if settings.memory_backend == "local":
        return lambda: _open_local(settings)
    if settings.memory_backend == "off" or settings.supermemory_key is None:
        return None
    return lambda: _open_api(settings)


def open_admin(
    settings: Settings,
    metrics: MemoryMetrics | None = None,
    service: MemoryService | None = None,
) -> MemoryAdmin | None:
    """List, search and forget for ``settings``' backend: through the service's own
    backend when there is a service, else a backend of its own, opened on first use."""
    if service is not None:
        return MemoryAdmin(settings.memory_backend, lambda: service.backend, metrics, owns=False)
    opener = admin_opener(settings)
    if opener is None:
        return None
    return MemoryAdmin(settings.memory_backend, opener, metrics, owns=True)
