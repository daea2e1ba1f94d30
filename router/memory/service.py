"""Memory around one proxied call: ``prepare`` before forwarding, ``finish`` after answering.

``prepare(user_id, path, body)`` returns the body to forward, the value for the
``x-memory-router-memory`` response header (None when the body is not a chat) and a
context for ``finish``. It never raises and never waits longer than the time budget:
on a timeout or an error the body goes on unchanged (fail-open), and the outcome is
counted and logged.

Outcomes (the header values)::

    injected           memories found and put in the turn's user message
    none               searched, nothing found
    reused             a tool-loop request got its turn's memories again, without a search
    skipped-tool-loop  a tool-loop request with nothing to reuse
    skipped-no-query   the turn's user message has no typed text (an image alone, say)
    skipped-off        retrieval is switched off for this id
    skipped-timeout    the search took longer than the budget
    skipped-error      the search failed

Reuse: a tool loop resends the turn's user message, which the client keeps without the
memories the router added. Putting the same block back into that same message keeps the
prompt identical to the turn's first request, so the provider's prompt cache still hits.
The block is found by (user id, conversation id, the turn's text) in a small cache.

``finish(context, text)`` queues the turn for storage when storage is on for the id, the
request started a new turn, and the answer's text (``reader``, an observer of the
answer) says it ended normally.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from router.apis import ApiFormat
from router.memory.answer_text import AnswerText, answer_text
from router.memory.backend import MemoryBackend, MemoryBackendError, MetadataValue, Turn
from router.memory.chat import (
    Chat,
    conversation_id,
    inject,
    memory_block,
    model_of,
    parse_chat,
    turn_of,
)
from router.memory.config import MemoryPolicy
from router.memory.metrics import MemoryMetrics
from router.memory.queue import StoreQueue

logger = logging.getLogger("memory_router.memory")

HEADER = "x-memory-router-memory"
MAX_QUERY_CHARS = 4000
MAX_STORED_USER_CHARS = 16_000


class Outcome(StrEnum):
    INJECTED = "injected"
    NONE = "none"
    REUSED = "reused"
    TOOL_LOOP = "skipped-tool-loop"
    NO_QUERY = "skipped-no-query"
    OFF = "skipped-off"
    TIMEOUT = "skipped-timeout"
    ERROR = "skipped-error"


@dataclass(frozen=True, slots=True)
class MemoryContext:
    """What ``finish`` needs to know about the request ``prepare`` saw."""

    user_id: str
    format: ApiFormat
    new_turn: bool
    query: str
    conversation_id: str | None
    model: str | None
    store: bool

    def reader(
        self,
        *,
        status: int,
        content_type: bytes | str | None,
        content_encoding: bytes | str | None = None,
    ) -> AnswerText | None:
        """A reader of the answer's text, or None when its text will not be stored."""
        if not self.store:
            return None
        return answer_text(
            self.format,
            status=status,
            content_type=content_type,
            content_encoding=content_encoding,
        )


