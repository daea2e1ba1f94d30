"""The ``supermemory-api`` backend: Supermemory's v5 API through the official SDK's async client.

Target: the v5 API that ``supermemory`` 5.x speaks. The user id is the namespace, and v5
puts it in the URL path of every call, so no call can run without one::

    search      POST   /ns/{ns}/search          {query, limit, searchMode}
    store       POST   /ns/{ns}/document        {content, id, metadata}
    list        POST   /ns/{ns}/list/documents  ?limit&sort&order, {include: {content}}
    forget      DELETE /ns/{ns}/document        {ids}; else DELETE /ns/{ns}/memories {ids}
    forget_all  DELETE /ns/{ns}

Auth is ``Authorization: Bearer <key>``. The SDK's own retries are off (``max_retries=0``):
searches run under the router's time budget, and stores are retried by the store queue.
A stored turn's document id is the turn's id, so a retried store repeats the same document
instead of adding a second one.
"""

from __future__ import annotations

import httpx
import supermemory
from supermemory import AsyncSupermemory, DeleteDocumentsResult, ForgetResult

from router.memory.backend import (
    Memories,
    Memory,
    MemoryBackendError,
    MetadataValue,
    TransientMemoryError,
    Turn,
    check_user_id,
)

API_VERSION = "v5"
DEFAULT_BASE_URL = "https://api.supermemory.ai"
MAX_LIMIT = 100
SOURCE = "memory-router"


def _clamp(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


def _translate(exc: Exception) -> MemoryBackendError:
    """Map an SDK or httpx failure to the backend's errors, without the response body."""
    if isinstance(exc, supermemory.APIStatusError):
        status = exc.status_code
        message = f"Supermemory answered {status}"
        if status in (408, 409, 429) or status >= 500:
            return TransientMemoryError(message)
        return MemoryBackendError(message)
    if isinstance(exc, supermemory.APITimeoutError | httpx.TimeoutException):
        return TransientMemoryError("Supermemory did not answer in time")
    if isinstance(exc, supermemory.APIConnectionError | httpx.TransportError):
        return TransientMemoryError("cannot reach Supermemory")
    return MemoryBackendError(f"Supermemory call failed: {type(exc).__name__}")


class SupermemoryApiBackend:
    """Memories in Supermemory, one namespace per user id."""

    def __init__(
        self,
        client: AsyncSupermemory,
        http_client: httpx.AsyncClient,
        *,
        search_mode: str = "hybrid",
    ) -> None:
        self._client = client
        self._http = http_client
        self._search_mode = search_mode

    @property
    def name(self) -> str:
        return "supermemory-api"

    @classmethod
    def create(
        cls,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        trust_env: bool = True,
        search_mode: str = "hybrid",
    ) -> SupermemoryApiBackend:
        """A backend with its own connection pool; ``base_url`` may be a self-hosted server."""
        http_client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=False,
            trust_env=trust_env,
        )
        client = AsyncSupermemory(
            api_key=api_key,
            base_url=base_url.rstrip("/"),
            max_retries=0,
            http_client=http_client,
        )
        return cls(client, http_client, search_mode=search_mode)

    async def search(self, user_id: str, query: str, limit: int) -> Memories:
        check_user_id(user_id)
        if not query.strip():
            return []
        try:
            response = await self._client.search(
                user_id, query=query, limit=_clamp(limit), search_mode=self._search_mode
            )
        except Exception as exc:
            raise _translate(exc) from None
        memories: Memories = []
        seen: set[str] = set()
        for result in response.results:
            text = result.memory or result.chunk
            if not text or text in seen:
                continue
            seen.add(text)
            memories.append(
                Memory(
                    id=result.id,
                    text=text,
                    score=result.similarity,
                    created_at=result.system.created_at,
                    conversation_id=_str_or_none(result.metadata.get("conversationId")),
                )
            )
        return memories

    async def store(self, user_id: str, turn: Turn) -> str:
        check_user_id(user_id)
        metadata: dict[str, MetadataValue] = {**turn.metadata, "source": SOURCE}
        if turn.conversation_id:
            metadata["conversationId"] = turn.conversation_id
        try:
            ref = await self._client.add(
                user_id, content=turn.content(), id=turn.id, metadata=dict(metadata)
            )
        except Exception as exc:
            raise _translate(exc) from None
        return ref.id

    async def list(self, user_id: str, limit: int = MAX_LIMIT) -> Memories:
        check_user_id(user_id)
        try:
            page = await self._client.list(
                user_id,
                "documents",
                limit=_clamp(limit),
                sort="createdAt",
                order="desc",
                include={"content": True},
            )
        except Exception as exc:
            raise _translate(exc) from None
        return [
            Memory(
                id=doc.id,
                text=doc.content or doc.summary or doc.title or "",
                created_at=doc.system.created_at.isoformat(),
                conversation_id=_str_or_none(doc.metadata.get("conversationId")),
            )
            for doc in page.documents
        ]

    async def forget(self, user_id: str, memory_id: str) -> bool:
        """Delete a stored turn (a document); an id from a search may name a memory instead."""
        check_user_id(user_id)
        try:
            deleted: DeleteDocumentsResult = await self._client.documents.delete(
                user_id, ids=[memory_id]
            )
            if deleted.count > 0:
                return True
            forgotten: ForgetResult = await self._client.memories.forget(user_id, ids=[memory_id])
        except Exception as exc:
            raise _translate(exc) from None
        return forgotten.count > 0

    async def forget_all(self, user_id: str) -> int:
        """Delete the user's namespace: every document and memory in it."""
        check_user_id(user_id)
        try:
            result = await self._client.namespaces.delete(user_id)
        except supermemory.NotFoundError:
            return 0  # a namespace nothing was ever stored in
        except Exception as exc:
            raise _translate(exc) from None
        return int(getattr(result, "deleted_documents_count", 0))

    async def aclose(self) -> None:
        await self._http.aclose()


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
