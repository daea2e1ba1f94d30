"""The background store queue: turns are stored after the response, never in its way.

``submit`` never waits: a full queue drops the turn and counts it. One worker task stores
turns in order, retrying transient failures with exponential backoff; a permanent failure,
or the last failed attempt, drops the turn and counts it. ``close`` stops taking turns,
drains within a window and counts what was still queued or in flight as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass

from router.memory.backend import MemoryBackend, MemoryBackendError, TransientMemoryError, Turn
from router.memory.metrics import MemoryMetrics

logger = logging.getLogger("memory_router.memory")


def _describe(exc: BaseException) -> str:
    """A backend error's message (written to hold no key or text); else only its type."""
    return str(exc) if isinstance(exc, MemoryBackendError) else type(exc).__name__


def backoff_delay(attempt: int, *, base: float, cap: float, jitter: bool = True) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0-based): ``base * 2**attempt``
    up to ``cap``; with ``jitter``, a random value between half of that and all of it."""
    delay: float = min(cap, base * float(2**attempt))
    return delay * random.uniform(0.5, 1.0) if jitter else delay


@dataclass(frozen=True, slots=True)
class _Job:
    user_id: str
    turn: Turn


class StoreQueue:
    """A bounded queue of turns to store, with one worker; ``start`` it inside the loop."""

    def __init__(
        self,
        backend: MemoryBackend,
        metrics: MemoryMetrics,
        *,
        maxsize: int = 1000,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
    ) -> None:
        self._backend = backend
        self._metrics = metrics
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=maxsize)
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._in_flight = False
        self.stored = 0
        metrics.track_depth(self._queue.qsize)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="memory-store-queue")

    def submit(self, user_id: str, turn: Turn) -> bool:
        """Queue ``turn`` for storage; False (and counted) when closing or full."""
        if self._closing:
            self._metrics.drop("shutdown")
            return False
        try:
            self._queue.put_nowait(_Job(user_id, turn))
        except asyncio.QueueFull:
            self._metrics.drop("queue_full")
            logger.warning("memory store queue full: a turn for %s was dropped", user_id)
            return False
        return True

    async def join(self) -> None:
        """Wait until everything submitted so far has been stored or dropped."""
        await self._queue.join()

    async def close(self, drain_seconds: float) -> int:
        """Stop taking turns, drain for at most ``drain_seconds``; returns the turns lost."""
        self._closing = True
        if self._closed:
            return 0
        self._closed = True
        if self._worker is None:
            lost = self._queue.qsize()
        else:
            try:
                async with asyncio.timeout(drain_seconds):
                    await self._queue.join()
                lost = 0
            except TimeoutError:
                lost = self._queue.qsize() + (1 if self._in_flight else 0)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if lost:
            self._metrics.drop("shutdown", lost)
            logger.warning("memory store queue: %d turn(s) not stored at shutdown", lost)
        return lost

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            self._in_flight = True
            try:
                await self._store(job)
            except Exception:  # never let one turn stop the worker
                logger.exception("memory store worker failed on a turn")
                self._metrics.drop("failed")
            finally:
                self._in_flight = False
                self._queue.task_done()

    async def _store(self, job: _Job) -> None:
        for attempt in range(self._attempts):
            started = time.perf_counter()
            try:
                await self._backend.store(job.user_id, job.turn)
            except TransientMemoryError as exc:
                self._metrics.observe("store", "transient", time.perf_counter() - started)
                if attempt + 1 >= self._attempts:
                    logger.warning(
                        "memory store for %s failed after %d attempts: %s",
                        job.user_id,
                        self._attempts,
                        _describe(exc),
                    )
                    self._metrics.drop("failed")
                    return
                await asyncio.sleep(
                    backoff_delay(attempt, base=self._backoff, cap=self._max_backoff)
                )
                continue
            except Exception as exc:
                self._metrics.observe("store", "error", time.perf_counter() - started)
                logger.warning("memory store for %s refused: %s", job.user_id, _describe(exc))
                self._metrics.drop("failed")
                return
            self._metrics.observe("store", "ok", time.perf_counter() - started)
            self.stored += 1
            return