class _ReuseCache:
    """Injected blocks by turn, bounded in size and age."""

    def __init__(self, maxsize: int, ttl: float, clock: Callable[[], float]) -> None:
        self._items: OrderedDict[tuple[str, str, bytes], tuple[float, str]] = OrderedDict()
        self._maxsize = maxsize
        self._ttl = ttl
        self._clock = clock

    @staticmethod
    def key(user_id: str, conversation: str | None, query: str) -> tuple[str, str, bytes]:
        digest = hashlib.blake2b(query.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        return (user_id, conversation or "", digest)

    def get(self, key: tuple[str, str, bytes]) -> str | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, block = item
        if expires < self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return block

    def put(self, key: tuple[str, str, bytes], block: str) -> None:
        self._items[key] = (self._clock() + self._ttl, block)
        self._items.move_to_end(key)
        while len(self._items) > self._maxsize:
            self._items.popitem(last=False)


class _LogThrottle:
    """At most one warning per kind per interval; the rest are counted in metrics only."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._next: dict[str, float] = {}

    def allow(self, kind: str) -> bool:
        now = self._clock()
        if now < self._next.get(kind, 0.0):
            return False
        self._next[kind] = now + self._interval
        return True


class MemoryService:
    """Retrieval before a call and storage after it, for one backend."""

    def __init__(
        self,
        backend: MemoryBackend,
        metrics: MemoryMetrics,
        *,
        policy: MemoryPolicy | None = None,
        budget: float = 0.3,
        limit: int = 5,
        queue_size: int = 1000,
        store_attempts: int = 4,
        store_backoff: float = 0.5,
        reuse_size: int = 1024,
        reuse_ttl: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self.policy = policy or MemoryPolicy()
        self.budget = budget
        self.limit = limit
        self.queue = StoreQueue(
            backend, metrics, maxsize=queue_size, attempts=store_attempts, backoff=store_backoff
        )
        self._reuse = _ReuseCache(reuse_size, reuse_ttl, clock)
        self._throttle = _LogThrottle(60.0, clock)

    def start(self) -> None:
        """Start the store queue's worker; call inside the running loop."""
        self.queue.start()

    async def aclose(self, drain_seconds: float) -> int:
        """Drain the store queue within ``drain_seconds``, close the backend; returns turns lost."""
        lost = await self.queue.close(drain_seconds)
        await self.backend.aclose()
        return lost

    async def prepare(
        self, user_id: str, path: str, body: bytes, policy: MemoryPolicy | None = None
    ) -> tuple[bytes, str | None, MemoryContext | None]:
        """The body to forward, the outcome header value and the context for ``finish``.

        ``policy`` is the per-id switches to apply (the proxy passes the ones compiled
        with its current rules); without it, the service's own."""
        try:
            chosen = policy if policy is not None else self.policy
            return await self._prepare(user_id, path, body, chosen)
        except Exception as exc:  # fail-open, whatever went wrong
            self._warn("error", "memory retrieval for %s failed: %s", user_id, type(exc).__name__)
            self.metrics.retrieval(Outcome.ERROR)
            return body, Outcome.ERROR.value, None

    async def _prepare(
        self, user_id: str, path: str, body: bytes, policy: MemoryPolicy
    ) -> tuple[bytes, str | None, MemoryContext | None]:
        chat = parse_chat(path, body)
        if chat is None:
            return body, None, None
        switches = policy.for_user(user_id)
        turn = turn_of(chat)
        conversation = conversation_id(chat)
        context = MemoryContext(
            user_id=user_id,
            format=chat.format,
            new_turn=turn.new_turn,
            query=turn.query,
            conversation_id=conversation,
            model=model_of(chat),
            store=switches.store and turn.new_turn and bool(turn.query),
        )
        reuse_key = _ReuseCache.key(user_id, conversation, turn.query)

        outcome: Outcome
        new_body = body
        injected: int | None = None
        if not switches.retrieve:
            outcome = Outcome.OFF
        elif turn.index is None:
            outcome = Outcome.NO_QUERY if turn.new_turn else Outcome.TOOL_LOOP
        elif not turn.new_turn:
            block = self._reuse.get(reuse_key)
            reused = inject(chat, turn.index, block) if block else None
            outcome = Outcome.REUSED if reused is not None else Outcome.TOOL_LOOP
            new_body = reused if reused is not None else body
        else:
            outcome, retrieved, injected = await self._retrieve(
                user_id, turn.query, turn.index, chat, reuse_key
            )
            new_body = retrieved if retrieved is not None else body
        self.metrics.retrieval(outcome, injected)
        return new_body, outcome.value, context

    async def _retrieve(
        self,
        user_id: str,
        query: str,
        index: int,
        chat: Chat,
        reuse_key: tuple[str, str, bytes],
    ) -> tuple[Outcome, bytes | None, int | None]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.budget):
                memories = await self.backend.search(user_id, query[:MAX_QUERY_CHARS], self.limit)
        except TimeoutError:
            self.metrics.observe("search", "timeout", time.perf_counter() - started)
            self._warn(
                "timeout", "memory search for %s took over %.3fs: skipped", user_id, self.budget
            )
            return Outcome.TIMEOUT, None, None
        except Exception as exc:
            self.metrics.observe("search", "error", time.perf_counter() - started)
            reason = str(exc) if isinstance(exc, MemoryBackendError) else type(exc).__name__
            self._warn("error", "memory search for %s failed: %s", user_id, reason)
            return Outcome.ERROR, None, None
        self.metrics.observe("search", "ok", time.perf_counter() - started)
        block = memory_block([m.text for m in memories])
        if block is None:
            return Outcome.NONE, None, 0
        new_body = inject(chat, index, block)
        if new_body is None:
            return Outcome.ERROR, None, None
        self._reuse.put(reuse_key, block)
        return Outcome.INJECTED, new_body, len(memories)

    def finish(self, context: MemoryContext | None, text: AnswerText | None) -> bool:
        """Queue the turn for storage if its answer ended normally; True when queued."""
        if context is None or text is None or not context.store:
            return False
        try:
            result = text.result()
            if not result.storable:
                return False
            metadata: dict[str, MetadataValue] = {"api": context.format}
            if context.model:
                metadata["model"] = context.model
            if result.truncated:
                metadata["truncated"] = True
            turn = Turn(
                user_text=context.query[:MAX_STORED_USER_CHARS],
                assistant_text=result.text,
                conversation_id=context.conversation_id,
                metadata=metadata,
            )
            return self.queue.submit(context.user_id, turn)
        except Exception as exc:
            reason = type(exc).__name__
            self._warn("finish", "memory store for %s not queued: %s", context.user_id, reason)
            return False

    def _warn(self, kind: str, message: str, *args: object) -> None:
        if self._throttle.allow(kind):
            logger.warning(message, *args)
