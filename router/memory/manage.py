"""List, search and forget one id's memories: what the control endpoints and the CLI offer.

``MemoryAdmin`` wraps a backend, opened on first use, and counts every call in the
memory metrics (operation ``list``, ``search``, ``forget`` or ``forget_all``; outcome
``ok``, ``transient`` or ``error``). It decides nothing about who may ask: the control
endpoints pass the id the identity rules gave the caller, the CLI the id its operator
named. Backend failures propagate as ``MemoryBackendError``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from router.exceptions import TransientMemoryError
from router.memory.backend import Memories, MemoryBackend, check_user_id
from router.memory.metrics import MemoryMetrics

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class MemoryAdmin:
    """The caller-facing operations on memories, for one configured backend."""

    def __init__(
        self,
        backend_name: str,
        opener: Callable[[], MemoryBackend],
        metrics: MemoryMetrics | None = None,
        *,
        owns: bool = True,
    ) -> None:
        self.backend_name = backend_name
        self._opener = opener
        self._backend: MemoryBackend | None = None
        self._metrics = metrics
        self._owns = owns

    @property
    def backend(self) -> MemoryBackend:
        if self._backend is None:
            self._backend = self._opener()
        return self._backend

    async def list(self, user_id: str, limit: int = DEFAULT_LIMIT) -> Memories:
        """``user_id``'s memories, newest first."""
        check_user_id(user_id)
        return await self._timed("list", self.backend.list(user_id, _clamp(limit)))

    async def search(self, user_id: str, query: str, limit: int = DEFAULT_LIMIT) -> Memories:
        """``user_id``'s memories that best match ``query``."""
        check_user_id(user_id)
        return await self._timed("search", self.backend.search(user_id, query, _clamp(limit)))

    async def forget(self, user_id: str, memory_id: str) -> bool:
        """Remove one of ``user_id``'s memories; False when it has none by that id."""
        check_user_id(user_id)
        return await self._timed("forget", self.backend.forget(user_id, memory_id))

    async def forget_all(self, user_id: str) -> int:
        """Remove every memory of ``user_id``; how many went."""
        check_user_id(user_id)
        return await self._timed("forget_all", self.backend.forget_all(user_id))

    async def aclose(self) -> None:
        """Close the backend if this admin opened it."""
        backend, self._backend = self._backend, None
        if backend is not None and self._owns:
            await backend.aclose()

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        outcome = "error"  # whatever else went wrong
        try:
            result = await call
            outcome = "ok"
            return result
        except TransientMemoryError:
            outcome = "transient"
            raise
        finally:
            if self._metrics is not None:
                self._metrics.observe(operation, outcome, time.perf_counter() - started)


def _clamp(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))
